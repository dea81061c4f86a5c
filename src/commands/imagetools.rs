//! `kiln imagetools create|inspect`: merge images into a manifest list in a registry, and show
//! what a reference holds, with `docker buildx imagetools`' flags and output.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use bollard_buildkit_proto::moby::buildkit::v1::StatusResponse;
use tokio::sync::mpsc;

use super::Ctx;
use crate::build::attest::Annotation;
use crate::imagetools::{self, CreateRequest, Output, PushEvent, Template};
use crate::progress::{self, OwnStep, Printer, ProgressMode};
use crate::registry::{Client, Reference};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Create a new image based on source images
    Create(CreateArgs),
    /// Show details of an image in the registry
    Inspect(InspectArgs),
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Read source descriptor from file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<String>,
    /// Set reference for new image
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Show final image instead of pushing
    #[arg(long)]
    dry_run: bool,
    /// Append to existing manifest
    #[arg(long)]
    append: bool,
    /// Set type of progress output ("auto", "none", "plain", "rawjson", "tty")
    #[arg(long, default_value = "auto")]
    progress: String,
    /// Add annotation to the image
    #[arg(long = "annotation", value_name = "ANNOTATION")]
    annotations: Vec<String>,
    /// When only a single source is specified, prefer outputting an image index or manifest
    /// list instead of performing a carbon copy
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    prefer_index: bool,
    /// Filter specified platforms of target image
    #[arg(short = 'p', long = "platform", value_name = "PLATFORM")]
    platforms: Vec<String>,
    /// Source images: references, digests (in the one repository named) or descriptor JSON
    #[arg(value_name = "SOURCE")]
    sources: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct InspectArgs {
    /// Format the output using the given Go template
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Show original, unformatted JSON manifest
    #[arg(long)]
    raw: bool,
    /// The image to inspect
    #[arg(value_name = "NAME")]
    name: String,
}

pub async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    match args.command {
        Sub::Create(a) => create(a).await,
        Sub::Inspect(a) => inspect(a).await,
    }
}

async fn create(args: CreateArgs) -> Result<ExitCode> {
    let tags = args
        .tags
        .iter()
        .map(|t| {
            t.parse::<Reference>()
                .with_context(|| format!("invalid tag {t:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut annotations = Vec::new();
    for a in &args.annotations {
        annotations.extend(Annotation::parse(a).context("failed to parse annotations")?);
    }
    let mut inputs = Vec::new();
    for f in &args.files {
        inputs.push(std::fs::read_to_string(f).with_context(|| format!("reading --file {f}"))?);
    }
    if args.append {
        inputs.extend(args.tags.first().cloned());
    }
    inputs.extend(args.sources.iter().cloned());
    let platforms = crate::platform::parse_list(&args.platforms).context("invalid --platform")?;
    let mode: ProgressMode = args.progress.parse()?;
    let sources = imagetools::sources_from_args(&inputs, &tags)?;
    let req = CreateRequest {
        sources,
        tags,
        annotations,
        prefer_index: args.prefer_index,
        dry_run: args.dry_run,
    };
    let client = Client::new();
    if req.dry_run {
        let created =
            imagetools::create_for_platforms(&client, &req, &platforms, &|_, _| {}).await?;
        let mut out = std::io::stdout().lock();
        out.write_all(&created.bytes)?;
        out.write_all(b"\n")?;
        return Ok(ExitCode::SUCCESS);
    }
    let (tx, rx) = mpsc::channel(1024);
    let display = tokio::spawn(progress::run(Printer::new(mode), rx));
    let steps = PushSteps {
        tx,
        steps: Mutex::new(HashMap::new()),
    };
    let created =
        imagetools::create_for_platforms(&client, &req, &platforms, &|tag, e| steps.report(tag, e))
            .await;
    drop(steps);
    let _ = display.await;
    let created = created?;
    tracing::debug!(
        digest = %created.digest,
        media_type = %created.media_type,
        uploaded_blob_bytes = created.uploaded_blob_bytes,
        "imagetools create finished"
    );
    Ok(ExitCode::SUCCESS)
}

/// buildx's `[internal] pushing TAG` steps: one step per tag in the progress display.
struct PushSteps {
    tx: mpsc::Sender<StatusResponse>,
    steps: Mutex<HashMap<String, OwnStep>>,
}

impl PushSteps {
    fn report(&self, tag: &Reference, event: PushEvent) {
        let key = tag.to_string();
        let mut steps = self.steps.lock().expect("push steps");
        let status = match event {
            PushEvent::Started => {
                let (step, shown) = OwnStep::begin(&format!("[internal] pushing {tag}"));
                steps.insert(key, step);
                shown
            }
            PushEvent::Log(line) => {
                let Some(step) = steps.get(&key) else { return };
                step.log(&line)
            }
            PushEvent::Done | PushEvent::Failed(_) => {
                let Some(step) = steps.remove(&key) else {
                    return;
                };
                match event {
                    PushEvent::Failed(e) => step.end(&e),
                    _ => step.end(""),
                }
            }
        };
        // The display keeps up with a handful of steps; a full channel only loses a log line.
        let _ = self.tx.try_send(status);
    }
}

async fn inspect(args: InspectArgs) -> Result<ExitCode> {
    if args.format.is_some() && args.raw {
        anyhow::bail!("format and raw cannot be used together");
    }
    let output = match &args.format {
        Some(f) if !f.is_empty() => Output::Template(Template::parse(f)?),
        _ if args.raw => Output::Raw,
        _ => Output::Summary,
    };
    let reference: Reference = args
        .name
        .parse()
        .with_context(|| format!("invalid image reference {:?}", args.name))?;
    let client = Client::new();
    let bytes = imagetools::inspect(&client, &args.name, &reference, &output).await?;
    let mut out = std::io::stdout().lock();
    match out.write_all(&bytes).and_then(|_| out.flush()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
