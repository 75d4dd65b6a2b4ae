//! hawkey.yaml(5): the rules of the file, then every key of
//! `config::keys::KEYS` with its type and default, grouped by top-level
//! section, and an example.

use roff::{Roff, bold, italic, roman};

use super::{item, literal, page, paragraphs, section, see_also};
use crate::config::keys::{Default, KEYS, Key};
use crate::config::{self, paths};

/// hawkey.yaml(5) as roff source.
pub(in crate::cli) fn render() -> String {
    let mut page = page("HAWKEY.YAML", "5", "hawkey manual");
    section(&mut page, "NAME");
    page.text([roman(
        "hawkey.yaml - configuration of the hawkey pre-fork service manager",
    )]);
    section(&mut page, "SYNOPSIS");
    page.text([bold(format!("{}/hawkey.yaml", paths::CONFIG_DIR))]);
    page.control("br", []);
    page.text([
        bold(format!("{}/", paths::CONFIG_DIR)),
        italic("NAME"),
        bold(".yaml"),
    ]);
    description(&mut page);
    keys(&mut page);
    example(&mut page);
    section(&mut page, "FILES");
    item(
        &mut page,
        vec![bold(format!("{}/hawkey.yaml", paths::CONFIG_DIR))],
        "The default instance's configuration (hawkey.service), as shipped: every key, with what it does; those it does not set are commented out. When it does not exist, `hawkey run` uses the same file, embedded in the binary.",
    );
    item(
        &mut page,
        vec![
            bold(format!("{}/", paths::CONFIG_DIR)),
            italic("NAME"),
            bold(".yaml"),
        ],
        "Instance NAME's configuration (hawkey@NAME.service).",
    );
    see_also(
        &mut page,
        &[
            ("hawkey", "1"),
            ("systemd.socket", "5"),
            ("sd_notify", "3"),
            ("systemctl", "1"),
        ],
    );
    super::finish(&page)
}

fn description(page: &mut Roff) {
    section(page, "DESCRIPTION");
    paragraphs(
        page,
        &format!(
            "hawkey(1) reads its configuration from a YAML file: `hawkey run` when it starts and again at each reload (SIGHUP, `systemctl reload`, `hawkey reload`), `hawkey check` to validate it and print it as it takes effect, every default filled in. A reload whose file is invalid changes nothing: the running workers go on. Every key may be left out; what then holds is its default below. A file that holds nothing at all is refused (write {{}} for every default), as is a file larger than {} bytes.",
            config::MAX_FILE_BYTES
        ),
    );
    page.control("SS", ["Rules"]);
    let rules = [
        (
            "Unknown keys",
            "are errors, as are duplicate keys: a misspelt key never goes unnoticed.",
        ),
        (
            "Durations",
            "take a unit: ms, s, m or h, combined as in 1m30s (500ms, 30s, 5m, 1h); at most 24h.",
        ),
        (
            "Sizes",
            "take a unit of powers of 1024: KiB, MiB or GiB (or K, M, G), as in 512MiB.",
        ),
        ("Percentages", "are written with a % sign, as in 10%."),
        (
            "Signals",
            "are named, with or without SIG: SIGTERM, TERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH.",
        ),
        (
            "File modes",
            "are octal, best quoted as in \"0660\" (a bare 0660 means the same to hawkey, a number to other YAML tools).",
        ),
        (
            "null",
            "sets a key to nothing where that means something of its own (pidfile, control_socket, workers.heartbeat_timeout), as the key's entry says.",
        ),
        (
            "Errors",
            "are one line, FILE:LINE:COL: key.path: what is wrong (what is allowed), and exit status 78 (invalid configuration); `hawkey check -c FILE` finds them before a reload does.",
        ),
    ];
    for (what, rule) in rules {
        item(page, vec![bold(what)], rule);
    }
}

fn keys(page: &mut Roff) {
    section(page, "KEYS");
    paragraphs(
        page,
        "Each key by its dotted path from the top (listen[] is any entry of the listen list), with its type and its default.",
    );
    for top in config::keys::sections() {
        page.control("SS", [top]);
        let inside = |k: &&Key| {
            k.path == top
                || k.path.starts_with(&format!("{top}."))
                || k.path.starts_with(&format!("{top}[]."))
        };
        for key in KEYS.iter().filter(inside) {
            key_item(page, key);
        }
    }
}

fn key_item(page: &mut Roff, key: &Key) {
    page.control("TP", []);
    page.text([bold(key.path)]);
    let default = match key.default {
        Default::Is(value) => vec![roman("Default: "), bold(value), roman(".")],
        Default::Unset(means) => vec![roman(format!("Default: {means}."))],
        Default::Required => vec![roman("Required.")],
        Default::Section => vec![roman("A mapping of the keys below.")],
    };
    let mut line = vec![italic(key.kind), roman(". ")];
    line.extend(default);
    page.text(line);
    page.control("br", []);
    paragraphs(page, key.meaning);
}

fn example(page: &mut Roff) {
    section(page, "EXAMPLE");
    paragraphs(
        page,
        "An unmodified Node app that calls listen(3000), four workers, recycled past 512MiB or a day, on the socket of hawkey.socket (or on 127.0.0.1:8080 when hawkey binds it): workers.adopt hands each worker's own bind of port 3000 the listener http. Under hawkey.service, Node also needs the unit's MemoryDenyWriteExecute= off (the jit.conf drop-in in /usr/share/doc/hawkey/examples).",
    );
    literal(page, EXAMPLE);
}

/// The example of the page; a test checks it is valid.
const EXAMPLE: &str = "listen:
  - {name: http, address: \"127.0.0.1:8080\"}
workers:
  count: 4
  app: exec
  command: [\"/usr/bin/node\", \"/srv/app/server.js\"]
  env: {NODE_ENV: production}
  adopt: {http: 3000}
  user: www-data
  stop_timeout: 10s
  recycle: {memory: 512MiB, age: 24h}
log:
  level: info";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::man::tests::plain;

    #[test]
    fn every_section_is_there_in_order() {
        let page = render();
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
                "KEYS",
                "EXAMPLE",
                "FILES",
                "\"SEE ALSO\""
            ]
        );
        assert!(
            page.contains(".TH HAWKEY.YAML 5 \"\" \"hawkey "),
            "{}",
            &page[..200]
        );
        assert!(page.contains("\nhawkey.yaml \\- configuration of"));
        assert!(page.is_ascii());
    }

    #[test]
    fn every_key_is_listed_with_its_type_and_default_under_its_section() {
        let page = plain(&render());
        for key in KEYS {
            let default = match key.default {
                Default::Is(value) => format!("Default: {value}."),
                Default::Unset(means) => format!("Default: {means}."),
                Default::Required => "Required.".into(),
                Default::Section => "A mapping of the keys below.".into(),
            };
            let entry = format!("\n{}\n{}. {default}\n", key.path, key.kind);
            assert!(page.contains(&entry), "{entry}");
        }
        for key in [
            "workers.recycle.memory",
            "workers.recycle.age",
            "workers.recycle.jitter",
        ] {
            assert!(page.contains(&format!("\n{key}\n")), "{key}");
        }
        let workers = page.find("\nworkers\n").unwrap();
        let log = page.find("\nlog\n").unwrap();
        let memory = page.find("\nworkers.recycle.memory\n").unwrap();
        assert!(workers < memory && memory < log);
    }

    #[test]
    fn the_example_is_a_valid_configuration() {
        // What this host may lack: the user and the program.
        let text = EXAMPLE.replace("  user: www-data\n", "").replace(
            "\"/usr/bin/node\", \"/srv/app/server.js\"",
            "sh, -c, 'exit 0'",
        );
        crate::config::Config::parse(&text, std::path::Path::new("example.yaml"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(plain(&render()).contains("recycle: {memory: 512MiB, age: 24h}"));
        assert!(plain(&render()).contains("adopt: {http: 3000}"));
    }
}
