//! `kiln dial-stdio`: connects stdin and stdout to the current builder's BuildKit, as
//! `buildx dial-stdio` does, so other BuildKit clients (`buildctl --addr`, `ssh host kiln
//! dial-stdio`) can reuse kiln's drivers.

use std::process::ExitCode;

use anyhow::{Context as _, Result};

use super::Ctx;
use crate::builder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dial the node that serves this platform (default: the builder's first node)
    #[arg(long, value_name = "PLATFORM")]
    platform: Option<String>,
    /// Set type of progress output ("auto", "plain", "tty", "quiet", "rawjson"); kiln's
    /// drivers start nothing before dialing, so there is nothing to show
    #[arg(long = "progress", default_value = "none", value_parser = parse_progress)]
    _progress: crate::progress::ProgressMode,
}

fn parse_progress(s: &str) -> std::result::Result<crate::progress::ProgressMode, String> {
    s.parse::<crate::progress::ProgressMode>()
        .map_err(|e| e.to_string())
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let b = builder::resolve_named(ctx.builder.as_deref())?;
    let node = match &args.platform {
        Some(p) => {
            let wanted = crate::platform::parse_reported(std::slice::from_ref(p));
            b.nodes
                .iter()
                .find(|n| wanted.iter().any(|w| n.platforms.contains(w)))
                .or(b.nodes.first())
        }
        None => b.nodes.first(),
    }
    .with_context(|| format!("builder {:?} has no nodes", b.name))?;
    let conn = node
        .driver
        .dial()
        .await
        .with_context(|| format!("dialing node {}", node.name))?;
    let (mut from_daemon, mut to_daemon) = tokio::io::split(conn);
    let upstream = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut to_daemon).await?;
        // stdin closed: tell the daemon we are done writing, keep reading its answers.
        tokio::io::AsyncWriteExt::shutdown(&mut to_daemon).await
    };
    let downstream = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Stdout is line-buffered: flush every chunk or the peer waits on a half-sent frame.
        let mut out = tokio::io::stdout();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from_daemon.read(&mut buf).await?;
            if n == 0 {
                return out.flush().await;
            }
            out.write_all(&buf[..n]).await?;
            out.flush().await?;
        }
    };
    // The daemon closing its side ends the command; stdin ending only half-closes.
    let upstream = async {
        let _ = upstream.await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        down = downstream => down.context("copying from BuildKit to stdout")?,
        _ = upstream => {}
    }
    Ok(ExitCode::SUCCESS)
}
