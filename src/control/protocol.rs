//! The control protocol: one JSON object per line each way (see the
//! module doc of [`crate::control`] for the exchange).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest request line, newline included.
pub(crate) const MAX_REQUEST: usize = 4096;

/// The longest response line the client (`request_trusting`) accepts.
/// Far above what the master sends; it only bounds what a confused peer
/// can make us buffer.
pub(crate) const MAX_RESPONSE: usize = 1 << 20;

/// How long a client has, from connecting, to send its whole request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection the master holds, named in [`Server::drain`]'s result and
/// answered with [`Server::reply`].
pub(crate) type ClientId = u64;

/// What a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub(crate) enum Request {
    /// The master, its listeners and its workers, now.
    Status,
    /// Re-read the configuration and replace the workers; with `wait`, the
    /// answer comes once the reload has finished or failed.
    Reload { wait: bool },
    /// Stop gracefully, as `SIGTERM` does.
    Stop,
}

/// The master's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "lowercase")]
pub(crate) enum Response {
    Status(StatusReport),
    /// Done; `message` for the operator ("reload finished: generation 3").
    Ok {
        message: String,
    },
    /// Failed; `exit_code` is what the CLI exits with (e.g. 78 invalid
    /// config, 1 other), `message` one line.
    Error {
        exit_code: u8,
        message: String,
    },
}

/// The answer to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusReport {
    pub(crate) master_pid: u32,
    pub(crate) uptime_ms: u64,
    pub(crate) generation: u64,
    /// The pool's status line, as sent in `STATUS=`.
    pub(crate) status: String,
    pub(crate) listeners: Vec<ListenerStatus>,
    pub(crate) workers: Vec<WorkerStatus>,
    /// The instance's name (`hawkey`, the default one); empty from a
    /// master older than instances.
    #[serde(default)]
    pub(crate) instance: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ListenerStatus {
    pub(crate) name: String,
    pub(crate) address: String,
    pub(crate) from_systemd: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct WorkerStatus {
    pub(crate) slot: usize,
    /// The running process, if there is one in this slot.
    pub(crate) pid: Option<i32>,
    pub(crate) generation: u64,
    pub(crate) state: String,
    pub(crate) uptime_ms: Option<u64>,
    pub(crate) restarts: u32,
    /// Times this slot's worker was recycled (`workers.recycle`); kept
    /// across the slot's later workers, like `restarts`.
    #[serde(default)]
    pub(crate) recycles: u32,
    /// How the slot's previous process ended ("exited with status 1").
    pub(crate) last_exit: Option<String>,
    /// The worker's own last `STATUS=` line, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<String>,
}

#[cfg(test)]
impl StatusReport {
    /// A report with two listeners and two workers, for tests.
    pub(crate) fn example() -> StatusReport {
        StatusReport {
            master_pid: 4242,
            uptime_ms: (3 * 3600 + 12 * 60 + 7) * 1000 + 250,
            generation: 3,
            status: "2 of 2 workers ready".into(),
            listeners: vec![
                ListenerStatus {
                    name: "http".into(),
                    address: "0.0.0.0:8080".into(),
                    from_systemd: true,
                },
                ListenerStatus {
                    name: "admin-api".into(),
                    address: "127.0.0.1:9000".into(),
                    from_systemd: false,
                },
            ],
            workers: vec![
                WorkerStatus {
                    slot: 0,
                    pid: Some(4243),
                    generation: 3,
                    state: "ready".into(),
                    uptime_ms: Some(11_527_000),
                    restarts: 0,
                    recycles: 0,
                    last_exit: None,
                    status: None,
                },
                WorkerStatus {
                    slot: 1,
                    pid: None,
                    generation: 2,
                    state: "backoff".into(),
                    uptime_ms: None,
                    restarts: 12,
                    recycles: 0,
                    last_exit: Some("exited with status 1".into()),
                    status: None,
                },
            ],
            instance: "hawkey".into(),
        }
    }
}
