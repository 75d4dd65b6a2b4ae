//! The command line, defined once: hawkey(1) and the completions are
//! generated from it (`hawkey generate`, used by the packaging).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hawkey",
    version,
    about = "A pre-fork service manager for systemd hosts",
    after_long_help = crate::exit::help_table()
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the master: bind or take the listeners, start and supervise the workers.
    ///
    /// The flags set keys over the file's values (or the built-in
    /// default's, when there is no file), on start and on every reload:
    /// `hawkey run --count 2 --adopt 3000 -- node server.js`.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        flags: Flags,
    },
    /// Validate the configuration and print it as it takes effect.
    ///
    /// Also finds what `hawkey run` would refuse or fail on, and exits as
    /// run would: a missing script of an interpreter (78), a listen
    /// address another process holds (1), a pidfile or control-socket
    /// directory that cannot be used (73). With the flags of `hawkey run`,
    /// prints the configuration they make, ready to save as hawkey.yaml.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        flags: Flags,
        /// Print nothing when the configuration is valid (for ExecStartPre=).
        #[arg(short, long)]
        quiet: bool,
    },
    /// List every instance on the host, or show one master and its workers.
    ///
    /// Without NAME, -c or HAWKEY_CONFIG: one line per instance found in
    /// /etc/hawkey (NAME.yaml) or in /run (a runtime directory with a
    /// control socket), running or not; exit 0 once listed. With NAME or
    /// -c: that master, its listeners and its workers (exit 3 if not
    /// running).
    ///
    /// CPU% is measured over 0.2 s, as top(1) does (100% is one core); MEM
    /// is the resident memory (RSS) summed over the process tree: the
    /// master and every worker with all their descendants in the list, a
    /// worker and its descendants in a worker's row. Both are read from
    /// /proc by this command; the master does no extra work for them.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Reload the configuration with a rolling replacement of the workers.
    Reload {
        #[command(flatten)]
        config: ConfigArg,
        /// Return only when the reload finished: exit 0, or non-zero with
        /// the reason (78: invalid configuration). For ExecReload=.
        #[arg(long)]
        wait: bool,
    },
    /// Stop the running master gracefully; returns once it has stopped.
    Stop(ConfigArg),
    /// Write a man page (man: hawkey(1), man5: hawkey.yaml(5)) or a shell
    /// completion script to stdout (for packaging).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Generated {
    /// hawkey(1).
    Man,
    /// hawkey.yaml(5).
    Man5,
    Bash,
    Zsh,
    Fish,
}

/// A man page (from this very CLI definition and hawkey's tables, see
/// `cli::man`) or a completion script.
pub(crate) fn generate(what: Generated) -> Vec<u8> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = Vec::new();
    match what {
        Generated::Man => out = super::man::hawkey::render(&command).into_bytes(),
        Generated::Man5 => out = super::man::hawkey_yaml::render().into_bytes(),
        Generated::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut command, "hawkey", &mut out)
        }
        Generated::Zsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut command, "hawkey", &mut out)
        }
        Generated::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut command, "hawkey", &mut out)
        }
    }
    out
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArg {
    /// Configuration file [default: /etc/hawkey/hawkey.yaml, or the built-in
    /// default configuration when that file does not exist]
    #[arg(short, long, env = crate::env::HAWKEY_CONFIG, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// The instance (hawkey@NAME.service): its configuration is
    /// /etc/hawkey/NAME.yaml, its pidfile and control socket are in
    /// /run/hawkey-NAME/; "hawkey" is the default instance (hawkey.service,
    /// /run/hawkey/). Not with -c; named, it takes the place of
    /// HAWKEY_CONFIG.
    #[arg(value_name = "NAME")]
    pub(crate) instance: Option<String>,
}

/// The flags of `hawkey run` and `hawkey check` that set keys (see
/// `config::Overrides`).
#[derive(Debug, clap::Args)]
pub(crate) struct Flags {
    /// Run N workers (workers.count: auto, or 1 to 1024).
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<String>,
    /// Listen on ADDR (listen: one listener, host:port, [v6]:port or
    /// unix:/path), unless systemd passes the sockets.
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Hand the listener to the program's own bind() of PORT
    /// (workers.adopt; a port, or an address of one).
    #[arg(long, value_name = "PORT")]
    pub(crate) adopt: Option<String>,
    /// The program to run and its arguments (workers.app: exec,
    /// workers.command), after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

impl Flags {
    pub(crate) fn into_overrides(self) -> crate::config::Overrides {
        crate::config::Overrides {
            count: self.count,
            listen: self.listen,
            adopt: self.adopt,
            command: self.command,
        }
    }
}
