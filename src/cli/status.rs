//! `hawkey status`: the master, its listeners and its workers, as a table
//! or as JSON.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::control::{self, Request, Response, StatusReport};
use crate::exit::Status;

/// Asks the master the configuration names for its status and prints it.
pub(super) fn status(config_path: Option<PathBuf>, json: bool) -> Status {
    let (path, trust) = match super::control::socket_path(config_path) {
        Ok(found) => found,
        Err(status) => return status,
    };
    let timeout = Some(Duration::from_secs(10));
    match control::request_trusting(&path, &Request::Status, timeout, &trust) {
        Ok(Response::Status(report)) => {
            let text = if json {
                serde_json::to_string_pretty(&report).expect("a status report serializes") + "\n"
            } else {
                render(&report)
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Status::Ok
        }
        Ok(other) => super::control::respond(other),
        Err(error) => super::control::unreachable(&error),
    }
}

/// Human-readable status for `hawkey status`: a header line (master pid,
/// uptime, generation, status line), the listeners, then one row per
/// worker with aligned columns. Every line ends in `\n`.
fn render(report: &StatusReport) -> String {
    let mut out = format!(
        "master pid {}, up {}, generation {}",
        report.master_pid,
        format_duration(report.uptime_ms),
        report.generation
    );
    if !report.status.is_empty() {
        out.push_str(": ");
        out.push_str(&printable(&report.status));
    }
    out.push('\n');
    if report.listeners.is_empty() {
        out.push_str("listeners: none\n");
    } else {
        out.push_str("listeners:\n");
        let rows: Vec<Vec<String>> = report
            .listeners
            .iter()
            .map(|l| {
                let origin = if l.from_systemd { "(from systemd)" } else { "" };
                vec![l.name.clone(), l.address.clone(), origin.to_string()]
            })
            .collect();
        out.push_str(&table(&rows, "  "));
    }
    out.push('\n');
    let mut rows = vec![
        [
            "SLOT",
            "PID",
            "GEN",
            "STATE",
            "UPTIME",
            "RESTARTS",
            "LAST-EXIT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for w in &report.workers {
        rows.push(vec![
            w.slot.to_string(),
            w.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            w.generation.to_string(),
            w.state.clone(),
            w.uptime_ms.map_or_else(|| "-".to_string(), format_duration),
            w.restarts.to_string(),
            w.last_exit.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    out.push_str(&table(&rows, ""));
    let said: Vec<Vec<String>> = report
        .workers
        .iter()
        .filter_map(|w| Some(vec![w.slot.to_string(), printable(w.status.as_deref()?)]))
        .collect();
    if !said.is_empty() {
        out.push_str("\nworker status:\n");
        out.push_str(&table(&said, "  "));
    }
    out
}

/// `text` with every control character written as an escape (`\n`,
/// `\t`, `\r`, `\x1b`, `\u{9b}`): a worker's `STATUS=` line is the
/// worker's text, and raw it could move the operator's cursor, retitle the
/// terminal or worse (escape sequences). JSON output is escaped by JSON.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Rows with every column but the last padded to its widest cell, two
/// spaces apart, no trailing blanks.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// "45s", "12m5s", "3h12m", "2d3h": the two largest units, the second left
/// out when zero; under a second is "0s".
fn format_duration(ms: u64) -> String {
    let s = ms / 1000;
    let (big, big_unit, small, small_unit) = match s {
        0..60 => return format!("{s}s"),
        60..3600 => (s / 60, "m", s % 60, "s"),
        3600..86400 => (s / 3600, "h", s % 3600 / 60, "m"),
        _ => (s / 86400, "d", s % 86400 / 3600, "h"),
    };
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn render_status_prints_a_header_listeners_and_aligned_workers() {
        assert_eq!(
            render(&StatusReport::example()),
            "\
master pid 4242, up 3h12m, generation 3: 2 of 2 workers ready
listeners:
  http       0.0.0.0:8080    (from systemd)
  admin-api  127.0.0.1:9000

SLOT  PID   GEN  STATE    UPTIME  RESTARTS  LAST-EXIT
0     4243  3    ready    3h12m   0         -
1     -     2    backoff  -       12        exited with status 1
"
        );
    }

    #[test]
    fn render_status_without_listeners_or_workers() {
        let report = StatusReport {
            master_pid: 7,
            uptime_ms: 999,
            generation: 1,
            status: String::new(),
            listeners: vec![],
            workers: vec![],
        };
        assert_eq!(
            render(&report),
            "master pid 7, up 0s, generation 1\nlisteners: none\n\n\
             SLOT  PID  GEN  STATE  UPTIME  RESTARTS  LAST-EXIT\n"
        );
    }

    #[test]
    fn a_workers_status_line_reaches_the_terminal_with_control_characters_escaped() {
        let mut report = StatusReport::example();
        report.workers[0].status =
            Some("ok\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nfake\tline\u{9b}31m".into());
        report.status = "2 of 2 ready\u{1b}[31m".into();
        let text = render(&report);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(
            text.contains("  0  ok\\x1b]0;pwned\\x07\\x1b[2J\\r\\nfake\\tline\\u{9b}31m\n"),
            "{text}"
        );
        assert!(
            text.starts_with("master pid 4242, up 3h12m, generation 3: 2 of 2 ready\\x1b[31m\n")
        );
        assert_eq!(
            printable("plain ünïcode, 3 clients"),
            "plain ünïcode, 3 clients"
        );
    }

    #[test]
    fn durations_show_their_two_largest_units() {
        let cases = [
            (0, "0s"),
            (999, "0s"),
            (45_000, "45s"),
            (59_999, "59s"),
            (60_000, "1m"),
            (725_000, "12m5s"),
            (3_600_000, "1h"),
            (11_527_000, "3h12m"),
            (86_400_000, "1d"),
            (183_600_000, "2d3h"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(ms), text, "{ms}ms");
        }
    }
}
