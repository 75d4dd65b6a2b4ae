//! `loadgen`: the HTTP load generator of `bench/run.sh`. Not part of hawkey.
//!
//! THREADS blocking client threads send `GET PATH HTTP/1.1` to
//! 127.0.0.1:PORT for WARMUP seconds (not counted) and then DURATION seconds
//! (counted), or until MAX_REQUESTS counted requests have been started;
//! with `--ramp R` the threads start one by one over the first R seconds.
//! `--mode keepalive` keeps one connection per thread (re-opened after an
//! error, or after a response that says `Connection: close`, as HTTP/1.1
//! requires); `--mode close` opens a new connection per request, sends
//! `Connection: close` and reads to end of file, so the server closes first
//! and the TIME_WAIT state stays on its side.
//!
//! Counted exactly, over the counted window only:
//! - `ok`: a complete 2xx response (sized by `Content-Length`, or by end of
//!   file without one);
//! - `connect_errors`: `connect(2)` failed (refused, or no socket);
//! - `failed`: connected but no complete 2xx response (reset, timeout,
//!   early close, another status).
//!
//! A request counts in the window in which it completes. Latency is from
//! the start of the request (including `connect` in close mode) to its last
//! response byte; every sample is kept and sorted, so percentiles are
//! exact. `buckets` are completions per 100 ms of the window, and
//! `start_unix_us` is the window's start on the wall clock, to line the
//! buckets up with events outside (reloads). `slots` tallies the responses
//! per worker, parsed from bodies starting `hawkey worker <slot>` or
//! `node worker <slot>`.
//!
//! ```sh
//! loadgen --port 8080 --threads 4 --warmup 1 --duration 3 --mode close --path /
//! ```
//!
//! Output: one JSON line on stdout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BUCKET: Duration = Duration::from_millis(100);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_SLOTS: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeepAlive,
    Close,
}

struct Options {
    port: u16,
    threads: usize,
    warmup: Duration,
    ramp: Duration,
    duration: Duration,
    max_requests: u64,
    mode: Mode,
    path: String,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        port: 8080,
        threads: 4,
        warmup: Duration::ZERO,
        ramp: Duration::ZERO,
        duration: Duration::from_secs(3),
        max_requests: u64::MAX,
        mode: Mode::KeepAlive,
        path: "/".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {value:?}");
        let secs = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("bad value for {flag}: {v:?}"))
        };
        match flag.as_str() {
            "--port" => o.port = value.parse().map_err(bad)?,
            "--threads" => o.threads = value.parse().map_err(bad)?,
            "--warmup" => o.warmup = secs(&value)?,
            "--ramp" => o.ramp = secs(&value)?,
            "--duration" => o.duration = secs(&value)?,
            "--max-requests" => o.max_requests = value.parse().map_err(bad)?,
            "--mode" => {
                o.mode = match value.as_str() {
                    "keepalive" => Mode::KeepAlive,
                    "close" => Mode::Close,
                    _ => return Err(format!("--mode is keepalive or close, not {value:?}")),
                }
            }
            "--path" => o.path = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if o.ramp > o.warmup {
        return Err("--ramp must not be longer than --warmup".into());
    }
    Ok(o)
}

/// What one thread saw in the counted window.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    connect_errors: u64,
    latencies_us: Vec<u32>,
    buckets: Vec<u64>,
    slots: Vec<u64>,
    unattributed: u64,
}

enum Outcome {
    /// Complete response: 2xx or not, and the worker slot named in the body.
    /// `close`: the response said `Connection: close`, so the connection
    /// is not used again (as an HTTP/1.1 client must not).
    Done {
        ok: bool,
        slot: Option<usize>,
        close: bool,
    },
    /// Connected, but the exchange broke.
    Broken,
}

/// One client: its connection, buffer and request bytes, reused.
struct Client {
    addr: SocketAddr,
    mode: Mode,
    request: Vec<u8>,
    buf: Vec<u8>,
    stream: Option<TcpStream>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `Content-Length` from a response head, if present.
fn content_length(head: &[u8]) -> Option<usize> {
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            return std::str::from_utf8(&line[15..]).ok()?.trim().parse().ok();
        }
    }
    None
}

/// The slot of "hawkey worker <n> ..." or "node worker <n> ...".
fn slot_of(body: &[u8]) -> Option<usize> {
    let rest = body
        .strip_prefix(b"hawkey worker ")
        .or_else(|| body.strip_prefix(b"node worker "))?;
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

impl Client {
    fn connect(&self) -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect(self.addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(stream)
    }

    /// One request; `Err` only when connecting failed.
    fn request(&mut self) -> Result<Outcome, ()> {
        let mut stream = match self.stream.take() {
            Some(s) => s,
            None => self.connect().map_err(|_| ())?,
        };
        let outcome = exchange(&mut stream, &self.request, &mut self.buf, self.mode);
        if self.mode == Mode::KeepAlive && matches!(outcome, Outcome::Done { close: false, .. }) {
            self.stream = Some(stream);
        }
        Ok(outcome)
    }
}

/// Writes the request and reads one whole response into `buf`.
fn exchange(stream: &mut TcpStream, request: &[u8], buf: &mut Vec<u8>, mode: Mode) -> Outcome {
    if stream.write_all(request).is_err() {
        return Outcome::Broken;
    }
    let mut filled = 0;
    let mut head_end = None;
    let mut wanted = None;
    loop {
        if buf.len() < filled + 4096 {
            buf.resize(filled + 4096, 0);
        }
        let n = match stream.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Outcome::Broken,
        };
        if n == 0 {
            // End of file: complete only for a body without a length.
            return match (head_end, wanted) {
                (Some(h), None) => outcome(&buf[..filled], h),
                _ => Outcome::Broken,
            };
        }
        filled += n;
        if head_end.is_none() {
            if let Some(at) = find(&buf[..filled], b"\r\n\r\n") {
                head_end = Some(at + 4);
                wanted = content_length(&buf[..at]).map(|len| at + 4 + len);
            } else if filled > 64 * 1024 {
                return Outcome::Broken;
            }
        }
        if let (Some(h), Some(total)) = (head_end, wanted)
            && filled >= total
        {
            let result = outcome(&buf[..total], h);
            if mode == Mode::Close {
                // Let the server close first; the reply is already complete.
                let mut sink = [0u8; 256];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            }
            return result;
        }
    }
}

/// A complete response: its status class and the slot its body names.
fn outcome(response: &[u8], head_end: usize) -> Outcome {
    let head = &response[..head_end];
    let status = head
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let close = head
        .split(|b| *b == b'\n')
        .any(|line| line.to_ascii_lowercase().starts_with(b"connection: close"));
    Outcome::Done {
        ok: head.starts_with(b"HTTP/1.") && status.is_some_and(|s| (200..300).contains(&s)),
        slot: slot_of(&response[head_end..]),
        close,
    }
}

fn run_thread(
    options: Arc<Options>,
    first_at: Instant,
    measure_from: Instant,
    end: Instant,
    started_requests: Arc<AtomicU64>,
) -> Tally {
    let connection = if options.mode == Mode::Close {
        "Connection: close\r\n"
    } else {
        ""
    };
    let mut client = Client {
        addr: SocketAddr::from(([127, 0, 0, 1], options.port)),
        mode: options.mode,
        request: format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{connection}\r\n",
            options.path, options.port
        )
        .into_bytes(),
        buf: Vec::with_capacity(8192),
        stream: None,
    };
    let buckets = options.duration.as_micros().div_ceil(BUCKET.as_micros()) as usize;
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 16),
        buckets: vec![0; buckets.max(1)],
        ..Tally::default()
    };
    if let Some(wait) = first_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    loop {
        let begun = Instant::now();
        if begun >= end {
            break;
        }
        let counted = begun >= measure_from;
        if counted && started_requests.fetch_add(1, Ordering::Relaxed) >= options.max_requests {
            break;
        }
        let result = client.request();
        let done = Instant::now();
        if !counted || done > end {
            continue;
        }
        match result {
            Err(()) => {
                tally.connect_errors += 1;
                // Do not spin on a refused port.
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(Outcome::Broken) => tally.failed += 1,
            Ok(Outcome::Done { ok, slot, .. }) => {
                if !ok {
                    tally.failed += 1;
                    continue;
                }
                tally.ok += 1;
                let us = done.duration_since(begun).as_micros().min(u32::MAX as u128) as u32;
                tally.latencies_us.push(us);
                let b =
                    (done.duration_since(measure_from).as_micros() / BUCKET.as_micros()) as usize;
                if let Some(count) = tally.buckets.get_mut(b) {
                    *count += 1;
                }
                match slot {
                    Some(s) if s < MAX_SLOTS => {
                        if tally.slots.len() <= s {
                            tally.slots.resize(s + 1, 0);
                        }
                        tally.slots[s] += 1;
                    }
                    _ => tally.unattributed += 1,
                }
            }
        }
    }
    tally
}

impl Tally {
    /// Adds one client thread's tally to this one.
    fn add(&mut self, t: &Tally) {
        self.ok += t.ok;
        self.failed += t.failed;
        self.connect_errors += t.connect_errors;
        self.unattributed += t.unattributed;
        self.latencies_us.extend_from_slice(&t.latencies_us);
        if self.buckets.len() < t.buckets.len() {
            self.buckets.resize(t.buckets.len(), 0);
        }
        for (i, b) in t.buckets.iter().enumerate() {
            self.buckets[i] += b;
        }
        if self.slots.len() < t.slots.len() {
            self.slots.resize(t.slots.len(), 0);
        }
        for (i, s) in t.slots.iter().enumerate() {
            self.slots[i] += s;
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> std::process::ExitCode {
    let options = match parse_args() {
        Ok(o) => Arc::new(o),
        Err(message) => {
            eprintln!("loadgen: {message}");
            eprintln!(
                "usage: loadgen [--port P] [--threads T] [--warmup S] [--ramp S] [--duration S] [--max-requests N] [--mode keepalive|close] [--path /]"
            );
            return std::process::ExitCode::from(64);
        }
    };
    let start = Instant::now();
    let measure_from = start + options.warmup;
    let end = measure_from + options.duration;
    let started_requests = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..options.threads)
        .map(|i| {
            let options = options.clone();
            let started_requests = started_requests.clone();
            // --ramp: thread i opens its first connection i/THREADS of the
            // way into the ramp, so connections arrive one by one under load
            // rather than as one burst that the first worker to wake up
            // would accept entirely.
            let first_at = start + options.ramp.mul_f64(i as f64 / options.threads as f64);
            std::thread::spawn(move || {
                run_thread(options, first_at, measure_from, end, started_requests)
            })
        })
        .collect();
    // The wall-clock time of `measure_from`, for lining buckets up with events.
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let since_start = Instant::now().duration_since(start);
    let start_unix_us = (now_unix.as_micros() as i128) - (since_start.as_micros() as i128)
        + options.warmup.as_micros() as i128;

    let mut total = Tally::default();
    for handle in handles {
        total.add(&handle.join().expect("a client thread panicked"));
    }
    // Stopped early by --max-requests: the window is what was used.
    let window = Instant::now()
        .min(end)
        .saturating_duration_since(measure_from);
    let window_s = window.as_secs_f64().max(1e-9);
    total.latencies_us.sort_unstable();
    let lat = &total.latencies_us;
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| v as f64).sum::<f64>() / lat.len() as f64
    };
    let slots: serde_json::Map<String, serde_json::Value> = total
        .slots
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| (i.to_string(), serde_json::Value::from(*n)))
        .collect();
    let line = serde_json::json!({
        "mode": if options.mode == Mode::Close { "close" } else { "keepalive" },
        "port": options.port,
        "path": options.path,
        "threads": options.threads,
        "warmup_s": options.warmup.as_secs_f64(),
        "window_s": window_s,
        "start_unix_us": start_unix_us,
        "ok": total.ok,
        "failed": total.failed,
        "connect_errors": total.connect_errors,
        "rps": total.ok as f64 / window_s,
        "mean_us": mean.round(),
        "p50_us": percentile(lat, 50.0),
        "p90_us": percentile(lat, 90.0),
        "p99_us": percentile(lat, 99.0),
        "p999_us": percentile(lat, 99.9),
        "max_us": lat.last().copied().unwrap_or(0),
        "bucket_ms": BUCKET.as_millis() as u64,
        "buckets": total.buckets,
        "slots": slots,
        "unattributed": total.unattributed,
    });
    println!("{line}");
    std::process::ExitCode::SUCCESS
}
