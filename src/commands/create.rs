//! `kiln create [CONTEXT|ENDPOINT]`: stores a new builder, or adds/changes/removes one of its
//! nodes (`--append`, `--node`, `--leave`), and prints its name.
//!
//! Unlike buildx, kiln creates `docker`-driver builders on any Docker endpoint or context, e.g.
//! `kiln create --name e28 --driver docker unix:///path/docker.sock`; buildx only has the
//! implicit one per Docker context.

use std::process::ExitCode;

use anyhow::{anyhow, Context as _, Result};

use super::Ctx;
use crate::builder::{self, create, create::CreateOpts, Resolved};
use crate::dockercfg;
use crate::platform;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Builder instance name
    #[arg(long)]
    name: Option<String>,
    /// Driver to use (available: "docker", "remote", "containerd")
    #[arg(long)]
    driver: Option<String>,
    /// Create/modify node with given name
    #[arg(long = "node")]
    node: Option<String>,
    /// Fixed platforms for current node
    #[arg(long = "platform")]
    platforms: Vec<String>,
    /// Options for the driver
    #[arg(long = "driver-opt")]
    driver_opts: Vec<String>,
    /// BuildKit daemon flags
    #[arg(long)]
    buildkitd_flags: Option<String>,
    /// BuildKit daemon config file
    #[arg(long, alias = "config")]
    buildkitd_config: Option<std::path::PathBuf>,
    /// Boot builder after creation
    #[arg(long)]
    bootstrap: bool,
    /// Append a node to builder instead of changing it
    #[arg(long)]
    append: bool,
    /// Remove a node from builder instead of changing it
    #[arg(long)]
    leave: bool,
    /// Set the current builder instance
    #[arg(long = "use")]
    use_: bool,
    /// A Docker context name or a Docker host (unix://, tcp://)
    #[arg(value_name = "CONTEXT|ENDPOINT")]
    endpoint: Option<String>,
}

pub async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    let store = Store::open()?;
    if args.leave {
        let txn = store.write()?;
        create::leave(&txn, args.name.as_deref(), args.node.as_deref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let buildkitd_config = args
        .buildkitd_config
        .as_ref()
        .map(|p| {
            std::fs::read_to_string(p)
                .with_context(|| format!("reading BuildKit config {}", p.display()))
        })
        .transpose()?;
    let mut opts = CreateOpts {
        name: args.name.clone(),
        driver: args.driver.clone(),
        node_name: args.node.clone(),
        platforms: platform::parse_list(&args.platforms)?,
        driver_opts: create::parse_driver_opts(&args.driver_opts)?,
        buildkitd_flags: create::parse_buildkitd_flags(args.buildkitd_flags.as_deref())?,
        buildkitd_config,
        endpoint: args.endpoint.clone(),
        append: args.append,
    };

    let planned = {
        let txn = store.write()?;
        let (ng, _) = create::plan(&txn, &opts)?;
        if !args.bootstrap {
            save(&txn, &ng, &opts, args.use_)?;
            println!("{}", ng.name);
            return Ok(ExitCode::SUCCESS);
        }
        ng
    };

    // Boot with the store unlocked (other kiln commands must not wait on a slow daemon), then
    // save only if every node came up: a failed bootstrap leaves the store untouched.
    let b = builder::from_node_group(
        Resolved {
            group: planned.clone(),
            docker_context: false,
        },
        None,
    )?;
    for node in &b.nodes {
        node.driver.bootstrap().await.map_err(|e| {
            anyhow!(
                "failed to initialize builder {} ({}): {e}",
                b.name,
                node.name
            )
        })?;
    }
    for (node, info) in b.nodes.iter().zip(builder::load_nodes(&b).await) {
        if let Some(e) = info.error {
            return Err(anyhow!(
                "failed to initialize builder {} ({}): {e}",
                b.name,
                node.name
            ));
        }
    }
    let txn = store.write()?;
    // Plan again under the lock: another kiln may have changed the store meanwhile.
    opts.name = Some(planned.name.clone());
    let (ng, _) = create::plan(&txn, &opts)?;
    save(&txn, &ng, &opts, args.use_)?;
    println!("{}", ng.name);
    Ok(ExitCode::SUCCESS)
}

fn save(
    txn: &crate::store::Txn<'_>,
    ng: &crate::store::NodeGroup,
    _opts: &CreateOpts,
    use_: bool,
) -> Result<()> {
    txn.save(ng)?;
    if use_ {
        txn.set_current(&dockercfg::current_endpoint_key()?, Some(&ng.name), false)?;
    }
    Ok(())
}
