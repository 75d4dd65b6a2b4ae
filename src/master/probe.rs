//! Seeing a starting worker accept connections (`ready: auto`), from
//! `/proc`, for programs that never heard of `sd_notify(3)`.
//!
//! A worker under `ready: auto` is ready on `READY=1`, on
//! `HAWKEY_ACCEPTING=1` from hawkey's preload library, or when this probe
//! sees the worker or one of its descendants waiting for connections on one
//! of its generation's listeners, whichever comes first. Waiting is seen in
//! two forms, which between them cover event loops (Node, asyncio, Go,
//! tokio: epoll) and blocking servers (a thread in `accept`):
//!
//! - an epoll instance of the process watches a listener:
//!   `/proc/PID/fdinfo/N` of an `anon_inode:[eventpoll]` fd lists one
//!   `tfd: … ino:HEX` line per watched file, and the listener's inode
//!   (`fstat` of the master's own fd, the same open file) is among them;
//! - a thread of the process is blocked in `accept`/`accept4` on a
//!   listener: `/proc/PID/task/TID/syscall` names the syscall and its first
//!   argument, and `/proc/PID/fd/ARG` is `socket:[INODE]` of a listener.
//!
//! Merely holding the listener (every worker inherits it at fd 3) is not
//! waiting on it: a program that binds a port of its own and never touches
//! fd 3 is not ready, and is killed at `ready_timeout` as a failed start.
//!
//! **Cost.** The probe runs only while some auto worker is starting, on
//! its own deadline in the loop ([`Probe::deadline`]): 10 ms after a new
//! starting worker appears, then twice as long each time up to
//! [`SLOWEST`]; with no worker starting it has no deadline, so the idle
//! master keeps its zero wake-ups. A look walks only the starting workers'
//! trees (`sweep`'s `/proc/PID/task/TID/children` helper), at most
//! [`MAX_TREE`] processes and [`MAX_FDS`] fds each.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// The first look after a new worker starts.
const FASTEST: Duration = Duration::from_millis(10);

/// The longest wait between two looks while a worker starts.
const SLOWEST: Duration = Duration::from_millis(200);

/// Processes of one worker's tree looked at, at most, per look.
const MAX_TREE: usize = 64;

/// Fds of one process looked at, at most, per look.
const MAX_FDS: usize = 4096;

/// When to look next, and at whom.
#[derive(Debug, Default)]
pub(super) struct Probe {
    /// The next look; `None` while no auto worker is starting.
    next: Option<Instant>,
    /// The wait after the next look.
    interval: Duration,
    /// The starting workers at the last plan: a new one brings the next
    /// look forward to [`FASTEST`].
    known: BTreeSet<Pid>,
}

impl Probe {
    /// Plans the next look for `starting` (the auto workers starting now).
    pub(super) fn plan(&mut self, starting: &BTreeMap<Pid, u64>, now: Instant) {
        if starting.is_empty() {
            self.next = None;
            self.known.clear();
            return;
        }
        if starting.keys().any(|p| !self.known.contains(p)) {
            self.interval = FASTEST;
            let soon = now + FASTEST;
            self.next = Some(self.next.map_or(soon, |n| n.min(soon)));
        }
        self.known = starting.keys().copied().collect();
    }

    /// When the loop must wake for the next look.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a look is due at `now`; if so, the one after is planned.
    pub(super) fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(at) if at <= now => {
                self.next = Some(now + self.interval);
                self.interval = (self.interval * 2).min(SLOWEST);
                true
            }
            _ => false,
        }
    }
}

/// A generation's listeners by socket inode, for the probe.
pub(super) type Inodes = HashMap<u64, String>;

/// The inode of each listener (the name it goes by).
pub(super) fn inodes(listeners: &[super::Listener]) -> Inodes {
    listeners
        .iter()
        .filter_map(|l| {
            let st = nix::sys::stat::fstat(&l.socket.fd).ok()?;
            Some((st.st_ino, l.name.clone()))
        })
        .collect()
}

/// The listener `worker` or one of its descendants waits for connections
/// on, if any (see the module doc).
pub(super) fn accepting(worker: Pid, listeners: &Inodes) -> Option<String> {
    if listeners.is_empty() {
        return None;
    }
    let mut todo = vec![worker.as_raw()];
    let mut seen = BTreeSet::new();
    while let Some(pid) = todo.pop() {
        if seen.len() >= MAX_TREE || !seen.insert(pid) {
            continue;
        }
        if let Some(name) = process_accepting(pid, listeners) {
            return Some(name);
        }
        todo.extend(super::sweep::children_of(pid).unwrap_or_default());
    }
    None
}

/// What `/proc/PID/fd/N` points at, of what the probe looks for.
enum Target {
    Epoll,
    Listener(String),
}

/// The listener one process waits on, if any.
fn process_accepting(pid: i32, listeners: &Inodes) -> Option<String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut epolls = Vec::new();
    let mut held: HashMap<u64, String> = HashMap::new();
    for entry in dir.flatten().take(MAX_FDS) {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        match classify(link.to_str().unwrap_or(""), listeners) {
            Some(Target::Epoll) => epolls.push(fd),
            Some(Target::Listener(name)) => {
                held.insert(fd, name);
            }
            None => {}
        }
    }
    for fd in epolls {
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) else {
            continue;
        };
        if let Some(name) = watched_listener(&info, listeners) {
            return Some(name);
        }
    }
    if held.is_empty() {
        return None;
    }
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let Ok(line) = std::fs::read_to_string(task.path().join("syscall")) else {
            continue;
        };
        if let Some(fd) = accept_fd(&line)
            && let Some(name) = held.get(&fd)
        {
            return Some(name.clone());
        }
    }
    None
}

/// An fd link (`readlink /proc/PID/fd/N`) as the probe sees it.
fn classify(link: &str, listeners: &Inodes) -> Option<Target> {
    if link == "anon_inode:[eventpoll]" {
        return Some(Target::Epoll);
    }
    let inode: u64 = link
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    listeners.get(&inode).cloned().map(Target::Listener)
}

/// The listener an epoll instance watches, from its fdinfo (`tfd: 3
/// events: 19 data: 3  pos:0 ino:2a1f sdev:8`, one line per watched file).
fn watched_listener(fdinfo: &str, listeners: &Inodes) -> Option<String> {
    fdinfo
        .lines()
        .filter(|l| l.starts_with("tfd:"))
        .filter_map(|l| {
            let ino = l
                .split_ascii_whitespace()
                .find_map(|w| w.strip_prefix("ino:"))?;
            u64::from_str_radix(ino, 16).ok()
        })
        .find_map(|ino| listeners.get(&ino).cloned())
}

/// The fd a thread is blocked in `accept`/`accept4` on, from
/// `/proc/PID/task/TID/syscall` (`288 0x3 0x7ff… …`: the syscall number,
/// then its arguments in hex; `running` or `-1 …` when not in a syscall).
fn accept_fd(line: &str) -> Option<u64> {
    let mut fields = line.split_ascii_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if nr != libc::SYS_accept && nr != libc::SYS_accept4 {
        return None;
    }
    let arg = fields.next()?;
    u64::from_str_radix(arg.strip_prefix("0x").unwrap_or(arg), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(inode: u64) -> Inodes {
        HashMap::from([(inode, "http".to_string())])
    }

    #[test]
    fn an_epoll_watching_the_listener_inode_is_found_in_its_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\n\
                    tfd:        5 events:       19 data:                5  pos:0 ino:2a1f sdev:8\n\
                    tfd:        3 events:       19 data:                3  pos:0 ino:3039 sdev:8\n";
        assert_eq!(
            watched_listener(info, &http(0x3039)).as_deref(),
            Some("http")
        );
        // The epoll's own `ino:` line is not a watched file.
        assert_eq!(watched_listener(info, &http(1057)), None);
        assert_eq!(watched_listener(info, &http(0x3038)), None);
    }

    #[test]
    fn a_thread_in_accept_or_accept4_names_its_fd() {
        let accept4 = format!(
            "{} 0x3 0x7ffd 0x7ffe 0x80800 0x0 0x0 0x7ffc 0x7f00\n",
            libc::SYS_accept4
        );
        assert_eq!(accept_fd(&accept4), Some(3));
        let accept = format!(
            "{} 0x10 0x0 0x0 0x0 0x0 0x0 0x7ffc 0x7f00\n",
            libc::SYS_accept
        );
        assert_eq!(accept_fd(&accept), Some(16));
        assert_eq!(accept_fd("running\n"), None);
        assert_eq!(accept_fd("-1 0x7ffc 0x7f00\n"), None);
        assert_eq!(accept_fd(&format!("{} 0x3 0x0\n", libc::SYS_read)), None);
    }

    #[test]
    fn fd_links_name_epolls_and_listeners_only() {
        let l = http(4242);
        assert!(matches!(
            classify("anon_inode:[eventpoll]", &l),
            Some(Target::Epoll)
        ));
        assert!(matches!(classify("socket:[4242]", &l), Some(Target::Listener(n)) if n == "http"));
        assert!(classify("socket:[4243]", &l).is_none());
        assert!(classify("/dev/null", &l).is_none());
        assert!(classify("anon_inode:[eventfd]", &l).is_none());
    }

    #[test]
    fn looks_start_fast_back_off_and_stop_when_no_worker_starts() {
        let t0 = Instant::now();
        let mut probe = Probe::default();
        probe.plan(&BTreeMap::new(), t0);
        assert_eq!(probe.deadline(), None, "nothing starting: no wake-up");
        let one = BTreeMap::from([(Pid::from_raw(100), 1)]);
        probe.plan(&one, t0);
        assert_eq!(probe.deadline(), Some(t0 + FASTEST));
        assert!(!probe.due(t0));
        let mut t = t0 + FASTEST;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(probe.due(t));
            probe.plan(&one, t);
            let next = probe.deadline().unwrap();
            waits.push(next - t);
            t = next;
        }
        assert_eq!(waits[0], FASTEST);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), SLOWEST);
        // A new worker: fast again (and after the look due now, the
        // next one soon rather than SLOWEST later).
        assert!(probe.due(t));
        let two = BTreeMap::from([(Pid::from_raw(100), 1), (Pid::from_raw(101), 1)]);
        probe.plan(&two, t);
        assert_eq!(probe.deadline(), Some(t + FASTEST));
        probe.plan(&BTreeMap::new(), t);
        assert_eq!(probe.deadline(), None);
    }
}
