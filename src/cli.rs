//! The command line. Man page and completions are generated from it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hawkey",
    version,
    about = "A pre-fork service manager for systemd hosts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the master: bind or take the listeners, start and supervise the workers.
    Run(ConfigArg),
    /// Validate the configuration and print it as it takes effect.
    Check(ConfigArg),
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
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file [default: /etc/hawkey/hawkey.yaml, or the built-in
    /// default configuration when that file does not exist]
    #[arg(short, long, env = "HAWKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}
