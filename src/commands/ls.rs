//! `kiln ls`: every builder (stored ones, then one per Docker context) with its nodes' status,
//! BuildKit version and platforms, in buildx's table or as JSON lines.

use std::process::ExitCode;

use anyhow::{bail, Result};

use super::Ctx;
use crate::builder::{self, display, display::Shown};
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Format the output (table, json)
    #[arg(long, default_value = "table")]
    format: String,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

pub async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    let json = match args.format.as_str() {
        "table" => false,
        "json" => true,
        other => bail!("unsupported format {other:?} (supported: table, json)"),
    };
    let store = Store::open()?;
    let (current, builders) = {
        let txn = store.read()?;
        (builder::current_name(&txn)?, builder::list_builders(&txn)?)
    };
    let infos = futures::future::join_all(builders.iter().map(|b| async move {
        match b {
            Ok(b) => builder::load_nodes(b).await,
            Err(_) => Vec::new(),
        }
    }))
    .await;
    let shown: Vec<Shown<'_>> = builders
        .iter()
        .zip(infos.iter())
        .map(|(b, nodes)| match b {
            Ok(builder) => Shown::Loaded { builder, nodes },
            Err(broken) => Shown::Broken(broken),
        })
        .collect();
    if json {
        print!("{}", display::ls_json(&shown, &current));
        return Ok(ExitCode::SUCCESS);
    }
    let (table, problems) = display::ls_table(&shown, &current, !args.no_trunc);
    print!("{table}");
    if !problems.is_empty() {
        eprintln!();
        for p in problems {
            eprintln!("{p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
