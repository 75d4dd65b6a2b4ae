//! The command line, defined once: the man page and the completions are
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
    Run(ConfigArg),
    /// Validate the configuration and print it as it takes effect.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print nothing when the configuration is valid (for ExecStartPre=).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the running master and its workers (exit 3 if not running).
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
    /// Write the man page or a shell completion script to stdout (for
    /// packaging).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum Generated {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// The man page or completion script, from this very CLI definition.
pub(crate) fn generate(what: Generated) -> Vec<u8> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = Vec::new();
    match what {
        Generated::Man => {
            clap_mangen::Man::new(command)
                .render(&mut out)
                .expect("rendering into memory cannot fail");
        }
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
    #[arg(short, long, env = "HAWKEY_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}
