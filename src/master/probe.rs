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
//!   argument, and `/proc/PID/fd/ARG` is `socket:[INODE]` of a listener;
//!   or in `poll`/`ppoll` (Python's `socketserver`, so `http.server` and
//!   Flask's development server) or `select`/`pselect6` (gunicorn's sync
//!   workers) with a listener among the fds it waits to read: the array or
//!   set is read from `/proc/PID/mem` (a debugger's access, which the
//!   master has to its descendants), and trusted only if the thread still
//!   waits in the same call afterwards.
//!
//! Merely holding the listener (every worker inherits it at fd 3) is not
//! waiting on it: a program that binds a port of its own and never touches
//! fd 3 is not ready, and is killed at `ready_timeout` as a failed start.
//!
//! **Cost.** The probe runs only while some auto worker is starting, on
//! its own deadline in the loop ([`Probe::deadline`]): 10 ms after a new
//! starting worker appears, then every tenth of the time it has been
//! starting, up to [`SLOWEST`], and never more than 5% of the master's
//! time ([`Probe::looked`]); with no worker starting it has no deadline,
//! so the idle master keeps its zero wake-ups. A look walks only the starting workers'
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

/// A look's cost is kept below this share of the master's time: the wait
/// after a look is at least this many times what the look took.
const COST_FACTOR: u32 = 20;

/// When to look next, and at whom.
#[derive(Debug, Default)]
pub(super) struct Probe {
    /// The next look; `None` while no auto worker is starting.
    next: Option<Instant>,
    /// When the newest starting worker appeared.
    since: Option<Instant>,
    /// The starting workers at the last plan: a new one brings the next
    /// look forward to [`FASTEST`].
    known: BTreeSet<Pid>,
}

impl Probe {
    /// Plans the next look for `starting` (the auto workers starting now).
    pub(super) fn plan(&mut self, starting: &BTreeMap<Pid, u64>, now: Instant) {
        if starting.is_empty() {
            self.next = None;
            self.since = None;
            self.known.clear();
            return;
        }
        if starting.keys().any(|p| !self.known.contains(p)) {
            self.since = Some(now);
            let soon = now + FASTEST;
            self.next = Some(self.next.map_or(soon, |n| n.min(soon)));
        }
        self.known = starting.keys().copied().collect();
    }

    /// When the loop must wake for the next look.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a look is due at `now`.
    pub(super) fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|at| at <= now)
    }

    /// A look ended at `now` after `cost` (the master's CPU time): the
    /// next one waits a tenth of
    /// the time the newest worker has been starting (so a worker is seen
    /// within about a tenth of its own boot time after it accepts), from
    /// [`FASTEST`] to [`SLOWEST`], and never less than [`COST_FACTOR`]
    /// times the look's cost (at most 5% of the master's time, however
    /// many workers start).
    pub(super) fn looked(&mut self, now: Instant, cost: Duration) {
        let starting_for = self
            .since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        let wait = (starting_for / 10)
            .clamp(FASTEST, SLOWEST)
            .max(cost * COST_FACTOR);
        self.next = Some(now + wait);
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
        todo.extend(crate::procfs::children_of(pid).unwrap_or_default());
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
        let path = task.path().join("syscall");
        let Ok(line) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some(wait) = waiting(&line) else {
            continue;
        };
        let fds = match wait {
            Wait::Accept(fd) => vec![fd],
            Wait::Poll { at, count } => {
                let Some(raw) = read_memory(pid, at, count.min(MAX_POLLED) * POLLFD) else {
                    continue;
                };
                polled_for_input(&raw)
            }
            Wait::Select { at, nfds } => {
                let Some(raw) = read_memory(pid, at, nfds.min(MAX_SELECTED).div_ceil(8)) else {
                    continue;
                };
                selected(&raw, nfds.min(MAX_SELECTED))
            }
        };
        // What was read from its memory is trusted only if the thread
        // still waits in that same call (not returned and reused it).
        if !matches!(wait, Wait::Accept(_))
            && std::fs::read_to_string(&path).ok().as_deref() != Some(line.as_str())
        {
            continue;
        }
        if let Some(name) = fds.iter().find_map(|fd| held.get(fd)) {
            return Some(name.clone());
        }
    }
    None
}

/// `struct pollfd`: `int fd; short events; short revents;`.
const POLLFD: u64 = 8;

/// Entries of a `poll` array looked at, at most.
const MAX_POLLED: u64 = 1024;

/// Fds of a `select` set looked at, at most (`FD_SETSIZE`).
const MAX_SELECTED: u64 = 1024;

/// What a thread blocked in a syscall waits on, of what the probe sees.
#[derive(Debug, PartialEq, Eq)]
enum Wait {
    /// `accept`/`accept4` on this fd.
    Accept(u64),
    /// `poll`/`ppoll` on `count` `struct pollfd` at `at`.
    Poll { at: u64, count: u64 },
    /// `select`/`pselect6` with its read set at `at`, `nfds` bits.
    Select { at: u64, nfds: u64 },
}

/// What a thread waits on, from `/proc/PID/task/TID/syscall` (`288 0x3
/// 0x7ff… …`: the syscall number, then its arguments in hex; `running` or
/// `-1 …` when not in a syscall).
fn waiting(line: &str) -> Option<Wait> {
    let mut fields = line.split_ascii_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    let mut arg = || {
        let a = fields.next()?;
        u64::from_str_radix(a.strip_prefix("0x").unwrap_or(a), 16).ok()
    };
    match nr {
        libc::SYS_accept | libc::SYS_accept4 => Some(Wait::Accept(arg()?)),
        libc::SYS_poll | libc::SYS_ppoll => {
            let at = arg()?;
            Some(Wait::Poll { at, count: arg()? })
        }
        libc::SYS_select | libc::SYS_pselect6 => {
            let nfds = arg()?;
            let at = arg()?;
            (at != 0).then_some(Wait::Select { at, nfds })
        }
        _ => None,
    }
}

/// `len` bytes of `pid`'s memory at `at` (`/proc/PID/mem`: the access a
/// debugger has, which the master has to its own descendants).
fn read_memory(pid: i32, at: u64, len: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut raw = vec![0u8; usize::try_from(len).ok()?];
    mem.read_exact_at(&mut raw, at).ok()?;
    Some(raw)
}

/// The fds of a `struct pollfd` array that wait for input (`POLLIN`).
fn polled_for_input(raw: &[u8]) -> Vec<u64> {
    raw.chunks_exact(POLLFD as usize)
        .filter_map(|entry| {
            let fd = i32::from_ne_bytes(entry[0..4].try_into().ok()?);
            let events = i16::from_ne_bytes(entry[4..6].try_into().ok()?);
            (fd >= 0 && events & libc::POLLIN != 0).then_some(fd as u64)
        })
        .collect()
}

/// The fds set in a `select` fd set of `nfds` bits (little-endian bit
/// order within each byte, as glibc's `fd_set` on every Linux target).
fn selected(raw: &[u8], nfds: u64) -> Vec<u64> {
    (0..nfds)
        .filter(|fd| {
            raw.get((fd / 8) as usize)
                .is_some_and(|b| b & (1 << (fd % 8)) != 0)
        })
        .collect()
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
    fn a_thread_in_accept_poll_or_select_says_what_it_waits_on() {
        let line = |nr: i64, args: &str| format!("{nr} {args} 0x0 0x0 0x0 0x7ffc 0x7f00\n");
        assert_eq!(
            waiting(&line(libc::SYS_accept4, "0x3 0x7ffd 0x7ffe")),
            Some(Wait::Accept(3))
        );
        assert_eq!(
            waiting(&line(libc::SYS_accept, "0x10 0x0 0x0")),
            Some(Wait::Accept(16))
        );
        assert_eq!(
            waiting(&line(libc::SYS_poll, "0x7ffd1000 0x2 0x1f4")),
            Some(Wait::Poll {
                at: 0x7ffd1000,
                count: 2
            })
        );
        assert_eq!(
            waiting(&line(libc::SYS_pselect6, "0x5 0x7ffd2000 0x0")),
            Some(Wait::Select {
                at: 0x7ffd2000,
                nfds: 5
            })
        );
        // select with no read set waits on nothing of ours.
        assert_eq!(waiting(&line(libc::SYS_select, "0x5 0x0 0x7ffd")), None);
        assert_eq!(waiting("running\n"), None);
        assert_eq!(waiting("-1 0x7ffc 0x7f00\n"), None);
        assert_eq!(waiting(&line(libc::SYS_read, "0x3 0x0 0x0")), None);
    }

    #[test]
    fn poll_arrays_and_select_sets_name_the_fds_waited_on_for_input() {
        let mut raw = Vec::new();
        for (fd, events) in [
            (3i32, libc::POLLIN),
            (7, libc::POLLOUT),
            (-1, libc::POLLIN),
            (9, libc::POLLIN | libc::POLLPRI),
        ] {
            raw.extend(fd.to_ne_bytes());
            raw.extend(events.to_ne_bytes());
            raw.extend(0i16.to_ne_bytes());
        }
        assert_eq!(polled_for_input(&raw), [3, 9]);
        // fds 3 and 9 set in a select read set of 10.
        assert_eq!(selected(&[0b0000_1000, 0b0000_0010], 10), [3, 9]);
        assert_eq!(selected(&[0b0000_1000, 0b0000_0010], 9), [3]);
    }

    #[test]
    fn this_threads_own_poll_is_read_from_its_memory() {
        // The probe's memory read, on a real poll array of this process.
        let fds = [libc::pollfd {
            fd: 5,
            events: libc::POLLIN,
            revents: 0,
        }];
        let raw = read_memory(std::process::id() as i32, fds.as_ptr() as u64, POLLFD).unwrap();
        assert_eq!(polled_for_input(&raw), [5]);
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
    fn looks_start_fast_back_off_with_the_boot_time_and_their_cost_and_stop_when_idle() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut probe = Probe::default();
        probe.plan(&BTreeMap::new(), t0);
        assert_eq!(probe.deadline(), None, "nothing starting: no wake-up");
        let one = BTreeMap::from([(Pid::from_raw(100), 1)]);
        probe.plan(&one, t0);
        assert_eq!(probe.deadline(), Some(t0 + FASTEST));
        assert!(!probe.due(t0));
        assert!(probe.due(t0 + FASTEST));
        // A tenth of the time it has been starting, 10 ms to 200 ms.
        for (at, wait) in [(10, 10), (500, 50), (1000, 100), (5000, 200)] {
            probe.looked(t0 + ms(at), Duration::from_micros(100));
            probe.plan(&one, t0 + ms(at));
            assert_eq!(probe.deadline(), Some(t0 + ms(at + wait)), "at {at} ms");
        }
        // A costly look (many workers): 20 times its cost.
        probe.looked(t0 + ms(100), ms(30));
        assert_eq!(probe.deadline(), Some(t0 + ms(100 + 600)));
        // A new worker: fast again.
        let two = BTreeMap::from([(Pid::from_raw(100), 1), (Pid::from_raw(101), 1)]);
        let t = t0 + ms(6000);
        probe.looked(t, Duration::from_micros(100));
        probe.plan(&two, t);
        assert_eq!(probe.deadline(), Some(t + FASTEST));
        probe.plan(&BTreeMap::new(), t);
        assert_eq!(probe.deadline(), None);
    }
}
