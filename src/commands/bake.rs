//! `kiln bake`: read bake files, then print (`--print`), list (`--list`) or build the targets.
//! The evaluation lives in `kiln-bake`; building hands each target, parsed into build options
//! by the same code as `kiln build`'s flags, to `build::bake`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use kiln_bake::checks::{PathKind, Probe};
use kiln_bake::{File, Inputs, Target};

use super::Ctx;
use crate::build::bake::entitlements as bake_entitlements;
use crate::build::bake::TargetBuild;
use crate::build::flags::{Origin, RawOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build definition file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<String>,
    /// Override target value (e.g., "targetpattern.key=value")
    #[arg(long = "set", value_name = "OVERRIDE")]
    pub sets: Vec<String>,
    /// Shorthand for "--set=*.output=type=docker". Conditional.
    #[arg(long)]
    pub load: bool,
    /// Shorthand for "--set=*.output=type=registry". Conditional.
    #[arg(long)]
    pub push: bool,
    /// Shorthand for "--set=*.attest=type=sbom"
    #[arg(long, value_name = "VALUE")]
    pub sbom: Option<String>,
    /// Shorthand for "--set=*.attest=type=provenance"
    #[arg(long, value_name = "VALUE")]
    pub provenance: Option<String>,
    /// Set method for evaluating build ("check", "outline", "targets")
    #[arg(long, value_name = "METHOD", default_value = "build")]
    pub call: String,
    /// Shorthand for "--call=check"
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub check: Option<String>,
    /// Allow build to access specified resources
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Print the options without building
    #[arg(long)]
    pub print: bool,
    /// List targets or variables
    #[arg(long, value_name = "TYPE")]
    pub list: Option<String>,
    #[arg(long = "list-targets", hide = true)]
    pub list_targets: bool,
    #[arg(long = "list-variables", hide = true)]
    pub list_variables: bool,
    /// Do not use cache when building the image
    #[arg(long = "no-cache", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub no_cache: Option<String>,
    /// Always attempt to pull all referenced images
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub pull: Option<String>,
    /// Set type of progress output
    #[arg(long, value_name = "MODE", default_value = "auto")]
    pub progress: String,
    /// Write build result metadata to a file
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<String>,
    /// Targets or groups to build
    pub targets: Vec<String>,
}

fn parse_bool(flag: &str, v: &str) -> Result<bool> {
    kiln_bake::types::parse_go_bool(v)
        .with_context(|| format!("invalid argument {v:?} for \"--{flag}\" flag: strconv.ParseBool: parsing {v:?}: invalid syntax"))
}

/// buildx's `ParseCallFunc`: `None` for a plain build.
fn call_name(call: &str) -> Result<Option<String>> {
    if call.is_empty() {
        return Ok(None);
    }
    let mut name = String::new();
    for field in kiln_bake::types::csv_fields(call, ',').map_err(anyhow::Error::msg)? {
        match field.split_once('=') {
            Some(("format", _)) => {}
            Some(("ignorestatus", v)) => {
                parse_bool("ignorestatus", v)
                    .with_context(|| format!("invalid ignorestatus print value: {v}"))?;
            }
            Some(_) => bail!("invalid print field: {field}"),
            None => {
                if !name.is_empty() {
                    bail!("invalid print value: {call}");
                }
                name = field;
            }
        }
    }
    if name == "check" {
        name = "lint".into();
    }
    Ok((name != "build").then_some(name))
}

/// The files to read: `-f`, else `BUILDX_BAKE_FILE`, else the default names that exist.
fn read_files(names: &[String]) -> Result<Vec<File>> {
    let mut names = names.to_vec();
    let mut defaults = false;
    if names.is_empty() {
        if let Ok(env) = std::env::var("BUILDX_BAKE_FILE") {
            let sep = std::env::var("BUILDX_BAKE_PATH_SEPARATOR")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| ":".into());
            for f in env
                .split(sep.as_str())
                .map(str::trim)
                .filter(|f| !f.is_empty())
            {
                if f != "-" {
                    std::fs::metadata(f).with_context(|| format!("stat {f}"))?;
                }
                names.push(f.to_string());
            }
        }
    }
    if names.is_empty() {
        defaults = true;
        names = kiln_bake::DEFAULT_FILENAMES
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    let mut files = Vec::new();
    for n in names {
        let n = n.strip_prefix("cwd://").unwrap_or(&n).to_string();
        let data = if n == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading stdin")?;
            buf
        } else {
            match std::fs::read(&n) {
                Ok(d) => d,
                Err(e) if defaults && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("open {n}")),
            }
        };
        files.push(File { name: n, data });
    }
    if files.is_empty() {
        bail!("couldn't find a bake definition");
    }
    Ok(files)
}

/// Shows an evaluation error as buildx does: the source excerpt, then the message.
fn bake_error(e: kiln_bake::Error) -> anyhow::Error {
    if let Some(x) = &e.excerpt {
        eprint!("{x}");
    }
    anyhow::Error::msg(e.to_string())
}

fn lookup_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn path_kind(p: &str) -> PathKind {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => PathKind::Dir,
        Ok(_) => PathKind::File,
        Err(_) => PathKind::Missing,
    }
}

pub async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let mut list = args.list.clone().unwrap_or_default();
    if list.is_empty() {
        if args.list_targets {
            list = "targets".into();
        } else if args.list_variables {
            list = "variables".into();
        }
    }
    let mut call = args.call.clone();
    if let Some(c) = &args.check {
        if parse_bool("check", c)? {
            call = "check".into();
        }
    }
    let call = call_name(&call)?;
    if args.print && !list.is_empty() {
        bail!("--print and --list are mutually exclusive");
    }
    let targets = if args.targets.is_empty() {
        vec!["default".to_string()]
    } else {
        args.targets.clone()
    };

    let mut sets = args.sets.clone();
    if args.push {
        sets.push("*.push=true".into());
    }
    if args.load {
        sets.push("*.load=true".into());
    }
    if let Some(c) = &call {
        sets.push(format!("*.call={c}"));
    }
    if let Some(v) = &args.no_cache {
        sets.push(format!("*.no-cache={}", parse_bool("no-cache", v)?));
    }
    if let Some(v) = &args.pull {
        sets.push(format!("*.pull={}", parse_bool("pull", v)?));
    }
    for (kind, v) in [("sbom", &args.sbom), ("provenance", &args.provenance)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            sets.push(format!(
                "*.attest={}",
                kiln_bake::buildflags::Attest::canonicalize(kind, v)
            ));
        }
    }

    let files = read_files(&args.files)?;
    let inputs = Inputs {
        lookup_env: &lookup_env,
        builtin_vars: BTreeMap::from([
            ("BAKE_CMD_CONTEXT".to_string(), "cwd://".to_string()),
            (
                "BAKE_LOCAL_PLATFORM".to_string(),
                crate::platform::Platform::host().to_string(),
            ),
        ]),
        // Compose files interpolate from `.env` in the working directory, as buildx.
        dotenv: std::fs::read_to_string(".env").ok(),
        read_file: &|p| std::fs::read_to_string(p).ok(),
    };

    if !list.is_empty() {
        let parsed = kiln_bake::parse_files(&files, &inputs).map_err(bake_error)?;
        let (typ, format) = parse_list(&list)?;
        let out = match typ.as_str() {
            "targets" => list_targets(&parsed.config, &format),
            _ => list_variables(&parsed.variables, &format),
        };
        print!("{out}");
        return Ok(ExitCode::SUCCESS);
    }

    let mut resolved =
        kiln_bake::read_targets(&files, &targets, &sets, &inputs).map_err(bake_error)?;
    let probe = Probe {
        lookup_env: &lookup_env,
        path_kind: &path_kind,
        stdout_is_terminal: std::io::stdout().is_terminal(),
    };
    kiln_bake::checks::prepare(&mut resolved, &probe).map_err(|d| anyhow::Error::msg(d.detail))?;
    for t in resolved.targets.values() {
        if let Some(p) = &t.platforms {
            crate::platform::parse_list(p)?;
        }
    }

    if args.print {
        let doc = kiln_bake::print_json(&resolved);
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    build_targets(&args, resolved, ctx).await
}

/// Builds the resolved targets: entitlements checked, each target parsed into build options,
/// all solved together, then the metadata file written.
async fn build_targets(args: &Args, resolved: kiln_bake::Resolved, ctx: &Ctx) -> Result<ExitCode> {
    let progress: crate::progress::ProgressMode = args.progress.parse().context("--progress")?;
    let allowed = bake_entitlements::parse(&args.allow)?;
    let wd = std::env::current_dir().context("failed to get current working directory")?;
    let access: Vec<_> = resolved.targets.values().map(target_access).collect();
    let missing = bake_entitlements::missing(&allowed, &wd, &access)?;
    if progress != crate::progress::ProgressMode::RawJson {
        let argv: Vec<String> = std::env::args().collect();
        bake_entitlements::confirm(&missing, &wd, &argv)?;
    }

    let mut builds = Vec::new();
    for (name, t) in &resolved.targets {
        builds.push(TargetBuild {
            name: name.clone(),
            opts: target_options(name, t)?.into_options()?,
        });
    }
    let builder = crate::builder::resolve(ctx).await?;
    let results = crate::build::bake::build_many(&builder, builds, progress, ctx.debug).await?;

    if let Some(path) = &args.metadata_file {
        let doc: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(name, r)| (name.clone(), r.metadata_json()))
            .collect();
        let json = serde_json::to_vec_pretty(&serde_json::Value::Object(doc))?;
        crate::store::write_atomic(std::path::Path::new(path), &json)
            .with_context(|| format!("writing metadata file {path}"))?;
    }
    let mut code = 0u8;
    for (name, r) in &results {
        let Some(call) = resolved
            .targets
            .get(name)
            .and_then(|t| t.call.as_deref())
            .and_then(|c| crate::build::call::CallFunc::parse(c).ok().flatten())
        else {
            continue;
        };
        let rendered = crate::build::call::render_result(&call, &r.exporter_response, None)?;
        if results.len() > 1 {
            println!("{name}\n");
        }
        print!("{}", rendered.stdout);
        if let Some(e) = rendered.error {
            eprintln!("ERROR: target {name}: {e}");
            code = code.max(1);
        }
        code = code.max(rendered.exit_code);
    }
    if code != 0 {
        return Err(anyhow::Error::new(crate::AlreadyReported(code)));
    }
    Ok(ExitCode::SUCCESS)
}

/// A local path as bake writes it (`cwd://` is the working directory).
fn local_path(v: &str) -> Option<String> {
    if kiln_bake::checks::is_remote_url(v)
        || v.starts_with("target:")
        || v.starts_with("docker-image:")
    {
        return None;
    }
    Some(v.strip_prefix("cwd://").unwrap_or(v).to_string())
}

/// The Dockerfile path a target reads, relative to the working directory (`None`: inline, or
/// inside a remote context).
fn dockerfile_path(t: &Target) -> Option<String> {
    if t.dockerfile_inline.is_some() {
        return None;
    }
    let context = t.context.as_deref().unwrap_or(".");
    let file = t.dockerfile.as_deref().unwrap_or("Dockerfile");
    if let Some(f) = file.strip_prefix("cwd://") {
        return Some(kiln_bake::gopath::clean_path(f));
    }
    if kiln_bake::checks::is_remote_url(context) {
        return (file != "Dockerfile").then(|| file.to_string());
    }
    if std::path::Path::new(file).is_absolute() {
        return Some(file.to_string());
    }
    Some(
        std::path::Path::new(context)
            .join(file)
            .to_string_lossy()
            .into_owned(),
    )
}

/// What a target reads and writes on the client, for the entitlement check.
fn target_access(t: &Target) -> bake_entitlements::TargetAccess {
    let mut a = bake_entitlements::TargetAccess {
        entitlements: t.entitlements.clone().unwrap_or_default(),
        ..Default::default()
    };
    if let Some(c) = t.context.as_deref().and_then(local_path) {
        a.read.push(c.into());
        if let Some(f) = dockerfile_path(t) {
            a.read.push(f.into());
        }
    }
    for v in t.contexts.iter().flatten().map(|(_, v)| v) {
        if let Some(p) = local_path(v) {
            a.read.push(p.into());
        }
    }
    for o in t.outputs.iter().flatten() {
        let local = match o.kind.as_str() {
            "local" | "tar" => true,
            "oci" | "docker" => !o.dest.is_empty(),
            _ => false,
        };
        if local && !o.dest.is_empty() && o.dest != "-" {
            a.write.push(o.dest.clone().into());
        }
    }
    for c in t.cache_to.iter().flatten().filter(|c| c.kind == "local") {
        if let Some(d) = c.attrs.get("dest") {
            a.write.push(d.into());
        }
    }
    for c in t.cache_from.iter().flatten().filter(|c| c.kind == "local") {
        if let Some(s) = c.attrs.get("src") {
            a.read.push(s.into());
        }
    }
    for s in t.secrets.iter().flatten() {
        if !s.src.is_empty() {
            a.read.push(s.src.clone().into());
        }
    }
    for s in t.ssh.iter().flatten() {
        a.read.extend(s.paths.iter().map(Into::into));
        if s.paths.is_empty() {
            a.default_ssh = true;
        }
    }
    a
}

/// A resolved bake target as the same option strings `kiln build` parses.
fn target_options(name: &str, t: &Target) -> Result<RawOptions> {
    use crate::build::flags::csv_record;
    let context = t.context.clone().unwrap_or_else(|| ".".into());
    let context = context
        .strip_prefix("cwd://")
        .unwrap_or(&context)
        .to_string();
    let mut r = RawOptions::new(Origin::Target(name.to_string()), &context);
    r.file = dockerfile_path(t);
    r.dockerfile_inline = t.dockerfile_inline.clone();
    let pairs = |m: &Option<BTreeMap<String, Option<String>>>| -> Vec<String> {
        m.iter()
            .flatten()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect()
    };
    r.build_args = pairs(&t.args);
    r.labels = pairs(&t.labels);
    r.add_hosts = pairs(&t.extra_hosts);
    r.build_contexts = t
        .contexts
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.strip_prefix("cwd://").unwrap_or(v)))
        .collect();
    r.tags = t.tags.clone().unwrap_or_default();
    r.target = t.target.clone();
    let host = crate::platform::Platform::host().to_string();
    r.platforms = t
        .platforms
        .iter()
        .flatten()
        .map(|p| {
            if p == "local" {
                host.clone()
            } else {
                p.clone()
            }
        })
        .collect();
    r.no_cache = t.no_cache.unwrap_or(false);
    r.no_cache_filter = t.no_cache_filter.clone().unwrap_or_default();
    r.pull = t.pull.unwrap_or(false);
    if let Some(n) = &t.network {
        r.network = n.clone();
    }
    r.shm_size = t.shm_size.clone();
    r.ulimits = t.ulimits.clone().unwrap_or_default();
    r.annotations = t.annotations.clone().unwrap_or_default();
    r.outputs = t
        .outputs
        .iter()
        .flatten()
        .filter(|o| o.kind != "cacheonly")
        .map(|o| {
            let mut fields = vec![("type", o.kind.as_str())];
            if !o.dest.is_empty() {
                fields.push(("dest", o.dest.as_str()));
            }
            fields.extend(o.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            csv_record(fields)
        })
        .collect();
    if t.outputs.iter().flatten().any(|o| o.kind == "cacheonly") && r.outputs.is_empty() {
        r.outputs = vec!["type=cacheonly".into()];
    }
    let caches = |c: &Option<Vec<kiln_bake::buildflags::Cache>>| -> Vec<String> {
        c.iter()
            .flatten()
            .map(|c| {
                let mut fields = vec![("type", c.kind.as_str())];
                fields.extend(c.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                csv_record(fields)
            })
            .collect()
    };
    r.cache_from = caches(&t.cache_from);
    r.cache_to = caches(&t.cache_to);
    r.secrets = t
        .secrets
        .iter()
        .flatten()
        .map(|s| {
            let mut fields = vec![("id", s.id.as_str())];
            if !s.src.is_empty() {
                fields.push(("src", s.src.as_str()));
            }
            if !s.env.is_empty() {
                fields.push(("env", s.env.as_str()));
            }
            csv_record(fields)
        })
        .collect();
    r.ssh = t
        .ssh
        .iter()
        .flatten()
        .map(|s| {
            if s.paths.is_empty() {
                s.id.clone()
            } else {
                format!("{}={}", s.id, s.paths.join(","))
            }
        })
        .collect();
    r.attest = t
        .attest
        .iter()
        .flatten()
        .map(|a| {
            let disabled = a.disabled.to_string();
            let mut fields = vec![("type", a.kind.as_str())];
            if a.disabled {
                fields.push(("disabled", disabled.as_str()));
            }
            fields.extend(a.attrs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            csv_record(fields)
        })
        .collect();
    r.call = t.call.clone().unwrap_or_else(|| "build".into());
    r.allow = t.entitlements.clone().unwrap_or_default();
    Ok(r)
}

/// `--list` value: `targets`, `variables`, or `type=...,format=table|json`.
fn parse_list(input: &str) -> Result<(String, String)> {
    let fields = kiln_bake::types::csv_fields(input, ',').map_err(anyhow::Error::msg)?;
    let mut typ = String::new();
    let mut format = String::new();
    if fields.len() == 1 && fields[0] == input && !input.starts_with("type=") {
        typ = input.to_string();
    }
    if typ.is_empty() {
        for f in &fields {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("invalid value {f}"))?;
            match k.trim().to_lowercase().as_str() {
                "type" => typ = v.to_string(),
                "format" => format = v.to_string(),
                key => bail!("unexpected key '{key}' in '{f}'"),
            }
        }
    }
    if format.is_empty() {
        format = "table".into();
    }
    if typ != "targets" && typ != "variables" {
        bail!("invalid list type {typ:?}");
    }
    if format != "table" && format != "json" {
        bail!("invalid list format {format:?}");
    }
    Ok((typ, format))
}

/// Go's `tabwriter` with tab padding (minwidth 1, tabwidth 8, padding 1), as buildx uses.
fn tabulate(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        // The last cell of a row is not part of a column.
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            widths[i] = widths[i].max(c.chars().count() + 1);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                let cellw = widths[i].div_ceil(8) * 8;
                let n = cellw - c.chars().count();
                out.push_str(&"\t".repeat(n.div_ceil(8)));
            }
        }
        out.push('\n');
    }
    out
}

fn list_targets(c: &kiln_bake::Config, format: &str) -> String {
    let mut items: Vec<(String, String, bool)> = Vec::new();
    for t in &c.targets {
        items.push((t.name.clone(), t.description.clone(), false));
    }
    for g in &c.groups {
        let mut names = g.targets.clone();
        names.sort();
        let mut descr = g.description.clone();
        if !names.is_empty() {
            let joined = names.join(", ");
            descr = if descr.is_empty() {
                joined
            } else {
                format!("{descr} ({joined})")
            };
        }
        items.push((g.name.clone(), descr, true));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    // Names starting with `_` are private by convention.
    items.retain(|i| !i.0.starts_with('_'));
    if format == "json" {
        let list: Vec<serde_json::Value> = items
            .iter()
            .map(|(n, d, g)| {
                let mut m = serde_json::Map::new();
                m.insert("name".into(), n.clone().into());
                if !d.is_empty() {
                    m.insert("description".into(), d.clone().into());
                }
                if *g {
                    m.insert("group".into(), true.into());
                }
                serde_json::Value::Object(m)
            })
            .collect();
        let v = if list.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::Array(list)
        };
        return format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default());
    }
    let mut rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".to_string()]];
    rows.extend(items.into_iter().map(|(n, d, _)| vec![n, d]));
    tabulate(&rows)
}

fn list_variables(vars: &[kiln_bake::VariableInfo], format: &str) -> String {
    let mut vars = vars.to_vec();
    vars.sort_by(|a, b| a.name.cmp(&b.name));
    if format == "json" {
        return format!(
            "{}\n",
            serde_json::to_string_pretty(&vars).unwrap_or_default()
        );
    }
    let mut rows = vec![vec![
        "VARIABLE".to_string(),
        "TYPE".into(),
        "VALUE".into(),
        "DESCRIPTION".into(),
    ]];
    for v in vars {
        rows.push(vec![
            v.name,
            v.typ,
            v.value.unwrap_or_else(|| "<null>".into()),
            v.description,
        ]);
    }
    tabulate(&rows)
}
