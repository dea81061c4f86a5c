//! `kiln du`: the build cache records of every node of the builder, with buildx's table,
//! `--verbose` blocks or JSON lines, and its totals.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::buildcache::{self, CacheFilter, DuFormat};
use crate::builder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Provide filter values
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// Shorthand for "--format=pretty"
    #[arg(long)]
    verbose: bool,
    /// Format the output (table, pretty, json)
    #[arg(long)]
    format: Option<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let format = DuFormat::parse(args.format.as_deref(), args.verbose)?;
    let filter = CacheFilter::parse(&args.filters)?;
    let b = builder::resolve(ctx).await?;
    let mut per_node = Vec::with_capacity(b.nodes.len());
    for node in &b.nodes {
        per_node.push(buildcache::disk_usage(node.driver.clone(), &filter).await?);
    }
    let out = buildcache::du_output(&per_node, format, filter.given, buildcache::now());
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
