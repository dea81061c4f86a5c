//! `kiln bake`: read bake files and print (`--print`) or list (`--list`) what they define.
//! Building the targets is not implemented yet; the evaluation itself lives in `kiln-bake`.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use kiln_bake::checks::{PathKind, Probe};
use kiln_bake::{File, Inputs};

use super::Ctx;

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

pub async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
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
    let _ = (&args.allow, &args.progress, &args.metadata_file);
    bail!("building bake targets is not implemented yet: use --print or --list")
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
