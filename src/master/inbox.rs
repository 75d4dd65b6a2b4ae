//! The master's end of its workers' `sd_notify(3)` messages: one private
//! channel per worker.
//!
//! The master plays systemd's part for its workers. Each worker gets a
//! datagram socket of its own, bound by the master just before the fork
//! (its path is the worker's `NOTIFY_SOCKET`), so that:
//! - **nobody else can reach it**: the sockets live in a directory the
//!   master creates for itself (`hawkey-notify.<pid>`, mode 0711: others
//!   may pass through it but not list it), each socket mode 0600 and owned
//!   by the uid the worker runs as. `connect(2)` to a path socket needs
//!   write permission on it, so another local user cannot even send.
//!   (The first releases used one abstract socket for all workers, which
//!   any local user could flood or stuff with descriptors.)
//! - **a pool of any size is heard**: a datagram socket queues at most
//!   `net.unix.max_dgram_qlen` (10) messages; one queue per worker means a
//!   worker's `READY=1` never waits behind another's, at 2 workers or 1024.
//! - **a message counts only for its worker**: the kernel stamps each one
//!   with the sender's pid (`SO_PASSCRED`); a message on worker W's channel
//!   is credited to W only when the sender is W or a descendant of W (a
//!   helper it runs, such as `systemd-notify --ready`), never a process
//!   that merely joined W's process group or got hold of the path.
//!
//! Descriptors passed with `SCM_RIGHTS` are never part of the protocol:
//! every one that arrives is closed, whatever else is wrong with the
//! message. The control buffer holds the kernel's maximum (`SCM_MAX_FD`),
//! and even a truncated one is walked for the descriptors it did install.
//! Workers send with [`crate::worker::notify::Notifier`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{setsockopt, sockopt};
use nix::unistd::{Pid, Uid};

/// What a worker said in one datagram, of what the master acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Message {
    /// `READY=1`.
    pub(crate) ready: bool,
    /// `HAWKEY_ACCEPTING=1`: hawkey's preload library in the sender saw it
    /// start accepting on a listener (`ready: auto`; not systemd's).
    pub(crate) accepting: bool,
    /// `WATCHDOG=1`: a heartbeat.
    pub(crate) watchdog: bool,
    /// `STATUS=`, the worker's own status line.
    pub(crate) status: Option<String>,
}

/// Parses `KEY=VALUE` lines; other keys (`STOPPING=1` among them: the
/// master decides when a worker stops) are ignored, as systemd ignores
/// unknown ones.
pub(crate) fn parse(datagram: &[u8]) -> Message {
    let mut message = Message::default();
    for line in datagram.split(|b| *b == b'\n') {
        match line {
            b"READY=1" => message.ready = true,
            b"HAWKEY_ACCEPTING=1" => message.accepting = true,
            b"WATCHDOG=1" => message.watchdog = true,
            _ => {
                if let Some(status) = line.strip_prefix(b"STATUS=") {
                    message.status = Some(status_text(status));
                }
            }
        }
    }
    message
}

/// The longest `STATUS=` text kept, in characters (systemd keeps a line;
/// a status is read in a table row).
const STATUS_MAX: usize = 256;

/// A worker's `STATUS=` text as kept: invalid UTF-8 replaced, cut to
/// [`STATUS_MAX`] characters. Control characters are kept as sent and
/// escaped where the text is shown (`hawkey status`; JSON escapes its own).
pub(crate) fn status_text(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    match text.char_indices().nth(STATUS_MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

/// The longest `sun_path` (108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// Room left in `sun_path` for a channel's name (`/` and up to 20 digits).
const NAME_ROOM: usize = 21;

/// A datagram's largest payload the master reads; longer ones are cut
/// (systemd reads up to its page size too).
const DATAGRAM_MAX: usize = 4096;

/// The most descriptors the kernel passes in one message (`SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;

/// How many parents up a sender may be from its worker and still count
/// (a shell, an interpreter and a helper are three).
const MAX_DEPTH: usize = 64;

/// One worker's channel: its socket, and beside it the file its last
/// line on stderr is kept in (see `tail`); both unlinked when dropped.
pub(crate) struct Channel {
    socket: UnixDatagram,
    path: PathBuf,
    tail: Option<PathBuf>,
}

impl Channel {
    /// The worker's `NOTIFY_SOCKET` value.
    pub(crate) fn path(&self) -> &OsStr {
        self.path.as_os_str()
    }

    /// The last line the worker wrote to stderr, as its tail file holds
    /// it (empty, missing or unreadable: `None`).
    fn last_line(&self) -> Option<String> {
        super::tail::read(self.tail.as_ref()?)
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(tail) = &self.tail {
            let _ = std::fs::remove_file(tail);
        }
    }
}

/// One message as it arrived: the worker whose channel it came on, the
/// pid the kernel vouches for, what it said.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) worker: Pid,
    pub(crate) sender: Pid,
    pub(crate) message: Message,
    /// Whether the sender is the worker or one of its descendants.
    pub(crate) credited: bool,
    /// How many descriptors came with it (all closed already).
    pub(crate) fds: usize,
}

/// The master's directory of channels, the channel of each worker, and
/// an epoll set of them: the loop polls the one epoll fd, and a wake-up
/// costs what is ready, not the size of the pool (poll(2) over 256
/// sockets per wake-up was most of the master's idle CPU).
pub(crate) struct Inbox {
    dir: PathBuf,
    /// The directory, open with an exclusive `flock(2)` for the master's
    /// life: how another master tells it is in use (see [`remove_stale`]).
    _held: std::fs::File,
    next: u64,
    channels: HashMap<Pid, Channel>,
    epoll: Epoll,
}

impl Inbox {
    /// Creates the master's channel directory in `base` (see
    /// [`notify_base`]): `hawkey-notify.<pid>`, with a suffix if that
    /// name is taken, mode 0711, checked to be the master's own.
    /// [`Inbox::create`] in the first of `bases` where it works.
    pub(crate) fn create_in(bases: &[PathBuf]) -> io::Result<Inbox> {
        let mut last_error = io::Error::other("no directory for the notify sockets");
        for base in bases {
            match Inbox::create(base) {
                Ok(inbox) => return Ok(inbox),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    pub(crate) fn create(base: &Path) -> io::Result<Inbox> {
        remove_stale(base);
        let pid = std::process::id();
        let mut last_error = None;
        for attempt in 0..16 {
            let name = if attempt == 0 {
                format!("hawkey-notify.{pid}")
            } else {
                format!("hawkey-notify.{pid}.{attempt}")
            };
            let dir = base.join(name);
            if dir.as_os_str().len() + NAME_ROOM > SUN_PATH_MAX {
                return Err(io::Error::other(format!(
                    "{}: too long for a socket path",
                    dir.display()
                )));
            }
            // mkdir never follows a symlink in its last component: an
            // existing entry of any kind is EEXIST, never reused.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Inbox::own(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err(with_path(e, &dir)),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("no free notify directory name")))
    }

    /// Sets the mode of the directory just made, through a descriptor (not
    /// the path, which is only trusted once it is known to be ours).
    fn own(dir: PathBuf) -> io::Result<Inbox> {
        use std::os::unix::fs::OpenOptionsExt;
        let handle = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&dir)
            .map_err(|e| with_path(e, &dir))?;
        let meta = handle.metadata()?;
        if meta.uid() != Uid::effective().as_raw() {
            return Err(io::Error::other(format!(
                "{}: not owned by this process's user",
                dir.display()
            )));
        }
        // 0711: workers that run as another user pass through to their
        // own socket; nobody but the master can list or change it.
        handle.set_permissions(std::fs::Permissions::from_mode(0o711))?;
        // Just made by us and never reused, so nobody else holds it.
        handle
            .try_lock()
            .map_err(|e| io::Error::other(format!("{}: cannot lock: {e}", dir.display())))?;
        Ok(Inbox {
            dir,
            _held: handle,
            next: 0,
            channels: HashMap::new(),
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
        })
    }

    /// The directory the channels are in.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Binds a new channel for a worker about to be spawned: mode 0600,
    /// owned by `owner` (the uid the worker will run as) when that is not
    /// the master's own. Non-blocking, close-on-exec, `SO_PASSCRED`.
    pub(crate) fn open(&mut self, owner: Option<Uid>) -> io::Result<Channel> {
        let path = self.dir.join(self.next.to_string());
        self.next += 1;
        // The mode is set by the umask in force at bind(2): no moment in
        // which the socket is reachable with a wider one. The master is
        // single-threaded, so nothing else creates files meanwhile.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixDatagram::bind(&path);
        nix::sys::stat::umask(old);
        let socket = bound.map_err(|e| with_path(e, &path))?;
        let tail = super::tail::create(&path, owner);
        let channel = Channel { socket, path, tail };
        channel.socket.set_nonblocking(true)?;
        setsockopt(&channel.socket, sockopt::PassCred, &true)?;
        if let Some(uid) = owner.filter(|u| *u != Uid::effective()) {
            // By path, safely: only the master can change entries of its
            // directory, so this is the socket just bound.
            nix::unistd::chown(&channel.path, Some(uid), None)
                .map_err(|e| with_path(io::Error::from(e), &channel.path))?;
        }
        Ok(channel)
    }

    /// The channel is now `worker`'s, and watched.
    pub(crate) fn attach(&mut self, worker: Pid, channel: Channel) -> io::Result<()> {
        let event = EpollEvent::new(EpollFlags::EPOLLIN, worker.as_raw() as u64);
        self.epoll.add(channel.socket.as_fd(), event)?;
        self.channels.insert(worker, channel);
        Ok(())
    }

    /// `worker` is gone: what it still had queued, then its channel goes.
    pub(crate) fn detach(&mut self, worker: Pid) -> Vec<Received> {
        self.detach_with_last_line(worker).0
    }

    /// [`Inbox::detach`], and the last line the worker wrote to stderr
    /// if its tail file holds one (see `tail`).
    pub(crate) fn detach_with_last_line(&mut self, worker: Pid) -> (Vec<Received>, Option<String>) {
        let mut out = Vec::new();
        let mut line = None;
        if let Some(channel) = self.channels.remove(&worker) {
            drain(&channel, worker, &mut out);
            // Before the socket closes: a child not yet past execve may
            // still hold a copy of the fd, which would keep it watched.
            let _ = self.epoll.delete(channel.socket.as_fd());
            line = channel.last_line();
        }
        (out, line)
    }

    /// The messages waiting on every channel that has some (up to
    /// [`READ_MAX`] each), without blocking.
    pub(crate) fn read(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        let mut events = vec![EpollEvent::empty(); self.channels.len().clamp(1, 1024)];
        loop {
            let n = match self.epoll.wait(&mut events, EpollTimeout::ZERO) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => 0,
            };
            for event in &events[..n] {
                let worker = Pid::from_raw(event.data() as i32);
                if let Some(channel) = self.channels.get(&worker) {
                    drain(channel, worker, &mut out);
                }
            }
            // A full batch: more may be ready (a pool over 1024).
            if n < events.len() {
                return out;
            }
        }
    }
}

impl AsFd for Inbox {
    /// The epoll fd: readable when some channel has a message.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.channels.clear();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Removes the channel directories of masters that are gone (killed with
/// SIGKILL, they could not clean up): `hawkey-notify.<pid>[.n]` in `base`,
/// owned by this user, that no master holds locked ([`Inbox`] keeps an
/// exclusive `flock(2)` on its own for its life) and whose pid no longer
/// runs. The lock is what tells: a master in another PID namespace that
/// shares this directory (a container, `unshare --pid`) has a pid that
/// means nothing here, yet holds its lock. The pid check stays for a
/// directory made by a master too old to lock it.
fn remove_stale(base: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = Uid::effective().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hawkey-notify."))
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        // O_NOFOLLOW: a symlink is never followed, never removed through.
        let Ok(handle) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        else {
            continue;
        };
        let ours = handle.metadata().is_ok_and(|m| m.uid() == me);
        if !ours || handle.try_lock().is_err() {
            continue;
        }
        let running = Path::new(&format!("/proc/{pid}")).exists();
        if !running {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Where the channel directory may go, best first: the runtime directory
/// hawkey uses for its pidfile (`config::paths::runtime_dir`), its parent
/// (`/run`, `$XDG_RUNTIME_DIR`), the temporary directory. Each must be a
/// directory no other user can write to (unless it is sticky, as /tmp
/// is). As root, whose workers may run as another user (`workers.user`),
/// that user must also be able to pass through it and every directory
/// above it: a runtime directory of mode 0750 (systemd's
/// `RuntimeDirectoryMode=` in our unit) is passed over then. [`Inbox::
/// create_in`] takes the first in which the directory can be made.
pub(crate) fn notify_bases(runtime_dir: Option<&Path>, root: bool) -> Vec<PathBuf> {
    let candidates = runtime_dir
        .into_iter()
        .flat_map(|d| [Some(d), d.parent()])
        .flatten()
        .map(Path::to_path_buf)
        .chain([std::env::temp_dir(), PathBuf::from("/tmp")]);
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in candidates {
        let fits = std::fs::metadata(&dir).is_ok_and(|meta| {
            meta.is_dir() && (meta.mode() & 0o022 == 0 || meta.mode() & 0o1000 != 0)
        });
        if fits && (!root || searchable_by_all(&dir)) && !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// Whether every user may pass through `dir` and each directory above it.
fn searchable_by_all(dir: &Path) -> bool {
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// The most messages read from one channel in one wake-up: more than its
/// queue holds (`net.unix.max_dgram_qlen`, 10 by default), so a wake-up
/// reads it dry, yet a sender refilling it as fast as the master reads
/// cannot keep the loop from the rest of its work.
const READ_MAX: usize = 64;

/// Reads the messages waiting on `channel` (up to [`READ_MAX`]) into `out`.
fn drain(channel: &Channel, worker: Pid, out: &mut Vec<Received>) {
    drain_at_most(channel, worker, out, READ_MAX);
}

/// [`drain`], reading at most `max` messages.
fn drain_at_most(channel: &Channel, worker: Pid, out: &mut Vec<Received>, max: usize) {
    let mut buf = vec![0u8; DATAGRAM_MAX];
    // Room for the credentials and SCM_MAX_FD descriptors, aligned for
    // cmsghdr (u64 alignment is at least that of size_t).
    let space = cmsg_room();
    let mut control = vec![0u64; space.div_ceil(8)];
    for _ in 0..max {
        match receive(channel.socket.as_raw_fd(), &mut buf, &mut control, space) {
            Ok(Some(got)) => {
                // The sender's ancestry is read while it surely still
                // runs: `systemd-notify` waits until its barrier fd (one
                // of `got.fds`) is closed, just below.
                let credited = got
                    .pid
                    .is_some_and(|pid| pid == worker || descends_from(pid, worker));
                let fds = got.fds.len();
                for fd in got.fds {
                    // SAFETY: the kernel just installed this descriptor
                    // for us and nothing else holds it; closing it once
                    // is its only use.
                    unsafe { libc::close(fd) };
                }
                if let Some(sender) = got.pid {
                    out.push(Received {
                        worker,
                        sender,
                        message: parse(&buf[..got.len]),
                        credited,
                        fds,
                    });
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
}

/// The control buffer's size: credentials and `SCM_MAX_FD` descriptors.
fn cmsg_room() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe {
        libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32) as usize
            + libc::CMSG_SPACE((SCM_MAX_FD * std::mem::size_of::<RawFd>()) as u32) as usize
    }
}

/// One datagram as `recvmsg(2)` gave it.
struct Got {
    len: usize,
    pid: Option<Pid>,
    fds: Vec<RawFd>,
}

/// Receives one datagram without blocking; `None` when none is waiting.
fn receive(
    fd: RawFd,
    buf: &mut [u8],
    control: &mut [u64],
    space: usize,
) -> io::Result<Option<Got>> {
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all zero is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `msg` points at `iov` (over `buf`) and at `control`,
        // both live and as large as the lengths given; recvmsg writes
        // within them only.
        let n = unsafe {
            libc::recvmsg(
                fd,
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(error),
            }
        }
        let mut got = Got {
            len: (n as usize).min(buf.len()),
            pid: None,
            fds: Vec::new(),
        };
        // Walk what the kernel wrote, truncated (MSG_CTRUNC) or not: the
        // descriptors it installed are all within msg_controllen.
        // SAFETY: `msg` is the header recvmsg just filled; CMSG_FIRSTHDR
        // and CMSG_NXTHDR stay within its msg_control/msg_controllen and
        // return null past the end; each header's data is read only
        // within its cmsg_len, with unaligned reads.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                let header = &*cmsg;
                let data = libc::CMSG_DATA(cmsg);
                let data_len = header.cmsg_len as usize - (data as usize - cmsg as usize);
                if header.cmsg_level == libc::SOL_SOCKET {
                    if header.cmsg_type == libc::SCM_RIGHTS {
                        let count = data_len / std::mem::size_of::<RawFd>();
                        for i in 0..count {
                            let at = data.add(i * std::mem::size_of::<RawFd>());
                            got.fds.push(std::ptr::read_unaligned(at.cast::<RawFd>()));
                        }
                    } else if header.cmsg_type == libc::SCM_CREDENTIALS
                        && data_len >= std::mem::size_of::<libc::ucred>()
                    {
                        let cred = std::ptr::read_unaligned(data.cast::<libc::ucred>());
                        got.pid = Some(Pid::from_raw(cred.pid));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        return Ok(Some(got));
    }
}

/// Whether `pid` descends from `ancestor`, a worker. A worker leads a
/// session of its own (`setsid` before its `execve`), and a session is
/// only ever entered by birth: a process in it is the worker's descendant,
/// orphaned or not, which one read of `/proc/<pid>/stat` tells. One that
/// left it (its own `setsid`) is looked for among the parents of `pid`, at
/// most [`MAX_DEPTH`] up.
pub(crate) fn descends_from(pid: Pid, ancestor: Pid) -> bool {
    let Some((mut parent, session)) = stat_of(pid) else {
        return false;
    };
    if session == ancestor {
        return true;
    }
    for _ in 0..MAX_DEPTH {
        if parent == ancestor {
            return true;
        }
        if parent.as_raw() <= 1 {
            return false;
        }
        match stat_of(parent) {
            Some((grandparent, _)) => parent = grandparent,
            None => return false,
        }
    }
    false
}

/// The parent and session of `pid` (see [`crate::procfs::read_stat`]).
fn stat_of(pid: Pid) -> Option<(Pid, Pid)> {
    let p = crate::procfs::read_stat(pid.as_raw())?;
    Some((Pid::from_raw(p.ppid), Pid::from_raw(p.sid)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TestDir;
    use crate::worker::notify::Notifier;
    use sd_notify::NotifyState;
    use std::os::fd::OwnedFd;

    fn inbox() -> (TestDir, Inbox) {
        let base = TestDir::new("inbox");
        let inbox = Inbox::create(&base.0).unwrap();
        (base, inbox)
    }

    /// How many of this process's fds are open on `path` (other tests
    /// open fds of their own meanwhile: only this file's are counted).
    fn open_on(path: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target == path)
            .count()
    }

    #[test]
    fn messages_parse_like_systemd() {
        let m = parse(b"READY=1\nSTATUS=serving 3 clients\nX_CUSTOM=1\n");
        assert!(m.ready);
        assert_eq!(m.status.as_deref(), Some("serving 3 clients"));
        assert!(!parse(b"READY=0").ready);
        assert!(!m.accepting);
        let m = parse(b"HAWKEY_ACCEPTING=1");
        assert!(m.accepting && !m.ready);
        assert!(!parse(b"HAWKEY_ACCEPTING=0").accepting);
        assert!(parse(b"WATCHDOG=1").watchdog);
    }

    #[test]
    fn status_text_is_kept_valid_and_short() {
        let long = format!("STATUS={}", "é".repeat(10_000));
        let kept = parse(long.as_bytes()).status.unwrap();
        assert_eq!(kept.chars().count(), 257);
        assert!(kept.ends_with('…'));
        assert_eq!(
            parse(b"STATUS=caf\xc3\xa9 \xff").status.unwrap(),
            "caf\u{e9} \u{fffd}"
        );
    }

    #[test]
    fn a_channel_credits_its_worker_and_no_one_else() {
        let (_base, mut inbox) = inbox();
        let me = nix::unistd::getpid();
        let channel = inbox.open(None).unwrap();
        let notifier = Notifier::connect(Some(channel.path())).unwrap();
        inbox.attach(me, channel).unwrap();
        notifier
            .send(&[NotifyState::Ready, NotifyState::Status("up")])
            .unwrap();
        let got = inbox.read();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].worker, got[0].sender), (me, me));
        assert!(got[0].credited);
        assert!(got[0].message.ready);
        assert_eq!(got[0].message.status.as_deref(), Some("up"));

        // The same channel, said to belong to another pid: this process
        // is not that pid's descendant (pid 1's is every process, and
        // pid 1 is never a worker).
        let other = Pid::from_raw(i32::MAX - 1);
        let channel = inbox.open(None).unwrap();
        let notifier = Notifier::connect(Some(channel.path())).unwrap();
        inbox.attach(other, channel).unwrap();
        notifier.send(&[NotifyState::Watchdog]).unwrap();
        let got = inbox.read();
        assert_eq!(got.len(), 1);
        assert!(!got[0].credited, "{got:?}");
    }

    #[test]
    fn a_process_of_the_workers_session_is_credited_even_orphaned() {
        // A shell that leads a session (as a worker does) and leaves an
        // orphan in it: the orphan's parent is no longer the shell.
        let mut shell = crate::test_util::spawn(
            std::process::Command::new("setsid")
                .args(["sh", "-c", "sleep 5 & echo $$ $!"])
                .stdout(std::process::Stdio::piped()),
        );
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pids: Vec<i32> = line
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        let (leader, orphan) = (Pid::from_raw(pids[0]), Pid::from_raw(pids[1]));
        // setsid(1) ran the shell in its own process (not a group leader,
        // it need not fork): the shell is our child, gone once reaped.
        assert_eq!(leader.as_raw() as u32, shell.id());
        shell.wait().unwrap();
        assert!(stat_of(orphan).unwrap().0 != leader);
        assert!(descends_from(orphan, leader));
        assert!(!descends_from(orphan, nix::unistd::getpid()));
        let _ = nix::sys::signal::kill(orphan, nix::sys::signal::Signal::SIGKILL);
    }

    #[test]
    fn a_child_of_the_worker_is_credited() {
        let me = nix::unistd::getpid();
        let mut child = crate::test_util::spawn(std::process::Command::new("sleep").arg("5"));
        let pid = Pid::from_raw(child.id() as i32);
        assert!(descends_from(pid, me));
        assert!(!descends_from(me, pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!descends_from(pid, me), "a reaped child has no parent");
    }

    #[test]
    fn one_wake_up_reads_a_bounded_number_from_a_channel() {
        const { assert!(READ_MAX > 10, "a wake-up reads a default-sized queue dry") };
        let (_base, mut inbox) = inbox();
        let me = nix::unistd::getpid();
        let channel = inbox.open(None).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        sender.connect(channel.path()).unwrap();
        for _ in 0..8 {
            sender.send(b"WATCHDOG=1").unwrap();
        }
        // The bound, at 3 here: the rest waits for the next wake-up.
        let mut out = Vec::new();
        drain_at_most(&channel, me, &mut out, 3);
        assert_eq!(out.len(), 3);
        inbox.attach(me, channel).unwrap();
        assert_eq!(inbox.read().len(), 5);
    }

    #[test]
    fn as_root_a_runtime_directory_others_cannot_pass_through_is_passed_over() {
        use std::os::unix::fs::PermissionsExt;
        let base = TestDir::new("inbox-bases");
        let run = base.join("hawkey");
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o750)).unwrap();
        // Not root: no worker of another user, the 0750 directory is best.
        assert_eq!(notify_bases(Some(&run), false)[0], run);
        // Root: a dropped worker could not reach its socket in it.
        let bases = notify_bases(Some(&run), true);
        assert!(!bases.contains(&run), "{bases:?}");
        assert_eq!(bases[0], base.0, "its parent (0755) instead");
        // One that anyone may write to is never taken.
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!notify_bases(Some(&run), false).contains(&run));
    }

    #[test]
    fn directories_of_masters_that_are_gone_are_removed() {
        let _no_forks = crate::test_util::no_forks();
        let base = TestDir::new("inbox-stale");
        // pid_max is at most 2^22: this pid never runs.
        let gone = base.join("hawkey-notify.4194400");
        std::fs::create_dir(&gone).unwrap();
        std::fs::write(gone.join("0"), b"").unwrap();
        let gone_again = base.join("hawkey-notify.4194400.1");
        std::fs::create_dir(&gone_again).unwrap();
        // pid 1 runs: its directory stays, as does anything else.
        let running = base.join("hawkey-notify.1");
        std::fs::create_dir(&running).unwrap();
        let other = base.join("hawkey.pid");
        std::fs::write(&other, b"").unwrap();
        let inbox = Inbox::create(&base.0).unwrap();
        assert!(!gone.exists() && !gone_again.exists());
        assert!(running.exists() && other.exists() && inbox.dir().exists());
    }

    #[test]
    fn a_directory_its_master_holds_is_kept_whatever_its_pid_means_here() {
        // A master in another PID namespace sharing this directory: its
        // pid names no process here, but its inbox is locked.
        let _no_forks = crate::test_util::no_forks();
        let base = TestDir::new("inbox-held");
        let elsewhere = Inbox::create(&base.0).unwrap();
        let foreign = base.join("hawkey-notify.4194401");
        std::fs::rename(elsewhere.dir(), &foreign).unwrap();
        let inbox = Inbox::create(&base.0).unwrap();
        assert!(foreign.exists(), "a held directory is never removed");
        assert!(inbox.dir().exists());
        // Once its master is gone (its lock with it), it is stale.
        drop(elsewhere);
        drop(inbox);
        assert!(foreign.exists(), "dropping removes by its old name only");
        let _again = Inbox::create(&base.0).unwrap();
        assert!(!foreign.exists(), "unlocked and its pid gone: removed");
    }

    #[test]
    fn a_symlink_named_like_a_channel_directory_is_not_followed() {
        let base = TestDir::new("inbox-symlink");
        let target = base.join("precious");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"").unwrap();
        std::os::unix::fs::symlink(&target, base.join("hawkey-notify.4194402")).unwrap();
        let _inbox = Inbox::create(&base.0).unwrap();
        assert!(target.join("keep").exists());
        assert!(
            base.join("hawkey-notify.4194402")
                .symlink_metadata()
                .is_ok()
        );
    }

    #[test]
    fn the_directory_and_sockets_are_private() {
        let _no_forks = crate::test_util::no_forks();
        let (base, mut inbox) = inbox();
        let dir = std::fs::metadata(inbox.dir()).unwrap();
        assert_eq!(dir.mode() & 0o7777, 0o711);
        let channel = inbox.open(None).unwrap();
        let meta = std::fs::metadata(channel.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        let path = PathBuf::from(channel.path());
        drop(channel);
        assert!(!path.exists(), "a dropped channel is unlinked");
        drop(inbox);
        assert_eq!(std::fs::read_dir(&base.0).unwrap().count(), 0);
    }

    #[test]
    fn a_workers_tail_file_is_private_read_at_detach_and_removed_with_its_channel() {
        let (_base, mut inbox) = inbox();
        let channel = inbox.open(None).unwrap();
        let mut tail = channel.path().to_owned();
        tail.push(super::super::tail::SUFFIX);
        let tail = PathBuf::from(tail);
        let meta = std::fs::symlink_metadata(&tail).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(meta.len(), 0, "empty before the worker starts");
        // What the preload library writes: the line, NUL-padded.
        let mut record = b"Error: Cannot find module 'express'\n".to_vec();
        record.resize(super::super::tail::MAX, 0);
        std::fs::write(&tail, &record).unwrap();
        let worker = Pid::from_raw(4242);
        inbox.attach(worker, channel).unwrap();
        let (_, line) = inbox.detach_with_last_line(worker);
        assert_eq!(line.as_deref(), Some("Error: Cannot find module 'express'"));
        assert!(!tail.exists(), "removed with its channel");
    }

    #[test]
    #[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
    fn a_dropped_workers_tail_file_is_its_own_like_its_socket() {
        assert!(
            Uid::effective().is_root(),
            "needs root (gives a file to another uid)"
        );
        let (_base, mut inbox) = inbox();
        let nobody = Uid::from_raw(65534);
        let channel = inbox.open(Some(nobody)).unwrap();
        let mut tail = channel.path().to_owned();
        tail.push(super::super::tail::SUFFIX);
        assert_eq!(std::fs::metadata(&tail).unwrap().uid(), 65534);
    }

    #[test]
    fn every_passed_descriptor_is_closed() {
        let (_base, mut inbox) = inbox();
        fn base_file(dir: &TestDir) -> PathBuf {
            let file = dir.join("passed");
            std::fs::write(&file, b"").unwrap();
            file
        }
        let me = nix::unistd::getpid();
        let channel = inbox.open(None).unwrap();
        let path = PathBuf::from(channel.path());
        inbox.attach(me, channel).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        sender.connect(&path).unwrap();
        let marker = base_file(&_base);
        let files: Vec<OwnedFd> = (0..SCM_MAX_FD)
            .map(|_| std::fs::File::open(&marker).unwrap().into())
            .collect();
        let raw: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
        // 9 (more than the 8 the first release had room for), the most one
        // message may carry, and two messages in one go.
        for count in [9, SCM_MAX_FD, 1] {
            let rights = [nix::sys::socket::ControlMessage::ScmRights(&raw[..count])];
            let iov = [io::IoSlice::new(b"READY=1")];
            nix::sys::socket::sendmsg::<()>(
                sender.as_raw_fd(),
                &iov,
                &rights,
                nix::sys::socket::MsgFlags::empty(),
                None,
            )
            .unwrap();
        }
        let got = inbox.read();
        assert_eq!(got.len(), 3);
        let fds: Vec<usize> = got.iter().map(|g| g.fds).collect();
        assert_eq!(fds, [9, SCM_MAX_FD, 1]);
        drop(files);
        assert_eq!(open_on(&marker), 0, "a passed descriptor stayed open");
    }
}
