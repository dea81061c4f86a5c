//! `kiln rm [NAME...]`: removes stored builders (stopping their daemons unless
//! `--keep-daemon`), or every inactive one with `--all-inactive`. Docker-context builders
//! cannot be removed, as in buildx.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use anyhow::{bail, Result};

use super::Ctx;
use crate::builder::{self, display};
use crate::store::{Store, Txn};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep BuildKit state
    #[arg(long)]
    keep_state: bool,
    /// Keep the BuildKit daemon running
    #[arg(long)]
    keep_daemon: bool,
    /// Remove all inactive builders
    #[arg(long)]
    all_inactive: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
    /// Builders to remove (default: the current one)
    #[arg(value_name = "NAME")]
    names: Vec<String>,
}

const INACTIVE_WARNING: &str =
    "WARNING! This will remove all builders that are not in running state. Are you sure you want to continue?";

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    if args.all_inactive && !args.names.is_empty() {
        bail!("cannot specify builder name when --all-inactive is set");
    }
    if args.all_inactive && !args.force && !confirm(INACTIVE_WARNING)? {
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open()?;
    let txn = store.write()?;
    if args.all_inactive {
        return remove_inactive(&txn, &args).await;
    }
    let names: Vec<Option<String>> = if args.names.is_empty() {
        vec![ctx.builder.clone()]
    } else {
        args.names.iter().cloned().map(Some).collect()
    };
    let mut failed = false;
    for name in names {
        let resolved = match &name {
            Some(n) => builder::node_group(&txn, n),
            None => builder::current_node_group(&txn),
        };
        let shown = name
            .clone()
            .or_else(|| resolved.as_ref().ok().map(|r| r.group.name.clone()))
            .unwrap_or_default();
        match remove_one(&txn, resolved, &args).await {
            Ok(()) => eprintln!("{shown} removed"),
            Err(e) => {
                failed = true;
                eprintln!("failed to remove {shown}: {e:#}");
            }
        }
    }
    if failed {
        bail!("failed to remove one or more builders");
    }
    Ok(ExitCode::SUCCESS)
}

async fn remove_one(txn: &Txn<'_>, resolved: Result<builder::Resolved>, args: &Args) -> Result<()> {
    let resolved = resolved?;
    if resolved.docker_context {
        bail!(
            "context builder cannot be removed, run `docker context rm {0}` to remove this context",
            resolved.group.name
        );
    }
    let name = resolved.group.name.clone();
    // A builder whose drivers cannot be built (e.g. its context is gone) can still be forgotten.
    let teardown = match builder::from_node_group(resolved, None) {
        Ok(b) => teardown(&b, args).await,
        Err(e) => Err(e),
    };
    txn.remove(&name)?;
    teardown
}

async fn teardown(b: &builder::Builder, args: &Args) -> Result<()> {
    // `--keep-state` has nothing to keep apart for the drivers kiln has: none owns volumes.
    let _ = args.keep_state;
    for node in &b.nodes {
        if !args.keep_daemon {
            node.driver.stop().await?;
            node.driver.remove().await?;
        }
    }
    Ok(())
}

async fn remove_inactive(txn: &Txn<'_>, args: &Args) -> Result<ExitCode> {
    let builders = builder::list_builders(txn)?;
    for b in builders.iter().flatten() {
        if b.docker_context {
            continue;
        }
        let nodes = builder::load_nodes(b).await;
        if display::is_inactive(&nodes) {
            let result = teardown(b, args).await;
            txn.remove(&b.name)?;
            eprintln!("{} removed", b.name);
            result?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks on the terminal, as buildx does: anything but `y` is no.
fn confirm(message: &str) -> Result<bool> {
    print!("{message} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer
        .trim_end_matches(['\r', '\n'])
        .eq_ignore_ascii_case("y"))
}
