//! `kiln prune`: removes build cache on every node of the builder, after buildx's
//! confirmation prompt unless `--force`, printing what was removed and the space reclaimed.

use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::buildcache::{self, CacheFilter, PruneOptions, PruneReport};
use crate::builder;

const NORMAL_WARNING: &str =
    "WARNING! This will remove all dangling build cache. Are you sure you want to continue?";
const ALL_CACHE_WARNING: &str =
    "WARNING! This will remove all build cache. Are you sure you want to continue?";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Include internal/frontend images
    #[arg(short, long)]
    all: bool,
    /// Provide filter values (e.g., "until=24h")
    #[arg(long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
    /// Amount of disk space always allowed to keep for cache
    #[arg(long, value_name = "BYTES", value_parser = buildcache::parse_mem_bytes)]
    reserved_space: Option<i64>,
    /// Amount of disk space to keep for cache (deprecated: use --reserved-space)
    #[arg(long, value_name = "BYTES", value_parser = buildcache::parse_mem_bytes, hide = true)]
    keep_storage: Option<i64>,
    /// Target amount of free disk space after pruning
    #[arg(long, value_name = "BYTES", value_parser = buildcache::parse_mem_bytes)]
    min_free_space: Option<i64>,
    /// Maximum amount of disk space allowed to keep for cache
    #[arg(long, value_name = "BYTES", value_parser = buildcache::parse_mem_bytes)]
    max_used_space: Option<i64>,
    /// Provide a more verbose output
    #[arg(long)]
    verbose: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    force: bool,
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    if args.keep_storage.is_some() {
        eprintln!(
            "Flag --keep-storage has been deprecated, keep-storage flag has been changed to reserved-space"
        );
    }
    let opts = PruneOptions {
        all: args.all,
        filter: CacheFilter::parse(&args.filters)?,
        // Like buildx, both flags set one value; the last given wins there, --reserved-space here.
        reserved_space: args.reserved_space.or(args.keep_storage).unwrap_or(0),
        max_used_space: args.max_used_space.unwrap_or(0),
        min_free_space: args.min_free_space.unwrap_or(0),
    };
    let warning = if args.all {
        ALL_CACHE_WARNING
    } else {
        NORMAL_WARNING
    };
    if !args.force && !confirm(warning).await? {
        return Ok(ExitCode::SUCCESS);
    }

    let b = builder::resolve(ctx).await?;
    let mut report = PruneReport::new(args.verbose);
    for node in &b.nodes {
        buildcache::prune(node.driver.clone(), &opts, |rec| {
            let text = report.removed(rec, buildcache::now());
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        })
        .await?;
    }
    print!("{}", report.total());
    Ok(ExitCode::SUCCESS)
}

/// buildx's prompt: the question on stdout, one line read from stdin, yes only for `y`/`Y`.
/// Like buildx it does not check for a terminal: with stdin closed or empty the answer is no.
async fn confirm(message: &str) -> Result<bool> {
    print!("{message} [y/N] ");
    std::io::stdout().flush()?;
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line
    })
    .await?;
    let answer = answer.trim_end_matches(['\n', '\r']);
    Ok(answer.eq_ignore_ascii_case("y"))
}
