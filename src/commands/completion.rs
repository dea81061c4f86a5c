//! `kiln completion bash|zsh|fish`: shell completion scripts.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to generate completions for
    pub shell: clap_complete::Shell,
}

pub async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "kiln", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
