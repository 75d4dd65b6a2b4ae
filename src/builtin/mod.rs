//! The built-in demo HTTP app: what every worker runs when the config says `app: builtin`.
//!
//! It is deliberately written only against hawkey's public worker API, the same contract an
//! external app has: it is handed listening sockets that the master bound and every worker
//! inherited, reports readiness once it is accepting, and on the stop signal drains with
//! [`crate::worker::Drain`] (stops accepting, finishes the requests it already has, answers the
//! next request on each connection with `Connection: close`, closes connections idle for the
//! grace period) and exits. That makes it both a useful default and a
//! living example of a well-behaved worker.
//!
//! Each worker builds its own current-thread tokio runtime. hawkey runs one worker process
//! per core and all of them accept on the same sockets, so the kernel already spreads
//! connections across workers; a multi-threaded runtime inside each worker would only add
//! threads competing for the same cores. The runtime is created here, in the freshly exec'd
//! worker, and never before a fork.
//!
//! Routes (every response is `text/plain` and carries `x-hawkey-worker: {slot}`):
//!
//! - `GET /` → `hawkey worker {slot} pid {pid} generation {generation}`
//! - `GET /healthz` → `ok`
//! - `GET /delay/{ms}` → sleeps `ms` milliseconds (at most 30000), then answers; tests use it
//!   to show that in-flight requests complete during a graceful stop.
//!
//! Any other path is 404; any method but GET on these paths is 405.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::worker::{App, BoxError, Drain, Socket, Worker};

/// The built-in HTTP app as an [`App`], declared to send heartbeats: it
/// serves the inherited sockets with hyper, reports ready once accepting,
/// and drains on its stop signal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Builtin;

impl App for Builtin {
    const HEARTBEATS: bool = true;

    fn run(self, worker: Worker) -> Result<(), BoxError> {
        app(worker)
    }
}

/// The worker function for `app: builtin` (what `hawkey::main` runs in each builtin worker):
/// [`serve`] on the inherited sockets, [`Worker::ready`] once accepting, and a graceful stop
/// on SIGTERM, SIGINT, SIGQUIT or the configured `workers.stop_signal`
/// ([`Worker::stop_signal`]), unless that is one no process can catch (SIGKILL).
pub(crate) fn app(mut worker: Worker) -> Result<(), BoxError> {
    let sockets = worker
        .take_listeners()
        .into_iter()
        .map(|l| l.socket)
        .collect();
    let identity = Identity {
        slot: worker.slot(),
        generation: worker.generation(),
        pid: std::process::id(),
    };
    let mut notify_error = None;
    let mut signal_error = None;
    serve(
        sockets,
        identity,
        || {
            if let Err(err) = worker.ready() {
                tracing::error!(error = %err, "could not tell the master this worker is ready");
                notify_error = Some(err);
            }
        },
        || {
            // Should the handlers fail to install, stop at once rather than run a worker
            // that a stop signal would kill mid-request.
            let signals = stop_signals(worker.stop_signal())
                .map_err(|err| signal_error = Some(err))
                .ok();
            let interval = worker.heartbeat_interval();
            let worker = &worker;
            async move {
                let Some(signals) = signals else { return };
                // Heartbeats come from this runtime's own loop: if it stalls, they stop.
                let beat = async {
                    let Some(every) = interval else {
                        return std::future::pending::<()>().await;
                    };
                    let mut ticks = tokio::time::interval(every);
                    loop {
                        ticks.tick().await;
                        if let Err(err) = worker.heartbeat() {
                            tracing::warn!(error = %err, "could not send a heartbeat to the master");
                        }
                    }
                };
                tokio::select! {
                    _ = signals => {}
                    _ = beat => {}
                }
            }
        },
    )?;
    if let Some(err) = signal_error {
        return Err(format!("failed to install the stop-signal handlers: {err}").into());
    }
    if let Some(err) = notify_error {
        return Err(format!("failed to report readiness to the master: {err}").into());
    }
    Ok(())
}

/// Installs handlers for the stop signals (SIGTERM, SIGINT, SIGQUIT and `configured`); the
/// future resolves on the first one to arrive.
fn stop_signals(configured: Signal) -> io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut quit = signal(SignalKind::quit())?;
    // SIGKILL cannot be caught: then the master's signal ends the worker at once, as asked.
    let mut other = match configured {
        Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT | Signal::SIGKILL => None,
        other => Some(signal(SignalKind::from_raw(other as i32))?),
    };
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = quit.recv() => "SIGQUIT",
            _ = async { other.as_mut()?.recv().await }, if other.is_some() => {
                configured.as_str()
            }
        };
        tracing::info!(signal = name, "stop signal received");
    })
}

/// What the app says about itself in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) slot: usize,
    pub(crate) generation: u64,
    pub(crate) pid: u32,
}

/// The longest `/delay/{ms}` accepted, in milliseconds.
const MAX_DELAY_MS: u64 = 30_000;

/// How long the accept loop pauses after a failed accept (EMFILE, ECONNABORTED, ...), so a
/// persistent error does not turn into a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// How long a connection may take to deliver a request's headers, counted from when the
/// server starts waiting for them. So it also closes keep-alive connections idle this long,
/// and bounds how long a connection that never sends anything can hold up a graceful stop.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

const WORKER_HEADER: HeaderName = HeaderName::from_static("x-hawkey-worker");

/// Serves HTTP/1.1 on every socket until the stop future resolves, then stops accepting, lets
/// in-flight requests and their responses finish, and returns.
///
/// The stop is a [`Drain`]: a busy connection finishes its current request, whose response
/// says `connection: close`, and is then closed; so is one that sends a request within the
/// grace period ([`crate::worker::IDLE_GRACE`]); a connection idle that long (counted from its
/// last response or from the stop, whichever is later) is closed. So a keep-alive client that
/// does not retry loses nothing. Connections still waiting in the kernel's accept queue are
/// left there: the sockets are shared, so another worker (or this slot's successor) accepts
/// them.
///
/// `stop` is called once, inside the runtime, before readiness is reported, so it may create
/// things that need a runtime, such as `tokio::signal::unix::signal` ([`app`] installs its
/// signal handlers there).
///
/// The returned future is also polled once before `ready` is called, so a handler that is
/// installed lazily on first poll is in place before the master hears the worker is ready.
///
/// `ready` is called exactly once, right after the sockets are registered with the runtime
/// and just before the accept loop starts (the worker's readiness signal to the master). It
/// is called even if `stop` has already resolved by then, and not at all if `serve` fails
/// before it gets that far.
///
/// Errors come from building the runtime or registering a socket with it. Failed accepts are
/// logged and retried, never returned.
pub(crate) fn serve<F>(
    sockets: Vec<Socket>,
    identity: Identity,
    ready: impl FnOnce(),
    stop: impl FnOnce() -> F,
) -> io::Result<()>
where
    F: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(sockets, identity, ready, stop))
}

async fn run<F>(
    sockets: Vec<Socket>,
    identity: Identity,
    ready: impl FnOnce(),
    stop: impl FnOnce() -> F,
) -> io::Result<()>
where
    F: Future<Output = ()>,
{
    let listeners = sockets
        .into_iter()
        .map(Listener::from_std)
        .collect::<io::Result<Vec<_>>>()?;
    if listeners.is_empty() {
        tracing::warn!("the builtin app was given no sockets; it will only wait for stop");
    }

    let mut stop = pin!(stop());
    let stopped_early = poll_fn(|cx| Poll::Ready(stop.as_mut().poll(cx).is_ready())).await;

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connections = Connections::new();
    let drain = Drain::new()?;

    tracing::info!(
        hawkey_worker = identity.slot,
        generation = identity.generation,
        worker_pid = identity.pid,
        sockets = listeners.len(),
        "builtin app accepting"
    );
    ready();

    if !stopped_early {
        accept_until_stop(&listeners, identity, &builder, &drain, &connections, stop).await;
    }

    // Closing our copies of the sockets is what "stop accepting" means here: whatever is
    // still queued stays with the shared socket for the other workers.
    drop(listeners);
    drain.start();
    tracing::info!(
        connections = connections.count(),
        idle_grace = ?drain.idle_grace(),
        "stop requested; no longer accepting, draining connections"
    );
    connections.shutdown().await;
    tracing::info!("builtin app stopped");
    Ok(())
}

/// Accepts from every listener and serves each connection on its own task until `stop`
/// resolves.
async fn accept_until_stop<F>(
    listeners: &[Listener],
    identity: Identity,
    builder: &http1::Builder,
    drain: &Drain,
    connections: &Connections,
    mut stop: Pin<&mut F>,
) where
    F: Future<Output = ()>,
{
    let mut next = 0;
    loop {
        tokio::select! {
            biased;
            () = stop.as_mut() => return,
            accepted = accept_any(listeners, &mut next) => match accepted {
                Ok(Stream::Tcp(stream)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(error = %err, "could not set TCP_NODELAY");
                    }
                    spawn_connection(stream, identity, builder, drain, connections.watcher());
                }
                Ok(Stream::Unix(stream)) => {
                    spawn_connection(stream, identity, builder, drain, connections.watcher());
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; retrying in {ACCEPT_BACKOFF:?}");
                    tokio::select! {
                        biased;
                        () = stop.as_mut() => return,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
}

/// Resolves with the next connection (or accept error) from any listener. The listener to
/// try first rotates, so a busy socket cannot starve the others.
fn accept_any<'a>(
    listeners: &'a [Listener],
    next: &'a mut usize,
) -> impl Future<Output = io::Result<Stream>> + 'a {
    poll_fn(move |cx| {
        let count = listeners.len();
        for offset in 0..count {
            let index = (*next + offset) % count;
            if let Poll::Ready(accepted) = listeners[index].poll_accept(cx) {
                *next = (index + 1) % count;
                return Poll::Ready(accepted);
            }
        }
        Poll::Pending
    })
}

/// What one connection is doing, as its service sees it: whether a request is in flight,
/// and since when it has had none (its accept, or its last response).
struct Activity {
    busy: AtomicBool,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            busy: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
        }
    }

    fn begin(&self) {
        self.busy.store(true, Ordering::SeqCst);
    }

    fn end(&self) {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.busy.store(false, Ordering::SeqCst);
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves one connection on its own task. On `shutdown` it drains (see [`Drain`]): a
/// request in flight, or one that arrives within the grace period, is answered with
/// `connection: close`; a connection idle for the grace period is closed.
fn spawn_connection<I>(
    io: I,
    identity: Identity,
    builder: &http1::Builder,
    drain: &Drain,
    mut shutdown: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let (activity, drain) = (activity.clone(), drain.clone());
        service_fn(move |request| {
            let (activity, drain) = (activity.clone(), drain.clone());
            activity.begin();
            async move {
                let mut response = handle(request, identity).await?;
                // Draining: this answer is the connection's last, and says so; hyper
                // closes the connection once it is written.
                if drain.is_draining() {
                    response
                        .headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                }
                activity.end();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let drain = drain.clone();
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::spawn(async move {
        let mut connection = pin!(connection);
        let result = tokio::select! {
            result = connection.as_mut() => result,
            // A closed channel (`Err`) means the same as a signal: the server is going away.
            _ = shutdown.changed() => loop {
                // A request in flight is answered with `connection: close`, which ends the
                // connection: wait for that.
                if activity.is_busy() {
                    break connection.as_mut().await;
                }
                // Idle: closed only once idle for the grace period, so that a client
                // sending its next request right now gets an answer, not a reset.
                let close_at = drain
                    .close_idle_at(activity.idle_since())
                    .unwrap_or_else(Instant::now);
                if Instant::now() >= close_at {
                    connection.as_mut().graceful_shutdown();
                    break connection.as_mut().await;
                }
                tokio::select! {
                    result = connection.as_mut() => break result,
                    () = tokio::time::sleep_until(close_at.into()) => {}
                }
            },
        };
        // `shutdown` is dropped only here, once the connection is closed: that is what
        // `Connections::shutdown` waits for.
        drop(shutdown);
        if let Err(err) = result {
            tracing::debug!(error = %err, "connection ended with an error");
        }
    });
}

/// Every open connection holds a receiver of this channel. A send tells them all to drain;
/// the channel closes when the last of them is gone.
///
/// `hyper_util::server::graceful::GracefulShutdown` does the counting part of this, but it
/// calls `graceful_shutdown` on every connection the moment the stop comes, and hyper closes
/// an idle connection (one between requests, or whose first request it has not read yet) at
/// once: a keep-alive client sending its next request at that moment, or a client accepted
/// just before the stop, would go unanswered. Each connection here stays open until it has
/// been idle for the drain's grace period (see `spawn_connection` and [`Drain`]), which that
/// type has no place for.
struct Connections {
    signal: watch::Sender<()>,
}

impl Connections {
    fn new() -> Self {
        Self {
            signal: watch::channel(()).0,
        }
    }

    /// A receiver for one new connection; it has seen the current value, so only a later
    /// shutdown wakes it.
    fn watcher(&self) -> watch::Receiver<()> {
        self.signal.subscribe()
    }

    fn count(&self) -> usize {
        self.signal.receiver_count()
    }

    /// Tells every connection to drain and waits until all are closed.
    async fn shutdown(self) {
        self.signal.send_replace(());
        self.signal.closed().await;
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    fn from_std(socket: Socket) -> io::Result<Self> {
        match socket {
            Socket::Tcp(listener) => {
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener).map(Self::Tcp)
            }
            Socket::Unix(listener) => {
                listener.set_nonblocking(true)?;
                tokio::net::UnixListener::from_std(listener).map(Self::Unix)
            }
        }
    }

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<Stream>> {
        match self {
            Self::Tcp(listener) => listener
                .poll_accept(cx)
                .map_ok(|(stream, _)| Stream::Tcp(stream)),
            Self::Unix(listener) => listener
                .poll_accept(cx)
                .map_ok(|(stream, _)| Stream::Unix(stream)),
        }
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// A path this app knows, before the method is checked.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Index,
    Healthz,
    /// `/delay/{ms}`; `None` when `ms` is not a whole number up to [`MAX_DELAY_MS`].
    Delay(Option<u64>),
}

fn route(path: &str) -> Option<Route> {
    match path {
        "/" => Some(Route::Index),
        "/healthz" => Some(Route::Healthz),
        _ => path
            .strip_prefix("/delay/")
            .map(|ms| Route::Delay(parse_delay(ms))),
    }
}

fn parse_delay(ms: &str) -> Option<u64> {
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms.parse().ok().filter(|ms| *ms <= MAX_DELAY_MS)
}

async fn handle(
    request: Request<Incoming>,
    identity: Identity,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Identity {
        slot,
        generation,
        pid,
    } = identity;
    let (status, body) = match route(request.uri().path()) {
        None => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
        Some(_) if request.method() != Method::GET => {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".to_owned(),
                slot,
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return Ok(response);
        }
        Some(Route::Index) => (
            StatusCode::OK,
            format!("hawkey worker {slot} pid {pid} generation {generation}\n"),
        ),
        Some(Route::Healthz) => (StatusCode::OK, "ok\n".to_owned()),
        Some(Route::Delay(Some(ms))) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            (
                StatusCode::OK,
                format!("slept {ms}ms in worker {slot} pid {pid}\n"),
            )
        }
        Some(Route::Delay(None)) => (
            StatusCode::BAD_REQUEST,
            format!("delay must be a whole number of milliseconds, at most {MAX_DELAY_MS}\n"),
        ),
    };
    Ok(text(status, body, slot))
}

fn text(status: StatusCode, body: String, slot: usize) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(WORKER_HEADER, HeaderValue::from(slot));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, mpsc};
    use std::thread;
    use std::time::Instant;

    use tokio::sync::oneshot;

    /// The longest any single wait in these tests may take.
    const DEADLINE: Duration = Duration::from_secs(10);

    /// A `serve` running on its own thread, on a loopback TCP socket and a Unix socket.
    struct Server {
        identity: Identity,
        tcp: SocketAddr,
        unix: PathBuf,
        dir: PathBuf,
        ready_calls: Arc<AtomicUsize>,
        stop: Option<oneshot::Sender<()>>,
        returned: mpsc::Receiver<(io::Result<()>, Instant)>,
        thread: Option<thread::JoinHandle<()>>,
    }

    impl Server {
        fn start(slot: usize) -> Self {
            static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "hk-builtin-{}-{}",
                std::process::id(),
                NEXT_DIR.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();

            let tcp_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let tcp = tcp_listener.local_addr().unwrap();
            let unix = dir.join("http.sock");
            let unix_listener = UnixListener::bind(&unix).unwrap();

            let identity = Identity {
                slot,
                generation: 7,
                pid: std::process::id(),
            };
            let ready_calls = Arc::new(AtomicUsize::new(0));
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let (returned_tx, returned) = mpsc::channel();
            let calls = Arc::clone(&ready_calls);
            let thread = thread::spawn(move || {
                let result = serve(
                    vec![Socket::Tcp(tcp_listener), Socket::Unix(unix_listener)],
                    identity,
                    move || {
                        calls.fetch_add(1, Ordering::SeqCst);
                    },
                    move || async move {
                        let _ = stop_rx.await;
                    },
                );
                let _ = returned_tx.send((result, Instant::now()));
            });

            Self {
                identity,
                tcp,
                unix,
                dir,
                ready_calls,
                stop: Some(stop_tx),
                returned,
                thread: Some(thread),
            }
        }

        fn tcp(&self) -> TcpStream {
            let stream = TcpStream::connect_timeout(&self.tcp, DEADLINE).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            stream.set_write_timeout(Some(DEADLINE)).unwrap();
            stream
        }

        fn unix(&self) -> UnixStream {
            let stream = UnixStream::connect(&self.unix).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            stream.set_write_timeout(Some(DEADLINE)).unwrap();
            stream
        }

        fn ready_calls(&self) -> usize {
            self.ready_calls.load(Ordering::SeqCst)
        }

        fn trigger_stop(&mut self) {
            let _ = self.stop.take().expect("stop triggered twice").send(());
        }

        /// Waits (bounded) for `serve` to return, checks it returned `Ok`, and says when.
        fn wait_returned(&mut self) -> Instant {
            let (result, at) = self
                .returned
                .recv_timeout(DEADLINE)
                .expect("serve did not return in time");
            result.expect("serve failed");
            self.thread.take().unwrap().join().unwrap();
            at
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            // A failed test still stops its server; the thread is left to finish on its own.
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[derive(Debug)]
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn send(stream: &mut impl Write, method: &str, path: &str, close: bool) {
        let connection = if close { "close" } else { "keep-alive" };
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: {connection}\r\n\r\n"
        )
        .unwrap();
        stream.flush().unwrap();
    }

    /// Reads exactly one response (sized by content-length) and leaves the connection open.
    fn read_reply(stream: &mut dyn Read) -> Reply {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("malformed header");
            headers.push((name.to_owned(), value.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = reply
            .header("content-length")
            .expect("no content-length")
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        reply.body = String::from_utf8(body).unwrap();
        reply
    }

    fn request(mut stream: impl Read + Write, method: &str, path: &str) -> Reply {
        send(&mut stream, method, path, true);
        read_reply(&mut stream)
    }

    /// True once the peer has closed the connection (EOF or reset), within the read timeout.
    fn closed_by_server(stream: &mut dyn Read) -> bool {
        let mut byte = [0];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => err.kind() == io::ErrorKind::ConnectionReset,
        }
    }

    fn assert_text(reply: &Reply, status: u16, body: &str, slot: usize) {
        assert_eq!(reply.status, status, "{reply:?}");
        assert_eq!(reply.body, body, "{reply:?}");
        assert_eq!(
            reply.header("x-hawkey-worker"),
            Some(slot.to_string().as_str())
        );
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn serves_every_route_on_tcp_and_unix_sockets() {
        let mut server = Server::start(3);
        let Identity { slot, pid, .. } = server.identity;

        // Sent without waiting for readiness: the answer may only come after `ready`.
        let first = request(server.tcp(), "GET", "/");
        assert_eq!(
            server.ready_calls(),
            1,
            "ready must precede the first answer"
        );
        let index = format!("hawkey worker {slot} pid {pid} generation 7\n");
        assert_text(&first, 200, &index, slot);
        assert_text(&request(server.unix(), "GET", "/"), 200, &index, slot);

        for (path, status, body) in [
            ("/healthz", 200, "ok\n".to_owned()),
            ("/nope", 404, "not found\n".to_owned()),
            ("/healthz/", 404, "not found\n".to_owned()),
            ("/delay", 404, "not found\n".to_owned()),
            (
                "/delay/0",
                200,
                format!("slept 0ms in worker {slot} pid {pid}\n"),
            ),
            (
                "/delay/5",
                200,
                format!("slept 5ms in worker {slot} pid {pid}\n"),
            ),
        ] {
            assert_text(&request(server.tcp(), "GET", path), status, &body, slot);
            assert_text(&request(server.unix(), "GET", path), status, &body, slot);
        }

        for path in ["/delay/abc", "/delay/30001", "/delay/", "/delay/-1"] {
            let reply = request(server.tcp(), "GET", path);
            assert_eq!(reply.status, 400, "{path}: {reply:?}");
            assert_eq!(reply.header("x-hawkey-worker"), Some("3"));
        }

        for path in ["/", "/healthz", "/delay/10"] {
            let reply = request(server.unix(), "POST", path);
            assert_text(&reply, 405, "method not allowed\n", slot);
            assert_eq!(reply.header("allow"), Some("GET"));
        }
        assert_eq!(request(server.tcp(), "DELETE", "/nope").status, 404);

        server.trigger_stop();
        server.wait_returned();
        assert_eq!(server.ready_calls(), 1);
    }

    #[test]
    fn a_stop_finishes_in_flight_requests_answers_the_next_with_close_and_closes_idle_ones_after_the_grace()
     {
        let mut server = Server::start(5);
        let Identity { slot, pid, .. } = server.identity;

        // Idle keep-alive connections, one per socket kind.
        let mut idle_tcp = server.tcp();
        send(&mut idle_tcp, "GET", "/healthz", false);
        assert_eq!(read_reply(&mut idle_tcp).status, 200);
        let mut idle_unix = server.unix();
        send(&mut idle_unix, "GET", "/healthz", false);
        assert_eq!(read_reply(&mut idle_unix).status, 200);

        // In-flight requests, one per socket kind, on keep-alive connections.
        let sent = Instant::now();
        let mut busy_tcp = server.tcp();
        send(&mut busy_tcp, "GET", "/delay/300", false);
        let mut busy_unix = server.unix();
        send(&mut busy_unix, "GET", "/delay/300", false);

        // A listener's accept queue is first in, first out: once a later connection on the
        // same socket has been answered, the busy ones have been accepted too.
        assert_eq!(request(server.tcp(), "GET", "/healthz").status, 200);
        assert_eq!(request(server.unix(), "GET", "/healthz").status, 200);

        server.trigger_stop();
        let stopped = Instant::now();

        // The in-flight requests finish, say `connection: close`, and end their connections.
        let slept = format!("slept 300ms in worker {slot} pid {pid}\n");
        for busy in [&mut busy_tcp as &mut dyn Read, &mut busy_unix] {
            let reply = read_reply(busy);
            assert_text(&reply, 200, &slept, slot);
            assert_eq!(reply.header("connection"), Some("close"));
            assert!(
                closed_by_server(busy),
                "busy connection kept open after stop"
            );
        }

        // The drain has started (those answers said close), and the grace has not run out:
        // an idle connection's next request is answered, with `connection: close`.
        assert!(stopped.elapsed() < crate::worker::IDLE_GRACE);
        send(&mut idle_tcp, "GET", "/healthz", false);
        let reply = read_reply(&mut idle_tcp);
        assert_text(&reply, 200, "ok\n", slot);
        assert_eq!(reply.header("connection"), Some("close"));
        assert!(
            closed_by_server(&mut idle_tcp),
            "connection kept open after its last answer"
        );

        // A connection that stays idle is closed, but not before the grace has run out.
        assert!(
            closed_by_server(&mut idle_unix),
            "idle Unix connection left open"
        );
        assert!(
            stopped.elapsed() >= crate::worker::IDLE_GRACE,
            "an idle connection was closed {:?} after the stop, within the grace",
            stopped.elapsed()
        );

        let returned = server.wait_returned();
        assert!(
            returned >= sent + Duration::from_millis(300),
            "serve returned before the in-flight requests could have finished"
        );

        match TcpStream::connect_timeout(&server.tcp, DEADLINE) {
            Err(_) => {}
            Ok(mut stream) => {
                stream.set_read_timeout(Some(DEADLINE)).unwrap();
                assert!(closed_by_server(&mut stream), "TCP still served after stop");
            }
        }
        assert!(
            UnixStream::connect(&server.unix).is_err(),
            "Unix socket still accepting after stop"
        );
        assert_eq!(server.ready_calls(), 1);
    }

    #[test]
    fn stop_before_any_connection_still_reports_ready_once() {
        let mut server = Server::start(0);
        server.trigger_stop();
        server.wait_returned();
        assert_eq!(server.ready_calls(), 1);
        assert!(TcpStream::connect_timeout(&server.tcp, DEADLINE).is_err());
        assert!(UnixStream::connect(&server.unix).is_err());
    }

    #[test]
    fn delay_must_be_a_whole_number_of_milliseconds_up_to_the_limit() {
        assert_eq!(route("/delay/0"), Some(Route::Delay(Some(0))));
        assert_eq!(route("/delay/30000"), Some(Route::Delay(Some(30_000))));
        for bad in [
            "",
            "30001",
            "+5",
            "-5",
            "1.5",
            "5ms",
            "5/",
            "99999999999999999999999",
        ] {
            assert_eq!(
                route(&format!("/delay/{bad}")),
                Some(Route::Delay(None)),
                "{bad}"
            );
        }
        assert_eq!(route("/delay"), None);
        assert_eq!(route("/"), Some(Route::Index));
        assert_eq!(route("/healthz"), Some(Route::Healthz));
        assert_eq!(route("/HEALTHZ"), None);
    }
}
