//! CPU and memory of process trees, read from `/proc` by the CLI (the
//! master does nothing for `hawkey status` but list its pids).
//!
//! # Parts
//!
//! - [`Snapshot`]: one pass over `/proc/*/stat` ([`crate::procfs`]):
//!   every process's parent, CPU time and resident set, at one moment.
//! - [`Sample`]: two snapshots [`INTERVAL`] apart; the CPU% and RSS of a
//!   process and all its descendants ([`Sample::tree`]).
//!
//! CPU% is a rate, as top(1) shows it: the CPU time the tree used between
//! the two snapshots over the time between them, 100% being one core.
//! Memory is RSS (`/proc/PID/stat` field 24) summed over the tree: pages
//! shared between processes (a pre-fork app's copy-on-write heap) are
//! counted in each, as ps(1) and `pm2 ls` count them. A process that
//! exits between two reads is simply not there; one that started between
//! the two snapshots counts all its CPU time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::procfs::{self, Stat};

/// The time between the two snapshots of a [`Sample`].
pub(super) const INTERVAL: Duration = Duration::from_millis(200);

/// Every process's [`Stat`] at one moment.
#[derive(Clone, Debug)]
pub(super) struct Snapshot {
    at: Instant,
    procs: BTreeMap<i32, Stat>,
}

impl Snapshot {
    /// Reads `/proc/*/stat`; what cannot be read (gone, hidden) is left
    /// out.
    pub(super) fn take() -> Snapshot {
        let at = Instant::now();
        Snapshot {
            at,
            procs: procfs::every_process(),
        }
    }

    /// A snapshot of the given processes, for tests.
    #[cfg(test)]
    pub(super) fn of(at: Instant, procs: impl IntoIterator<Item = (i32, Stat)>) -> Snapshot {
        Snapshot {
            at,
            procs: procs.into_iter().collect(),
        }
    }

    /// `root` and all its descendants in this snapshot (none if `root` is
    /// not in it). Bounded by the snapshot's size whatever the parent
    /// links say.
    pub(super) fn tree(&self, root: i32) -> BTreeSet<i32> {
        let mut tree = BTreeSet::new();
        if !self.procs.contains_key(&root) {
            return tree;
        }
        let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (pid, stat) in &self.procs {
            children.entry(stat.ppid).or_default().push(*pid);
        }
        let mut todo = vec![root];
        while let Some(pid) = todo.pop() {
            if tree.insert(pid) {
                todo.extend(children.get(&pid).into_iter().flatten());
            }
        }
        tree
    }
}

/// What a process tree used.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Usage {
    /// Percent of one core over the sample's interval.
    pub(super) cpu_percent: f64,
    /// Resident memory summed over the tree, at the second snapshot.
    pub(super) rss_bytes: u64,
}

/// Two snapshots, and the units to read them in.
pub(super) struct Sample {
    first: Snapshot,
    second: Snapshot,
    ticks_per_second: u64,
    page_size: u64,
}

impl Sample {
    /// Two snapshots [`INTERVAL`] apart.
    pub(super) fn take() -> Sample {
        let first = Snapshot::take();
        std::thread::sleep(INTERVAL);
        Sample::of(first, Snapshot::take(), clock_ticks(), page_size())
    }

    /// The sample of two snapshots, with `ticks_per_second` (`CLK_TCK`)
    /// and `page_size` in bytes.
    pub(super) fn of(
        first: Snapshot,
        second: Snapshot,
        ticks_per_second: u64,
        page_size: u64,
    ) -> Sample {
        Sample {
            first,
            second,
            ticks_per_second: ticks_per_second.max(1),
            page_size,
        }
    }

    /// What `pid` alone used; `None` if it is gone.
    pub(super) fn process(&self, pid: i32) -> Option<Usage> {
        self.second
            .procs
            .contains_key(&pid)
            .then(|| self.usage([pid]))
    }

    /// What `root` and its descendants used; `None` if `root` is gone.
    pub(super) fn tree(&self, root: i32) -> Option<Usage> {
        let tree = self.second.tree(root);
        (!tree.is_empty()).then(|| self.usage(tree))
    }

    fn usage(&self, pids: impl IntoIterator<Item = i32>) -> Usage {
        let (mut ticks, mut pages) = (0u64, 0u64);
        for pid in pids {
            let Some(now) = self.second.procs.get(&pid) else {
                continue;
            };
            // A pid reused between the snapshots (another parent, fewer
            // ticks) counts as new.
            let before = self
                .first
                .procs
                .get(&pid)
                .filter(|b| b.ppid == now.ppid && b.ticks <= now.ticks)
                .map_or(0, |b| b.ticks);
            ticks += now.ticks - before;
            pages += now.rss_pages;
        }
        let seconds = self
            .second
            .at
            .saturating_duration_since(self.first.at)
            .as_secs_f64();
        let cpu_percent = if seconds > 0.0 {
            ticks as f64 / self.ticks_per_second as f64 / seconds * 100.0
        } else {
            0.0
        };
        Usage {
            cpu_percent,
            rss_bytes: pages * self.page_size,
        }
    }
}

fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v as u64)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as u64)
}

/// "512B", "3.5KiB", "12.3MiB", "1.2GiB": one word (no blank), so a
/// table row splits on whitespace into its cells.
pub(super) fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ppid: i32, ticks: u64, rss_pages: u64) -> Stat {
        Stat {
            pid: 0,
            ppid,
            pgid: 0,
            sid: 0,
            start: 0,
            zombie: false,
            ticks,
            rss_pages,
        }
    }

    #[test]
    fn a_tree_is_the_root_and_every_descendant_but_no_other() {
        let now = Instant::now();
        let snap = Snapshot::of(
            now,
            [
                (1, stat(0, 0, 1)),
                (10, stat(1, 0, 1)),
                (11, stat(10, 0, 1)),
                (12, stat(10, 0, 1)),
                (13, stat(12, 0, 1)),
                (20, stat(1, 0, 1)),
                (21, stat(20, 0, 1)),
            ],
        );
        assert_eq!(snap.tree(10), BTreeSet::from([10, 11, 12, 13]));
        assert_eq!(snap.tree(13), BTreeSet::from([13]));
        assert_eq!(snap.tree(99), BTreeSet::new());
        // A parent loop (which the kernel never makes) still ends.
        let odd = Snapshot::of(now, [(5, stat(6, 0, 1)), (6, stat(5, 0, 1))]);
        assert_eq!(odd.tree(5), BTreeSet::from([5, 6]));
    }

    #[test]
    fn cpu_is_the_ticks_used_between_snapshots_over_the_time_between() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(500);
        let first = Snapshot::of(
            t0,
            [
                (1, stat(0, 1000, 10)),
                (2, stat(1, 500, 100)),
                (3, stat(2, 40, 5)),
                (4, stat(2, 7, 5)),   // exits before the second snapshot
                (6, stat(1, 900, 1)), // reused by another process below
            ],
        );
        let second = Snapshot::of(
            t1,
            [
                (1, stat(0, 1001, 10)),
                (2, stat(1, 520, 100)),
                (3, stat(2, 60, 5)),
                (5, stat(3, 10, 2)), // started in between: all its ticks
                (6, stat(2, 5, 1)),
            ],
        );
        let sample = Sample::of(first, second, 100, 4096);
        // 20 + 20 + 10 + 5 ticks = 0.55 s of CPU over 0.5 s.
        let tree = sample.tree(2).unwrap();
        assert!((tree.cpu_percent - 110.0).abs() < 1e-9, "{tree:?}");
        assert_eq!(tree.rss_bytes, (100 + 5 + 2 + 1) * 4096);
        let master = sample.process(1).unwrap();
        assert!((master.cpu_percent - 2.0).abs() < 1e-9, "{master:?}");
        assert_eq!(master.rss_bytes, 10 * 4096);
        assert_eq!(sample.tree(4), None, "gone");
        assert_eq!(sample.process(4), None, "gone");
    }

    #[test]
    fn sizes_are_one_word_in_binary_units() {
        let cases = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0KiB"),
            (1536, "1.5KiB"),
            (3 * 1024 * 1024 + 300 * 1024, "3.3MiB"),
            (5 << 30, "5.0GiB"),
            (3 << 50, "3072.0TiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(format_bytes(bytes), text, "{bytes}");
        }
    }
}
