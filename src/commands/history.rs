//! `kiln history ls|inspect|logs|rm|export`: build records kept by the builder's BuildKit,
//! with `docker buildx history`'s flags and output.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;

use super::Ctx;
use crate::buildkit::BuildkitClient;
use crate::history::{self, bundle, content::ContentStore, inspect, HistoryNode, Query, Record};
use crate::progress::{self, Printer, ProgressMode};

/// The command users run to read a record's logs, shown by `inspect`.
const LOGS_COMMAND: &str = "kiln history logs";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// List build records
    Ls(LsArgs),
    /// Inspect a build record
    Inspect(InspectArgs),
    /// Print the logs of a build record
    Logs(LogsArgs),
    /// Remove build records
    Rm(RmArgs),
    /// Export build records into Docker Desktop bundle
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
struct LsArgs {
    /// Format the output (table, json)
    #[arg(long, default_value = "table")]
    format: String,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Provide filter values (e.g., "status=error")
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// List records for current repository only
    #[arg(long)]
    local: bool,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Format the output (pretty, json)
    #[arg(long, default_value = "pretty")]
    format: String,
    /// The record (a ref, or ^N for the N-th newest); the newest by default
    #[arg(value_name = "REF")]
    r#ref: Option<String>,
}

#[derive(Debug, clap::Args)]
struct LogsArgs {
    /// Set type of progress output (plain, rawjson, tty)
    #[arg(long, default_value = "plain")]
    progress: String,
    /// The record (a ref, or ^N for the N-th newest); the newest by default
    #[arg(value_name = "REF")]
    r#ref: Option<String>,
}

#[derive(Debug, clap::Args)]
struct RmArgs {
    /// Remove all build records
    #[arg(long)]
    all: bool,
    #[arg(value_name = "REF")]
    refs: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ExportArgs {
    /// Output file path
    #[arg(short, long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    /// Export all build records for the builder
    #[arg(long)]
    all: bool,
    /// Ensure build records are finalized before exporting
    #[arg(long)]
    finalize: bool,
    #[arg(value_name = "REF")]
    refs: Vec<String>,
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    match args.command {
        Sub::Ls(a) => ls(a, ctx).await,
        Sub::Inspect(a) => inspect(a, ctx).await,
        Sub::Logs(a) => logs(a, ctx).await,
        Sub::Rm(a) => rm(a, ctx).await,
        Sub::Export(a) => export(a, ctx).await,
    }?;
    Ok(ExitCode::SUCCESS)
}

/// Every node of the builder, connected.
async fn load_nodes(ctx: &Ctx) -> Result<Vec<HistoryNode>> {
    let builder = crate::builder::resolve(ctx).await?;
    let mut out = Vec::new();
    for node in &builder.nodes {
        let client = BuildkitClient::connect(node.driver.clone())
            .await
            .with_context(|| format!("connecting to builder {:?}", builder.name))?;
        out.push(HistoryNode {
            builder: builder.name.clone(),
            name: node.name.clone(),
            client,
        });
    }
    Ok(out)
}

/// The one record `r#ref` names (the newest without one).
async fn one_record(nodes: &[HistoryNode], r#ref: &str) -> Result<Record> {
    let q = Query {
        r#ref: r#ref.to_string(),
        ..Default::default()
    };
    let recs = history::query_records(nodes, &q).await?;
    recs.into_iter().next().ok_or_else(|| {
        if r#ref.is_empty() {
            anyhow!("no records found")
        } else {
            anyhow!("no record found for ref {ref:?}")
        }
    })
}

async fn ls(args: LsArgs, ctx: &Ctx) -> Result<()> {
    let json = match args.format.as_str() {
        "table" => false,
        "json" => true,
        other => bail!("unsupported format {other:?} (supported: table, json)"),
    };
    let mut filters = Vec::new();
    if args.local {
        let repo = crate::build::git_info::local_repository(&std::env::current_dir()?)?;
        filters.push(format!("repository={repo}"));
    }
    filters.extend(args.filters);
    let nodes = load_nodes(ctx).await?;
    let mut recs = history::query_records(
        &nodes,
        &Query {
            filters,
            ..Default::default()
        },
    )
    .await?;
    history::sort_for_ls(&mut recs);
    let out = if json {
        history::ls_json(&recs)
    } else {
        history::ls_table(
            &recs,
            history::now_nanos(),
            !args.no_trunc,
            std::io::stdout().is_terminal(),
        )
    };
    print!("{out}");
    Ok(())
}

async fn inspect(args: InspectArgs, ctx: &Ctx) -> Result<()> {
    let json = match args.format.as_str() {
        "pretty" => false,
        "json" => true,
        other => bail!("unsupported format {other:?} (supported: pretty, json)"),
    };
    let nodes = load_nodes(ctx).await?;
    let r#ref = args.r#ref.clone().unwrap_or_default();
    let rec = one_record(&nodes, &r#ref).await?;
    let client = &nodes[rec.node_index].client;
    let i = inspect::inspect(client, &rec).await?;
    if json {
        print!("{}", i.to_json());
    } else {
        print!("{}", i.to_text(args.r#ref.is_none(), LOGS_COMMAND));
    }
    Ok(())
}

async fn logs(args: LogsArgs, ctx: &Ctx) -> Result<()> {
    let mode: ProgressMode = args.progress.parse()?;
    let mode = if mode == ProgressMode::Auto {
        ProgressMode::Plain
    } else {
        mode
    };
    let printer = Printer::try_new(mode)?;
    let nodes = load_nodes(ctx).await?;
    let rec = one_record(&nodes, args.r#ref.as_deref().unwrap_or("")).await?;
    let client = &nodes[rec.node_index].client;
    // BuildKit replays a finished build's status stream from the record's logs blob.
    let mut stream = client
        .control()
        .status(control::StatusRequest {
            r#ref: rec.record.r#ref.clone(),
        })
        .await
        .map_err(|s| anyhow!("{}", s.message()))
        .context("reading the build's status")?
        .into_inner();
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    let display = tokio::spawn(progress::run(printer, rx));
    let mut failure = None;
    loop {
        match stream.message().await {
            Ok(Some(msg)) => {
                if tx.send(msg).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(s) => {
                failure = Some(anyhow!("{}", s.message()));
                break;
            }
        }
    }
    drop(tx);
    let _ = display.await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn rm(args: RmArgs, ctx: &Ctx) -> Result<()> {
    if args.refs.is_empty() && !args.all {
        bail!("rm requires at least one argument");
    }
    if !args.refs.is_empty() && args.all {
        bail!("rm requires either --all or at least one argument");
    }
    let nodes = load_nodes(ctx).await?;
    if args.all {
        for node in &nodes {
            for r in history::completed_refs(&node.client, &node.name).await? {
                history::delete_record(&node.client, &r).await?;
            }
        }
        return Ok(());
    }
    // A ref counts as removed when any node removed it; otherwise every node's error is kept.
    let mut failures = Vec::new();
    for r in &args.refs {
        let mut errs = Vec::new();
        for node in &nodes {
            match history::delete_record(&node.client, r).await {
                Ok(()) => {
                    errs.clear();
                    break;
                }
                Err(e) => errs.push(e),
            }
        }
        failures.extend(errs);
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            let mut msg = format!("{n} errors occurred:");
            for e in &failures {
                msg.push_str(&format!("\n\t* {e}"));
            }
            Err(anyhow!(msg))
        }
    }
}

async fn export(args: ExportArgs, ctx: &Ctx) -> Result<()> {
    if args.all && !args.refs.is_empty() {
        bail!("cannot specify refs when using --all");
    }
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write to console, use --output to specify a file");
    }
    let nodes = load_nodes(ctx).await?;
    let refs = if args.refs.is_empty() {
        vec![String::new()]
    } else {
        args.refs.clone()
    };
    let mut picked: Vec<Record> = Vec::new();
    for r in &refs {
        let q = Query {
            r#ref: r.clone(),
            completed_only: true,
            ..Default::default()
        };
        let mut recs = history::query_records(&nodes, &q).await?;
        if recs.is_empty() {
            if r.is_empty() {
                bail!("no records found");
            }
            bail!("no record found for ref {r:?}");
        }
        if args.finalize {
            let mut finalized = false;
            for rec in recs.iter().filter(|rec| rec.record.trace.is_none()) {
                finalized = true;
                for node in &nodes {
                    history::finalize_record(&node.client, &rec.record.r#ref).await?;
                }
            }
            if finalized {
                recs = history::query_records(&nodes, &q).await?;
            }
        }
        if args.all {
            picked.extend(recs);
            break;
        }
        picked.push(recs.remove(0));
    }

    let mut default_platforms = Vec::new();
    for node in &nodes {
        let p = node
            .client
            .list_workers()
            .await
            .ok()
            .and_then(|ws| ws.iter().find_map(|w| w.platforms.first().cloned()))
            .unwrap_or_default();
        default_platforms.push(p);
    }
    let stores: Vec<ContentStore> = nodes
        .iter()
        .map(|n| ContentStore::new(n.client.channel()))
        .collect();
    let exports = picked
        .into_iter()
        .map(|record| bundle::Export {
            default_platform: default_platforms[record.node_index].clone(),
            record,
        })
        .collect();

    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| {
            format!(
                "failed to create output file {:?}",
                path.display().to_string()
            )
        })?),
        None => Box::new(std::io::stdout()),
    };
    let data = bundle::export(&stores, exports).await?;
    out.write_all(&data)?;
    out.flush()?;
    Ok(())
}
