//! The event loop: sleep in `poll(2)` until something happens or the
//! nearest deadline, turn what woke the master into events, feed them to
//! the pool, carry out its actions; again until an action ends it.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

use super::inbox::Received;
use super::reap::reap_all;
use super::signals::Request as SignalRequest;
use super::supervisor::{Accepting, Event, State};
use super::{Error, Master};
use crate::exit::Status;

/// How long after a reap any wake-up reaps again, SIGCHLD or not. Not a
/// deadline: it never wakes the master (an idle one sleeps, P4), and an
/// exit always raises SIGCHLD, which stays pending until read.
const REAP_SWEEP: Duration = Duration::from_secs(1);

/// A loop wake-up this much later than its timeout means the master was
/// not running (SIGSTOP, a frozen VM): see [`Event::Stalled`].
const STALL_SLACK: Duration = Duration::from_secs(1);

/// Whether a wake-up ends a stall of the master ([`Event::Stalled`]):
/// it slept well past its timeout, or a SIGCONT came more than
/// [`STALL_SLACK`] after the previous wake-up (`away`: the stop may have
/// hit while the master slept or while it worked on that wake-up's
/// events; a stop too short to matter, or a SIGCONT that stopped nothing,
/// is not one). Never while stopping or asked to stop: systemd (and
/// `timeout(1)`) send SIGCONT right after SIGTERM, in case the process
/// was stopped, and heartbeats no longer matter then.
fn stalled(slept_long: bool, continued: bool, away: Duration, stopping: bool) -> bool {
    !stopping && (slept_long || (continued && away > STALL_SLACK))
}

/// What the loop keeps from one wake-up to the next.
pub(super) struct Wake {
    /// When the loop last woke from poll.
    woke: Instant,
    /// A stall was noted while this wake-up's events were handled; the
    /// SIGCONT that ended it, read at the next wake-up, is not another.
    stall_noted: bool,
    /// SIGCHLD was read: reap at this wake-up.
    child_exited: bool,
    /// When the master last reaped (see [`REAP_SWEEP`]).
    swept: Instant,
    /// Release the start-up pages before the loop next sleeps (see
    /// `memory`): set when the pool becomes ready.
    release_pages: bool,
}

impl Wake {
    pub(super) fn new() -> Wake {
        Wake {
            woke: Instant::now(),
            stall_noted: false,
            child_exited: false,
            swept: Instant::now(),
            release_pages: false,
        }
    }

    /// Asks for the start-up pages to be released before the loop next
    /// sleeps.
    pub(super) fn release_pages(&mut self) {
        self.release_pages = true;
    }

    /// Whether to reap at this wake-up, `woke`: SIGCHLD came, or the last
    /// reap is [`REAP_SWEEP`] ago. Counts as reaped if so.
    fn reap_due(&mut self, woke: Instant) -> bool {
        let sweep_due = woke.saturating_duration_since(self.swept) >= REAP_SWEEP;
        let due = std::mem::take(&mut self.child_exited) || sweep_due;
        if due {
            self.swept = woke;
        }
        due
    }
}

impl Master<'_> {
    /// Runs the loop until the master is done; returns its exit status.
    pub(super) fn run(&mut self) -> Result<Status, Error> {
        loop {
            if let Some(status) = self.process_queue() {
                return Ok(status);
            }
            // Generations no process and no rollback needs any more go,
            // and with them listeners no generation uses.
            let in_use = self.pool.generations_in_use();
            self.generations.all.retain(|g, _| in_use.contains(g));
            self.update_status();
            self.ping_watchdog();
            if std::mem::take(&mut self.wake.release_pages) {
                let released = super::memory::release_startup_pages();
                tracing::debug!("released {released} KiB of start-up pages");
            }
            self.wait()?;
        }
    }

    /// Feeds queued events to the pool, logs what it noticed and carries
    /// out its actions, until the queue is empty; `Some(status)` when the
    /// master is done.
    fn process_queue(&mut self) -> Option<Status> {
        loop {
            while let Some(event) = self.queue.pop_front() {
                if let Some(status) = self.handle(event) {
                    return Some(status);
                }
            }
            // The turn's sweep orders, together; their findings are events
            // again (each one ends a sweep, so this ends).
            if !self.carry_out_sweeps() {
                return None;
            }
        }
    }

    /// Has the pool decide on one event, logs what it noticed and carries
    /// out its actions; `Some(status)` when the master is done.
    pub(super) fn handle(&mut self, event: Event) -> Option<Status> {
        // Stopped between reading this wake-up's input and judging its
        // deadlines (SIGSTOP while busy): the SIGCONT is only read at the
        // next wake-up, so say so now, before any deadline counts.
        if matches!(event, Event::Tick) && self.wake.woke.elapsed() > STALL_SLACK {
            self.wake.stall_noted = true;
            self.decide(Event::Stalled);
        }
        self.decide(event)
    }

    /// Has the pool decide on one event; see [`Master::handle`].
    fn decide(&mut self, event: Event) -> Option<Status> {
        let decision = self.pool.handle(event, Instant::now());
        for notice in &decision.notices {
            super::notices::log(notice);
        }
        for action in decision.actions {
            if let Some(status) = self.act(action) {
                return Some(status);
            }
        }
        None
    }

    /// Blocks in poll until something happens or the nearest deadline, then
    /// queues what happened.
    fn wait(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let starting = self.auto_starting();
        self.probe.plan(&starting, now);
        let requested = [
            self.pool.next_deadline(),
            self.probe.deadline(),
            self.upstream.next_ping(),
            self.control.as_ref().and_then(|c| c.next_deadline()),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|d| d.saturating_duration_since(now));
        self.poll(requested)?;
        let woke = Instant::now();
        let away = woke.saturating_duration_since(self.wake.woke);
        self.wake.woke = woke;
        // Children whose execve is now known become workers first: what
        // they say below is about a worker the pool knows.
        for pid in self.forks.pids() {
            self.settle(pid);
        }
        // Notifications next: a heartbeat that waited in the queue while
        // the master was stopped must count before any deadline does.
        let received = self.inbox.read();
        self.queue_messages(received);
        // Stopped while asleep: woken well after the timeout. Stopped while
        // busy (the timeout was computed after): SIGCONT says so.
        let asleep = woke.saturating_duration_since(now);
        let slept_long = requested.is_some_and(|requested| asleep > requested + STALL_SLACK);
        let stopping = self.pool.is_stopping();
        let (continued, stop_requested) = self.read_signals();
        // A stall already noted by `handle` is not a second one.
        let noted = std::mem::take(&mut self.wake.stall_noted);
        if stalled(slept_long, continued, away, stopping || stop_requested) && !noted {
            self.queue.push_back(Event::Stalled);
        }
        self.queue_exits(woke);
        let requests = match self.control.as_mut() {
            Some(control) => control.drain(woke),
            None => Vec::new(),
        };
        for (client, request) in requests {
            self.on_control(client, request);
        }
        if self.probe.due(woke) {
            // Its cost is the master's own CPU time: on a loaded machine
            // the wall time of a look is mostly other processes' turns.
            let began = thread_cpu_time();
            self.look_for_accepting();
            let cost = thread_cpu_time().saturating_sub(began);
            self.probe.looked(Instant::now(), cost);
        }
        self.queue.push_back(Event::Tick);
        Ok(())
    }

    /// Reaps the children that exited, if it is time to, and queues their
    /// exits. Reaps when SIGCHLD came (merged or not: one stands for every
    /// exit before it, and an exit after it raises it again), and at any
    /// other wake-up a second or more after the last reap, whatever woke it
    /// (no timer is set for this): waitpid(2) scans every child, which is
    /// not to be paid on each of a large pool's wake-ups.
    fn queue_exits(&mut self, woke: Instant) {
        let reaped = if self.wake.reap_due(woke) {
            reap_all()
        } else {
            Vec::new()
        };
        for (pid, exit) in reaped {
            // Dead, its report is complete: settled at once.
            self.settle(pid);
            if self.forks.take_failed(pid) {
                continue;
            }
            // What it said last counts before its exit does; then its
            // channel goes, and with it the last line it wrote to stderr.
            let (last, line) = self.inbox.detach_with_last_line(pid);
            self.queue_messages(last);
            if let Some(line) = line {
                self.queue.push_back(Event::LastWords { pid, line });
            }
            self.queue.push_back(Event::Exited { pid, exit });
        }
    }

    /// The starting workers of `ready: auto` generations, with their
    /// generation: whom the probe looks at.
    fn auto_starting(&self) -> BTreeMap<Pid, u64> {
        let auto = |g: u64| {
            self.generations
                .all
                .get(&g)
                .is_some_and(|g| g.settings.ready_when_accepting)
        };
        let mut starting = BTreeMap::new();
        for s in self.pool.slots() {
            if let State::Starting { pid, .. } = s.state
                && auto(s.generation)
            {
                starting.insert(pid, s.generation);
            }
            if let Some((g, State::Starting { pid, .. })) = s.successor
                && auto(g)
            {
                starting.insert(pid, g);
            }
        }
        starting
    }

    /// Queues [`Event::Accepting`] for each starting auto worker the probe
    /// sees accepting on one of its generation's listeners.
    fn look_for_accepting(&mut self) {
        for (pid, g) in self.auto_starting() {
            let Some(generation) = self.generations.all.get(&g) else {
                continue;
            };
            if let Some(listener) = super::probe::accepting(pid, &generation.inodes) {
                self.queue.push_back(Event::Accepting {
                    pid,
                    by: Accepting::Seen { listener },
                });
            }
        }
    }

    /// Sleeps until a watched fd is readable or `timeout` has passed
    /// (forever without one).
    fn poll(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            // Round up so the deadline has passed when poll returns.
            Some(wait) => {
                let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        // The workers' channels are behind one epoll fd: a pool of any
        // size is one entry here.
        let mut fds = vec![
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.inbox.as_fd(), PollFlags::POLLIN),
        ];
        // The report pipes of children on their way to execve (their
        // end-of-file wakes the loop), read by `settle` on every wake-up.
        fds.extend(
            self.forks
                .forking
                .values()
                .map(|f| PollFd::new(f.forked.as_fd(), PollFlags::POLLIN)),
        );
        if let Some(control) = &self.control {
            fds.extend(
                control
                    .poll_fds()
                    .into_iter()
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
            );
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
            Err(error) => Err(Error::Poll(error)),
        }
    }

    /// Queues what the workers said: each message for the worker whose
    /// channel it came on, if it came from that worker or a descendant of
    /// it (see `inbox`). Anyone else is not heard.
    fn queue_messages(&mut self, received: Vec<Received>) {
        for Received {
            worker: pid,
            sender,
            message,
            credited,
            fds,
        } in received
        {
            // A message means the worker's program runs: it is settled.
            self.settle(pid);
            if fds > 0 {
                // Not part of the protocol; only the worker's own user can
                // reach its channel, so this is the app's doing: noted, not
                // shouted (a loop sending them would flood the log).
                tracing::debug!(
                    pid = sender.as_raw(),
                    "closed {fds} descriptors pid {sender} passed to worker {pid}'s notify socket"
                );
            }
            if !credited {
                tracing::debug!(
                    pid = sender.as_raw(),
                    "ignoring a notify message from pid {sender}: not worker {pid} or its descendant"
                );
                continue;
            }
            if message.ready {
                self.queue.push_back(Event::Ready { pid });
            }
            if message.accepting {
                self.queue.push_back(Event::Accepting {
                    pid,
                    by: Accepting::Reported,
                });
            }
            if message.watchdog {
                self.queue.push_back(Event::Heartbeat { pid });
            }
            if let Some(text) = message.status {
                self.queue.push_back(Event::WorkerStatus { pid, text });
            }
        }
    }

    /// Queues what the signals since the last wake-up ask for; whether one
    /// was SIGCONT (the master had been stopped), and whether one asked
    /// for a stop.
    fn read_signals(&mut self) -> (bool, bool) {
        let (mut continued, mut stop) = (false, false);
        for request in self.signals.drain() {
            match request {
                SignalRequest::Stop(signal) => {
                    tracing::info!("received {}", signal.as_str());
                    stop = true;
                    self.queue.push_back(Event::Stop { fast: false });
                }
                SignalRequest::FastStop => {
                    stop = true;
                    self.queue.push_back(Event::Stop { fast: true });
                }
                SignalRequest::ReopenLogs => {
                    tracing::info!("SIGUSR1: nothing to reopen, logs go to journald or stderr");
                }
                SignalRequest::Reload => {
                    tracing::info!("received SIGHUP: reloading");
                    self.reload_signalled();
                }
                SignalRequest::Grow => self.queue.push_back(Event::Grow),
                SignalRequest::Shrink => self.queue.push_back(Event::Shrink),
                SignalRequest::Reap => self.wake.child_exited = true,
                SignalRequest::Continued => continued = true,
            }
        }
        (continued, stop)
    }
}

/// The CPU time the master's (only) thread has used.
fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sigcont_with_a_stop_or_after_a_short_sleep_is_no_stall() {
        let long = STALL_SLACK * 3;
        let short = STALL_SLACK / 2;
        // SIGSTOP, seconds, SIGCONT: a stall.
        assert!(stalled(false, true, long, false));
        assert!(stalled(true, false, short, false));
        // systemd's SIGTERM + SIGCONT, or a stop already under way.
        assert!(!stalled(false, true, long, true));
        assert!(!stalled(true, true, long, true));
        // A SIGCONT that ended no stop worth the name.
        assert!(!stalled(false, true, short, false));
        assert!(!stalled(false, false, long, false));
    }
}
