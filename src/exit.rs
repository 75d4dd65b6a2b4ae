//! Exit statuses of `hawkey`, from sysexits(3) where one fits: the one
//! table. Every error maps to a [`Status`]; hawkey(1) and `hawkey --help`
//! render [`Status::ALL`] (no document copies it by hand), and
//! `Response::Error` carries [`Status::code`].

/// How a `hawkey` command ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// Stopped on request; command done.
    Ok,
    /// Runtime failure (cannot bind, cannot fork, …); a reload rolled back.
    Failure,
    /// `hawkey status` (and the other control commands): not running (LSB).
    NotRunning,
    /// Usage error: a bad command line or control request (`EX_USAGE`).
    Usage,
    /// No worker could start (`EX_UNAVAILABLE`).
    NoWorker,
    /// Pidfile or runtime directory unusable (`EX_CANTCREAT`).
    CantCreate,
    /// Another instance holds the pidfile lock; a reload is already in
    /// progress (`EX_TEMPFAIL`).
    TempFail,
    /// Not permitted to control this master (`EX_NOPERM`).
    NoPermission,
    /// Invalid configuration (`EX_CONFIG`).
    Config,
}

impl Status {
    /// Every status, in the order hawkey(1) lists them.
    pub(crate) const ALL: [Status; 9] = [
        Status::Ok,
        Status::Failure,
        Status::NotRunning,
        Status::Usage,
        Status::NoWorker,
        Status::CantCreate,
        Status::TempFail,
        Status::NoPermission,
        Status::Config,
    ];

    /// The process exit status.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Failure => 1,
            Status::NotRunning => 3,
            Status::Usage => 64,
            Status::NoWorker => 69,
            Status::CantCreate => 73,
            Status::TempFail => 75,
            Status::NoPermission => 77,
            Status::Config => 78,
        }
    }

    /// The status with this code; a code hawkey never uses is a failure.
    pub(crate) fn from_code(code: u8) -> Status {
        Status::ALL
            .into_iter()
            .find(|s| s.code() == code)
            .unwrap_or(Status::Failure)
    }

    /// What the status means to an operator, as hawkey(1) says it.
    pub(crate) const fn meaning(self) -> &'static str {
        match self {
            Status::Ok => "stopped on request; command done",
            Status::Failure => {
                "runtime failure (cannot bind, cannot fork, …); a reload rolled back"
            }
            Status::NotRunning => "`hawkey status NAME`, `reload`, `stop`: not running",
            Status::Usage => "usage error",
            Status::NoWorker => "no worker could start",
            Status::CantCreate => {
                "pidfile or runtime directory unusable (e.g. a symlink at the pidfile path, a directory others can write, a full disk)"
            }
            Status::TempFail => {
                "another instance holds the pidfile lock; a reload is already in progress"
            }
            Status::NoPermission => "not permitted to control this master",
            Status::Config => "invalid configuration",
        }
    }
}

/// The table for `hawkey --help` (hawkey(1) renders [`Status::ALL`] itself).
pub(crate) fn help_table() -> String {
    let mut text = String::from("Exit status:\n");
    for status in Status::ALL {
        text.push_str(&format!("  {:>3}  {}\n", status.code(), status.meaning()));
    }
    text
}

impl From<Status> for std::process::ExitCode {
    fn from(status: Status) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct() {
        let mut codes: Vec<u8> = Status::ALL.iter().map(|s| s.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Status::ALL.len());
    }
}
