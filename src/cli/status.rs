//! `hawkey status NAME` (or `-c FILE`): the master, its listeners and its
//! workers, with each one's CPU% and memory ([`super::usage`]), as a
//! table or as JSON. With no name, [`super::hosts`] lists the host (the
//! dispatch is in [`super::main`]: `hosts` uses this file's table
//! helpers, so this file does not call back into `hosts`).

use std::io::Write;
use std::time::Duration;

use super::Target;
use super::usage::{Sample, Usage, format_bytes};
use crate::control::{self, Request, Response, StatusReport};
use crate::exit::Status;

/// How long the CLI waits for a master's status report.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the master of `target` for its status and prints it.
pub(super) fn status(target: Target, json: bool) -> Status {
    let (path, trust) = match super::control::socket_path(&target) {
        Ok(found) => found,
        Err(status) => return status,
    };
    match control::request_trusting(&path, &Request::Status, Some(TIMEOUT), &trust) {
        Ok(Response::Status(report)) => {
            let figures = Figures::measure(&report, &Sample::take());
            let text = if json {
                to_json(&report, &figures)
            } else {
                render(&report, &figures)
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            Status::Ok
        }
        Ok(other) => super::control::respond(other),
        Err(error) => super::control::unreachable(&error),
    }
}

/// What the master and its workers used: the master alone, the master's
/// whole tree, and each worker's tree in the report's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Figures {
    pub(super) master: Option<Usage>,
    pub(super) total: Option<Usage>,
    pub(super) workers: Vec<Option<Usage>>,
}

impl Figures {
    pub(super) fn measure(report: &StatusReport, sample: &Sample) -> Figures {
        let master = report.master_pid as i32;
        Figures {
            master: sample.process(master),
            total: sample.tree(master),
            workers: report
                .workers
                .iter()
                .map(|w| w.pid.and_then(|pid| sample.tree(pid)))
                .collect(),
        }
    }
}

/// CPU% with one decimal, or "-".
pub(super) fn cpu_cell(usage: Option<Usage>) -> String {
    usage.map_or_else(|| "-".into(), |u| format!("{:.1}", u.cpu_percent))
}

/// RSS in binary units, or "-".
pub(super) fn mem_cell(usage: Option<Usage>) -> String {
    usage.map_or_else(|| "-".into(), |u| format_bytes(u.rss_bytes))
}

/// The report as JSON, with `cpu_percent` and `rss_bytes` (null when
/// unknown) added to each worker, and `master_cpu_percent`,
/// `master_rss_bytes`, `cpu_percent` and `rss_bytes` (the whole tree) to
/// the report.
fn to_json(report: &StatusReport, figures: &Figures) -> String {
    let mut value = serde_json::to_value(report).expect("a status report serializes");
    let put = |object: &mut serde_json::Value, prefix: &str, usage: Option<Usage>| {
        let object = object
            .as_object_mut()
            .expect("a struct serializes to an object");
        object.insert(
            format!("{prefix}cpu_percent"),
            usage.map(|u| u.cpu_percent).into(),
        );
        object.insert(
            format!("{prefix}rss_bytes"),
            usage.map(|u| u.rss_bytes).into(),
        );
    };
    put(&mut value, "master_", figures.master);
    put(&mut value, "", figures.total);
    if let Some(workers) = value.get_mut("workers").and_then(|w| w.as_array_mut()) {
        for (i, worker) in workers.iter_mut().enumerate() {
            put(worker, "", figures.workers.get(i).copied().flatten());
        }
    }
    serde_json::to_string_pretty(&value).expect("JSON serializes") + "\n"
}

/// Human-readable status for `hawkey status NAME`: a header line (master
/// pid, uptime, generation, status line), the listeners, one row per
/// worker with aligned columns, the master's own and the whole tree's CPU
/// and memory, and the workers' own status lines. Every line ends in `\n`.
fn render(report: &StatusReport, figures: &Figures) -> String {
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
            "RECYCLED",
            "CPU%",
            "MEM",
            "LAST-EXIT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, w) in report.workers.iter().enumerate() {
        let usage = figures.workers.get(i).copied().flatten();
        rows.push(vec![
            w.slot.to_string(),
            w.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            w.generation.to_string(),
            w.state.clone(),
            w.uptime_ms.map_or_else(|| "-".to_string(), format_duration),
            w.restarts.to_string(),
            w.recycles.to_string(),
            cpu_cell(usage),
            mem_cell(usage),
            w.last_exit.clone().unwrap_or_else(|| "-".to_string()),
        ]);
    }
    out.push_str(&table(&rows, ""));
    out.push_str(&format!(
        "\nmaster: CPU% {}, MEM {}; with every worker's tree: CPU% {}, MEM {}\n",
        cpu_cell(figures.master),
        mem_cell(figures.master),
        cpu_cell(figures.total),
        mem_cell(figures.total),
    ));
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
pub(super) fn printable(text: &str) -> String {
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
pub(super) fn table(rows: &[Vec<String>], indent: &str) -> String {
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
pub(super) fn format_duration(ms: u64) -> String {
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
    fn figures() -> Figures {
        let usage = |cpu_percent, rss_bytes| Usage {
            cpu_percent,
            rss_bytes,
        };
        Figures {
            master: Some(usage(0.04, 3 << 20)),
            total: Some(usage(12.5, 40 << 20)),
            workers: vec![Some(usage(12.46, 37 << 20)), None],
        }
    }

    #[test]
    fn render_status_prints_a_header_listeners_aligned_workers_and_figures() {
        assert_eq!(
            render(&StatusReport::example(), &figures()),
            "\
master pid 4242, up 3h12m, generation 3: 2 of 2 workers ready
listeners:
  http       0.0.0.0:8080    (from systemd)
  admin-api  127.0.0.1:9000

SLOT  PID   GEN  STATE    UPTIME  RESTARTS  RECYCLED  CPU%  MEM      LAST-EXIT
0     4243  3    ready    3h12m   0         0         12.5  37.0MiB  -
1     -     2    backoff  -       12        0         -     -        exited with status 1

master: CPU% 0.0, MEM 3.0MiB; with every worker's tree: CPU% 12.5, MEM 40.0MiB
"
        );
    }

    #[test]
    fn render_status_without_listeners_workers_or_figures() {
        let report = StatusReport {
            master_pid: 7,
            uptime_ms: 999,
            generation: 1,
            status: String::new(),
            listeners: vec![],
            workers: vec![],
            instance: "api".into(),
        };
        assert_eq!(
            render(&report, &Figures::default()),
            "master pid 7, up 0s, generation 1\nlisteners: none\n\n\
             SLOT  PID  GEN  STATE  UPTIME  RESTARTS  RECYCLED  CPU%  MEM  LAST-EXIT\n\n\
             master: CPU% -, MEM -; with every worker's tree: CPU% -, MEM -\n"
        );
    }

    #[test]
    fn json_status_adds_cpu_and_rss_to_the_report_and_each_worker() {
        let text = to_json(&StatusReport::example(), &figures());
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["master_pid"], 4242);
        assert_eq!(v["instance"], "hawkey");
        assert_eq!(v["master_rss_bytes"], 3 << 20);
        assert_eq!(v["master_cpu_percent"], 0.04);
        assert_eq!(v["rss_bytes"], 40 << 20);
        assert_eq!(v["cpu_percent"], 12.5);
        assert_eq!(v["workers"][0]["rss_bytes"], 37 << 20);
        assert_eq!(v["workers"][0]["cpu_percent"], 12.46);
        assert_eq!(v["workers"][0]["restarts"], 0);
        assert_eq!(v["workers"][1]["rss_bytes"], serde_json::Value::Null);
        assert_eq!(v["workers"][1]["cpu_percent"], serde_json::Value::Null);
    }

    #[test]
    fn a_workers_status_line_reaches_the_terminal_with_control_characters_escaped() {
        let mut report = StatusReport::example();
        report.workers[0].status =
            Some("ok\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nfake\tline\u{9b}31m".into());
        report.status = "2 of 2 ready\u{1b}[31m".into();
        let text = render(&report, &Figures::default());
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
