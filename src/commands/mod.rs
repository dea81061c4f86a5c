//! One file per command: each turns its flags into typed options and calls into the library.

pub mod bake;
pub mod build;
pub mod completion;
pub mod create;
pub mod dial_stdio;
pub mod du;
pub mod history;
pub mod imagetools;
pub mod inspect;
pub mod ls;
pub mod prune;
pub mod rm;
pub mod stop;
pub mod use_;
pub mod version;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// What every command may need from the global flags.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// `--builder` / `BUILDX_BUILDER`.
    pub builder: Option<String>,
    pub debug: bool,
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        builder: cli.builder.filter(|b| !b.is_empty()),
        debug: cli.debug,
    };
    match cli.command {
        Command::Bake(a) => bake::run(a, &ctx).await,
        Command::Build(a) => build::run(*a, &ctx).await,
        Command::Create(a) => create::run(a, &ctx).await,
        Command::Use(a) => use_::run(a, &ctx).await,
        Command::Ls(a) => ls::run(a, &ctx).await,
        Command::Inspect(a) => inspect::run(a, &ctx).await,
        Command::Rm(a) => rm::run(a, &ctx).await,
        Command::Stop(a) => stop::run(a, &ctx).await,
        Command::DialStdio(a) => dial_stdio::run(a, &ctx).await,
        Command::Version(a) => version::run(a, &ctx).await,
        Command::Completion(a) => completion::run(a, &ctx).await,
        Command::History(a) => history::run(a, &ctx).await,
        Command::Imagetools(a) => imagetools::run(a, &ctx).await,
        Command::Du(a) => du::run(a, &ctx).await,
        Command::Prune(a) => prune::run(a, &ctx).await,
    }
}
