//! Helpers for the unit tests.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{PoisonError, RwLock, RwLockWriteGuard};

/// A fresh directory under the system temp dir, removed on drop.
pub(crate) struct TestDir(pub PathBuf);

impl TestDir {
    pub(crate) fn new(name: &str) -> TestDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("hawkey-unit-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        // 0755 whatever the umask is now: the master narrows it for an
        // instant around each socket it binds (single-threaded, that is
        // sound), and unit tests that bind run beside this one.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        TestDir(dir)
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Forks of the unit tests, and the tests a fork would disturb.
///
/// A child holds a copy of every descriptor of this process from its fork
/// until its `execve` closes the close-on-exec ones: for a `flock(2)`'d
/// pidfile that is a lock held by a stranger, for a pipe's write end an EOF
/// that does not come. The unit tests run on threads of one process, so a
/// test that depends on who holds a descriptor holds [`no_forks`] for its
/// whole length, and every test that starts a process does it through
/// [`spawn`], which returns only once the child has exec'd (std's
/// `Command::spawn` waits for the exec to succeed or fail).
/// `every_process_a_unit_test_starts_goes_through_spawn` keeps it so.
static FORKS: RwLock<()> = RwLock::new(());

/// Starts `command` while no test that minds a fork runs.
pub(crate) fn spawn(command: &mut Command) -> Child {
    let _forking = FORKS.read().unwrap_or_else(PoisonError::into_inner);
    command
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"))
}

/// Keeps every other test from starting a process until it is dropped.
pub(crate) fn no_forks() -> RwLockWriteGuard<'static, ()> {
    FORKS.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file under `dir`, recursively.
    fn sources(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push(path);
            }
        }
    }

    #[test]
    fn every_process_a_unit_test_starts_goes_through_spawn() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut offenders = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&src).unwrap();
            // spawn/ is the master's one fork; this file is the tests' one.
            if relative.starts_with("spawn") || relative == Path::new("test_util.rs") {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.contains(".spawn()") || line.contains("fork()") && !line.contains("//") {
                    offenders.push(format!("{}:{}: {}", relative.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "start processes with test_util::spawn: {offenders:#?}"
        );
    }
}
