//! hawkey(1): the command line from its clap definition (every visible
//! subcommand, its options and its NAME), then the tables: SIGNALS from
//! `master::signals::TABLE`, EXIT STATUS from `exit::Status::ALL`,
//! ENVIRONMENT from `env::READ` and `env::WORKER_VARS`.

use clap::{Arg, Command};
use roff::{Inline, Roff, bold, roman};

use super::{item, literal, page, paragraphs, placeholder, section, see_also};
use crate::config::paths;
use crate::exit::Status;

/// hawkey(1) as roff source.
pub(in crate::cli) fn render(cli: &Command) -> String {
    let mut page = page("HAWKEY", "1", "hawkey manual");
    section(&mut page, "NAME");
    page.text([roman(format!(
        "hawkey - {}",
        lowercase_first(&cli.get_about().map(|a| a.to_string()).unwrap_or_default())
    ))]);
    synopsis(&mut page, cli);
    description(&mut page);
    commands(&mut page, cli);
    signals(&mut page);
    exit_status(&mut page);
    environment(&mut page);
    files(&mut page);
    examples(&mut page);
    see_also(
        &mut page,
        &[
            ("hawkey.yaml", "5"),
            ("systemd.socket", "5"),
            ("sd_notify", "3"),
            ("systemctl", "1"),
            ("journalctl", "1"),
        ],
    );
    super::finish(&page)
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The subcommands the page documents: all but the hidden ones
/// (`generate`, for packaging).
fn visible(cli: &Command) -> impl Iterator<Item = &Command> {
    cli.get_subcommands().filter(|c| !c.is_hide_set())
}

/// The arguments of a subcommand the page lists, options first, then
/// NAME: clap's own `--help` aside.
fn arguments(command: &Command) -> Vec<&Arg> {
    let mut args: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
        .collect();
    args.sort_by_key(|a| a.is_positional());
    args
}

/// An argument as the page writes it: its value name if positional, else
/// its option names and value, `-c FILE` in the synopsis (the short name
/// only, when there is one) or `-c, --config FILE` as an item's tag
/// (`both`).
fn written(arg: &Arg, both: bool) -> Vec<Inline> {
    if arg.is_positional() {
        // `-- COMMAND ...`: what follows `--`, as many words as given.
        if arg.is_last_set() {
            return vec![
                bold("--"),
                roman(" "),
                placeholder(&value_name(arg)),
                roman(" ..."),
            ];
        }
        return vec![placeholder(&value_name(arg))];
    }
    let mut out = Vec::new();
    if let Some(s) = arg.get_short() {
        out.push(bold(format!("-{s}")));
    }
    if let Some(l) = arg.get_long()
        && (both || out.is_empty())
    {
        if !out.is_empty() {
            out.push(roman(", "));
        }
        out.push(bold(format!("--{l}")));
    }
    if arg.get_action().takes_values() {
        out.push(roman(" "));
        out.push(placeholder(&value_name(arg)));
    }
    out
}

fn value_name(arg: &Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase())
}

/// `hawkey run [-c FILE] [NAME]`.
fn usage(command: &Command) -> Vec<Inline> {
    let mut line = vec![bold(format!("hawkey {}", command.get_name()))];
    for arg in arguments(command) {
        line.push(roman(" ["));
        line.extend(written(arg, false));
        line.push(roman("]"));
    }
    line
}

fn synopsis(page: &mut Roff, cli: &Command) {
    section(page, "SYNOPSIS");
    for (i, command) in visible(cli).enumerate() {
        if i > 0 {
            page.control("br", []);
        }
        page.text(usage(command));
    }
    page.control("br", []);
    page.text([bold("hawkey --version")]);
    page.control("br", []);
    page.text([bold("hawkey --help")]);
}

fn description(page: &mut Roff) {
    section(page, "DESCRIPTION");
    paragraphs(
        page,
        "`hawkey` is a pre-fork service manager: one single-threaded master process forks N worker processes that share its listening sockets, supervises them (restart with backoff, readiness, heartbeats, recycling) and replaces them in a rolling reload without dropping a connection. A worker is either the built-in HTTP app or any program, which gets the sockets by the systemd socket-activation protocol (LISTEN_FDS); its configuration is hawkey.yaml(5).

Under systemd, `hawkey.socket` owns the listening socket and `hawkey.service` runs `hawkey run` as Type=notify (Type=notify-reload on systemd 253 and later, where `systemctl reload` sends SIGHUP): the master reports readiness, reloads and its pool state (STATUS=) with sd_notify(3), and its workers' output reaches the journal under each worker's own pid. Without systemd, hawkey binds the sockets itself and keeps a pidfile for scripts.",
    );
    page.control("SS", ["Instances"]);
    paragraphs(
        page,
        &format!(
            "`status`, `reload` and `stop` reach a running master through its control socket. An instance NAME is `hawkey@NAME.service` with `hawkey@NAME.socket`: its configuration is {dir}/NAME.yaml, its pidfile and control socket are in {root}/hawkey-NAME/. The default instance, `hawkey`, is `hawkey.service`, with {dir}/hawkey.yaml and {root}/hawkey/. A command names an instance by NAME (`hawkey status api`), or a configuration file with -c FILE or HAWKEY_CONFIG (whose pidfile and control_socket keys say where its master is); with neither, it means the default instance (and `hawkey status` lists them all).",
            dir = paths::CONFIG_DIR,
            root = paths::SYSTEM_RUNTIME_ROOT,
        ),
    );
}

fn commands(page: &mut Roff, cli: &Command) {
    section(page, "COMMANDS");
    for command in visible(cli) {
        page.control("SS", [command.get_name()]);
        page.text(usage(command));
        page.control("PP", []);
        let about = command
            .get_long_about()
            .or(command.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        paragraphs(page, &sentence(about));
        page.control("RS", ["4"]);
        for arg in arguments(command) {
            item(page, written(arg, true), &help(arg));
        }
        page.control("RE", []);
    }
    page.control("SS", ["Other options"]);
    item(
        page,
        vec![bold("-h"), roman(", "), bold("--help")],
        "Print help and exit (-h a summary); after a command, that command's (`hawkey run --help`).",
    );
    item(
        page,
        vec![bold("-V"), roman(", "), bold("--version")],
        "Print hawkey's version and exit.",
    );
}

/// `text` ending with a full stop: clap drops the one of a doc comment's
/// single paragraph.
fn sentence(mut text: String) -> String {
    if !text.ends_with(['.', ':', ')']) {
        text.push('.');
    }
    text
}

fn help(arg: &Arg) -> String {
    let mut text = sentence(
        arg.get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default(),
    );
    if let Some(env) = arg.get_env() {
        text.push_str(&format!(
            " The environment variable {} sets it too.",
            env.to_string_lossy()
        ));
    }
    text
}

fn signals(page: &mut Roff) {
    section(page, "SIGNALS");
    paragraphs(
        page,
        "The master blocks the signals it acts on and reads them in its event loop, so one that arrives during start-up waits its turn. `systemctl reload` sends SIGHUP or runs `hawkey reload --wait`, `systemctl stop` sends SIGTERM.",
    );
    for (names, meaning) in crate::master::signals::TABLE {
        item(page, vec![bold(*names)], meaning);
    }
}

fn exit_status(page: &mut Roff) {
    section(page, "EXIT STATUS");
    for status in Status::ALL {
        item(
            page,
            vec![bold(status.code().to_string())],
            status.meaning(),
        );
    }
    page.control("PP", []);
    paragraphs(
        page,
        "hawkey.service has RestartPreventExitStatus=78: an invalid configuration is not restarted in a loop.",
    );
}

fn environment(page: &mut Roff) {
    section(page, "ENVIRONMENT");
    for var in crate::env::READ {
        item(page, vec![bold(var.name)], var.meaning);
    }
    page.control("SS", ["Set for the workers"]);
    paragraphs(
        page,
        "hawkey sets these in every worker's environment; they are never passed on from the master's own environment and are refused in workers.env. A library worker removes the ones meant for it alone before the app runs.",
    );
    for var in crate::env::WORKER_VARS {
        item(page, vec![bold(var.name)], var.meaning);
    }
    item(
        page,
        vec![
            bold(crate::env::LD_PRELOAD),
            roman(", "),
            bold(crate::env::NODE_OPTIONS),
        ],
        "exec'd workers get hawkey's preload library and, for Node, its drain shim (--require) before their own value (workers.preload).",
    );
}

fn files(page: &mut Roff) {
    use crate::spawn::inject;
    section(page, "FILES");
    let dir = paths::CONFIG_DIR;
    let run = paths::SYSTEM_RUNTIME_ROOT;
    let rows: Vec<(String, String)> = vec![
        (
            format!("{dir}/hawkey.yaml"),
            "The default instance's configuration (hawkey.yaml(5)); when it does not exist, `hawkey run` uses the same file embedded in the binary.".into(),
        ),
        (format!("{dir}/NAME.yaml"), "Instance NAME's configuration.".into()),
        (
            format!("{run}/hawkey/hawkey.pid"),
            "The default instance's pidfile: locked while the master runs, its pid once every worker is ready.".into(),
        ),
        (
            format!("{run}/hawkey/hawkey.sock"),
            "The default instance's control socket (`hawkey status`, `reload`, `stop`).".into(),
        ),
        (
            format!("{run}/hawkey-NAME/"),
            "Instance NAME's runtime directory: its hawkey.pid and hawkey.sock.".into(),
        ),
        (
            "/usr/lib/systemd/system/hawkey.service, hawkey.socket".into(),
            "The default instance: the socket listens on 127.0.0.1:8080 and starts the service on the first connection.".into(),
        ),
        (
            "/usr/lib/systemd/system/hawkey@.service, hawkey@.socket".into(),
            "The instance templates: hawkey@NAME runs NAME.yaml; its socket needs a ListenStream= of its own (see EXAMPLES).".into(),
        ),
        (
            "/usr/lib/systemd/system-generators/hawkey-systemd-generator".into(),
            "On systemd 253 and later, makes hawkey.service and hawkey@.service Type=notify-reload.".into(),
        ),
        (
            format!("/usr/lib/{}/hawkey/{}", inject::MULTIARCH, inject::LIBRARY),
            "The preload library exec'd workers get (workers.adopt, readiness for ready: auto).".into(),
        ),
        (
            inject::NODE_SHIM.into(),
            "The Node drain shim (workers.preload).".into(),
        ),
    ];
    for (file, what) in rows {
        item(page, vec![bold(file)], &what);
    }
}

fn examples(page: &mut Roff) {
    section(page, "EXAMPLES");
    paragraphs(
        page,
        "Run the master in the foreground with the embedded default configuration (the built-in app on 127.0.0.1:8080, one worker per CPU), as a user:",
    );
    literal(page, "hawkey run");
    paragraphs(
        page,
        "Check a changed configuration, then apply it with a rolling reload that returns once the new workers serve:",
    );
    literal(
        page,
        "hawkey check -c /etc/hawkey/hawkey.yaml\nsudo hawkey reload --wait",
    );
    paragraphs(
        page,
        "List every instance on the host, then show one with its workers:",
    );
    literal(page, "hawkey status\nhawkey status api");
    paragraphs(
        page,
        "Add an instance api serving on 127.0.0.1:8081: write its configuration, give its socket an address, and enable the socket (the first connection starts the service):",
    );
    literal(
        page,
        "cat > /etc/hawkey/api.yaml <<EOF\nlisten:\n  - {name: http, address: \"127.0.0.1:8081\"}\nworkers:\n  count: 2\nEOF\nsystemctl edit hawkey@api.socket      # [Socket]\n                                      # ListenStream=127.0.0.1:8081\nsystemctl enable --now hawkey@api.socket",
    );
    paragraphs(page, "Follow the master and its workers in the journal:");
    literal(page, "journalctl -u hawkey.service -f");
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::man::tests::plain;

    fn rendered() -> String {
        render(&crate::cli::args::Cli::command())
    }

    #[test]
    fn every_section_is_there_in_order() {
        let page = rendered();
        let sections: Vec<&str> = page
            .lines()
            .filter_map(|l| l.strip_prefix(".SH "))
            .collect();
        assert_eq!(
            sections,
            [
                "NAME",
                "SYNOPSIS",
                "DESCRIPTION",
                "COMMANDS",
                "SIGNALS",
                "\"EXIT STATUS\"",
                "ENVIRONMENT",
                "FILES",
                "EXAMPLES",
                "\"SEE ALSO\""
            ]
        );
        assert!(
            page.contains(".TH HAWKEY 1 \"\" \"hawkey "),
            "{}",
            &page[..200]
        );
        assert!(page.contains("\nhawkey \\- a pre\\-fork service manager for systemd hosts\n"));
        assert!(page.is_ascii());
    }

    #[test]
    fn every_subcommand_is_documented_with_its_options_and_name() {
        let page = plain(&rendered());
        for command in ["run", "check", "status", "reload", "stop"] {
            assert!(
                page.contains(&format!("\n{command}\n")),
                "no section for {command}"
            );
            assert!(
                page.contains(&format!("hawkey {command} [-c FILE]")),
                "no usage of {command}"
            );
        }
        for usage in [
            "hawkey run [-c FILE] [--count N] [--listen ADDR] [--adopt PORT] [NAME] [-- COMMAND ...]",
            "hawkey check [-c FILE] [--count N] [--listen ADDR] [--adopt PORT] [-q] [NAME] [-- COMMAND ...]",
            "hawkey status [-c FILE] [--json] [NAME]",
            "hawkey reload [-c FILE] [--wait] [NAME]",
            "-c, --config FILE",
            "/etc/hawkey/NAME.yaml",
            "/run/hawkey-NAME/",
            "The environment variable HAWKEY_CONFIG sets it too.",
        ] {
            assert!(page.contains(usage), "{usage} not in the page");
        }
        assert!(
            !page.contains("generate"),
            "the hidden subcommand is documented"
        );
    }

    #[test]
    fn every_exit_status_every_signal_and_every_variable_is_listed() {
        let page = plain(&rendered());
        for status in Status::ALL {
            assert!(
                page.contains(&format!(
                    "\n{}\n{}",
                    status.code(),
                    status.meaning().replace('`', "")
                )),
                "exit status {}",
                status.code()
            );
        }
        for (names, meaning) in crate::master::signals::TABLE {
            assert!(page.contains(&format!("\n{names}\n{meaning}")), "{names}");
        }
        for name in crate::env::READ
            .iter()
            .map(|v| v.name)
            .chain(crate::env::WORKER_VARS.iter().map(|v| v.name))
        {
            assert!(page.contains(&format!("\n{name}\n")), "{name}");
        }
    }

    #[test]
    fn it_names_only_pages_that_are_installed() {
        let page = plain(&rendered());
        for missing in [
            "hawkey-run",
            "hawkey-check",
            "hawkey-status",
            "hawkey-reload",
            "hawkey-stop",
        ] {
            assert!(!page.contains(missing), "{missing} named");
        }
        assert!(page.ends_with(
            "hawkey.yaml(5), systemd.socket(5), sd_notify(3), systemctl(1), journalctl(1)"
        ));
    }

    #[test]
    fn the_examples_add_an_instance_with_three_commands() {
        let page = plain(&rendered());
        for line in [
            "cat > /etc/hawkey/api.yaml <<EOF",
            "systemctl edit hawkey@api.socket",
            "ListenStream=127.0.0.1:8081",
            "systemctl enable --now hawkey@api.socket",
            "hawkey reload --wait",
        ] {
            assert!(page.contains(line), "{line}");
        }
    }
}
