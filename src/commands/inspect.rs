//! `kiln inspect [NAME]`: one builder's nodes in detail (buildx's layout).

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::Ctx;
use crate::builder::{self, display, display::Shown};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Ensure builder has booted before inspecting
    #[arg(long)]
    bootstrap: bool,
    /// Builder to inspect (default: the current one)
    #[arg(value_name = "NAME")]
    name: Option<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let name = args.name.as_deref().or(ctx.builder.as_deref());
    let b = builder::resolve_named(name)?;
    let mut nodes = builder::load_nodes(&b).await;
    if args.bootstrap {
        let mut booted = false;
        for (node, info) in b.nodes.iter().zip(nodes.iter()) {
            if !info.is_running() {
                node.driver
                    .bootstrap()
                    .await
                    .with_context(|| format!("booting node {}", node.name))?;
                booted = true;
            }
        }
        if booted {
            nodes = builder::load_nodes(&b).await;
        }
    }
    print!(
        "{}",
        display::inspect(&Shown::Loaded {
            builder: &b,
            nodes: &nodes
        })
    );
    Ok(ExitCode::SUCCESS)
}
