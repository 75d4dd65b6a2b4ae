//! The worker's last words: the last line the process wrote to its
//! stderr, kept in the tail file the master made beside the worker's
//! notify socket (`$NOTIFY_SOCKET.err`, see the master's `tail.rs`), so
//! that a worker which dies before it is ready can be reported with what
//! it said, while its output itself still goes straight from the worker
//! to its journal stream or terminal, never through the master.
//!
//! Interposed: `write(2)` and `writev(2)` on fd 2 (Python's, Node's
//! `console.error`, Rust's and the shell's stderr; fd 1 too when it was the
//! same file as fd 2 at load, as under the journal, for a shell's `>&2`),
//! and `fwrite(3)` and `fputs(3)` on the stream of such an fd. Not seen:
//! what glibc writes itself (`printf`-family, `perror`, `error`), a static
//! program's output. The real call runs first and its result is
//! returned unchanged; only then is the tail updated, with one `pwrite`
//! of a fixed 256-byte record at offset 0 (the line, at most 255 bytes,
//! NUL-padded): no allocation, no lock, safe after `fork` and in signal
//! handlers. glibc's own internal writes (`printf` to stderr) are not
//! seen: only what passes through these four entry points.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use libc::{FILE, iovec, size_t, ssize_t};

use super::{KeepErrno, Real};

/// The record the master reads: the line, NUL-padded (the master's
/// `tail::MAX`).
const RECORD: usize = 256;

/// How much of one write is looked at for its last line: the end of it.
const LOOK_BACK: usize = 4096;

/// The tail file, opened by the constructor; -1: none (no channel, an
/// abstract socket, or no file beside it).
static TAIL: AtomicI32 = AtomicI32::new(-1);

/// The highest fd whose writes count as stderr's: 2, or 1 when stdout
/// was the same file as stderr at load (hawkey gives both the worker's
/// one journal stream; a shell's `echo ... >&2` writes to its fd 1 made a
/// copy of fd 2, and that is where a shell script says why it fails).
static UP_TO: AtomicI32 = AtomicI32::new(2);

/// Whether a write to `fd` counts as stderr's.
fn counts(fd: c_int) -> bool {
    fd == 2 || (fd == 1 && UP_TO.load(Ordering::Relaxed) == 1)
}

/// The device and inode of `fd`.
fn identity(fd: c_int) -> Option<(u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` into the buffer it is given.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so it initialised the buffer.
    let st = unsafe { st.assume_init() };
    Some((st.st_dev, st.st_ino))
}

pub(super) static REAL_WRITE: Real = Real::new(c"write");
pub(super) static REAL_WRITEV: Real = Real::new(c"writev");
pub(super) static REAL_FWRITE: Real = Real::new(c"fwrite");
pub(super) static REAL_FPUTS: Real = Real::new(c"fputs");

/// Opens `$NOTIFY_SOCKET.err` for writing, if the master made it. Called
/// once, by the constructor, with the socket's path as given.
pub(super) fn open(notify: &[u8]) {
    const SUFFIX: &[u8] = b".err";
    if notify.is_empty() || notify[0] == b'@' {
        return;
    }
    let mut path = [0u8; 128];
    if notify.len() + SUFFIX.len() >= path.len() {
        return;
    }
    path[..notify.len()].copy_from_slice(notify);
    path[notify.len()..notify.len() + SUFFIX.len()].copy_from_slice(SUFFIX);
    let _errno = KeepErrno::new();
    // SAFETY: `path` is NUL-terminated (zeroed past the copied bytes). No
    // O_CREAT: only the file the master made (mode 0600, the worker's
    // uid) is written; O_NOFOLLOW: never through a link; O_CLOEXEC: a
    // program this one execs opens its own in its constructor.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast::<c_char>(),
            libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
        )
    };
    if fd >= 0 {
        TAIL.store(fd, Ordering::Relaxed);
        if identity(1).is_some() && identity(1) == identity(2) {
            UP_TO.store(1, Ordering::Relaxed);
        }
    }
}

/// The line being written and the last whole one: programs write a line
/// in pieces (Python's traceback: the error's name, `": "`, its text,
/// the line end, each a `write`).
struct Lines {
    /// Since the last line end, at most `RECORD - 1` bytes kept.
    current: [u8; RECORD],
    current_len: usize,
    /// The last whole line that was not blank.
    last: [u8; RECORD],
    last_len: usize,
}

/// [`Lines`], for whoever holds [`BUSY`].
struct Shared(UnsafeCell<Lines>);

// SAFETY: only the thread that set BUSY (a try-lock that never waits)
// touches the lines, until it clears BUSY.
unsafe impl Sync for Shared {}

static LINES: Shared = Shared(UnsafeCell::new(Lines {
    current: [0; RECORD],
    current_len: 0,
    last: [0; RECORD],
    last_len: 0,
}));

/// Held while a write's bytes are added to [`LINES`]. Never waited for: a
/// writer that finds it taken (another thread writing stderr at the same
/// moment) leaves the tail as it is. Cleared in a forked child, in case
/// the fork came while another thread held it.
static BUSY: AtomicBool = AtomicBool::new(false);

/// In a forked child: no other thread of it holds [`BUSY`].
pub(super) extern "C" fn after_fork() {
    BUSY.store(false, Ordering::Relaxed);
}

fn blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

impl Lines {
    /// Adds what was just written; returns the record: the line being
    /// written if it says something, else the last whole line.
    fn add(&mut self, bytes: &[u8]) -> &[u8] {
        let bytes = &bytes[bytes.len().saturating_sub(LOOK_BACK)..];
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let (text, ends) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let room = RECORD - 1 - self.current_len;
            let n = text.len().min(room);
            self.current[self.current_len..self.current_len + n].copy_from_slice(&text[..n]);
            self.current_len += n;
            if ends {
                if !blank(&self.current[..self.current_len]) {
                    self.last = self.current;
                    self.last_len = self.current_len;
                }
                self.current_len = 0;
            }
        }
        if blank(&self.current[..self.current_len]) {
            &self.last[..self.last_len]
        } else {
            &self.current[..self.current_len]
        }
    }
}

/// Adds `bytes` (what the process just wrote to its stderr) to the lines
/// and keeps the record in the tail file.
fn keep(bytes: &[u8]) {
    let fd = TAIL.load(Ordering::Relaxed);
    if fd < 0 || bytes.is_empty() || BUSY.swap(true, Ordering::Acquire) {
        return;
    }
    // SAFETY: BUSY is ours until the store below (see `Shared`).
    let lines = unsafe { &mut *LINES.0.get() };
    let line = lines.add(bytes);
    let mut record = [0u8; RECORD];
    let n = line.len().min(RECORD - 1);
    record[..n].copy_from_slice(&line[..n]);
    BUSY.store(false, Ordering::Release);
    if n == 0 {
        return;
    }
    let _errno = KeepErrno::new();
    // SAFETY: a write of a stack buffer of RECORD bytes to our own fd.
    unsafe { libc::pwrite(fd, record.as_ptr().cast(), RECORD, 0) };
}

/// The bytes `(buf, len)` of a write that wrote `written` of them.
///
/// # Safety
/// `buf` points to `len` readable bytes, as the write's caller vouched.
unsafe fn written<'a>(buf: *const c_void, len: usize, written: isize) -> &'a [u8] {
    let n = usize::try_from(written).unwrap_or(0).min(len);
    if buf.is_null() || n == 0 {
        return &[];
    }
    // SAFETY: the caller's contract; `n` ≤ `len`.
    unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) }
}

/// Whether `stream` writes to fd 2.
///
/// # Safety
/// `stream` is a valid `FILE` (the caller of `fwrite`/`fputs` vouched).
unsafe fn is_stderr(stream: *mut FILE) -> bool {
    if stream.is_null() || TAIL.load(Ordering::Relaxed) < 0 {
        return false;
    }
    let _errno = KeepErrno::new();
    // SAFETY: as above; glibc's fileno only reads the stream's fd (no lock).
    counts(unsafe { libc::fileno(stream) })
}

/// `write(2)`: on stderr's fd ([`counts`]), the last line is kept after
/// the write.
///
/// # Safety
/// As `write(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let rc = real_write(fd, buf, count);
    if rc > 0 && counts(fd) {
        // SAFETY: the caller's buffer of `count` bytes, `rc` of them written.
        keep(unsafe { written(buf, count, rc) });
    }
    rc
}

fn real_write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    call_real!(
        REAL_WRITE,
        unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t,
        fd,
        buf,
        count
    )
}

/// `writev(2)`: on fd 2, each written buffer in turn is added to the
/// lines after the write.
///
/// # Safety
/// As `writev(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    let rc = real_writev(fd, iov, count);
    if rc > 0 && counts(fd) && !iov.is_null() && count > 0 {
        // SAFETY: the caller's array of `count` iovecs.
        let vecs = unsafe { std::slice::from_raw_parts(iov, count as usize) };
        // The buffers the write reached, in order; the last line is in
        // the last of them that has one.
        let mut left = rc as usize;
        for v in vecs {
            if left == 0 {
                break;
            }
            let n = v.iov_len.min(left);
            // SAFETY: each iovec names `iov_len` readable bytes.
            keep(unsafe { written(v.iov_base, v.iov_len, n as isize) });
            left -= n;
        }
    }
    rc
}

fn real_writev(fd: c_int, iov: *const iovec, count: c_int) -> ssize_t {
    call_real!(
        REAL_WRITEV,
        unsafe extern "C" fn(c_int, *const iovec, c_int) -> ssize_t,
        fd,
        iov,
        count
    )
}

/// `fwrite(3)`: on the stream of fd 2, the last line is kept after it.
///
/// # Safety
/// As `fwrite(3)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fwrite(
    ptr: *const c_void,
    size: size_t,
    n: size_t,
    stream: *mut FILE,
) -> size_t {
    let addr = REAL_FWRITE.resolve();
    if addr == 0 {
        return 0;
    }
    type Fwrite = unsafe extern "C" fn(*const c_void, size_t, size_t, *mut FILE) -> size_t;
    // SAFETY: libc's own fwrite, whose prototype `Fwrite` spells out.
    let real: Fwrite = unsafe { std::mem::transmute::<usize, Fwrite>(addr) };
    // SAFETY: the caller's arguments, passed on unchanged.
    let items = unsafe { real(ptr, size, n, stream) };
    // SAFETY: the caller vouched for `stream`.
    if items > 0 && unsafe { is_stderr(stream) } {
        let len = size.saturating_mul(items);
        // SAFETY: `items` items of `size` bytes were read from `ptr`.
        keep(unsafe { written(ptr, len, len as isize) });
    }
    items
}

/// `fputs(3)`: on the stream of fd 2, the last line is kept after it.
///
/// # Safety
/// As `fputs(3)`: `s` is NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fputs(s: *const c_char, stream: *mut FILE) -> c_int {
    let rc = call_real!(
        REAL_FPUTS,
        unsafe extern "C" fn(*const c_char, *mut FILE) -> c_int,
        s,
        stream
    );
    // SAFETY: the caller vouched for `stream` and for `s`'s NUL.
    if rc >= 0 && !s.is_null() && unsafe { is_stderr(stream) } {
        // SAFETY: as above.
        keep(unsafe { std::ffi::CStr::from_ptr(s) }.to_bytes());
    }
    rc
}

#[cfg(test)]
mod tests {
    use super::{Lines, RECORD};

    fn lines() -> Lines {
        Lines {
            current: [0; RECORD],
            current_len: 0,
            last: [0; RECORD],
            last_len: 0,
        }
    }

    #[test]
    fn a_line_written_in_pieces_is_one_line() {
        let mut l = lines();
        assert_eq!(l.add(b"Traceback\n  File x\n"), b"  File x");
        assert_eq!(l.add(b"ModuleNotFoundError"), b"ModuleNotFoundError");
        l.add(b": ");
        assert_eq!(
            l.add(b"No module named 'x'"),
            b"ModuleNotFoundError: No module named 'x'"
        );
        assert_eq!(l.add(b"\n"), b"ModuleNotFoundError: No module named 'x'");
        assert_eq!(
            l.add(b"\r\n  \n"),
            b"ModuleNotFoundError: No module named 'x'"
        );
    }

    #[test]
    fn a_long_line_is_cut_to_the_record() {
        let mut l = lines();
        let long = vec![b'a'; 1000];
        assert_eq!(l.add(&long).len(), RECORD - 1);
        assert_eq!(l.add(b"\nshort\n"), b"short");
    }
}
