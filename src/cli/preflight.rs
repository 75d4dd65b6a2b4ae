//! What `hawkey run` would refuse or fail on, found by `hawkey check`
//! before it starts (`ExecStartPre=`), beyond what the file itself says:
//!
//! - the script an interpreter is told to run (`node missing.js`), which
//!   the worker would exit on at once, every worker, until 69;
//! - a listen address another process is bound to (run exits 1, "failed
//!   to bind");
//! - the directories of the pidfile and the control socket, which run
//!   creates or refuses (73);
//! - no runtime directory at all (not root, no `$XDG_RUNTIME_DIR`, no
//!   `RuntimeDirectory=`): the pidfile and control socket are off, so
//!   `hawkey status`, `reload` and `stop` cannot reach the master.
//!
//! Each finding is an error with the status run would end with, or a
//! warning for what may be fine (a port held by a process this user
//! cannot see: systemd's socket unit, most likely).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::config::{Address, AppKind, Config, paths};
use crate::exit::Status;

/// A finding that fails the check: the status run would exit with, and
/// the message (without the source's name).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: Status,
    pub(super) message: String,
}

/// What the check found: refusals fail it, warnings go to stderr, notes
/// into the printed configuration as comments (not with `--quiet`).
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub(super) refusals: Vec<Refusal>,
    pub(super) warnings: Vec<String>,
    pub(super) notes: Vec<String>,
}

/// Said by `hawkey check` and logged by `hawkey run` when there is no
/// runtime directory.
pub(super) const NO_RUNTIME_DIRECTORY: &str = "no runtime directory (not root, and neither $XDG_RUNTIME_DIR nor systemd's RuntimeDirectory= is set): the pidfile and the control socket are off, so hawkey status, reload and stop cannot reach this master; set pidfile: or control_socket: to a path, or XDG_RUNTIME_DIR";

/// Whether `config` run with `runtime_dir` has neither a pidfile nor a
/// control socket because there is no runtime directory.
pub(super) fn lacks_runtime_directory(config: &Config, runtime_dir: Option<&Path>) -> bool {
    runtime_dir.is_none()
        && paths::pidfile(config, None).is_none()
        && paths::control_socket(config, None).is_none()
}

/// Everything below, for `config` as `hawkey run` would start it with
/// `runtime_dir`.
pub(super) fn inspect(config: &Config, runtime_dir: Option<&Path>) -> Findings {
    let mut found = Findings::default();
    if let Err(message) = script(config) {
        found.refusals.push(Refusal {
            status: Status::Config,
            message,
        });
    }
    let running = running_master(config, runtime_dir);
    // A master running this file has its directories already (and a new
    // one would stop at its lock: 75): only without one are they looked at.
    if running.is_none() {
        runtime(config, runtime_dir, &mut found);
    }
    listeners(config, running, &mut found);
    found
}

/// The pid of a hawkey master running this configuration: the one its
/// pidfile names, if that process is alive and is hawkey.
fn running_master(config: &Config, runtime_dir: Option<&Path>) -> Option<u32> {
    let text = std::fs::read(paths::pidfile(config, runtime_dir)?).ok()?;
    let pid = crate::pid::parse(&text)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    comm.starts_with("hawkey").then_some(pid)
}

/// The interpreters whose first operand is a script file, and for each
/// the options that give the code another way (nothing to look for) and
/// those that take the next argument as their value.
const INTERPRETERS: &[(&[&str], &[&str], &[&str])] = &[
    (
        &["node", "nodejs"],
        &["-e", "--eval", "-p", "--print", "-", "-i", "--interactive"],
        &[
            "-r",
            "--require",
            "--import",
            "--loader",
            "--experimental-loader",
            "-C",
            "--conditions",
            "--title",
            "--inspect-port",
            "--env-file",
        ],
    ),
    (
        &["python", "python2", "python3", "pypy", "pypy3"],
        &["-c", "-m", "-"],
        &["-W", "-X"],
    ),
    (&["ruby"], &["-e", "-"], &["-r", "-I", "-C", "-E"]),
    (&["perl"], &["-e", "-E", "-"], &["-I", "-M", "-m"]),
    (&["php"], &["-r", "-a", "-"], &["-c", "-d", "-z"]),
    (
        &["sh", "bash", "dash", "zsh", "ksh"],
        &["-c", "-s", "-"],
        &["-o", "+o"],
    ),
];

/// `python3.11` is `python3`: a version after the name is dropped.
fn interpreter_name(program: &str) -> &str {
    let base = program.rsplit('/').next().unwrap_or(program);
    match base.find(['.', '-']) {
        Some(at) if base[at + 1..].starts_with(|c: char| c.is_ascii_digit()) => &base[..at],
        _ => base,
    }
}

/// The script `command` tells its interpreter to run: its index, its
/// text and the interpreter's name. `None` when the program is no interpreter listed here or the
/// code comes another way (`python3 -m app`, `node -e CODE`, `sh -c CMD`).
fn script_of(command: &[String]) -> Option<(usize, &str, &str)> {
    let mut args = command.iter().enumerate();
    let (_, program) = args.next()?;
    let mut name = interpreter_name(program);
    if name == "env" {
        // `/usr/bin/env node app.js`: env's program is its first word that
        // is no option and no assignment.
        let (_, real) = args
            .by_ref()
            .find(|(_, a)| !a.starts_with('-') && !a.contains('='))?;
        name = interpreter_name(real);
    }
    let (_, inline, valued) = INTERPRETERS
        .iter()
        .find(|(names, _, _)| names.contains(&name))?;
    while let Some((i, arg)) = args.next() {
        let flag = arg.split('=').next().unwrap_or(arg);
        // `-mhttp.server`, `-cprint(1)`: an inline option with its value.
        let short_inline = inline
            .iter()
            .any(|o| o.len() == 2 && o.starts_with('-') && arg.starts_with(o));
        if inline.contains(&flag) || short_inline {
            return None;
        }
        if arg == "--" {
            return args.next().map(|(i, a)| (i, a.as_str(), name));
        }
        if arg.starts_with('-') || arg.starts_with('+') {
            if valued.contains(&arg.as_str()) {
                args.next();
            }
            continue;
        }
        return Some((i, arg, name));
    }
    None
}

/// The script of an interpreter `workers.command` runs must exist, where
/// the worker will look for it (`workers.cwd`, or hawkey's own directory).
fn script(config: &Config) -> Result<(), String> {
    let workers = &config.workers;
    if workers.app != AppKind::Exec {
        return Ok(());
    }
    let Some((i, script, interpreter)) = script_of(&workers.command) else {
        return Ok(());
    };
    let cwd = workers.cwd.clone().or_else(|| std::env::current_dir().ok());
    let at = match &cwd {
        Some(dir) => dir.join(script),
        None => PathBuf::from(script),
    };
    if std::fs::metadata(&at).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let looked_in = match (&workers.cwd, &cwd) {
        _ if Path::new(script).is_absolute() => String::new(),
        (Some(dir), _) => format!(" in workers.cwd '{}'", dir.display()),
        (None, Some(dir)) => format!(
            " in '{}' (hawkey's own directory: set workers.cwd)",
            dir.display()
        ),
        (None, None) => String::new(),
    };
    Err(format!(
        "workers.command[{i}]: '{script}' does not exist{looked_in}: {interpreter} would exit at once in every worker"
    ))
}

/// The pidfile's and the control socket's directories, as run checks and
/// creates them (`pidfile::acquire`, the control socket's bind).
fn runtime(config: &Config, runtime_dir: Option<&Path>, found: &mut Findings) {
    let pidfile = paths::pidfile(config, runtime_dir);
    let socket = paths::control_socket(config, runtime_dir);
    if lacks_runtime_directory(config, runtime_dir) {
        found.warnings.push(NO_RUNTIME_DIRECTORY.into());
    }
    for (what, file) in [("pidfile", pidfile), ("control socket", socket)] {
        let Some(file) = file else { continue };
        if let Err(message) = directory_usable(&file, what) {
            found.refusals.push(Refusal {
                status: Status::CantCreate,
                message,
            });
            return;
        }
    }
}

/// Whether run can create `file` (a pidfile, a control socket): its
/// directory passes [`paths::check_directory`] and is writable by this
/// user, or is missing with a parent it can create it in.
fn directory_usable(file: &Path, what: &'static str) -> Result<(), String> {
    use nix::unistd::{AccessFlags, access};
    paths::check_directory(file, what).map_err(|e| e.to_string())?;
    let Some(dir) = file.parent() else {
        return Ok(());
    };
    let (target, missing) = if dir.exists() {
        (dir, false)
    } else {
        (dir.parent().unwrap_or(Path::new("/")), true)
    };
    if missing && !target.is_dir() {
        return Err(format!(
            "{what} directory '{}' is missing and so is its parent '{}': hawkey creates only the last one",
            dir.display(),
            target.display()
        ));
    }
    access(target, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| {
        format!(
            "{what} directory '{}' is not writable by this user ({}): {}",
            target.display(),
            crate::logging::errno_text(e),
            if missing {
                "it cannot be created"
            } else {
                "the file cannot be created in it"
            }
        )
    })
}

/// Each TCP listener's address must be free, or held by this instance's
/// running master or by systemd (socket activation).
fn listeners(config: &Config, running: Option<u32>, found: &mut Findings) {
    for (i, listener) in config.listen.iter().enumerate() {
        let Address::Tcp(addr) = listener.address else {
            continue;
        };
        let key = format!("listen[{i}].address");
        match try_bind(addr) {
            Ok(()) => {}
            Err(nix::errno::Errno::EADDRINUSE) => {
                let holders = holders(addr);
                let ours = holders.iter().any(|&(pid, _)| {
                    pid == 1
                        || running.is_some_and(|r| {
                            i64::from(r) == i64::from(pid) || parent_of(pid) == Some(r)
                        })
                });
                match holders.first() {
                    _ if ours => {}
                    Some((pid, comm)) => found.refusals.push(Refusal {
                        status: Status::Failure,
                        message: format!(
                            "{key}: {addr} is already in use by pid {pid} ({comm}): hawkey run would fail to bind it"
                        ),
                    }),
                    None => found.notes.push(format!(
                        "{key}: {addr} is in use by a process this user cannot see (systemd's socket unit, or another user's server): hawkey run binds it itself only when systemd passes no socket"
                    )),
                }
            }
            Err(errno) => found.notes.push(format!(
                "{key}: {addr} cannot be bound by this user ({}): hawkey run binds it itself only when systemd passes no socket",
                crate::logging::errno_text(errno)
            )),
        }
    }
}

/// Binds (and closes) a socket at `addr` as run binds it.
fn try_bind(addr: SocketAddr) -> Result<(), nix::errno::Errno> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket,
        sockopt,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    match addr {
        SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))
        }
    }
}

/// The processes this user can see holding a listening socket on `addr`'s
/// port that overlaps it: (pid, comm), pid order.
fn holders(addr: SocketAddr) -> Vec<(i32, String)> {
    let table = if addr.is_ipv4() { "tcp" } else { "tcp6" };
    let text = std::fs::read_to_string(format!("/proc/net/{table}")).unwrap_or_default();
    let inodes: Vec<String> = listening_inodes(&text, addr);
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == OsStr::new(w)))
        });
        if holds {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out.sort();
    out
}

/// The parent of `pid`.
fn parent_of(pid: i32) -> Option<u32> {
    u32::try_from(crate::procfs::read_stat(pid)?.ppid).ok()
}

/// The inodes of the LISTEN sockets of `/proc/net/tcp{,6}` text whose
/// address conflicts with `addr`: the same port, and the same address or
/// a wildcard on either side.
fn listening_inodes(text: &str, addr: SocketAddr) -> Vec<String> {
    const LISTEN: &str = "0A";
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9))
        else {
            continue;
        };
        if *state != LISTEN {
            continue;
        }
        let Some((ip, port)) = local.split_once(':') else {
            continue;
        };
        if u16::from_str_radix(port, 16).ok() != Some(addr.port()) {
            continue;
        }
        let Some(ip) = proc_ip(ip) else { continue };
        if ip == addr.ip() || ip.is_unspecified() || addr.ip().is_unspecified() {
            out.push((*inode).to_string());
        }
    }
    out
}

/// An address as `/proc/net/tcp{,6}` prints it: 32-bit words in hex, each
/// in the machine's byte order.
fn proc_ip(hex: &str) -> Option<std::net::IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for word in 0..hex.len() / 8 {
        let w = u32::from_str_radix(hex.get(word * 8..word * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?).into()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn the_script_of_an_interpreter_is_its_first_operand() {
        for (command, script) in [
            ("node server.js", Some((1, "server.js", "node"))),
            (
                "/usr/bin/node --enable-source-maps -r dotenv/config app.js --port 3",
                Some((4, "app.js", "node")),
            ),
            ("node --require=./x.js app.js", Some((2, "app.js", "node"))),
            ("python3.11 -u app.py", Some((2, "app.py", "python3"))),
            (
                "/usr/bin/env NODE_ENV=production node main.js",
                Some((3, "main.js", "node")),
            ),
            ("sh -e start.sh", Some((2, "start.sh", "sh"))),
            ("python3 -m http.server 8000", None),
            ("python3 -mhttp.server", None),
            ("node -e console.log(1)", None),
            ("sh -c exec\u{20}sleep", None),
            ("gunicorn app:app", None),
            ("node", None),
        ] {
            assert_eq!(script_of(&words(command)), script, "{command}");
        }
    }

    #[test]
    fn proc_net_tcp_addresses_are_read_in_the_machines_byte_order() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1\n   2: 0100007F:1F91 0100007F:D2A4 01 00000000:00000000 00:00000000 00000000     0        0 999 1\n";
        if cfg!(target_endian = "little") {
            let at = |s: &str| s.parse::<SocketAddr>().unwrap();
            assert_eq!(listening_inodes(text, at("127.0.0.1:8080")), ["4242"]);
            assert_eq!(
                listening_inodes(text, at("10.0.0.1:8080")),
                Vec::<String>::new()
            );
            assert_eq!(
                listening_inodes(text, at("127.0.0.1:80")),
                ["777"],
                "the wildcard overlaps"
            );
            assert_eq!(
                listening_inodes(text, at("127.0.0.1:8081")),
                Vec::<String>::new(),
                "not LISTEN"
            );
        }
    }
}
