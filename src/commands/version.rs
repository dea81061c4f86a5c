//! `kiln version`: what kiln is, in buildx's one-line shape.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    println!(
        "kiln v{} {}",
        env!("CARGO_PKG_VERSION"),
        env!("KILN_GIT_REVISION")
    );
    Ok(ExitCode::SUCCESS)
}
