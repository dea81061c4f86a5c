//! `kiln use NAME`: makes a builder the current one for the current Docker endpoint
//! (`--global`: for every endpoint).

use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use super::Ctx;
use crate::dockercfg;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Set builder as default for current context
    #[arg(long)]
    default: bool,
    /// Builder persists context changes
    #[arg(long)]
    global: bool,
    /// Builder to use
    #[arg(value_name = "NAME")]
    name: Option<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let name = args
        .name
        .as_deref()
        .or(ctx.builder.as_deref())
        .context("use requires a builder name")?;
    let store = Store::open()?;
    let txn = store.write()?;
    let key = dockercfg::current_endpoint_key()?;
    // Every choice is remembered per endpoint, so `--default` needs no extra bookkeeping; it
    // is accepted for buildx compatibility.
    let _ = args.default;
    if txn.get(name)?.is_some() {
        txn.set_current(&key, Some(name), args.global)?;
        return Ok(ExitCode::SUCCESS);
    }
    let context = dockercfg::current_context_name()?;
    if name == dockercfg::DEFAULT_CONTEXT && context != dockercfg::DEFAULT_CONTEXT {
        bail!("run `docker context use default` to switch to default context");
    }
    if name == dockercfg::DEFAULT_CONTEXT || name == context {
        txn.set_current(&key, None, false)?;
        return Ok(ExitCode::SUCCESS);
    }
    if dockercfg::context_by_name(name)?.is_some() {
        bail!("run `docker context use {name}` to switch to context {name}");
    }
    bail!("failed to find instance {name:?}")
}
