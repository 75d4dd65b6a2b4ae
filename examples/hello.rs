//! A program that embeds hawkey: the same binary is the master (with
//! hawkey's whole command line) and, re-executed by it, every worker.
//!
//! ```sh
//! cargo run --example hello -- run -c hawkey.yaml
//! curl http://127.0.0.1:8080/
//! ```
//!
//! The worker is a small blocking HTTP/1.1 server with keep-alive, one
//! thread per connection, that drains on its stop signal with
//! [`hawkey::worker::Drain`]: it stops accepting, finishes the requests in
//! flight, answers the next request on each connection with
//! `Connection: close`, and closes a connection only once it has been idle
//! for the drain's grace period. So a reload loses no request of a
//! keep-alive client (`tests/keepalive.rs`). It answers every GET with
//! `hello from worker <slot>`; requests with a body are not supported.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hawkey::worker::{BoxError, Drain, Socket, Worker};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// How long an idle keep-alive connection stays open when not draining.
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// The longest request head read.
const MAX_HEAD: usize = 8192;

fn app(mut worker: Worker) -> Result<(), BoxError> {
    let slot = worker.slot();
    let Some(listener) = worker.take_listeners().into_iter().next() else {
        return Err("no listening socket was passed".into());
    };
    let Socket::Tcp(listener) = listener.socket else {
        return Err("this example serves TCP only".into());
    };
    // The stop signal arrives on a signalfd that the accept loop waits on.
    // It is blocked first, before any thread exists, so that every thread
    // inherits the mask and none is ended by the signal's default action.
    let mut mask = SigSet::empty();
    mask.add(worker.stop_signal());
    mask.thread_block()?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
    // Non-blocking: every worker waits on this same socket, and only one
    // wins each connection.
    listener.set_nonblocking(true)?;
    let drain = Drain::new()?;

    // Accepting from here on: tell the master.
    worker.ready()?;
    let mut connections = Vec::new();
    while accept_one(&listener, &signals)? {
        if let Some(stream) = next_connection(&listener) {
            let drain = drain.clone();
            connections.push(std::thread::spawn(move || {
                let _ = serve(stream, &drain, slot);
            }));
        }
        connections.retain(|c: &std::thread::JoinHandle<()>| !c.is_finished());
    }
    // Stop accepting: what is still queued stays with the shared socket
    // for the other workers. Then drain what this worker holds.
    drop(listener);
    drain.start();
    for connection in connections {
        let _ = connection.join();
    }
    Ok(())
}

/// Waits until the listener has a connection (true) or the stop signal
/// came (false).
fn accept_one(listener: &TcpListener, signals: &SignalFd) -> io::Result<bool> {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
            Ok(_) => {}
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[1]) {
            return Ok(false);
        }
        if ready(&fds[0]) {
            return Ok(true);
        }
    }
}

/// The connection another worker did not take first, if any.
fn next_connection(listener: &TcpListener) -> Option<TcpStream> {
    match listener.accept() {
        Ok((stream, _)) => {
            let _ = stream.set_nodelay(true);
            stream.set_nonblocking(false).ok().map(|()| stream)
        }
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => None,
        Err(err) => {
            eprintln!("accept failed: {err}");
            None
        }
    }
}

/// Serves one keep-alive connection until the client closes it, it stays
/// idle past [`KEEP_ALIVE`], or the drain ends it.
fn serve(mut stream: TcpStream, drain: &Drain, slot: usize) -> io::Result<()> {
    let mut buffer = Vec::new();
    let mut idle_since = Instant::now();
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buffer, drain, idle_since)? else {
            return Ok(());
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        buffer.drain(..head_end);
        // Draining, this answer is the connection's last, and says so.
        let close = drain.is_draining()
            || head.contains("\r\nconnection: close")
            || head.lines().next().is_some_and(|l| l.ends_with("http/1.0"));
        let body = format!("hello from worker {slot}\n");
        // One write: a response in pieces would wait on Nagle's algorithm.
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n{body}",
            body.len(),
            if close { "close" } else { "keep-alive" },
        );
        stream.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
        idle_since = Instant::now();
    }
}

/// Reads until `buffer` holds a whole request head; its length, or `None`
/// when the connection is to close: the client closed it, or it has been
/// idle too long (past [`KEEP_ALIVE`], or, draining, past the drain's grace).
fn read_head(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    drain: &Drain,
    idle_since: Instant,
) -> io::Result<Option<usize>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(end + 4));
        }
        if buffer.len() > MAX_HEAD {
            return Ok(None);
        }
        // Wait for bytes, for the drain to start, or for the deadline: the
        // keep-alive timeout, or the drain's (only while nothing of a next
        // request has arrived: a request begun is answered).
        let draining = drain.is_draining();
        let deadline = match drain.close_idle_at(idle_since) {
            Some(at) if buffer.is_empty() => at,
            _ => idle_since + KEEP_ALIVE,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let timeout =
            PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
        // The drain's fd stays readable once it has started: wait on it
        // only until then.
        if !draining {
            fds.push(PollFd::new(drain.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
            Ok(_) => {}
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(None);
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        // Otherwise the drain started or a deadline passed: look again.
    }
}

fn main() -> std::process::ExitCode {
    hawkey::main(app)
}
