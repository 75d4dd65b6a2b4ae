//! The tiers of the suite, kept honest.
//!
//! The first tier is plain `cargo test`: no root, no network, no node,
//! wrk, groff or PyPI/npm packages. A test that needs one of those is
//! `#[ignore = "needs THING ..."]`, and so is every long test (`long
//! tier: ...`): libtest counts them as ignored, never as passed, and the
//! second tier, `cargo test -- --ignored`, runs exactly them (tests/run.sh
//! does, as root, once it has installed everything). This file checks that
//! every ignored test says why in one of those words, that a test calling
//! `require_root` is one of them, and prints — past libtest's capture, so
//! it shows on every run — one line per thing this tier left out.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// An ignore reason's first words, and whether this machine has it.
type Need = (&'static str, fn() -> bool);

/// What a test may need beyond the first tier, as its ignore reason
/// begins, and how to tell whether this machine has it.
const NEEDS: [Need; 5] = [
    ("needs root", is_root),
    ("needs node", || on_path("node")),
    ("needs wrk", || on_path("wrk")),
    ("needs groff", || on_path("groff")),
    (
        "needs the recipes' PyPI and npm packages",
        recipes_installed,
    ),
];
const LONG: &str = "long tier: ";
/// Not a test of its own: a body another test runs in a child process.
const HELPER: &str = "helper: ";

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn recipes_installed() -> bool {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    target.join("recipes-venv/bin/uvicorn").is_file()
        && target.join("recipes-node/node_modules/express").is_dir()
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Each test in `text`: its name, its ignore reason (if any) and its body
/// (up to the next test).
fn tests_in(text: &str) -> Vec<(String, Option<String>, String)> {
    let mut out = Vec::new();
    let chunks: Vec<&str> = text.split("#[test]").collect();
    for chunk in &chunks[1..] {
        let Some(fn_at) = chunk.find("fn ") else {
            continue;
        };
        let attributes = &chunk[..fn_at];
        let name: String = chunk[fn_at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let reason = attributes
            .split("#[ignore = \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string);
        out.push((name, reason, chunk[fn_at..].to_string()));
    }
    out
}

#[test]
fn every_test_left_out_of_the_first_tier_says_why_and_this_tier_says_what_it_left_out() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("tests"), &mut files);
    sources(&root.join("src"), &mut files);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut long = 0;
    let mut wrong = Vec::new();
    for file in files.iter().filter(|f| !f.ends_with("tests/tiers.rs")) {
        let text = std::fs::read_to_string(file).unwrap();
        for (name, reason, body) in tests_in(&text) {
            let at = format!("{}: {name}", file.strip_prefix(root).unwrap().display());
            match reason.as_deref() {
                None => {
                    if body.contains("require_root(") {
                        wrong.push(format!(
                            "{at}: calls require_root but runs in the first tier"
                        ));
                    }
                }
                Some(r) if r.starts_with(LONG) => long += 1,
                Some(r) if r.starts_with(HELPER) => {}
                Some(r) => match NEEDS.iter().find(|(need, _)| r.starts_with(need)) {
                    Some((need, _)) => *counts.entry(need).or_default() += 1,
                    None => wrong.push(format!(
                        "{at}: ignored for \"{r}\": say \"{LONG}...\", \"{HELPER}...\" or one of {:?}",
                        NEEDS.map(|n| n.0)
                    )),
                },
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(counts["needs root"] > 0 && long > 0, "{counts:?}");

    // Written to the real stderr: libtest shows a passing test's output
    // only with --nocapture.
    let mut lines = String::new();
    for (need, present) in NEEDS {
        let n = counts.get(need).copied().unwrap_or(0);
        let here = if present() {
            "present here"
        } else {
            "MISSING here"
        };
        let what = need.trim_start_matches("needs ");
        lines.push_str(&format!(
            "SKIPPED in the first tier: {n} tests that need {what} ({here}); `cargo test -- --ignored` runs them, tests/run.sh as root with everything installed\n"
        ));
    }
    lines.push_str(&format!(
        "SKIPPED in the first tier: {long} long tests (chaos, soak, 50 reloads, ...); `cargo test -- --ignored` runs them\n"
    ));
    let stderr = std::io::stderr();
    let mut raw = std::fs::File::from(stderr.as_fd().try_clone_to_owned().unwrap());
    raw.write_all(lines.as_bytes()).unwrap();
}

#[test]
fn the_suites_command_runs_both_tiers() {
    let run = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/run.sh"))
        .unwrap();
    assert!(
        run.contains("\ncargo test --locked --all-targets\n"),
        "the first tier"
    );
    assert!(
        run.contains("\ncargo test --locked --all-targets -- --ignored\n"),
        "the second tier"
    );
}
