//! How the master logs what the supervisor noticed: one tracing event per
//! [`Notice`], at its level, with the worker's slot, pid and generation and
//! the exit status or signal as fields (`HAWKEY_WORKER`, `WORKER_PID`,
//! `GENERATION`, `EXIT_STATUS`, `SIGNAL` in the journal), and why a worker
//! is recycled (`RECYCLE_REASON=memory|age`).

use super::supervisor::{Level, Notice};

/// Logs one notice.
pub(super) fn log(notice: &Notice) {
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                $level,
                hawkey_worker = notice.slot,
                worker_pid = notice.pid.map(|p| p.as_raw()),
                generation = notice.generation,
                exit_status = notice.exit.and_then(|e| e.code()),
                signal = notice.exit.and_then(|e| e.signal()),
                recycle_reason = notice.recycle.map(|r| r.word()),
                "{}",
                notice.text
            )
        };
    }
    match notice.level {
        Level::Debug => event!(tracing::Level::DEBUG),
        Level::Info => event!(tracing::Level::INFO),
        Level::Warn => event!(tracing::Level::WARN),
        Level::Error => event!(tracing::Level::ERROR),
    }
}
