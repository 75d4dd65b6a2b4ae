//! Each worker's tail file: the last line it wrote to stderr, kept by
//! hawkey's preload library in the worker, read by the master when the
//! worker ends before it was ready, to say why in the worker's own words.
//!
//! The master stays off the output path: a worker's stdout and stderr go
//! straight to its own journal stream (attributed to its `_PID`) or to the
//! master's stderr, as before; only the last line is copied, by the worker
//! itself, into this file.

use std::path::{Path, PathBuf};

use nix::unistd::Uid;

/// `$NOTIFY_SOCKET.err`: a regular file, mode 0600 and owned by the
/// worker's uid, in the master's directory (so only the master can
/// replace it), made empty before the worker starts. hawkey's preload
/// library in the worker keeps there the last line the process wrote to
/// fd 2, at most [`MAX`] − 1 bytes, NUL-padded, one `pwrite` at
/// offset 0. The master reads it when a worker ends before it was ready,
/// to say why in the worker's own words, while the output itself goes
/// straight from the worker to its journal stream (or stderr), never
/// through the master.
pub(crate) const SUFFIX: &str = ".err";

/// The most bytes of a tail file read.
pub(crate) const MAX: usize = 256;

/// The last line a tail file holds (empty, missing or unreadable: `None`).
pub(super) fn read(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let mut raw = [0u8; MAX];
    let n = file.read(&mut raw).ok()?;
    text(&raw[..n])
}

/// A tail file's text: up to the first NUL, without the line end, lossy
/// UTF-8; `None` if nothing is left.
fn text(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let text = String::from_utf8_lossy(&raw[..end]);
    let text = text.trim_end_matches(['\n', '\r']);
    (!text.trim().is_empty()).then(|| text.to_string())
}

/// Makes the empty tail file beside the channel at `socket` (see
/// the module doc), owned by `owner` like the socket. A failure only
/// costs the worker's last words: `None`.
pub(super) fn create(socket: &Path, owner: Option<Uid>) -> Option<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut path = socket.as_os_str().to_owned();
    path.push(SUFFIX);
    let path = PathBuf::from(path);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .ok()?;
    if let Some(uid) = owner.filter(|u| *u != Uid::effective())
        && nix::unistd::fchown(&file, Some(uid), None).is_err()
    {
        let _ = std::fs::remove_file(&path);
        return None;
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_text_is_the_line_up_to_its_nul_without_its_end() {
        assert_eq!(text(b"boom\r\n\0\0junk").as_deref(), Some("boom"));
        assert_eq!(text(b"no nul at all").as_deref(), Some("no nul at all"));
        assert_eq!(text(b"\0\0\0"), None);
        assert_eq!(text(b"  \n\0"), None);
        assert_eq!(text(b""), None);
        assert_eq!(
            text(b"caf\xc3\xa9 \xff").as_deref(),
            Some("caf\u{e9} \u{fffd}")
        );
    }
}
