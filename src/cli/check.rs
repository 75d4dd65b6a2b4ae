//! `hawkey check`: validate the configuration and print it as it takes
//! effect (`workers.count: auto` resolved, the pidfile path resolved), and
//! say what the configuration asks of this host that it cannot give: the
//! preload library `workers.adopt` needs, and a dynamically linked
//! program to load it into (`docs/adopt.md`).

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{self, paths};
use crate::env::Environment;
use crate::exit::Status;
use crate::master::cpu;

/// Validates the configuration at `config_path`; prints the effective
/// configuration unless `quiet`.
pub(super) fn check(target: super::Target, flags: &config::Overrides, quiet: bool) -> Status {
    let env = Environment::capture();
    let host = paths::Host::of(&env);
    let (mut config, source) = match super::load_config(&target, &host, flags) {
        Ok(loaded) => loaded,
        Err(e) => return super::config_failed(&e),
    };
    if let Err(message) = check_preload(&config, &env) {
        super::report(
            &std::io::Error::other(format!("{source}: {message}")),
            false,
        );
        return Status::Config;
    }
    let runtime_dir = host.runtime_dir(&target.instance());
    let found = super::preflight::inspect(&config, runtime_dir.as_deref());
    if let Some(refusal) = found.refusals.first() {
        super::report(
            &std::io::Error::other(format!("{source}: {}", refusal.message)),
            false,
        );
        return refusal.status;
    }
    for warning in &found.warnings {
        let _ = writeln!(std::io::stderr().lock(), "hawkey: warning: {warning}");
    }
    if quiet {
        return Status::Ok;
    }
    let mut out = format!("# {source}: valid\n");
    for note in &found.notes {
        out.push_str(&format!("# {note}\n"));
    }
    if config.workers.app == config::AppKind::Exec
        && !config.workers.adopt.is_empty()
        && let Ok(library) = crate::spawn::inject::find_library()
    {
        out.push_str(&format!(
            "# workers.adopt: through the preload library {}\n",
            library.display()
        ));
    }
    if config.workers.count == config::WorkerCount::Auto {
        let cpus = cpu::available();
        let quota = match cpus.quota {
            Some(q) => format!("a CPU quota of {q:.2}"),
            None => "no CPU quota".to_string(),
        };
        out.push_str(&format!(
            "# workers.count: auto = {} ({} CPUs in the affinity mask, {quota})\n",
            cpus.count, cpus.affinity
        ));
        config.workers.count = config::WorkerCount::Fixed(cpus.count as u32);
    }
    config.pidfile = match paths::pidfile(&config, runtime_dir.as_deref()) {
        Some(path) => config::Pidfile::Path(path),
        None => config::Pidfile::Disabled,
    };
    out.push_str(&config.to_yaml());
    // A reader that went away (`hawkey check | head -1`) is not an error
    // of ours: stop writing, as cat(1) does.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Ok(()) => Status::Ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Status::Ok,
        Err(e) => {
            let e = std::io::Error::new(e.kind(), format!("failed to write to stdout: {e}"));
            super::report(&e, false);
            Status::Failure
        }
    }
}

/// Whether the preload the configuration relies on can work here: with
/// `workers.adopt`, the library must be installed and the program
/// dynamically linked (an error); without it, a static program only
/// loses the library's readiness report (a warning, printed here).
fn check_preload(config: &config::Config, env: &Environment) -> Result<(), String> {
    let workers = &config.workers;
    if workers.app != config::AppKind::Exec {
        return Ok(());
    }
    let adopting = !workers.adopt.is_empty();
    if adopting && let Err(searched) = crate::spawn::inject::find_library() {
        return Err(format!(
            "workers.adopt: {}",
            crate::spawn::inject::missing_library(&searched)
        ));
    }
    let path_var = env.get("PATH");
    let Some(program) = exec_target(&workers.command, path_var, workers.cwd.as_deref()) else {
        return Ok(());
    };
    let shown = program.display();
    if adopting && is_set_id(&program) {
        // Secure-execution mode ignores LD_PRELOAD unless the program runs
        // as its owner and group, which hawkey cannot tell from here.
        let _ = writeln!(
            std::io::stderr().lock(),
            "hawkey: warning: workers.command[0]: '{shown}' is setuid or setgid: the dynamic loader ignores LD_PRELOAD for it unless it runs as its owner, and workers.adopt then does nothing"
        );
    }
    if !is_static_elf(&program) {
        return Ok(());
    }
    if adopting {
        return Err(format!(
            "workers.adopt: '{shown}' (workers.command) is statically linked: the preload library cannot be loaded into it, so its own bind() cannot be adopted (pass it hawkey's listener on fd 3 instead)"
        ));
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "hawkey: warning: workers.command[0]: '{shown}' is statically linked: LD_PRELOAD has no effect on it (workers.adopt cannot be used; readiness is seen through /proc only)"
    );
    Ok(())
}

/// The file the kernel finally runs for `command`: `command[0]` found as
/// the worker will find it, a `#!` script followed to its interpreter and
/// `/usr/bin/env X` to X on `PATH` (a few levels at most).
fn exec_target(
    command: &[String],
    path_var: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Option<PathBuf> {
    let mut args: Vec<String> = command.to_vec();
    for _ in 0..4 {
        let program = config::resolve_program_in(args.first()?, path_var, cwd)?;
        let at = match cwd {
            Some(dir) if program.is_relative() => dir.join(&program),
            _ => program.clone(),
        };
        if program.file_name() == Some(OsStr::new("env")) && is_elf(&at) {
            // env(1)'s program: its first argument that is not an option
            // or an assignment.
            let rest: Vec<String> = args[1..]
                .iter()
                .skip_while(|a| a.starts_with('-') || a.contains('='))
                .cloned()
                .collect();
            if rest.is_empty() {
                return Some(at);
            }
            args = rest;
            continue;
        }
        match shebang(&at) {
            Some(mut interpreter) => {
                interpreter.extend(args.into_iter().skip(1));
                args = interpreter;
            }
            None => return Some(at),
        }
    }
    None
}

/// The interpreter and its argument of a `#!` script, split on blanks.
fn shebang(path: &Path) -> Option<Vec<String>> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    let words: Vec<String> = String::from_utf8_lossy(line)
        .split_whitespace()
        .map(String::from)
        .collect();
    (!words.is_empty()).then_some(words)
}

/// Whether `path` has the setuid or setgid bit.
fn is_set_id(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o6000 != 0)
}

fn is_elf(path: &Path) -> bool {
    elf_head(path).is_some()
}

/// The start of an ELF file: enough for its program headers.
fn elf_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .ok()?;
    head.starts_with(b"\x7fELF").then_some(head)
}

/// Whether `path` is an ELF executable without `PT_INTERP`: no dynamic
/// loader runs for it, so `LD_PRELOAD` means nothing to it.
fn is_static_elf(path: &Path) -> bool {
    elf_head(path).is_some_and(|head| elf_interp(&head) == Some(false))
}

/// Whether the ELF image `head` has a `PT_INTERP` program header; `None`
/// if the headers cannot be read.
fn elf_interp(head: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = *head.get(5)? == 1;
    let int = |at: usize, len: usize| -> Option<u64> {
        let bytes = head.get(at..at + len)?;
        let mut v: u64 = 0;
        for (i, b) in bytes.iter().enumerate() {
            let shift = if little { i } else { len - 1 - i } * 8;
            v |= u64::from(*b) << shift;
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if wide {
        (int(0x20, 8)?, int(0x36, 2)?, int(0x38, 2)?)
    } else {
        (int(0x1c, 4)?, int(0x2a, 2)?, int(0x2c, 2)?)
    };
    for i in 0..phnum {
        let at = usize::try_from(phoff + i * phentsize).ok()?;
        if int(at, 4)? as u32 == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_program_has_an_interpreter_and_a_static_one_has_none() {
        let sh = config::resolve_program_in("sh", None, None).unwrap();
        let sh = std::fs::canonicalize(sh).unwrap();
        assert!(!is_static_elf(&sh), "{}", sh.display());
        assert_eq!(elf_interp(&elf_head(&sh).unwrap()), Some(true));
        // ELF64, little-endian, no program headers: static.
        let mut image = vec![0u8; 64];
        image[..4].copy_from_slice(b"\x7fELF");
        image[4] = 2;
        image[5] = 1;
        assert_eq!(elf_interp(&image), Some(false));
    }

    #[test]
    fn env_and_scripts_are_followed_to_the_program_they_run() {
        let dir = std::env::temp_dir().join(format!("hawkey-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("app");
        std::fs::write(&script, "#!/usr/bin/env sh\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sh = config::resolve_program_in("sh", None, None).unwrap();
        let got = exec_target(&[script.display().to_string()], None, None);
        assert_eq!(got, Some(sh.clone()));
        let got = exec_target(
            &["/usr/bin/env".into(), "FOO=1".into(), "sh".into()],
            None,
            None,
        );
        assert_eq!(got, Some(sh));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
