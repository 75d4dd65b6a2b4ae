//! The one reader of `/proc/PID/stat` (proc(5)), for the master and the
//! CLI alike: a process's parent, process group, session, start time,
//! state, CPU time and resident set, from one line.
//!
//! The master reads it to find what a worker left behind (`master::sweep`)
//! and whether a notify datagram's sender descends from its worker
//! (`master::inbox`); `hawkey status` reads it for CPU% and memory
//! (`cli::usage`). Also here: a process's children
//! (`/proc/PID/task/TID/children`) and this process's thread count
//! (`/proc/self/status`), which [`crate::main`] checks.

use std::collections::BTreeMap;

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// Field 1.
    pub(crate) pid: i32,
    /// Field 4.
    pub(crate) ppid: i32,
    /// Field 5.
    pub(crate) pgid: i32,
    /// Field 6.
    pub(crate) sid: i32,
    /// Field 22, clock ticks after boot: with the pid, the process's
    /// identity.
    pub(crate) start: u64,
    /// Field 3 is `Z` or `X`.
    pub(crate) zombie: bool,
    /// `utime + stime` (fields 14 and 15), in clock ticks.
    pub(crate) ticks: u64,
    /// Resident pages (field 24).
    pub(crate) rss_pages: u64,
}

/// The fields of one `/proc/PID/stat` line; `None` if it is not one. The
/// command name (field 2, in parentheses) may hold anything, spaces and
/// `)` included, so the fields are counted from the last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<Stat> {
    let pid = line.split_once(' ')?.0.parse().ok()?;
    let rest = &line[line.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let signed = |n: usize| -> Option<i32> { fields.get(n - 3)?.parse().ok() };
    Some(Stat {
        pid,
        zombie: matches!(fields.first()?.chars().next()?, 'Z' | 'X'),
        ppid: signed(4)?,
        pgid: signed(5)?,
        sid: signed(6)?,
        ticks: field(14)?.checked_add(field(15)?)?,
        start: field(22)?,
        rss_pages: field(24)?,
    })
}

/// `/proc/PID/stat` of `pid`, parsed; `None` if it is gone.
pub(crate) fn read_stat(pid: i32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Every process on the host, by pid; what cannot be read (gone, hidden)
/// is left out.
pub(crate) fn every_process() -> BTreeMap<i32, Stat> {
    let mut procs = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return procs;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(p) = read_stat(pid) {
            procs.insert(pid, p);
        }
    }
    procs
}

/// The children of `pid`, from `/proc/PID/task/TID/children` of each of
/// its threads (a child is listed under the thread that forked it);
/// `None` if the kernel does not offer those files.
pub(crate) fn children_of(pid: i32) -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).ok()?;
        out.extend(
            text.split_ascii_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    Some(out)
}

/// How many threads this process has (`Threads:` in `/proc/self/status`);
/// `None` if that cannot be read.
pub(crate) fn threads() -> Option<usize> {
    threads_of_status(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The `Threads:` count of a `/proc/PID/status` text.
fn threads_of_status(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line (a Node worker), fields 1-52.
    const NODE: &str = "4243 (node) S 4242 4242 4242 0 -1 4194560 5912 0 0 0 130 27 0 0 20 0 7 0 113376 1090514944 12034 18446744073709551615 1 1 0 0 0 0 0 4096 134234626 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";

    #[test]
    fn a_stat_line_gives_parent_cpu_ticks_and_resident_pages() {
        assert_eq!(
            parse_stat(NODE),
            Some(Stat {
                pid: 4243,
                ppid: 4242,
                pgid: 4242,
                sid: 4242,
                start: 113376,
                zombie: false,
                ticks: 157,
                rss_pages: 12034
            })
        );
    }

    #[test]
    fn a_command_name_with_blanks_and_parentheses_is_skipped_whole() {
        let line = NODE.replace("(node)", "(a) S 1 (b c)");
        assert_eq!(parse_stat(&line).unwrap().pid, 4243);
        assert_eq!(parse_stat(&line).unwrap().ppid, 4242);
        assert_eq!(parse_stat(&line).unwrap().rss_pages, 12034);
    }

    #[test]
    fn stat_lines_are_read_whatever_the_name_holds() {
        let stat =
            "4242 (a) b (c)) S 1 4240 4239 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        let p = parse_stat(stat).unwrap();
        assert_eq!(
            (p.pid, p.ppid, p.pgid, p.sid, p.start, p.zombie),
            (4242, 1, 4240, 4239, 987654, false)
        );
        let zombie = stat.replace(") S ", ") Z ");
        assert!(parse_stat(&zombie).unwrap().zombie);
        assert_eq!(parse_stat("1 (init"), None);
    }

    #[test]
    fn a_truncated_or_garbled_line_is_not_a_stat() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("4243 (node"), None);
        assert_eq!(parse_stat("4243 (node) S 4242 4242"), None);
        assert_eq!(parse_stat(&NODE.replace(" 130 ", " x ")), None);
    }

    #[test]
    fn this_process_is_read_as_itself() {
        let me = read_stat(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw());
        assert!(threads().is_some_and(|n| n >= 1));
    }

    #[test]
    fn the_thread_count_is_read_from_the_status_line() {
        let status = "Name:\thawkey\nUmask:\t0022\nThreads:\t3\nSigQ:\t0/1\n";
        assert_eq!(threads_of_status(status), Some(3));
        assert_eq!(threads_of_status("Name:\thawkey\n"), None);
    }
}
