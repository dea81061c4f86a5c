//! The command line, mirroring `docker buildx`.

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    about = "Build with BuildKit: a drop-in for docker buildx",
    disable_version_flag = true
)]
pub struct Cli {
    /// Override the configured builder instance
    #[arg(long, global = true, env = "BUILDX_BUILDER", value_name = "NAME")]
    pub builder: Option<String>,

    /// Enable debug logging
    #[arg(short = 'D', long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build from a file
    #[command(alias = "f")]
    Bake(commands::bake::Args),
    /// Start a build
    #[command(alias = "b")]
    Build(Box<commands::build::Args>),
    /// Create a new builder instance
    Create(commands::create::Args),
    /// Set the current builder instance
    Use(commands::use_::Args),
    /// List builder instances
    Ls(commands::ls::Args),
    /// Inspect current builder instance
    Inspect(commands::inspect::Args),
    /// Remove one or more builder instances
    Rm(commands::rm::Args),
    /// Stop builder instance
    Stop(commands::stop::Args),
    /// Proxy the current builder's BuildKit connection to stdin/stdout
    DialStdio(commands::dial_stdio::Args),
    /// Show kiln version information
    Version(commands::version::Args),
    /// Generate shell completion scripts
    Completion(commands::completion::Args),
    /// Commands to work on build records
    History(commands::history::Args),
    /// Commands to work on images in registry
    Imagetools(commands::imagetools::Args),
    /// Disk usage
    Du(commands::du::Args),
    /// Remove build cache
    Prune(commands::prune::Args),
}

impl Cli {
    /// Parses, exiting with clap's message (and exit code 1 for usage errors, as buildx does).
    pub fn parse_from_args(args: Vec<OsString>) -> Cli {
        match Cli::try_parse_from(args) {
            Ok(cli) => cli,
            Err(e) => {
                let code = match e.kind() {
                    clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                    _ => 1,
                };
                let _ = e.print();
                std::process::exit(code);
            }
        }
    }
}
