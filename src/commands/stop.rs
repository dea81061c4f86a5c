//! `kiln stop [NAME]`: stops a builder's BuildKit daemons (a no-op for the Docker Engine's
//! own BuildKit, which lives as long as the Engine).

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::Ctx;
use crate::builder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Builder to stop (default: the current one)
    #[arg(value_name = "NAME")]
    name: Option<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let name = args.name.as_deref().or(ctx.builder.as_deref());
    let b = builder::resolve_named(name)?;
    for node in &b.nodes {
        node.driver
            .stop()
            .await
            .with_context(|| format!("stopping node {}", node.name))?;
    }
    Ok(ExitCode::SUCCESS)
}
