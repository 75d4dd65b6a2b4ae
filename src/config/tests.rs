//! Exact error text for the config file: one line, located, key named.

use super::*;

fn err(yaml: &str) -> String {
    Config::parse(yaml, Path::new("/etc/hawkey/hawkey.yaml"))
        .expect_err("config should be rejected")
        .to_string()
}

fn ok(yaml: &str) -> Config {
    Config::parse(yaml, Path::new("t.yaml")).expect("config should be accepted")
}

#[test]
fn the_shipped_default_is_valid_and_runs_the_builtin_app_on_loopback() {
    let config = ok(EMBEDDED_DEFAULT);
    assert_eq!(config.listen.len(), 1);
    assert_eq!(config.listen[0].name, "http");
    assert_eq!(config.listen[0].address.to_string(), "127.0.0.1:8080");
    assert_eq!(config.workers.count, WorkerCount::Auto);
    assert_eq!(config.workers.app, AppKind::Builtin);
    assert_eq!(config.workers.stop_timeout.0, Duration::from_secs(25));
    assert_eq!(config.pidfile, Pidfile::Default);
    assert_eq!(
        config.log,
        Log {
            level: Level::Info,
            format: Format::Auto
        }
    );
}

#[test]
fn a_file_that_holds_nothing_is_refused_where_it_ends() {
    let refused = |at: &str| {
        format!(
            "/etc/hawkey/hawkey.yaml:{at}: the file holds no settings (write {{}} for every default)"
        )
    };
    assert_eq!(err(""), refused("1:1"));
    assert_eq!(err("  \n\t\n"), refused("3:1"));
    assert_eq!(err("# only a comment\n"), refused("2:1"));
    assert_eq!(err("\u{feff}# a comment\n   # another"), refused("2:13"));
    // `{}` says "every default" on purpose.
    assert_eq!(ok("{}").workers.ready_timeout.0, Duration::from_secs(30));
    assert_eq!(ok("# every default\n{}\n"), ok("{}"));
}

#[test]
fn the_locator_of_a_file_that_holds_nothing_is_the_default() {
    let keys = |text| schema::parse_locator(text).map(schema::RawLocator::into_keys);
    assert_eq!(keys(""), Some((Pidfile::Default, Pidfile::Default)));
    assert_eq!(keys("# c\n"), Some((Pidfile::Default, Pidfile::Default)));
}

#[test]
fn unknown_keys_are_rejected_with_location_and_path() {
    assert_eq!(
        err("workers:\n  count: 2\n  bogus: 1\n"),
        "/etc/hawkey/hawkey.yaml:3:3: workers.bogus: unknown field 'bogus', expected one of count, app, command, env, cwd, user, group, ready, ready_timeout, heartbeat_timeout, stop_signal, stop_timeout, restart_backoff, recycle, adopt, preload"
    );
    assert!(
        err("listen:\n  - name: a\n    address: 127.0.0.1:1\n    port: 3\n")
            .starts_with("/etc/hawkey/hawkey.yaml:4:5: listen[0].port: unknown field 'port'")
    );
}

#[test]
fn out_of_range_counts_point_at_the_value() {
    assert_eq!(
        err("workers:\n  count: 2000\n"),
        "/etc/hawkey/hawkey.yaml:2:10: workers.count: 2000 is out of range (auto, or 1 to 1024)"
    );
    assert_eq!(
        err("workers:\n  count: 0\n"),
        "/etc/hawkey/hawkey.yaml:2:10: workers.count: 0 is out of range (auto, or 1 to 1024)"
    );
    assert_eq!(
        err("workers:\n  count: many\n"),
        "/etc/hawkey/hawkey.yaml:2:10: workers.count: invalid count 'many' (auto, or 1 to 1024)"
    );
    // RawCount's `expecting` spells the limit out; it must be MAX_WORKERS.
    assert_eq!(
        err("workers:\n  count: 2.5\n"),
        format!(
            "/etc/hawkey/hawkey.yaml:2:10: workers.count: expected auto or a whole number of workers from 1 to {MAX_WORKERS}"
        )
    );
}

#[test]
fn syntax_errors_name_the_value_holding_them_not_its_parent() {
    assert_eq!(
        err("workers:\n  count: 2\n  user: 'nobody\n"),
        "/etc/hawkey/hawkey.yaml:3:9: workers.user: unclosed quote"
    );
    assert_eq!(
        err("listen:\n  - {name: a, address: \"x\\q\"}\n"),
        "/etc/hawkey/hawkey.yaml:2:24: listen[0].address: while parsing a quoted scalar, found unknown escape character"
    );
}

#[test]
fn durations_need_units() {
    assert_eq!(
        err("workers:\n  stop_timeout: 30\n"),
        "/etc/hawkey/hawkey.yaml:2:17: workers.stop_timeout: duration '30' has no unit (a number with a unit: ms, s, m or h, e.g. 500ms, 30s, 1m30s)"
    );
}

#[test]
fn enum_values_list_what_is_allowed() {
    assert_eq!(
        err("workers:\n  app: docker\n"),
        "/etc/hawkey/hawkey.yaml:2:8: workers.app: unknown variant 'docker', expected one of builtin, exec"
    );
    assert!(
        err("log:\n  level: loud\n")
            .starts_with("/etc/hawkey/hawkey.yaml:2:10: log.level: unknown variant 'loud'")
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let e = err("workers:\n  count: 1\n  count: 2\n");
    assert!(
        e.starts_with("/etc/hawkey/hawkey.yaml:3:3: workers: duplicate mapping key"),
        "{e}"
    );
}

#[test]
fn syntax_errors_are_located() {
    let e = err("workers:\n  count: [1\n");
    assert!(e.starts_with("/etc/hawkey/hawkey.yaml:2:"), "{e}");
    let e = err("listen: {\n");
    assert!(e.starts_with("/etc/hawkey/hawkey.yaml:"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn exec_needs_a_command_that_exists() {
    assert_eq!(
        err("workers:\n  app: exec\n"),
        "/etc/hawkey/hawkey.yaml:2:8: workers.app: app: exec needs workers.command (the program and its arguments)"
    );
    assert_eq!(
        err("workers:\n  app: exec\n  command: [/nonexistent/node, x.js]\n"),
        "/etc/hawkey/hawkey.yaml:3:13: workers.command[0]: '/nonexistent/node' is not an executable file (give an absolute path, or a name found in PATH)"
    );
    assert_eq!(
        err("workers:\n  command: [/bin/true]\n"),
        "/etc/hawkey/hawkey.yaml:2:12: workers.command: is only used with app: exec"
    );
    let c = ok("workers:\n  app: exec\n  command: [sh, -c, 'exit 0']\n");
    assert_eq!(c.workers.command, ["sh", "-c", "exit 0"]);
}

#[test]
fn a_missing_program_is_said_to_be_missing_where_it_was_looked_for() {
    // A bare name is looked for in PATH, whatever workers.cwd says.
    assert_eq!(
        err("workers:\n  app: exec\n  cwd: /tmp\n  command: [hawkey-no-such-node, x.js]\n"),
        "/etc/hawkey/hawkey.yaml:4:13: workers.command[0]: 'hawkey-no-such-node' was not found in any directory of PATH (give an absolute path, or a name found in PATH)"
    );
    // A relative path, in workers.cwd.
    assert_eq!(
        err("workers:\n  app: exec\n  cwd: /tmp\n  command: [./hawkey-no-such-app]\n"),
        "/etc/hawkey/hawkey.yaml:4:13: workers.command[0]: './hawkey-no-such-app' is not an executable file in workers.cwd '/tmp' (give an absolute path, or a name found in PATH)"
    );
}

#[test]
fn listener_addresses_are_checked() {
    assert_eq!(
        err("listen:\n  - name: http\n    address: localhost:80\n"),
        "/etc/hawkey/hawkey.yaml:3:14: listen[0].address: invalid address 'localhost:80': use an IP address such as 127.0.0.1 or [::1], not a host name (host:port, [v6]:port or unix:/absolute/path)"
    );
    assert_eq!(
        err(
            "listen:\n  - {name: a, address: '127.0.0.1:1'}\n  - {name: a, address: '127.0.0.1:2'}\n"
        ),
        "/etc/hawkey/hawkey.yaml:3:12: listen[1].name: duplicate listener name 'a'"
    );
    assert!(err("listen:\n  - {name: a, address: 'unix:rel/sock'}\n").contains("must be absolute"));
    assert!(err("listen: []\n").contains("listen: needs at least one listener"));
    let c = ok(
        "listen:\n  - {name: web, address: '[::1]:8080'}\n  - {name: admin, address: 'unix:/run/x.sock', mode: '0600'}\n",
    );
    assert_eq!(
        c.listen[0].address,
        Address::Tcp("[::1]:8080".parse().unwrap())
    );
    assert_eq!(c.listen[1].mode, Some(Mode(0o600)));
}

#[test]
fn reserved_environment_names_are_refused() {
    assert_eq!(
        err("workers:\n  env:\n    LISTEN_FDS: '3'\n"),
        "/etc/hawkey/hawkey.yaml:3:5: workers.env.LISTEN_FDS: is set by hawkey for each worker and cannot be overridden"
    );
}

#[test]
fn every_variable_hawkey_sets_for_workers_is_refused_in_env() {
    // Issue #12: WATCHDOG_USEC used to pass, and a worker then saw two.
    assert_eq!(
        err("workers:\n  env: {WATCHDOG_USEC: \"1\"}\n"),
        "/etc/hawkey/hawkey.yaml:2:9: workers.env.WATCHDOG_USEC: is set by hawkey for each worker and cannot be overridden"
    );
    for var in crate::env::WORKER_VARS {
        let e = err(&format!("workers:\n  env: {{{}: x}}\n", var.name));
        assert!(
            e.ends_with(": is set by hawkey for each worker and cannot be overridden"),
            "{e}"
        );
    }
}

#[test]
fn a_nul_in_an_env_value_points_at_the_value_as_it_is_used() {
    // The value's place is read again for this error; these are the
    // places the first reading gave when it kept every value located.
    for (yaml, at) in [
        ("workers:\n  env:\n    X: y\n    A: \"a\\0b\"\n", "4:8"),
        ("workers:\n  env: {A: ok, B: \"a\\0b\"}\n", "2:19"),
        ("workers:\n  user: &x \"a\\0b\"\n  env:\n    A: *x\n", "4:8"),
        (
            "workers:\n  env:\n    <<: {A: \"a\\0b\"}\n    B: c\n",
            "3:9",
        ),
    ] {
        let name = if yaml.contains("B: \"a") { "B" } else { "A" };
        assert_eq!(
            err(yaml),
            format!("/etc/hawkey/hawkey.yaml:{at}: workers.env.{name}: value contains a NUL byte"),
            "{yaml:?}"
        );
    }
}

#[test]
fn unknown_users_are_refused() {
    assert_eq!(
        err("workers:\n  user: no-such-user-hawkey\n"),
        "/etc/hawkey/hawkey.yaml:2:9: workers.user: no such user 'no-such-user-hawkey'"
    );
}

#[test]
fn pidfile_may_be_disabled_or_must_be_absolute() {
    assert_eq!(ok("pidfile: null\n").pidfile, Pidfile::Disabled);
    assert_eq!(
        ok("pidfile: /tmp/x.pid\n").pidfile,
        Pidfile::Path("/tmp/x.pid".into())
    );
    assert_eq!(
        err("pidfile: x.pid\n"),
        "/etc/hawkey/hawkey.yaml:1:10: pidfile: must be an absolute path (or null to disable it)"
    );
}

#[test]
fn backoff_initial_cannot_exceed_max() {
    assert!(
        err("workers:\n  restart_backoff: {initial: 1m}\n")
            .contains("initial (1m) is longer than max (30s)")
    );
}

#[test]
fn recycle_takes_a_size_an_age_and_a_jitter_that_defaults_to_ten_percent() {
    let config = ok("workers:\n  recycle: {memory: 512MiB, age: 24h}\n");
    assert_eq!(
        config.workers.recycle,
        Some(Recycle {
            memory: Some(Size(512 << 20)),
            age: Some(Span(Duration::from_secs(24 * 3600))),
            jitter: Some(Percent(10)),
        })
    );
    let memory_only = ok("workers:\n  recycle:\n    memory: 1G\n");
    assert_eq!(
        memory_only.workers.recycle,
        Some(Recycle {
            memory: Some(Size(1 << 30)),
            age: None,
            jitter: None,
        })
    );
    let age_only = ok("workers:\n  recycle: {age: 2s, jitter: 0%}\n");
    assert_eq!(age_only.workers.recycle.unwrap().jitter, Some(Percent(0)));
    assert_eq!(ok("workers:\n  recycle: null\n").workers.recycle, None);
    assert_eq!(ok("{}").workers.recycle, None);
}

#[test]
fn the_shipped_recycle_block_is_valid_once_uncommented() {
    let text = EMBEDDED_DEFAULT.replace("  # recycle: {", "  recycle: {");
    assert_ne!(
        text, EMBEDDED_DEFAULT,
        "hawkey.yaml has no commented recycle block"
    );
    assert_eq!(
        ok(&text).workers.recycle,
        Some(Recycle {
            memory: Some(Size(512 << 20)),
            age: Some(Span(Duration::from_secs(24 * 3600))),
            jitter: Some(Percent(10)),
        })
    );
}

#[test]
fn recycle_errors_name_the_key_and_what_is_allowed() {
    for (yaml, expected) in [
        (
            "workers:\n  recycle: {memory: 512MB}\n",
            "2:21: workers.recycle.memory: size '512MB' is ambiguous: write 512MiB for powers of 1024 (a whole number with a unit: KiB, MiB or GiB (K, M, G), e.g. 512MiB)",
        ),
        (
            "workers:\n  recycle: {memory: 512}\n",
            "2:21: workers.recycle.memory: size '512' has no unit (a whole number with a unit: KiB, MiB or GiB (K, M, G), e.g. 512MiB)",
        ),
        (
            "workers:\n  recycle: {memory: 0MiB}\n",
            "2:21: workers.recycle.memory: must be at least 1MiB (a size such as 512MiB)",
        ),
        (
            "workers:\n  recycle: {memory: 512KiB}\n",
            "2:21: workers.recycle.memory: must be at least 1MiB (a size such as 512MiB)",
        ),
        (
            "workers:\n  recycle: {age: 500ms}\n",
            "2:18: workers.recycle.age: must be at least 1s (a duration up to 24h, such as 24h)",
        ),
        (
            "workers:\n  recycle: {age: 1h, jitter: 60%}\n",
            "2:30: workers.recycle.jitter: 60% is out of range (0% to 50%)",
        ),
        (
            "workers:\n  recycle: {age: 1h, jitter: 10}\n",
            "2:30: workers.recycle.jitter: invalid percentage '10' (a whole number followed by %, e.g. 10%)",
        ),
        (
            "workers:\n  recycle: {memory: 1GiB, jitter: 5%}\n",
            "2:35: workers.recycle.jitter: spreads workers.recycle.age, which is not set (set age, or remove jitter)",
        ),
        (
            "workers:\n  recycle: {}\n",
            "2:12: workers.recycle: sets neither memory nor age (set one of them, or remove recycle)",
        ),
        (
            "workers:\n  recycle: {memory: 1GiB, requests: 1000}\n",
            "2:27: workers.recycle.requests: unknown field 'requests', expected one of memory, age, jitter",
        ),
    ] {
        let got = err(yaml);
        let got = got.strip_prefix("/etc/hawkey/hawkey.yaml:").unwrap_or(&got);
        assert_eq!(got, expected, "{yaml}");
    }
}

#[test]
fn alias_bombs_are_refused() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        yaml.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = err(&yaml);
    assert!(e.starts_with("/etc/hawkey/hawkey.yaml:"), "{e}");
}

#[test]
fn the_effective_config_prints_as_yaml_that_reads_back_the_same() {
    let config = ok(
        "workers:\n  count: 3\n  env: {A: b}\n  restart_backoff: {initial: 250ms}\n  recycle: {memory: 1536KiB, age: 1h30m, jitter: 5%}\n",
    );
    let printed = config.to_yaml();
    assert_eq!(
        Config::parse(&printed, Path::new("printed")).unwrap(),
        config,
        "{printed}"
    );
}

#[test]
fn errors_stay_one_line_whatever_the_file_holds() {
    // Newlines and escapes in keys and values, as the fuzzer found them.
    for yaml in [
        "{\"a\\nb\": 1}\n",
        "listen:\n  - {name: \"x\\ny\", address: \"127.0.0.1:1\"}\n",
        "listen:\n  - {name: x, address: \"local\\nhost:80\"}\n",
        "workers:\n  user: \"no\\nbody\"\n",
        "workers:\n  count: \"a\\rb\\u001b[31m\"\n",
        "workers:\n  env: {\"A\\nB\": x}\n",
    ] {
        let e = err(yaml);
        assert!(!e.chars().any(char::is_control), "{yaml:?} gave {e:?}");
    }
    assert!(
        err("workers:\n  env: {\"A\\nB\": x}\n")
            .contains("workers.env.A\\nB: invalid variable name")
    );
}

#[test]
fn reload_surge_is_a_number_of_workers_or_a_share_of_the_pool() {
    let surge = |yaml: &str| {
        Config::parse(yaml, Path::new("/etc/hawkey/hawkey.yaml"))
            .unwrap()
            .reload
            .surge
    };
    assert_eq!(surge("{}"), Surge::Workers(1), "one at a time by default");
    assert_eq!(surge("reload: {surge: 4}\n"), Surge::Workers(4));
    assert_eq!(surge("reload: {surge: 25%}\n"), Surge::Percent(25));
    assert_eq!(Surge::Workers(1).of(8), 1);
    assert_eq!(Surge::Workers(50).of(8), 8, "never more than the pool");
    assert_eq!(Surge::Percent(25).of(8), 2);
    assert_eq!(Surge::Percent(25).of(3), 1, "rounded up");
    assert_eq!(Surge::Percent(100).of(256), 256);
    assert_eq!(Surge::Percent(1).of(2), 1, "at least one");
    for (yaml, message) in [
        (
            "reload:\n  surge: 0\n",
            "2:10: reload.surge: 0 is out of range (1 to 1024 workers, or 1% to 100%)",
        ),
        (
            "reload:\n  surge: 101%\n",
            "2:10: reload.surge: 101% is out of range (1 to 1024 workers, or 1% to 100%)",
        ),
        (
            "reload:\n  surge: half\n",
            "2:10: reload.surge: invalid surge 'half' (1 to 1024 workers, or 1% to 100%)",
        ),
        (
            "reload:\n  surge: 2.5\n",
            "2:10: reload.surge: expected a whole number of workers from 1 to 1024, or a percentage such as 25%",
        ),
        (
            "reload:\n  surges: 2\n",
            "2:3: reload.surges: unknown field 'surges', expected one of surge",
        ),
    ] {
        assert_eq!(
            err(yaml),
            format!("/etc/hawkey/hawkey.yaml:{message}"),
            "{yaml}"
        );
    }
}

#[test]
fn ready_is_auto_by_default_and_started_only_when_asked_for() {
    let exec = |extra: &str| format!("workers:\n  app: exec\n  command: [sleep, '1']\n{extra}");
    assert_eq!(ok(&exec("")).workers.ready, Ready::Auto);
    assert_eq!(ok(&exec("  ready: auto\n")).workers.ready, Ready::Auto);
    assert_eq!(ok(&exec("  ready: notify\n")).workers.ready, Ready::Notify);
    assert_eq!(
        ok(&exec("  ready: started\n")).workers.ready,
        Ready::Started
    );
    // Builtin workers send READY=1 as they start accepting: auto, which
    // the old default word also means for them.
    assert_eq!(ok("{}").workers.ready, Ready::Auto);
    assert_eq!(
        ok("workers:\n  ready: started\n").workers.ready,
        Ready::Auto
    );
    assert_eq!(
        err("workers:\n  ready: notify\n"),
        "/etc/hawkey/hawkey.yaml:2:10: workers.ready: builtin workers always report readiness themselves; ready: is for app: exec"
    );
    assert_eq!(
        err(&exec("  ready: Auto\n")),
        "/etc/hawkey/hawkey.yaml:4:10: workers.ready: unknown variant 'Auto', expected one of auto, notify, started"
    );
}
