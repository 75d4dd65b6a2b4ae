//! The pidfile: one running hawkey per path, and where to find its pid.
//!
//! # Role
//!
//! The master takes the pidfile before it binds anything or forks a worker,
//! and keeps it until it exits. It does two jobs: it stops a second hawkey
//! from starting on the same pidfile (the second one exits with
//! `EX_TEMPFAIL`, 75), and once every worker is ready it tells scripts and
//! `PIDFile=` which pid the master has. Run by hand it lives in
//! `$XDG_RUNTIME_DIR/hawkey/`, run as root in `/run/hawkey/`, and under
//! systemd in the first `$RUNTIME_DIRECTORY` (see `config::paths::runtime_dir`).
//!
//! # Locking protocol
//!
//! Whether another hawkey is alive is decided by an exclusive `flock(2)` on
//! the file and by nothing else. A pid written in a file says nothing about
//! liveness: the process may have died without cleaning up and its pid may
//! now belong to anything (a `kill(pid, 0)` check would then refuse to start
//! forever, or signal a stranger). The kernel drops a `flock(2)` lock when
//! the last descriptor of its open file description is closed, whichever
//! way the process ends, so a locked file always means a live holder and an
//! unlocked one is stale whatever it says. (The lock is taken with std's
//! `File::try_lock`, which is `flock(LOCK_EX|LOCK_NB)` on Linux, so it also
//! conflicts with `flock(1)` and other tools.)
//!
//! [`acquire`]:
//!
//! 0. The directory must be owned by root or by us and writable by its
//!    owner only (`config::paths::check_directory`): anyone else who can
//!    write it could create the pidfile first and hold its lock, and every
//!    start would then fail as "another hawkey", naming a pid they chose.
//! 1. If the directory of the pidfile is missing, its last component is
//!    created with mode 0755 (subject to the umask). Only that one: a missing
//!    grandparent is a configuration error, not something to invent.
//! 2. The path is opened `O_RDWR|O_CREAT|O_NOFOLLOW|O_CLOEXEC`, mode 0644. A
//!    symlink there is refused (`ELOOP`): its target is never opened,
//!    created, truncated or written, so an unprivileged user who can write
//!    the directory cannot make a root hawkey clobber another file. Anything
//!    else that is not a regular file (a directory, a FIFO, a device) is
//!    refused too, checked by `lstat(2)` before opening and by `fstat(2)` on
//!    the descriptor after.
//! 3. `flock(LOCK_EX|LOCK_NB)`. If another process holds it, acquire fails
//!    and reports the pid the file holds, if it holds a whole one (it is
//!    empty while the other hawkey is still starting).
//! 4. The locked inode must still be the one at the path (same device and
//!    inode from `fstat(2)` and `lstat(2)`). A holder may have renamed a new
//!    file over it, or removed it, between our `open` and our `flock`; then
//!    we hold a lock on a file nobody will look at, so we close it and start
//!    again from step 2 (a bounded number of times).
//! 5. Whatever the file held is a stale pid, returned for the caller to log,
//!    and the file is truncated to empty. It stays empty while hawkey starts:
//!    an empty file is never mistaken for a pid, a half-written one could be.
//!    Temporary files (below) that masters of this pidfile which died while
//!    starting left beside it are removed: holding the lock, we know no
//!    live master owns one.
//!
//! [`Pidfile::stage`], at start-up, writes `PID\n` in full to
//! `.<name>.<pid>.tmp` in the same directory (created
//! `O_CREAT|O_EXCL|O_NOFOLLOW`, so never through a symlink) and locks that
//! new inode: a disk too full to hold the pidfile stops the start there
//! (73), before any worker runs. [`Pidfile::publish`] then `rename(2)`s it
//! over the path (later calls write a new one the same way first). A
//! reader sees the old content or the new one, never a part of one, and the
//! path never names an unlocked file: the old inode stays locked until after
//! the rename, the new one was locked before it. It may be called again (on
//! a reload, say); each call replaces the file whole.
//!
//! [`Pidfile::remove`] unlinks the path while still holding the lock, and
//! only if the inode there is still ours, then closes it. Removing first
//! means no second hawkey can lock the old file and then see it vanish.
//!
//! A `Pidfile` dropped without `remove` leaves the file behind; the next
//! hawkey finds it unlocked and takes it over. The descriptor is
//! close-on-exec, and the forked child closes every fd but stdio and the
//! listeners before its `execve` (`spawn::child`), so no worker ever holds
//! the lock: it is the master's alone and ends with it. Nothing here ever
//! calls `flock(LOCK_UN)`.
//!
//! Only the last component of the path is protected against symlinks;
//! symlinks in its directories (`/var/run` → `/run`) are followed as usual.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::exit::Status;

/// How many times [`acquire`] reopens the path when the inode it locked was
/// replaced or removed meanwhile.
const MAX_TRIES: u32 = 10;

/// More than any pidfile we write ("4194304\n" is 8 bytes); a stale file is
/// never read further than this.
const MAX_READ: u64 = 64;

/// A held pidfile: the path and the locked open file of the inode at it.
#[derive(Debug)]
pub(crate) struct Pidfile {
    path: PathBuf,
    file: File,
    /// The next content, written in full and locked by [`Pidfile::stage`]:
    /// the temporary file's path, its pid and the open file.
    staged: Option<(PathBuf, u32, File)>,
}

/// Why the pidfile could not be taken, published or removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A symlink is at the path; it was not followed.
    #[error("refusing pidfile '{}': it is a symlink", path.display())]
    Symlink { path: PathBuf },
    /// Something other than a regular file (directory, FIFO, device…) is at
    /// the path.
    #[error("refusing pidfile '{}': not a regular file", path.display())]
    NotRegular { path: PathBuf },
    /// Another live process holds the lock; `pid` is what the file says, if
    /// it holds a whole pid.
    #[error("another hawkey{} holds the lock on '{}'", PidPart(*pid), path.display())]
    Locked { path: PathBuf, pid: Option<u32> },
    /// The directory is not fit to hold it (writable by other users…).
    #[error(transparent)]
    Directory(#[from] crate::config::paths::UnsafeDirectory),
    /// A system call failed; `op` names it ("open pidfile", …).
    #[error("failed to {op} '{}': {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The process exit status for this error, from `sysexits.h`:
    /// `EX_TEMPFAIL` (75) when another hawkey holds the lock, so trying again
    /// later may work; `EX_CANTCREAT` (73) for everything else.
    pub(crate) fn status(&self) -> Status {
        match self {
            Error::Locked { .. } => Status::TempFail,
            Error::Symlink { .. }
            | Error::NotRegular { .. }
            | Error::Directory(_)
            | Error::Io { .. } => Status::CantCreate,
        }
    }
}

/// " (pid N)" when the pid is known, nothing otherwise.
struct PidPart(Option<u32>);

impl std::fmt::Display for PidPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pid) => write!(f, " (pid {pid})"),
            None => Ok(()),
        }
    }
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Takes the lock. Returns the pidfile and, when a stale file (unlocked,
/// left by a dead process) was found, the pid it held, so the caller can log
/// it.
pub(crate) fn acquire(path: &Path) -> Result<(Pidfile, Option<u32>), Error> {
    crate::config::paths::check_directory(path, "pidfile")?;
    create_parent(path)?;
    for _ in 0..MAX_TRIES {
        let file = open_regular(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // Best effort: the holder's pid only decorates the error.
                let pid = read_pid(&file).ok().flatten();
                return Err(Error::Locked {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(source)) => return Err(io_error("lock pidfile", path)(source)),
        }
        let ours = file.metadata().map_err(io_error("stat pidfile", path))?;
        match fs::symlink_metadata(path) {
            Ok(there) if same_inode(&ours, &there) => {}
            // Replaced or removed between our open and our lock: what we
            // locked is no longer the pidfile. Close it and look again.
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error("stat pidfile", path)(e)),
        }
        let stale = read_pid(&file).map_err(io_error("read pidfile", path))?;
        file.set_len(0)
            .map_err(io_error("truncate pidfile", path))?;
        remove_leftover_temps(path);
        let pidfile = Pidfile {
            path: path.to_path_buf(),
            file,
            staged: None,
        };
        return Ok((pidfile, stale));
    }
    Err(Error::Io {
        op: "lock pidfile",
        path: path.to_path_buf(),
        source: io::Error::other(format!(
            "it was replaced or removed while being locked, {MAX_TRIES} times in a row"
        )),
    })
}

impl Pidfile {
    /// Writes "PID\n" in full to the temporary file [`Pidfile::publish`]
    /// will rename over the path, and locks it, now: called at start-up, so
    /// a pidfile that cannot be written (a full disk: `ENOSPC`) is a
    /// start-up failure (73) before any worker starts, never a master that
    /// runs on with an empty pidfile. `fsync(2)` makes a file system that
    /// allocates late report it now too.
    pub(crate) fn stage(&mut self, pid: u32) -> Result<(), Error> {
        let temp = self.temp_path(pid);
        let mut file = Self::create_temp(&temp)?;
        let written = Self::fill(&mut file, &temp, pid).and_then(|()| {
            file.sync_data()
                .map_err(io_error("write temporary pidfile", &temp))
        });
        if let Err(e) = written {
            // The original error is the one worth reporting.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        if let Some((old, _, _)) = self.staged.replace((temp, pid, file)) {
            let _ = fs::remove_file(old);
        }
        Ok(())
    }

    /// Atomically makes `path` hold "PID\n": the file [`Pidfile::stage`]
    /// wrote, if it holds this pid; else a new temp file in the same dir,
    /// filled and locked; then renamed over `path`.
    pub(crate) fn publish(&mut self, pid: u32) -> Result<(), Error> {
        if let Some((temp, staged_pid, file)) = self.staged.take() {
            if staged_pid == pid {
                if let Err(e) = fs::rename(&temp, &self.path)
                    .map_err(io_error("rename temporary pidfile over", &self.path))
                {
                    let _ = fs::remove_file(&temp);
                    return Err(e);
                }
                self.file = file;
                return Ok(());
            }
            let _ = fs::remove_file(&temp);
        }
        let temp = self.temp_path(pid);
        let mut file = Self::create_temp(&temp)?;
        let written = Self::fill(&mut file, &temp, pid).and_then(|()| {
            fs::rename(&temp, &self.path)
                .map_err(io_error("rename temporary pidfile over", &self.path))
        });
        if let Err(e) = written {
            // Nothing else can be done about a failed cleanup; the original
            // error is the one worth reporting, and a leftover of this name
            // is removed by the next publish.
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        // The new inode, locked, is at the path now. Closing the old one
        // releases its lock (in this process; forked workers may keep it).
        self.file = file;
        Ok(())
    }

    /// Creates the temporary file `temp` (removing a leftover of that
    /// name), never through a symlink.
    fn create_temp(temp: &Path) -> Result<File, Error> {
        match fs::remove_file(temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove leftover temporary pidfile", temp)(e)),
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o644)
            .open(temp)
            .map_err(io_error("create temporary pidfile", temp))
    }

    /// Locks the new file and writes "PID\n" to it, in full or not at all
    /// (the caller removes it on an error).
    fn fill(file: &mut File, temp: &Path, pid: u32) -> Result<(), Error> {
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(io_error("lock temporary pidfile", temp)(
                    io::ErrorKind::WouldBlock.into(),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock temporary pidfile", temp)(e)),
        }
        file.write_all(format!("{pid}\n").as_bytes())
            .map_err(io_error("write temporary pidfile", temp))
    }

    fn temp_path(&self, pid: u32) -> PathBuf {
        let mut name = std::ffi::OsString::from(".");
        name.push(self.path.file_name().unwrap_or(OsStr::new("pidfile")));
        name.push(format!(".{pid}.tmp"));
        self.path.with_file_name(name)
    }

    /// Removes the file (while still holding the lock), then releases the
    /// lock.
    pub(crate) fn remove(self) -> Result<(), Error> {
        if let Some((temp, _, _)) = &self.staged {
            let _ = fs::remove_file(temp);
        }
        let ours = self
            .file
            .metadata()
            .map_err(io_error("stat pidfile", &self.path))?;
        match fs::symlink_metadata(&self.path) {
            Ok(there) if same_inode(&ours, &there) => {}
            // Someone else put another file there, or removed ours: not
            // ours to delete.
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("stat pidfile", &self.path)(e)),
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("remove pidfile", &self.path)(e)),
        }
        // `self.file` is closed here, after the unlink: the lock goes last.
    }

    /// The pidfile's path, as given to [`acquire`].
    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Removes the temporary files (`.<name>.<pid>.tmp`) masters of this
/// pidfile that died during start-up left beside it: we hold its lock, so
/// no live master of it owns one. Best effort: one that cannot be removed
/// is only clutter.
fn remove_leftover_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let prefix = prefix.into_encoded_bytes();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let leftover = file_name
            .as_encoded_bytes()
            .strip_prefix(prefix.as_slice())
            .and_then(|rest| rest.strip_suffix(b".tmp"))
            .is_some_and(|pid| !pid.is_empty() && pid.iter().all(u8::is_ascii_digit));
        if leftover && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Creates the pidfile's directory if it is missing: that one component
/// only, mode 0755.
fn create_parent(path: &Path) -> Result<(), Error> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    match fs::symlink_metadata(parent) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("create pidfile directory", parent)(e)),
    }
    match DirBuilder::new().mode(0o755).create(parent) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("create pidfile directory", parent)(e)),
    }
}

/// Opens (creating if needed) the regular file at `path`, never through a
/// symlink and never opening a FIFO or a device.
fn open_regular(path: &Path) -> Result<File, Error> {
    // Looked at first so a FIFO or a device at the path is never opened; the
    // `fstat` below is the check that counts.
    refuse_non_regular(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(path)
        .map_err(|e| {
            // ELOOP (symlink), EISDIR, ENXIO (socket)…: say what is there.
            match refuse_non_regular(path) {
                Err(refused) => refused,
                Ok(()) => io_error("open pidfile", path)(e),
            }
        })?;
    let meta = file.metadata().map_err(io_error("stat pidfile", path))?;
    if !meta.file_type().is_file() {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
        });
    }
    Ok(file)
}

/// Errors if something other than a regular file is at `path` (`lstat`).
fn refuse_non_regular(path: &Path) -> Result<(), Error> {
    let kind = match fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type(),
        Err(_) => return Ok(()),
    };
    if kind.is_symlink() {
        Err(Error::Symlink {
            path: path.to_path_buf(),
        })
    } else if kind.is_file() {
        Ok(())
    } else {
        debug_assert!(
            kind.is_dir()
                || kind.is_fifo()
                || kind.is_socket()
                || kind.is_block_device()
                || kind.is_char_device()
        );
        Err(Error::NotRegular {
            path: path.to_path_buf(),
        })
    }
}

fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    a.dev() == b.dev() && a.ino() == b.ino()
}

/// Reads the start of the file and parses it as a whole pid.
fn read_pid(mut file: &File) -> io::Result<Option<u32>> {
    file.seek(SeekFrom::Start(0))?;
    let mut content = Vec::new();
    file.take(MAX_READ).read_to_end(&mut content)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(crate::pid::parse(&content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::test_util::TestDir;

    /// A directory for a test of who holds a lock: no other test forks
    /// meanwhile, so no child holds a copy of this test's pidfile
    /// (`test_util::no_forks`).
    fn quiet_dir(name: &str) -> (std::sync::RwLockWriteGuard<'static, ()>, TestDir) {
        (crate::test_util::no_forks(), TestDir::new(name))
    }

    fn content(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn symlink_at_path_is_refused_and_its_target_untouched() {
        let (_no_forks, dir) = quiet_dir("symlink");
        let target = dir.join("precious");
        fs::write(&target, "do not touch\n").unwrap();
        let path = dir.join("hawkey.pid");
        std::os::unix::fs::symlink(&target, &path).unwrap();

        let err = acquire(&path).unwrap_err();
        assert!(
            matches!(&err, Error::Symlink { path: p } if *p == path),
            "{err:?}"
        );
        assert_eq!(err.status(), Status::CantCreate);
        assert_eq!(
            err.to_string(),
            format!("refusing pidfile '{}': it is a symlink", path.display())
        );
        assert_eq!(content(&target), "do not touch\n");
        assert!(fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn dangling_symlink_at_path_is_refused_and_its_target_not_created() {
        let (_no_forks, dir) = quiet_dir("dangling");
        let target = dir.join("not-there");
        let path = dir.join("hawkey.pid");
        std::os::unix::fs::symlink(&target, &path).unwrap();

        let err = acquire(&path).unwrap_err();
        assert!(matches!(err, Error::Symlink { .. }), "{err:?}");
        assert!(!target.exists());
    }

    #[test]
    fn directory_at_path_is_refused_as_not_regular() {
        let (_no_forks, dir) = quiet_dir("directory");
        let path = dir.join("hawkey.pid");
        fs::create_dir(&path).unwrap();

        let err = acquire(&path).unwrap_err();
        assert!(
            matches!(&err, Error::NotRegular { path: p } if *p == path),
            "{err:?}"
        );
        assert_eq!(err.status(), Status::CantCreate);
        assert_eq!(
            err.to_string(),
            format!("refusing pidfile '{}': not a regular file", path.display())
        );
        assert!(path.is_dir());
    }

    #[test]
    fn fifo_at_path_is_refused_as_not_regular_without_opening_it() {
        let (_no_forks, dir) = quiet_dir("fifo");
        let path = dir.join("hawkey.pid");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();

        let err = acquire(&path).unwrap_err();
        assert!(matches!(err, Error::NotRegular { .. }), "{err:?}");
    }

    #[test]
    fn stale_file_with_dead_pid_is_taken_over_and_its_pid_returned() {
        let (_no_forks, dir) = quiet_dir("stale");
        let path = dir.join("hawkey.pid");
        fs::write(&path, "999999\n").unwrap();

        let (pidfile, stale) = acquire(&path).unwrap();
        assert_eq!(stale, Some(999999));
        assert_eq!(pidfile.path(), path);
        assert_eq!(content(&path), "", "emptied until published");
    }

    #[test]
    fn stale_file_with_reused_pid_is_taken_over_because_nothing_holds_the_lock() {
        let (_no_forks, dir) = quiet_dir("reused");
        let path = dir.join("hawkey.pid");
        for pid in [std::process::id(), 1] {
            fs::write(&path, format!("{pid}\n")).unwrap();
            let (pidfile, stale) = acquire(&path).unwrap();
            assert_eq!(stale, Some(pid));
            pidfile.remove().unwrap();
        }
    }

    #[test]
    fn stale_file_with_garbage_is_taken_over_without_a_pid() {
        let (_no_forks, dir) = quiet_dir("garbage");
        let path = dir.join("hawkey.pid");
        for garbage in ["", "12", "0\n", "abc\n", "12 \n", "1\n2\n"] {
            fs::write(&path, garbage).unwrap();
            let (pidfile, stale) = acquire(&path).unwrap();
            assert_eq!(stale, None, "{garbage:?}");
            assert_eq!(content(&path), "");
            drop(pidfile);
        }
    }

    #[test]
    fn second_acquire_while_held_fails_locked_with_published_pid_and_first_stays_valid() {
        let (_no_forks, dir) = quiet_dir("second");
        let path = dir.join("hawkey.pid");
        let (mut first, _) = acquire(&path).unwrap();
        first.publish(1234).unwrap();

        let err = acquire(&path).unwrap_err();
        assert!(
            matches!(&err, Error::Locked { path: p, pid: Some(1234) } if *p == path),
            "{err:?}"
        );
        assert_eq!(err.status(), Status::TempFail);
        assert_eq!(
            err.to_string(),
            format!(
                "another hawkey (pid 1234) holds the lock on '{}'",
                path.display()
            )
        );
        assert_eq!(content(&path), "1234\n", "the loser changes nothing");

        first.publish(1235).unwrap();
        assert_eq!(content(&path), "1235\n");
        let err = acquire(&path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Locked {
                    pid: Some(1235),
                    ..
                }
            ),
            "{err:?}"
        );
        first.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn second_acquire_before_publish_fails_locked_without_a_pid() {
        let (_no_forks, dir) = quiet_dir("unpublished");
        let path = dir.join("hawkey.pid");
        fs::write(&path, "4242\n").unwrap();
        let (_first, stale) = acquire(&path).unwrap();
        assert_eq!(stale, Some(4242));

        let err = acquire(&path).unwrap_err();
        assert!(matches!(err, Error::Locked { pid: None, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("another hawkey holds the lock on '{}'", path.display())
        );
    }

    #[test]
    fn lock_is_a_flock_that_other_tools_see() {
        use nix::errno::Errno;
        use nix::fcntl::{Flock, FlockArg};

        let (_no_forks, dir) = quiet_dir("flock");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        for round in 0..2 {
            let other = File::open(&path).unwrap();
            match Flock::lock(other, FlockArg::LockExclusiveNonblock) {
                Err((_, errno)) => assert_eq!(errno, Errno::EWOULDBLOCK),
                Ok(_) => panic!("round {round}: flock(2) on the pidfile succeeded"),
            }
            pidfile.publish(7).unwrap();
        }
    }

    #[test]
    fn acquire_in_missing_directory_creates_it_with_mode_0755() {
        let (_no_forks, dir) = quiet_dir("mkdir");
        let sub = dir.join("hawkey");
        let path = sub.join("hawkey.pid");

        let (pidfile, stale) = acquire(&path).unwrap();
        assert_eq!(stale, None);
        let meta = fs::metadata(&sub).unwrap();
        assert!(meta.is_dir());
        // The umask may only take bits away.
        assert_eq!(meta.permissions().mode() & 0o7777 & !0o755, 0);
        assert!(path.is_file());
        pidfile.remove().unwrap();
    }

    #[test]
    fn acquire_with_missing_grandparent_fails_with_exit_code_73_and_creates_nothing() {
        let (_no_forks, dir) = quiet_dir("grandparent");
        let path = dir.join("a").join("b").join("hawkey.pid");

        let err = acquire(&path).unwrap_err();
        assert!(
            matches!(&err, Error::Io { op: "create pidfile directory", path: p, .. } if *p == dir.join("a").join("b")),
            "{err:?}"
        );
        assert_eq!(err.status(), Status::CantCreate);
        assert_eq!(
            err.to_string(),
            format!(
                "failed to create pidfile directory '{}': No such file or directory (os error 2)",
                dir.join("a").join("b").display()
            )
        );
        assert!(std::error::Error::source(&err).is_some());
        assert!(entries(&dir.0).is_empty());
    }

    #[test]
    fn publish_writes_exactly_pid_newline_and_leaves_no_temp_file() {
        let (_no_forks, dir) = quiet_dir("publish");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.publish(31337).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"31337\n");
        assert_eq!(entries(&dir.0), ["hawkey.pid"]);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777 & !0o644, 0);
    }

    #[test]
    fn publish_replaces_a_leftover_temp_file() {
        let (_no_forks, dir) = quiet_dir("leftover");
        let path = dir.join("hawkey.pid");
        fs::write(dir.join(".hawkey.pid.77.tmp"), "half").unwrap();
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.publish(77).unwrap();
        assert_eq!(content(&path), "77\n");
        assert_eq!(entries(&dir.0), ["hawkey.pid"]);
    }

    #[test]
    fn publish_failure_removes_the_temp_file_and_keeps_the_lock() {
        let (_no_forks, dir) = quiet_dir("publish-fails");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.publish(5).unwrap();
        // A directory at the path makes the rename fail (EISDIR); the
        // pidfile's own inode is gone from the path but still locked by us.
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), "").unwrap();

        let err = pidfile.publish(6).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Io {
                    op: "rename temporary pidfile over",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.status(), Status::CantCreate);
        assert_eq!(entries(&dir.0), ["hawkey.pid"]);
        // Not ours any more: remove leaves the directory alone.
        pidfile.remove().unwrap();
        assert!(path.join("keep").exists());
    }

    #[test]
    fn stage_writes_the_pid_in_full_at_once_and_publish_only_renames_it() {
        let (_no_forks, dir) = quiet_dir("stage");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.stage(7).unwrap();
        // Still empty at the path while hawkey starts; the content waits,
        // whole, beside it.
        assert_eq!(content(&path), "");
        assert_eq!(entries(&dir.0), [".hawkey.pid.7.tmp", "hawkey.pid"]);
        assert_eq!(content(&dir.join(".hawkey.pid.7.tmp")), "7\n");
        pidfile.publish(7).unwrap();
        assert_eq!(content(&path), "7\n");
        assert_eq!(entries(&dir.0), ["hawkey.pid"]);
        // Still locked: the staged inode was locked before the rename.
        let other = File::open(&path).unwrap();
        assert!(matches!(
            other.try_lock_shared(),
            Err(TryLockError::WouldBlock)
        ));
        pidfile.remove().unwrap();
        assert!(entries(&dir.0).is_empty());
    }

    #[test]
    fn acquire_removes_temporary_files_a_dead_master_left_and_nothing_else() {
        let (_no_forks, dir) = quiet_dir("leftovers");
        let path = dir.join("hawkey.pid");
        for name in [
            ".hawkey.pid.4242.tmp",
            ".hawkey.pid.x.tmp",
            ".other.pid.4242.tmp",
            "hawkey.pid.4242.tmp",
        ] {
            fs::write(dir.join(name), "4242\n").unwrap();
        }
        let (pidfile, _) = acquire(&path).unwrap();
        assert_eq!(
            entries(&dir.0),
            [
                ".hawkey.pid.x.tmp",
                ".other.pid.4242.tmp",
                "hawkey.pid",
                "hawkey.pid.4242.tmp"
            ]
        );
        pidfile.remove().unwrap();
    }

    #[test]
    fn remove_takes_a_staged_file_with_it() {
        let (_no_forks, dir) = quiet_dir("stage-remove");
        let (mut pidfile, _) = acquire(&dir.join("hawkey.pid")).unwrap();
        pidfile.stage(8).unwrap();
        pidfile.remove().unwrap();
        assert!(entries(&dir.0).is_empty());
    }

    #[test]
    fn a_directory_writable_by_others_is_refused_before_anything_is_created() {
        for mode in [0o777, 0o1777, 0o770] {
            let (_no_forks, dir) = quiet_dir("shared-dir");
            fs::set_permissions(&dir.0, fs::Permissions::from_mode(mode)).unwrap();
            let path = dir.join("hawkey.pid");
            let err = acquire(&path).unwrap_err();
            assert!(matches!(err, Error::Directory(_)), "{err:?}");
            assert_eq!(err.status(), Status::CantCreate);
            assert_eq!(
                err.to_string(),
                format!(
                    "refusing pidfile directory '{}': it is writable by other users (mode {mode:04o}); make it writable by its owner only",
                    dir.0.display()
                )
            );
            assert!(entries(&dir.0).is_empty());
        }
    }

    #[test]
    fn published_content_always_parses_as_a_whole_pid() {
        let (_no_forks, dir) = quiet_dir("never-partial");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.publish(1).unwrap();

        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let bytes = fs::read(&path).expect("the path never goes missing");
                    let pid = crate::pid::parse(&bytes);
                    assert!(pid.is_some(), "partial content {bytes:?}");
                    reads += 1;
                }
                reads
            });
            for i in 0..2000u32 {
                let pid = 1 + i % 2 * 1_000_000 + i;
                pidfile.publish(pid).unwrap();
                assert_eq!(crate::pid::parse(&fs::read(&path).unwrap()), Some(pid));
            }
            stop.store(true, Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        let err = acquire(&path).unwrap_err();
        assert!(matches!(err, Error::Locked { pid: Some(_), .. }), "{err:?}");
        assert_eq!(entries(&dir.0), ["hawkey.pid"]);
    }

    #[test]
    fn acquire_never_succeeds_while_the_holder_republishes() {
        let (_no_forks, dir) = quiet_dir("race");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.publish(1).unwrap();

        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let contender = scope.spawn(|| {
                let mut tries = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    match acquire(&path) {
                        Err(Error::Locked { .. }) => tries += 1,
                        // Locking an inode that was just renamed away (and so
                        // unlocked) must not count as holding the pidfile.
                        other => panic!("second acquire got {other:?}"),
                    }
                }
                tries
            });
            for pid in 1..=2000 {
                pidfile.publish(pid).unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            assert!(contender.join().unwrap() > 0);
        });
        pidfile.remove().unwrap();
        assert!(entries(&dir.0).is_empty());
    }

    #[test]
    fn remove_deletes_the_file_and_a_new_acquire_finds_no_stale_pid() {
        let (_no_forks, dir) = quiet_dir("remove");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.publish(4321).unwrap();
        pidfile.remove().unwrap();
        assert!(!path.exists());

        let (again, stale) = acquire(&path).unwrap();
        assert_eq!(stale, None);
        again.remove().unwrap();
        assert!(entries(&dir.0).is_empty());
    }

    #[test]
    fn remove_leaves_a_file_that_is_not_ours() {
        let (_no_forks, dir) = quiet_dir("not-ours");
        let path = dir.join("hawkey.pid");
        let (pidfile, _) = acquire(&path).unwrap();
        let other = dir.join("other");
        fs::write(&other, "99\n").unwrap();
        fs::rename(&other, &path).unwrap();

        pidfile.remove().unwrap();
        assert_eq!(content(&path), "99\n");
    }

    #[test]
    fn dropping_without_remove_leaves_a_stale_file_the_next_acquire_takes_over() {
        let (_no_forks, dir) = quiet_dir("drop");
        let path = dir.join("hawkey.pid");
        let (mut pidfile, _) = acquire(&path).unwrap();
        pidfile.publish(2468).unwrap();
        drop(pidfile);
        assert_eq!(content(&path), "2468\n");

        let (_again, stale) = acquire(&path).unwrap();
        assert_eq!(stale, Some(2468));
    }

    #[test]
    fn io_error_names_the_operation_the_path_and_the_os_error() {
        let err = Error::Io {
            op: "open pidfile",
            path: PathBuf::from("/run/hawkey/hawkey.pid"),
            source: io::Error::from_raw_os_error(libc::EACCES),
        };
        assert_eq!(
            err.to_string(),
            "failed to open pidfile '/run/hawkey/hawkey.pid': Permission denied (os error 13)"
        );
        assert_eq!(err.status(), Status::CantCreate);
        let locked = Error::Locked {
            path: PathBuf::from("/run/hawkey/hawkey.pid"),
            pid: Some(1234),
        };
        assert_eq!(
            locked.to_string(),
            "another hawkey (pid 1234) holds the lock on '/run/hawkey/hawkey.pid'"
        );
    }
}
