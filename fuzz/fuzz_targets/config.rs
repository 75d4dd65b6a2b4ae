//! Fuzzes the config parser (G14, docs/goals.md): whatever bytes hawkey.yaml
//! holds, `Config::parse` must not panic, hang or run out of memory, and
//! what it returns must keep the promises of `hawkey::config`:
//! - an error is exactly one line (`FILE:LINE:COL: key.path: message`),
//!   located at line and column 1 or later;
//! - a valid config prints (`to_yaml`, what `hawkey check` shows) as YAML
//!   that parses back to the same `Config`.
//!
//! Run it with `fuzz/run.sh` (see its header).

#![no_main]

use std::path::Path;

use hawkey::config::{Config, Error};
use libfuzzer_sys::fuzz_target;

fn check(text: &str) {
    let path = Path::new("fuzz.yaml");
    match Config::parse(text, path) {
        Ok(config) => {
            let yaml = config.to_yaml();
            let again = match Config::parse(&yaml, path) {
                Ok(again) => again,
                Err(e) => panic!("to_yaml output does not parse back: {e}\n--- to_yaml:\n{yaml}"),
            };
            assert!(
                again == config,
                "to_yaml does not round-trip\n--- to_yaml:\n{yaml}\n--- first:  {config:?}\n--- second: {again:?}"
            );
        }
        Err(error) => {
            let shown = error.to_string();
            assert!(
                !shown.contains('\n'),
                "an error's Display is more than one line: {shown:?}"
            );
            if let Error::Invalid { line, column, .. } = &error {
                assert!(
                    *line >= 1 && *column >= 1,
                    "error located at line {line}, column {column}: {shown:?}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => check(text),
        // The file is read with read_to_string, which refuses invalid UTF-8;
        // the lossy text still exercises the parser with U+FFFD in it.
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
