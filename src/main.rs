//! kiln: builder instances, builds and bake, as `docker buildx` does them.
//!
//! `main` parses the command line, runs one command from `commands/`, and is the one place that
//! turns an error into what the user sees and into the exit code.

mod build;
mod buildcache;
mod builder;
mod buildkit;
mod cli;
mod commands;
mod containerd;
mod dockercfg;
mod history;
mod imagetools;
mod interrupt;
mod platform;
mod plugin;
mod progress;
mod registry;
mod store;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = plugin::normalize_args(std::env::args_os().collect());
    if plugin::is_metadata_request(&args) {
        print!("{}", plugin::metadata_json());
        return ExitCode::SUCCESS;
    }
    let cli = cli::Cli::parse_from_args(args);
    init_logging(cli.debug);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERROR: cannot start kiln's runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let result = tokio::select! {
            r = commands::run(cli) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::Error::new(Interrupted)),
        };
        // What an interrupted command left undone in a daemon (a containerd lease).
        interrupt::run_pending(std::time::Duration::from_secs(5)).await;
        result
    });
    // Don't wait for background tasks (sessions, progress tickers) after the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) if e.is::<Interrupted>() => {
            progress::restore_terminal();
            ExitCode::from(130)
        }
        Err(e) => {
            progress::restore_terminal();
            if let Some(shown) = e.downcast_ref::<AlreadyReported>() {
                return ExitCode::from(shown.0);
            }
            eprintln!("ERROR: {}", render_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The user pressed Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
struct Interrupted;

/// The failure was already shown to the user in full (e.g. a build's error block); only the
/// exit code is left to set.
#[derive(Debug, thiserror::Error)]
#[error("reported")]
pub struct AlreadyReported(pub u8);

/// One line: the error and its causes, without repeating a cause that the message already holds.
fn render_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if msg.is_empty() || out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out
}

fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = if debug {
        EnvFilter::new("kiln=debug,kiln_drivers=debug")
    } else {
        EnvFilter::try_from_env("KILN_LOG").unwrap_or_else(|_| EnvFilter::new("off"))
    };
    // Colour codes only for a terminal: logs piped into files or CI must stay plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
