//! The master's side of sweeps (see `supervisor::sweep`): finding what
//! is left in a scope, from `/proc`, and signalling it.
//!
//! What a scope holds, looked up afresh at each order from one snapshot
//! of `/proc/PID/stat` (pid, parent, process group, session, start time)
//! of the processes that can be in it: the trees ordered and the orphans
//! the master adopted, found through `/proc/PID/task/TID/children`
//! (`snapshot_of`); every process of the host for the final stop:
//!
//! - `Tree(w)`: the descendants of worker `w` while it runs; every process
//!   in `w`'s process group or session (`w` leads both); every orphan the
//!   master adopted whose environment names `w` (`LISTEN_PID=w`, which a
//!   worker's children inherit, and keep across `setsid()`); every process
//!   an earlier look found (by pid and start time, so a reused pid is not
//!   taken for it); and the descendants of all of those. A grandchild that
//!   called `setsid()` while its parent still ran is found as a descendant,
//!   and kept when it is orphaned. One that cleared its environment and
//!   left the tree between two looks (100 ms) is not attributed to `w`:
//!   the final stop still finds it. If `w`'s pid is taken by a new process
//!   (another start time than at the first look), its group and session
//!   are that process's: only what was found before is swept.
//! - `Everything`: every descendant of the master, and every process it
//!   found before, but for what a tree's sweep has (it stops those, at its
//!   worker's deadline). That is what the final stop leaves: nothing.
//!
//! Workers are never in a scope: their slots stop them. The stop signal
//! is sent once per process; a process in the group of a worker the
//! master signalled already had it with the group (`killpg`), and does
//! not get it twice. SIGKILL goes to everything. A scope is reported
//! empty (`Event::Swept`) when nothing of it is left, its worker included.

use std::collections::{BTreeMap, BTreeSet};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Master;
use super::supervisor::{Event, Order, Scope};
use crate::procfs::{self, Stat as Proc, children_of, read_stat};

/// The processes a look at `roots` needs, by pid: `roots`, the master's
/// children that are not `workers` (the orphans it adopted: as a child
/// subreaper, whatever a worker left that outlived its parent is among
/// them), and every descendant of those. Everything a tree scope can hold
/// is there, read in a few files per process of it, instead of every
/// process of the host (`procfs::every_process`, about 5 ms with 600 processes, which
/// a reload of 256 workers paid at each of its hundreds of looks). Falls
/// back to `procfs::every_process` where the kernel has no `children` files.
fn snapshot_of(roots: &BTreeSet<i32>, workers: &BTreeSet<i32>, me: i32) -> BTreeMap<i32, Proc> {
    let Some(mine) = children_of(me) else {
        return procfs::every_process();
    };
    let mut procs = BTreeMap::new();
    let mut todo: Vec<i32> = roots.iter().copied().collect();
    todo.extend(mine.into_iter().filter(|c| !workers.contains(c)));
    while let Some(pid) = todo.pop() {
        if procs.contains_key(&pid) {
            continue;
        }
        let Some(p) = read_stat(pid) else {
            continue;
        };
        procs.insert(pid, p);
        todo.extend(children_of(pid).unwrap_or_default());
    }
    procs
}

/// `LISTEN_PID` in the environment `pid` was started with.
fn listen_pid(pid: i32) -> Option<i32> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    raw.split(|b| *b == 0).find_map(|entry| {
        std::str::from_utf8(entry.strip_prefix(b"LISTEN_PID=")?)
            .ok()?
            .parse()
            .ok()
    })
}

/// What one scope was found to hold, and what it was sent.
#[derive(Default)]
struct Record {
    /// (pid, start) of every process found in it and not yet gone.
    known: BTreeSet<(i32, u64)>,
    /// The last signal each was sent.
    sent: BTreeMap<(i32, u64), Signal>,
    /// A tree's worker's start time, from the first look.
    root_start: Option<u64>,
}

/// Sweeps in progress, as the master sees them.
#[derive(Default)]
pub(super) struct Remains {
    /// Orders of this turn, carried out together once its events are done.
    pending: Vec<Order>,
    records: BTreeMap<Scope, Record>,
    /// Process groups of workers the master sent a stop signal to: their
    /// members had it too.
    signalled_groups: BTreeSet<i32>,
}

impl Remains {
    pub(super) fn order(&mut self, orders: Vec<Order>) {
        for order in orders {
            match self.pending.iter_mut().find(|o| o.scope == order.scope) {
                // SIGKILL, once ordered, wins over the stop signal.
                Some(o) if o.signal != Signal::SIGKILL => o.signal = order.signal,
                Some(_) => {}
                None => self.pending.push(order),
            }
        }
    }

    /// The master sent `signal` to worker `pid`'s process group.
    pub(super) fn group_signalled(&mut self, pid: Pid, signal: Signal) {
        if signal != Signal::SIGKILL {
            self.signalled_groups.insert(pid.as_raw());
        }
    }
}

/// Processes by pid.
type Procs = BTreeMap<i32, Proc>;
/// Each pid's children.
type Children = BTreeMap<i32, Vec<i32>>;

/// Each process's children, from the parents `procs` names.
fn children_map(procs: &Procs) -> Children {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs.values() {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    children
}

/// Everything descended from `roots` (not the roots themselves).
fn descendants(roots: &BTreeSet<i32>, children: &BTreeMap<i32, Vec<i32>>) -> BTreeSet<i32> {
    let mut found = BTreeSet::new();
    let mut todo: Vec<i32> = roots.iter().copied().collect();
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if found.insert(c) {
                todo.push(c);
            }
        }
    }
    found
}

impl Master<'_> {
    /// Carries out this turn's sweep orders; whether it queued events
    /// (scopes found empty) for the loop to handle.
    pub(super) fn carry_out_sweeps(&mut self) -> bool {
        let mut orders = std::mem::take(&mut self.remains.pending);
        if orders.is_empty() {
            return false;
        }
        // Trees first: what they find, Everything need not find again.
        orders.sort_by_key(|o| o.scope);
        let workers: BTreeSet<i32> = self.pool.pids().iter().map(|p| p.as_raw()).collect();
        let me = self.origin.pid as i32;
        // The final stop's scope is every process of the master: all of
        // /proc is as cheap as its tree then. Otherwise the trees ordered,
        // what earlier looks found, and the leaders of signalled groups.
        let whole = orders.iter().any(|o| o.scope == Scope::Everything);
        let procs = if whole {
            procfs::every_process()
        } else {
            let mut roots: BTreeSet<i32> = self.remains.signalled_groups.clone();
            for order in &orders {
                if let Scope::Tree(w) = order.scope {
                    roots.insert(w.as_raw());
                }
                if let Some(record) = self.remains.records.get(&order.scope) {
                    roots.extend(record.known.iter().map(|(p, _)| *p));
                }
            }
            snapshot_of(&roots, &workers, me)
        };
        let children = children_map(&procs);
        // Every process of the host, read only to confirm a tree empty.
        let mut host: Option<(Procs, Children)> = None;
        let alive = |pid: i32| procs.get(&pid).is_some_and(|p| !p.zombie);
        self.remains
            .signalled_groups
            .retain(|g| alive(*g) || procs.values().any(|p| p.pgid == *g && !p.zombie));
        let mut queued = false;
        for order in orders {
            // A tree's worker pid taken by a new process: the old group
            // and session are empty then (the kernel reuses no pid still
            // naming one), so they and the new process's are not looked at.
            let reused = match order.scope {
                Scope::Tree(w) => {
                    let record = self.remains.records.entry(order.scope).or_default();
                    let start = procs.get(&w.as_raw()).map(|p| p.start);
                    let first = *record.root_start.get_or_insert(start.unwrap_or(0));
                    start.is_some_and(|s| s != first)
                }
                Scope::Everything => false,
            };
            let worker_gone = match order.scope {
                Scope::Tree(w) => reused || !alive(w.as_raw()),
                Scope::Everything => true,
            };
            let mut found = self.find(order.scope, reused, &procs, &children, &workers, me);
            if found.is_empty() && worker_gone && !whole {
                // A walk down the children files misses a process whose
                // parent exits between two reads (it moves up to the
                // master meanwhile): a tree whose worker is gone is found
                // empty only by a look at every process, each read once
                // (once per retired worker, at its sweep's end).
                let (all, all_children) = host.get_or_insert_with(|| {
                    let all = procfs::every_process();
                    let map = children_map(&all);
                    (all, map)
                });
                found = self.find(order.scope, reused, all, all_children, &workers, me);
            }
            let record = self.remains.records.entry(order.scope).or_default();
            record.known = found.iter().map(|p| (p.pid, p.start)).collect();
            record.sent.retain(|k, _| record.known.contains(k));
            for p in &found {
                let key = (p.pid, p.start);
                if record.sent.get(&key) == Some(&order.signal) {
                    continue;
                }
                record.sent.insert(key, order.signal);
                if order.signal != Signal::SIGKILL
                    && self.remains.signalled_groups.contains(&p.pgid)
                {
                    continue;
                }
                log_signal(order.scope, p, order.signal);
                let _ = nix::sys::signal::kill(Pid::from_raw(p.pid), order.signal);
            }
            if found.is_empty() && worker_gone {
                self.remains.records.remove(&order.scope);
                self.queue.push_back(Event::Swept { scope: order.scope });
                queued = true;
            }
        }
        queued
    }

    /// The live processes `scope` holds now (see the module doc).
    fn find(
        &self,
        scope: Scope,
        reused: bool,
        procs: &BTreeMap<i32, Proc>,
        children: &BTreeMap<i32, Vec<i32>>,
        workers: &BTreeSet<i32>,
        me: i32,
    ) -> Vec<Proc> {
        let same = |&(pid, start): &(i32, u64)| procs.get(&pid).is_some_and(|p| p.start == start);
        let mut seeds: BTreeSet<i32> = BTreeSet::new();
        // Processes a tree's sweep has: Everything leaves them to it.
        let mut theirs: BTreeSet<i32> = BTreeSet::new();
        let known = |scope: &Scope| {
            self.remains
                .records
                .get(scope)
                .into_iter()
                .flat_map(|r| r.known.iter().copied())
        };
        match scope {
            Scope::Tree(_) if reused => {
                seeds.extend(known(&scope).filter(same).map(|(p, _)| p));
            }
            Scope::Tree(w) => {
                let w = w.as_raw();
                seeds.insert(w);
                seeds.extend(known(&scope).filter(same).map(|(p, _)| p));
                for p in procs.values() {
                    let adopted = p.ppid == me && !workers.contains(&p.pid);
                    if p.pgid == w || p.sid == w || (adopted && listen_pid(p.pid) == Some(w)) {
                        seeds.insert(p.pid);
                    }
                }
            }
            Scope::Everything => {
                seeds.insert(me);
                seeds.extend(known(&scope).filter(same).map(|(p, _)| p));
                for (s, r) in &self.remains.records {
                    if let Scope::Tree(w) = s {
                        theirs.insert(w.as_raw());
                        theirs.extend(r.known.iter().map(|(p, _)| *p));
                    }
                }
            }
        }
        let mut all = descendants(&seeds, children);
        all.extend(seeds);
        all.into_iter()
            .filter(|p| *p != me && !workers.contains(p) && !theirs.contains(p))
            .filter(|p| Some(*p) != tree_root(scope))
            .filter_map(|p| procs.get(&p).copied())
            .filter(|p| !p.zombie)
            .collect()
    }
}

/// The worker a tree scope is about.
fn tree_root(scope: Scope) -> Option<i32> {
    match scope {
        Scope::Tree(w) => Some(w.as_raw()),
        Scope::Everything => None,
    }
}

/// One line per process and signal: what is being stopped and why.
fn log_signal(scope: Scope, p: &Proc, signal: Signal) {
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", p.pid)).unwrap_or_default();
    let whose = match scope {
        Scope::Tree(w) => format!("left behind by worker pid {w}"),
        Scope::Everything => "left behind by the workers".to_string(),
    };
    tracing::info!(
        pid = p.pid,
        "sending {} to pid {} ({}), {whose}",
        signal.as_str(),
        p.pid,
        comm.trim()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_are_found_through_every_generation() {
        let children = BTreeMap::from([(1, vec![2, 3]), (2, vec![4]), (4, vec![5]), (9, vec![10])]);
        assert_eq!(
            descendants(&BTreeSet::from([1]), &children),
            BTreeSet::from([2, 3, 4, 5])
        );
    }
}
