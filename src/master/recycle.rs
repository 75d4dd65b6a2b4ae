//! The master's side of recycling (see `supervisor::recycle`): the
//! resident memory of each worker's process tree, read from `/proc` when
//! the pool asks for it ([`Action::MeasureMemory`]) and only then.
//!
//! A tree is the worker and its descendants, found through
//! `/proc/PID/task/TID/children` (`procfs::children_of`); each process's
//! resident pages come from the second field of `/proc/PID/statm`. The
//! sum counts a page shared by two processes of the tree (after a fork)
//! twice, as `ps` and PM2 do: an app that forks helpers is measured high,
//! never low. A process that vanished while it was read counts as 0; a
//! worker gone altogether is left out of the answer.
//!
//! [`Action::MeasureMemory`]: super::supervisor::Action::MeasureMemory

use std::collections::BTreeSet;

use nix::unistd::Pid;

use super::Master;
use super::supervisor::Event;

/// The most processes of one tree that are read: a fork bomb in a worker
/// does not make the master read /proc for ever.
const MAX_TREE: usize = 4096;

/// Resident bytes of one process, from `/proc/PID/statm`.
fn resident_bytes(pid: i32, page: u64) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    parse_statm(&statm).map(|pages| pages * page)
}

/// The resident pages in a `statm` line: its second field.
fn parse_statm(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The resident bytes of `worker`'s tree; `None` if the worker is gone.
pub(super) fn tree_resident_bytes(worker: Pid, page: u64) -> Option<u64> {
    let root = resident_bytes(worker.as_raw(), page)?;
    let mut total = root;
    let mut todo = crate::procfs::children_of(worker.as_raw()).unwrap_or_default();
    let mut seen = BTreeSet::from([worker.as_raw()]);
    while let Some(pid) = todo.pop() {
        if seen.len() >= MAX_TREE || !seen.insert(pid) {
            continue;
        }
        total += resident_bytes(pid, page).unwrap_or(0);
        todo.extend(crate::procfs::children_of(pid).unwrap_or_default());
    }
    Some(total)
}

/// The size of a page, in bytes.
fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
}

impl Master<'_> {
    /// Measures each worker's tree and queues the figures for the pool.
    pub(super) fn measure_memory(&mut self, pids: &[Pid], fresh: bool) {
        let page = page_size();
        let usage = pids
            .iter()
            .filter_map(|&pid| tree_resident_bytes(pid, page).map(|bytes| (pid, bytes)))
            .collect();
        self.queue.push_back(Event::Memory { usage, fresh });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_gives_resident_pages_in_its_second_field() {
        assert_eq!(parse_statm("2841 1230 800 120 0 400 0\n"), Some(1230));
        assert_eq!(parse_statm("2841"), None);
        assert_eq!(parse_statm(""), None);
    }

    #[test]
    fn a_tree_is_measured_with_its_children_and_a_gone_worker_is_not() {
        let page = page_size();
        let me = Pid::this();
        let alone = tree_resident_bytes(me, page).expect("this process exists");
        assert!(alone > 0);
        let mut child = crate::test_util::spawn(std::process::Command::new("sleep").arg("30"));
        let with_child = tree_resident_bytes(me, page).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            with_child > alone.saturating_sub(1 << 20),
            "the child's pages are added: {with_child} vs {alone}"
        );
        assert_eq!(tree_resident_bytes(Pid::from_raw(i32::MAX), page), None);
    }
}
