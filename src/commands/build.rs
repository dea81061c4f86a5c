//! `kiln build`: start a build, with `docker buildx build`'s flags.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Ctx;
use crate::build::flags::{Origin, RawOptions};
use crate::build::options::BuildOptions;
use crate::progress::ProgressMode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build context: a directory, a git or https URL, or - for stdin
    #[arg(value_name = "PATH | URL | -")]
    pub context: String,

    /// Additional build contexts (e.g., name=path)
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,

    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<String>,

    /// Image identifier (format: "[registry/]repository[:tag]")
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,

    /// Set build-time variables
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,

    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,

    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,

    /// Set target platform for build
    #[arg(long = "platform", env = "DOCKER_DEFAULT_PLATFORM")]
    pub platforms: Vec<String>,

    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,

    /// Do not cache specified stages
    #[arg(long = "no-cache-filter")]
    pub no_cache_filter: Vec<String>,

    /// Always attempt to pull all referenced images
    #[arg(long)]
    pub pull: bool,

    /// Set the networking mode for the "RUN" instructions during build
    #[arg(long, default_value = "default")]
    pub network: String,

    /// Add a custom host-to-IP mapping (format: "host:ip")
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,

    /// Shared memory size for build containers
    #[arg(long = "shm-size", value_name = "BYTES")]
    pub shm_size: Option<String>,

    /// Set the parent cgroup for the "RUN" instructions during build
    #[arg(long = "cgroup-parent", value_name = "CGROUP")]
    pub cgroup_parent: Option<String>,

    /// Ulimit options
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,

    /// Set type of progress output ("auto", "plain", "tty", "quiet", "rawjson")
    #[arg(long, env = "BUILDKIT_PROGRESS", default_value = "auto")]
    pub progress: String,

    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Shorthand for "--output=type=docker"; "--load=containerd://SOCKET?namespace=NS" loads
    /// into a containerd namespace instead
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Append,
        value_name = "BOOL | containerd://SOCKET?namespace=NS"
    )]
    pub load: Vec<String>,

    /// Shorthand for "--output=type=registry"
    #[arg(long)]
    pub push: bool,

    /// Output destination (format: "type=local,dest=path")
    #[arg(
        short = 'o',
        long = "output",
        value_name = "PATH | type=TYPE[,KEY=VALUE]"
    )]
    pub outputs: Vec<String>,

    /// External cache sources (e.g., "user/app:cache", "type=local,src=path/to/dir")
    #[arg(long = "cache-from", value_name = "SOURCE")]
    pub cache_from: Vec<String>,

    /// Cache export destinations (e.g., "user/app:cache", "type=local,dest=path/to/dir")
    #[arg(long = "cache-to", value_name = "DEST")]
    pub cache_to: Vec<String>,

    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]")
    #[arg(long = "secret", value_name = "id=ID[,src=PATH|env=VAR]")]
    pub secrets: Vec<String>,

    /// SSH agent socket or keys to expose to the build (format: "default|<id>[=<socket>|<key>[,<key>]]")
    #[arg(long = "ssh", value_name = "default|ID[=SOCKET|KEY[,KEY]]")]
    pub ssh: Vec<String>,

    /// Attestation parameters (format: "type=sbom,generator=image")
    #[arg(long = "attest", value_name = "PARAMS")]
    pub attest: Vec<String>,

    /// Shorthand for "--attest=type=provenance"
    #[arg(long, value_name = "PARAMS")]
    pub provenance: Option<String>,

    /// Shorthand for "--attest=type=sbom"
    #[arg(long, value_name = "PARAMS")]
    pub sbom: Option<String>,

    /// Add annotation to the image
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,

    /// Write the image ID to a file
    #[arg(long = "iidfile", value_name = "FILE")]
    pub iidfile: Option<PathBuf>,

    /// Write build result metadata to a file
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Set method for evaluating build ("check", "outline", "targets")
    #[arg(long = "call", value_name = "METHOD", default_value = "build")]
    pub call: String,

    /// Shorthand for "--call=check"
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub check: Option<String>,

    /// Allow extra privileged entitlement (e.g., "network.host", "security.insecure")
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
}

impl Args {
    /// Parses every flag into typed options; each error names the flag it came from.
    fn into_options(self) -> Result<(BuildOptions, ProgressMode)> {
        let progress: ProgressMode = if self.quiet {
            if !matches!(self.progress.as_str(), "auto" | "quiet" | "none") {
                anyhow::bail!(
                    "progress={} and quiet cannot be used together",
                    self.progress
                );
            }
            ProgressMode::Quiet
        } else {
            self.progress.parse().context("--progress")?
        };
        let call = match self.check.as_deref() {
            Some(v) => match v {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => "check".to_string(),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => self.call.clone(),
                _ => anyhow::bail!(
                    "invalid argument {v:?} for \"--check\" flag: strconv.ParseBool: parsing {v:?}: invalid syntax"
                ),
            },
            None => self.call.clone(),
        };
        let raw = RawOptions {
            origin: Origin::Flags,
            context: self.context,
            file: self.file,
            dockerfile_inline: None,
            build_contexts: self.build_contexts,
            tags: self.tags,
            build_args: self.build_args,
            target: self.target,
            labels: self.labels,
            platforms: self.platforms,
            no_cache: self.no_cache,
            no_cache_filter: self.no_cache_filter,
            pull: self.pull,
            network: self.network,
            add_hosts: self.add_hosts,
            shm_size: self.shm_size,
            cgroup_parent: self.cgroup_parent,
            ulimits: self.ulimits,
            // A repeated flag: the last one wins, as for buildx's boolean.
            load: self.load.last().cloned(),
            push: self.push,
            outputs: self.outputs,
            cache_from: self.cache_from,
            cache_to: self.cache_to,
            secrets: self.secrets,
            ssh: self.ssh,
            attest: self.attest,
            provenance: self.provenance,
            sbom: self.sbom,
            annotations: self.annotations,
            iidfile: self.iidfile,
            metadata_file: self.metadata_file,
            call,
            allow: self.allow,
        };
        let opts = raw.into_options()?;
        Ok((opts, progress))
    }
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    // As in buildx, `--progress=quiet` is `-q` (the image ID is printed); `none` only hides.
    let quiet = args.quiet || args.progress == "quiet";
    let dockerfile_name =
        crate::build::call::dockerfile_mapping_src(&args.context, args.file.as_deref());
    let (opts, progress) = args.into_options()?;
    let iidfile = opts.iidfile.clone();
    let metadata_file = opts.metadata_file.clone();
    let call = opts.call.clone();
    let builder = crate::builder::resolve(ctx).await?;
    // buildx words every failure of the build itself (not of its flags) as "failed to build:
    // ..."; a solve's error block already says it.
    let mut result = crate::build::build(&builder, opts, progress, ctx.debug)
        .await
        .map_err(|e| {
            if e.is::<crate::AlreadyReported>() {
                e
            } else {
                e.context("failed to build")
            }
        })?;
    if metadata_file.is_some() && call.is_none() {
        let mode = crate::history::provenance::MetadataProvenance::from_env();
        let keys = crate::history::provenance::for_build(&builder, &result.exporter_response, mode)
            .await
            .context("resolving provenance for metadata file")?;
        result.exporter_response.extend(keys);
    }

    let image_id = result.image_id().unwrap_or_default().to_string();
    if quiet {
        println!("{image_id}");
    }
    if let Some(path) = iidfile {
        crate::store::write_atomic(&path, image_id.as_bytes())
            .with_context(|| format!("writing image ID file {}", path.display()))?;
    }
    if let Some(path) = metadata_file {
        let json = serde_json::to_vec_pretty(&result.metadata_json())?;
        crate::store::write_atomic(&path, &json)
            .with_context(|| format!("writing metadata file {}", path.display()))?;
    }
    if let Some(call) = call {
        let rendered = crate::build::call::render_result(
            &call,
            &result.exporter_response,
            dockerfile_name.as_deref(),
        )?;
        print!("{}", rendered.stdout);
        if let Some(e) = rendered.error {
            anyhow::bail!("{e}");
        }
        if rendered.exit_code != 0 {
            return Err(anyhow::Error::new(crate::AlreadyReported(
                rendered.exit_code,
            )));
        }
    }
    Ok(ExitCode::SUCCESS)
}
