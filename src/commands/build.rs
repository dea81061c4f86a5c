//! `kiln build`: start a build, with `docker buildx build`'s flags.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::Ctx;
use crate::build::exporter::ExportSpec;
use crate::build::options::{self, BuildOptions, ContextSource, DockerfileSource, NetworkMode};
use crate::build::{attest, cache};
use crate::platform;
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

    /// Ulimit options
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,

    /// Set type of progress output ("auto", "plain", "tty", "quiet", "rawjson")
    #[arg(long, env = "BUILDKIT_PROGRESS", default_value = "auto")]
    pub progress: String,

    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Shorthand for "--output=type=docker"
    #[arg(long)]
    pub load: bool,

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
        for t in &self.tags {
            options::validate_tag(t).context("--tag")?;
        }
        for h in &self.add_hosts {
            options::validate_extra_host(h).context("--add-host")?;
        }
        for u in &self.ulimits {
            options::validate_ulimit(u).context("--ulimit")?;
        }
        let outputs = self
            .outputs
            .iter()
            .filter(|o| !o.is_empty())
            .map(|o| ExportSpec::parse(o).with_context(|| format!("--output {o:?}")))
            .collect::<Result<Vec<_>>>()?;
        let context = ContextSource::parse(&self.context)?;
        let dockerfile = match self.file.as_deref() {
            None => DockerfileSource::Default,
            Some("-") => DockerfileSource::Stdin,
            Some(f) => DockerfileSource::Path(f.into()),
        };
        let opts = BuildOptions {
            context: Some(context),
            dockerfile: Some(dockerfile),
            named_contexts: crate::build::named_contexts::parse(&self.build_contexts)
                .context("--build-context")?,
            tags: self.tags,
            build_args: options::parse_build_args(&self.build_args).context("--build-arg")?,
            labels: options::parse_labels(&self.labels).context("--label")?,
            target: self.target.filter(|t| !t.is_empty()),
            platforms: platform::parse_explicit_list(&self.platforms).context("--platform")?,
            no_cache: self.no_cache,
            no_cache_filter: self.no_cache_filter,
            pull: self.pull,
            network: NetworkMode::parse(&self.network).context("--network")?,
            extra_hosts: self.add_hosts,
            shm_size: self
                .shm_size
                .as_deref()
                .map(options::parse_mem_bytes)
                .transpose()
                .context("--shm-size")?,
            ulimits: self.ulimits,
            outputs,
            load: self.load,
            push: self.push,
            iidfile: self.iidfile,
            attests: attest::Attests::from_flags(
                &self.attest,
                self.provenance.as_deref(),
                self.sbom.as_deref(),
            )?,
            annotations: attest::parse_annotations(&self.annotations).context("--annotation")?,
            cache_from: cache::parse_flags(&self.cache_from, false).context("--cache-from")?,
            cache_to: cache::parse_flags(&self.cache_to, true).context("--cache-to")?,
            metadata_file: self.metadata_file,
            secrets: crate::build::secrets::parse_secrets(&self.secrets)?,
            ssh: crate::build::secrets::parse_ssh_specs(
                &crate::build::secrets::ssh_values_for_context(&self.ssh, &self.context),
            )?,
            call: crate::build::call::CallFunc::parse(&call)?,
            allow: crate::build::entitlements::parse(&self.allow)?,
        };
        Ok((opts, progress))
    }
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let quiet = args.quiet;
    let dockerfile_name =
        crate::build::call::dockerfile_mapping_src(&args.context, args.file.as_deref());
    let (opts, progress) = args.into_options()?;
    let iidfile = opts.iidfile.clone();
    let metadata_file = opts.metadata_file.clone();
    let call = opts.call.clone();
    let builder = crate::builder::resolve(ctx).await?;
    let result = crate::build::build(&builder, opts, progress, ctx.debug).await?;

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
