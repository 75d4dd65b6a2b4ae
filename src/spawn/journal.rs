//! The workers' stdout and stderr in the journal: when the master's own
//! stderr is the journal stream, each worker connects a stream of its own
//! to journald (so journald credits its lines to the worker's pid). This
//! file prepares, before any fork, the address and the stream protocol's
//! header the child sends; the child's connect is in `child`.

use crate::config::AppKind;

use super::Inputs;

/// How a worker connects its stdout and stderr to journald: the address
/// and the stream header, made once per generation.
pub(super) struct JournalPlan {
    pub(super) addr: libc::sockaddr_un,
    pub(super) addr_len: libc::socklen_t,
    pub(super) header: Vec<u8>,
}

/// journald's stream socket (`systemd-journald.socket`).
const JOURNAL_STDOUT: &[u8] = b"/run/systemd/journal/stdout";

impl JournalPlan {
    /// `identifier` names the worker's lines (`SYSLOG_IDENTIFIER`).
    pub(super) fn new(identifier: &str) -> JournalPlan {
        // SAFETY: sockaddr_un is plain data; all zero is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in addr.sun_path.iter_mut().zip(JOURNAL_STDOUT) {
            *dst = *src as libc::c_char;
        }
        let addr_len = (std::mem::size_of::<libc::sa_family_t>() + JOURNAL_STDOUT.len() + 1)
            as libc::socklen_t;
        // The stream protocol's header: identifier, unit (empty: journald
        // finds it from the cgroup), priority 6 (info), level prefixes
        // ("<3>error") honoured, no forwarding to syslog, kmsg or console.
        let identifier: String = identifier.chars().filter(|c| !c.is_control()).collect();
        let header = format!("{identifier}\n\n6\n1\n0\n0\n0\n").into_bytes();
        JournalPlan {
            addr,
            addr_len,
            header,
        }
    }
}

/// `SYSLOG_IDENTIFIER` of the workers' journal lines: `hawkey-worker` for
/// builtin ones, the program's file name for exec ones.
pub(super) fn journal_identifier(inputs: &Inputs<'_>) -> String {
    let workers = &inputs.config.workers;
    if workers.app == AppKind::Builtin {
        return "hawkey-worker".to_string();
    }
    std::path::Path::new(&workers.command[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hawkey-worker".into())
}
