//! The control socket end to end: server and client in one process, and
//! peers of another uid.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::errno::Errno;

use super::protocol::{MAX_REQUEST, REQUEST_TIMEOUT};
use super::server::MAX_CLIENTS;
use super::*;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use std::thread;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long any test waits for anything before failing.
const PATIENCE: Duration = Duration::from_secs(10);

use crate::test_util::TestDir;

/// Waits (at most `at_most`) until one of the server's fds is readable,
/// as the master's loop does.
fn wait_readable(server: &Server, at_most: Duration) {
    let mut fds: Vec<PollFd<'_>> = server
        .poll_fds()
        .into_iter()
        .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
        .collect();
    let timeout = PollTimeout::try_from(at_most).unwrap();
    match poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => panic!("poll: {e}"),
    }
}

/// Drives the server until one request arrives.
fn next_request(server: &mut Server) -> (ClientId, Request) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut got = server.drain(Instant::now());
        assert!(got.len() <= 1, "more than one request: {got:?}");
        if let Some(request) = got.pop() {
            return request;
        }
        assert!(Instant::now() < deadline, "no request within {PATIENCE:?}");
        wait_readable(server, Duration::from_millis(50));
    }
}

/// Drives the server until `done` says so; no request may arrive.
fn serve_until(server: &mut Server, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        let got = server.drain(Instant::now());
        assert!(got.is_empty(), "unexpected request: {got:?}");
        assert!(Instant::now() < deadline, "not done within {PATIENCE:?}");
        wait_readable(server, Duration::from_millis(20));
    }
}

/// A raw client: connects, sends `bytes` (the server may close before
/// taking them all), and returns everything it gets until end of file.
fn raw_exchange(path: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = stream.write_all(bytes);
    read_to_eof(&mut stream)
}

fn read_to_eof(stream: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            // The server closed with our bytes unread: what it sent
            // before is still delivered first.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn parse_line(bytes: &[u8]) -> Response {
    let text = std::str::from_utf8(bytes).unwrap();
    let line = text
        .strip_suffix('\n')
        .expect("one line ending in a newline");
    assert!(!line.contains('\n'), "more than one line: {text:?}");
    serde_json::from_str(line).unwrap()
}

/// The client calls `request` on a thread; the test thread plays the
/// master.
fn round_trip(request: Request, response: Response) {
    let dir = TestDir::new("round-trip");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    let client = {
        let (path, request) = (path.clone(), request.clone());
        thread::spawn(move || super::request(&path, &request, Some(PATIENCE)))
    };
    let (id, got) = next_request(&mut server);
    assert_eq!(got, request);
    server.reply(id, &response);
    assert_eq!(client.join().unwrap().unwrap(), response);
    assert_eq!(server.poll_fds().len(), 1, "the client is closed");
}

#[test]
fn status_round_trips() {
    round_trip(Request::Status, Response::Status(StatusReport::example()));
}

#[test]
fn reload_round_trips_with_and_without_wait() {
    round_trip(
        Request::Reload { wait: true },
        Response::Ok {
            message: "reload finished: generation 3".into(),
        },
    );
    round_trip(
        Request::Reload { wait: false },
        Response::Error {
            exit_code: 78,
            message: "invalid configuration: workers.count: expected a number".into(),
        },
    );
}

#[test]
fn stop_round_trips() {
    round_trip(
        Request::Stop,
        Response::Ok {
            message: "stopping".into(),
        },
    );
}

#[test]
fn the_wire_format_is_one_tagged_json_object_per_line() {
    let json = |r: &Request| serde_json::to_string(r).unwrap();
    assert_eq!(json(&Request::Status), r#"{"request":"status"}"#);
    assert_eq!(
        json(&Request::Reload { wait: true }),
        r#"{"request":"reload","wait":true}"#
    );
    assert_eq!(json(&Request::Stop), r#"{"request":"stop"}"#);
    let ok = Response::Ok {
        message: "done".into(),
    };
    assert_eq!(
        serde_json::to_string(&ok).unwrap(),
        r#"{"response":"ok","message":"done"}"#
    );
    let error = Response::Error {
        exit_code: 78,
        message: "bad".into(),
    };
    assert_eq!(
        serde_json::to_string(&error).unwrap(),
        r#"{"response":"error","exit_code":78,"message":"bad"}"#
    );
    let status = serde_json::to_value(Response::Status(StatusReport::example())).unwrap();
    assert_eq!(status["response"], "status");
    assert_eq!(status["master_pid"], 4242);
    assert_eq!(status["workers"][1]["pid"], serde_json::Value::Null);
}

#[test]
fn garbage_gets_exit_code_64_and_is_closed() {
    let dir = TestDir::new("garbage");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    for garbage in [&b"hello\n"[..], b"{\"request\":\"dance\"}\n", b"\xff\xfe\n"] {
        let client = {
            let path = path.clone();
            thread::spawn(move || raw_exchange(&path, garbage))
        };
        serve_until(&mut server, || client.is_finished());
        let answer = parse_line(&client.join().unwrap());
        let Response::Error { exit_code, message } = answer else {
            panic!("not an error: {answer:?}");
        };
        assert_eq!(exit_code, 64);
        assert!(message.starts_with("invalid request: "), "{message}");
        assert_eq!(server.poll_fds().len(), 1);
    }
}

#[test]
fn a_request_may_be_4096_bytes_but_no_more() {
    let dir = TestDir::new("long");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    let padded = |total: usize| {
        let mut line = br#"{"request":"status"}"#.to_vec();
        line.resize(total - 1, b' ');
        line.push(b'\n');
        line
    };

    let longest = padded(MAX_REQUEST);
    let client = {
        let path = path.clone();
        thread::spawn(move || raw_exchange(&path, &longest))
    };
    let (id, request) = next_request(&mut server);
    assert_eq!(request, Request::Status);
    let ok = Response::Ok {
        message: "fits".into(),
    };
    server.reply(id, &ok);
    assert_eq!(parse_line(&client.join().unwrap()), ok);

    for too_long in [padded(MAX_REQUEST + 1), vec![b'{'; 3 * MAX_REQUEST]] {
        let client = {
            let path = path.clone();
            thread::spawn(move || raw_exchange(&path, &too_long))
        };
        serve_until(&mut server, || client.is_finished());
        assert_eq!(
            parse_line(&client.join().unwrap()),
            Response::Error {
                exit_code: 64,
                message: "invalid request: longer than 4096 bytes".into()
            }
        );
    }
}

#[test]
fn a_request_split_across_reads_is_assembled() {
    let dir = TestDir::new("split");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.write_all(br#"{"request":"rel"#).unwrap();
    assert!(server.drain(Instant::now()).is_empty());
    stream.write_all(br#"oad","wait":false}"#).unwrap();
    assert!(server.drain(Instant::now()).is_empty());
    stream.write_all(b"\n").unwrap();
    let got = server.drain(Instant::now());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, Request::Reload { wait: false });
}

#[test]
fn a_silent_client_is_dropped_at_its_deadline() {
    let dir = TestDir::new("silent");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    assert_eq!(server.next_deadline(), None);
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();

    // `connect` returned, so the connection is queued: drain takes it.
    let now = Instant::now();
    assert!(server.drain(now).is_empty());
    assert_eq!(server.poll_fds().len(), 2);
    assert_eq!(server.next_deadline(), Some(now + REQUEST_TIMEOUT));

    assert!(server.drain(now + Duration::from_millis(4999)).is_empty());
    assert_eq!(server.poll_fds().len(), 2, "kept before its deadline");

    assert!(server.drain(now + REQUEST_TIMEOUT).is_empty());
    assert_eq!(server.poll_fds().len(), 1, "dropped at its deadline");
    assert_eq!(server.next_deadline(), None);
    assert!(
        read_to_eof(&mut stream).is_empty(),
        "closed without an answer"
    );
}

#[test]
fn a_waiting_client_that_hangs_up_is_dropped_by_drain() {
    let dir = TestDir::new("hang-up");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    let mut stream = UnixStream::connect(&path).unwrap();
    stream
        .write_all(b"{\"request\":\"reload\",\"wait\":true}\nextra bytes are ignored")
        .unwrap();
    let (id, _) = next_request(&mut server);

    assert!(server.drain(Instant::now()).is_empty());
    assert_eq!(server.poll_fds().len(), 2, "still waiting for its reply");
    assert_eq!(server.next_deadline(), None, "no deadline while waiting");

    drop(stream);
    assert!(server.drain(Instant::now()).is_empty());
    assert_eq!(server.poll_fds().len(), 1);
    // Answering it later is harmless.
    server.reply(
        id,
        &Response::Ok {
            message: "late".into(),
        },
    );
}

fn sigpipe_pending() -> bool {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending fills the set it is given; it is read only
    // after that succeeds.
    let pending = unsafe {
        assert_eq!(libc::sigpending(set.as_mut_ptr()), 0);
        set.assume_init()
    };
    // SAFETY: `pending` is an initialised signal set.
    unsafe { libc::sigismember(&pending, libc::SIGPIPE) == 1 }
}

/// Blocks (`how` = SIG_BLOCK) or unblocks SIGPIPE for this thread.
fn mask_sigpipe(how: libc::c_int) {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: the set is initialised by sigemptyset before any other
    // use, and pthread_sigmask only changes this thread's mask.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        assert_eq!(
            libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn replying_to_a_client_that_hung_up_raises_no_sigpipe() {
    let dir = TestDir::new("sigpipe");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.write_all(b"{\"request\":\"stop\"}\n").unwrap();
    let (id, _) = next_request(&mut server);
    drop(stream);

    // A SIGPIPE sent to this thread while it is blocked stays pending
    // (even though the test harness ignores it), so it can be seen.
    mask_sigpipe(libc::SIG_BLOCK);
    let before = sigpipe_pending();
    server.reply(
        id,
        &Response::Ok {
            message: "stopping".into(),
        },
    );
    let raised = sigpipe_pending() && !before;
    mask_sigpipe(libc::SIG_UNBLOCK);
    assert!(!raised, "reply raised SIGPIPE");
    assert_eq!(server.poll_fds().len(), 1);
}

#[test]
fn a_reply_too_big_for_the_socket_buffer_drops_the_client_instead_of_blocking() {
    let dir = TestDir::new("full");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    let mut stream = UnixStream::connect(&path).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream.write_all(b"{\"request\":\"status\"}\n").unwrap();
    let (id, _) = next_request(&mut server);
    // Nobody reads while the reply is sent: a blocking send would hang.
    let huge = "x".repeat(16 << 20);
    server.reply(id, &Response::Ok { message: huge });
    assert_eq!(server.poll_fds().len(), 1);
    let got = read_to_eof(&mut stream);
    assert!(got.len() < 16 << 20, "the whole reply fit");
    assert!(!got.contains(&b'\n'), "a cut reply has no end of line");
}

#[test]
fn the_listener_leaves_the_poll_set_while_the_server_is_full() {
    let dir = TestDir::new("full-table");
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    let now = Instant::now();
    let mut streams = Vec::new();
    while streams.len() < MAX_CLIENTS {
        // The backlog holds 16; accept between batches.
        for _ in 0..8 {
            streams.push(UnixStream::connect(&path).unwrap());
        }
        server.drain(now);
    }
    assert_eq!(server.poll_fds().len(), MAX_CLIENTS, "no listener");
    streams.push(UnixStream::connect(&path).unwrap());
    server.drain(now);
    assert_eq!(
        server.poll_fds().len(),
        MAX_CLIENTS,
        "one waits in the backlog"
    );

    // Deadlines free the table; then the one in the backlog is taken.
    server.drain(now + REQUEST_TIMEOUT);
    assert_eq!(server.poll_fds().len(), 1, "only the listener");
    server.drain(now + REQUEST_TIMEOUT);
    assert_eq!(server.poll_fds().len(), 1 + 1);
}

#[test]
fn the_socket_file_is_mode_0600() {
    let dir = TestDir::new("mode");
    let path = dir.join("hawkey.sock");
    let server = Server::bind(&path).unwrap();
    let meta = fs::symlink_metadata(server.path()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o600);
}

#[test]
fn bind_creates_a_missing_directory() {
    let dir = TestDir::new("parent");
    let path = dir.join("run").join("hawkey.sock");
    let _server = Server::bind(&path).unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    let dir = TestDir::new("stale");
    let path = dir.join("hawkey.sock");
    drop(UnixListener::bind(&path).unwrap());
    assert!(matches!(
        UnixStream::connect(&path).map_err(|e| e.raw_os_error()),
        Err(Some(libc::ECONNREFUSED))
    ));

    let mut server = Server::bind(&path).unwrap();
    let client = {
        let path = path.clone();
        thread::spawn(move || super::request(&path, &Request::Stop, Some(PATIENCE)))
    };
    let (id, _) = next_request(&mut server);
    let ok = Response::Ok {
        message: "stopping".into(),
    };
    server.reply(id, &ok);
    assert_eq!(client.join().unwrap().unwrap(), ok);
}

#[test]
fn a_live_socket_refuses_bind() {
    let dir = TestDir::new("live");
    let path = dir.join("hawkey.sock");
    let first = Server::bind(&path).unwrap();
    let inode = fs::symlink_metadata(&path).unwrap().ino();

    let error = Server::bind(&path).unwrap_err();
    assert!(matches!(error, Error::InUse { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("another hawkey is listening on '{}'", path.display())
    );
    assert_eq!(fs::symlink_metadata(&path).unwrap().ino(), inode);
    drop(first);
    assert!(!path.exists(), "the first server removes its socket");
}

#[test]
fn something_that_is_not_a_socket_is_never_removed() {
    let dir = TestDir::new("regular");
    let path = dir.join("hawkey.sock");
    fs::write(&path, "precious\n").unwrap();
    let error = Server::bind(&path).unwrap_err();
    assert!(matches!(error, Error::NotASocket { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "refusing to replace '{}' with the control socket: not a socket",
            path.display()
        )
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");

    let link = dir.join("link.sock");
    std::os::unix::fs::symlink("hawkey.sock", &link).unwrap();
    assert!(matches!(Server::bind(&link), Err(Error::NotASocket { .. })));
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious\n");
}

#[test]
fn drop_removes_the_socket_only_while_it_is_ours() {
    let dir = TestDir::new("drop");
    let path = dir.join("hawkey.sock");
    drop(Server::bind(&path).unwrap());
    assert!(!path.exists());

    let server = Server::bind(&path).unwrap();
    fs::remove_file(&path).unwrap();
    fs::write(&path, "someone else's\n").unwrap();
    drop(server);
    assert_eq!(fs::read_to_string(&path).unwrap(), "someone else's\n");
}

#[test]
fn request_without_a_listener_says_not_running() {
    let dir = TestDir::new("not-running");
    let missing = dir.join("hawkey.sock");
    let error = request(&missing, &Request::Status, Some(PATIENCE)).unwrap_err();
    assert!(matches!(error, Error::NotRunning { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "hawkey is not running (no control socket at '{}')",
            missing.display()
        )
    );

    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let error = request(&stale, &Request::Stop, None).unwrap_err();
    assert!(matches!(error, Error::NotRunning { .. }), "{error:?}");
}

#[test]
fn request_times_out_when_nobody_answers() {
    let dir = TestDir::new("timeout");
    let path = dir.join("hawkey.sock");
    // Bound and listening, but nobody drains it.
    let _server = Server::bind(&path).unwrap();
    let started = Instant::now();
    let error = request(&path, &Request::Status, Some(Duration::from_millis(100))).unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    // A hang guard (100x the timeout), not a figure.
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(
        error.to_string(),
        format!("no answer from hawkey on '{}' within 100ms", path.display())
    );
}

const PEER_SOCKET_ENV: &str = "HAWKEY_CONTROL_TEST_SOCKET";

/// Not a test on its own: run by the tests below, as another user, in
/// a copy of this test binary. Prints what `request` returned.
#[test]
#[ignore = "helper: run as another user by the peer credential tests; does nothing alone"]
fn peer_client() {
    let Some(path) = std::env::var_os(PEER_SOCKET_ENV) else {
        return;
    };
    match request(Path::new(&path), &Request::Stop, Some(PATIENCE)) {
        // On a line of its own, after the harness's "test … ".
        Ok(response) => println!("\nresponse: {}", serde_json::to_string(&response).unwrap()),
        Err(error) => println!("\nerror: {error:?}"),
    }
}

/// Runs `peer_client` as uid/gid 65534 against `path` while `server`
/// (if any) is driven; returns the line it printed.
fn run_as_nobody(path: &Path, server: Option<&mut Server>) -> String {
    assert!(nix::unistd::geteuid().is_root(), "needs root");
    let module = module_path!().split_once("::").unwrap().1;
    let mut child = crate::test_util::spawn(
        Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::peer_client"),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PEER_SOCKET_ENV, path)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let deadline = Instant::now() + PATIENCE;
    let mut exited = || match child.try_wait().unwrap() {
        Some(_) => true,
        None if Instant::now() < deadline => false,
        None => {
            let _ = child.kill();
            panic!("the client running as uid 65534 did not finish");
        }
    };
    match server {
        Some(server) => serve_until(server, exited),
        None => {
            while !exited() {
                thread::sleep(Duration::from_millis(5));
            }
        }
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find(|l| l.starts_with("response: ") || l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no outcome in {stdout:?}"))
        .to_string()
}

/// A directory uid 65534 can get through (the umask of a concurrent
/// bind may have narrowed it).
fn traversable(dir: &TestDir) {
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_peer_that_is_neither_root_nor_the_owner_gets_exit_code_77() {
    let dir = TestDir::new("peer");
    traversable(&dir);
    let path = dir.join("hawkey.sock");
    let mut server = Server::bind(&path).unwrap();
    // Let anyone reach the socket, so only the credential check is left.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();

    let outcome = run_as_nobody(&path, Some(&mut server));
    let expected = Response::Error {
        exit_code: 77,
        message: "permission denied: uid 65534 may not control this hawkey (owner uid 0)".into(),
    };
    assert_eq!(
        outcome,
        format!("response: {}", serde_json::to_string(&expected).unwrap())
    );
    assert_eq!(server.poll_fds().len(), 1, "the peer was closed");
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_user_who_cannot_open_the_socket_gets_permission_denied() {
    let dir = TestDir::new("eacces");
    traversable(&dir);
    let path = dir.join("hawkey.sock");
    let _server = Server::bind(&path).unwrap();
    let outcome = run_as_nobody(&path, None);
    assert!(
        outcome.starts_with("error: PermissionDenied {"),
        "{outcome}"
    );
    let error = Error::PermissionDenied {
        path: path.clone(),
        source: io::Error::from_raw_os_error(libc::EACCES),
    };
    assert_eq!(
        error.to_string(),
        format!(
            "permission denied on the control socket '{}': run this as root or as the user hawkey runs as",
            path.display()
        )
    );
    assert_eq!(error.status(), Status::NoPermission);
}

#[test]
fn no_bind_ever_changes_the_mode_of_a_file_swapped_in_at_the_path() {
    // A racer keeps putting a symlink to a file of 0644 at the socket's
    // path while the server binds there again and again. A chmod by path
    // after bind(2) would follow the symlink (0644 -> 0600 within a few
    // tries); binding in a private directory and renaming never touches it.
    let dir = TestDir::new("swap");
    let target = dir.join("precious");
    fs::write(&target, "root's\n").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let path = dir.join("hawkey.sock");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (mut bound, mut refused) = (0, 0);
    thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..1_000_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let _ = fs::remove_file(&path);
                let _ = std::os::unix::fs::symlink(&target, &path);
            }
        });
        for _ in 0..300 {
            match Server::bind(&path) {
                Ok(server) => {
                    bound += 1;
                    drop(server);
                }
                Err(_) => refused += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(bound + refused, 300);
    let meta = fs::metadata(&target).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o644,
        "{bound} binds, {refused} refused"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "root's\n");
    let left: Vec<String> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".hawkey-bind-"))
        .collect();
    assert!(left.is_empty(), "staging directories left: {left:?}");
}

#[test]
fn the_socket_appears_whole_and_no_staging_directory_is_left() {
    let dir = TestDir::new("staging");
    let path = dir.join("hawkey.sock");
    let server = Server::bind(&path).unwrap();
    let names = |dir: &TestDir| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(&dir), ["hawkey.sock"]);
    // Listening as soon as it is at the path.
    assert!(UnixStream::connect(&path).is_ok());
    assert!(matches!(Server::bind(&path), Err(Error::InUse { .. })));
    assert_eq!(names(&dir), ["hawkey.sock"]);
    drop(server);
    assert!(names(&dir).is_empty());
}

#[test]
fn a_path_too_long_for_the_staging_directory_still_binds_0600() {
    let dir = TestDir::new("long");
    // The staging path adds ".hawkey-bind-XXXXXX/s" to the directory: at
    // 100 bytes the socket's own path fits sun_path (108), that does not.
    let base = dir.0.as_os_str().len() + 1;
    let path = dir.join(&"s".repeat(100 - base));
    assert_eq!(path.as_os_str().len(), 100);
    let server = Server::bind(&path).unwrap();
    let meta = fs::symlink_metadata(server.path()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert!(UnixStream::connect(&path).is_ok());
}

#[test]
fn a_socket_directory_writable_by_others_is_refused() {
    for mode in [0o777, 0o1777] {
        let dir = TestDir::new("shared");
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(mode)).unwrap();
        let path = dir.join("hawkey.sock");
        let error = Server::bind(&path).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "refusing control socket directory '{}': it is writable by other users (mode {mode:04o}); make it writable by its owner only",
                dir.0.display()
            )
        );
        assert!(!path.exists());
    }
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn the_cli_believes_root_itself_and_the_pidfile_owner_at_the_pid_it_names() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (gives a file to another uid): run the test suite as root"
    );
    let dir = TestDir::new("trust");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
    let pidfile = dir.join("hawkey.pid");
    fs::write(&pidfile, "4242\n").unwrap();
    std::os::unix::fs::chown(&pidfile, Some(1234), None).unwrap();
    let trust = Trust::from_pidfile(Some(&pidfile));
    let own = nix::unistd::geteuid().as_raw();
    assert_eq!(trust.refuses(4242, 0), None);
    assert_eq!(trust.refuses(4242, own), None);
    assert_eq!(trust.refuses(4242, 1234), None);
    assert_eq!(
        trust.refuses(4242, 65534).as_deref(),
        Some(
            format!(
                "its uid is not root, uid {own} or uid 1234 (the owner of the pidfile '{}')",
                pidfile.display()
            )
            .as_str()
        )
    );
    assert_eq!(
        trust.refuses(4343, 0).as_deref(),
        Some(format!("the pidfile '{}' names pid 4242", pidfile.display()).as_str())
    );
    // An empty pidfile (the master is still starting) names no pid.
    fs::write(&pidfile, "").unwrap();
    assert_eq!(
        Trust::from_pidfile(Some(&pidfile)).refuses(4343, 1234),
        None
    );
    // No pidfile: root and the CLI's own uid only.
    let none = Trust::from_pidfile(None);
    assert_eq!(none.refuses(1, own), None);
    assert!(none.refuses(1, 65534).is_some());
}

#[test]
#[ignore = "needs root: run tests/run.sh, or cargo test -- --ignored as root"]
fn a_pidfile_in_a_directory_writable_by_others_vouches_for_nobody() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root (gives a file to another uid): run the test suite as root"
    );
    let dir = TestDir::new("trust-shared");
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o1777)).unwrap();
    let pidfile = dir.join("hawkey.pid");
    fs::write(&pidfile, "4242\n").unwrap();
    std::os::unix::fs::chown(&pidfile, Some(65534), None).unwrap();
    let trust = Trust::from_pidfile(Some(&pidfile));
    assert_eq!(trust, Trust::default());
    assert!(trust.refuses(4242, 65534).is_some());
    // A symlink is not followed either.
    let safe = TestDir::new("trust-link");
    fs::set_permissions(&safe.0, fs::Permissions::from_mode(0o755)).unwrap();
    let link = safe.join("hawkey.pid");
    std::os::unix::fs::symlink(&pidfile, &link).unwrap();
    assert_eq!(Trust::from_pidfile(Some(&link)), Trust::default());
}

#[test]
fn control_errors_carry_the_os_error() {
    let path = PathBuf::from("/run/hawkey/hawkey.sock");
    let os = |errno| io::Error::from_raw_os_error(errno);
    let cases = [
        (
            Error::Bind {
                path: path.clone(),
                source: os(libc::EROFS),
            },
            "failed to bind the control socket '/run/hawkey/hawkey.sock': Read-only file system (os error 30)",
        ),
        (
            Error::Connect {
                path: path.clone(),
                source: os(libc::ENAMETOOLONG),
            },
            "failed to connect to the control socket '/run/hawkey/hawkey.sock': File name too long (os error 36)",
        ),
        (
            Error::Io {
                op: "send the request",
                path,
                source: os(libc::ECONNRESET),
            },
            "failed to send the request on the control socket '/run/hawkey/hawkey.sock': Connection reset by peer (os error 104)",
        ),
    ];
    for (error, text) in cases {
        assert_eq!(error.to_string(), text);
    }
}
