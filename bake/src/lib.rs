//! kiln-bake: bake files (HCL, JSON, Compose) in, resolved build targets out.
//!
//! A pure function of the files, the environment and the overrides: no network, no async, no
//! builder. `kiln bake` reads the files, calls [`read_targets`], and either prints the result
//! ([`print_json`]) or hands the targets to the build orchestration.
//!
//! The pipeline, as buildx's: parse every file ([`parser`]) into one [`Config`] (same-named
//! targets merge attribute by attribute, later files win), then per requested name expand
//! groups, apply inheritance and `--set` overrides ([`overrides`]), add the targets used as
//! `target:` contexts, and normalize.

pub mod buildflags;
pub mod calendar;
pub mod checks;
pub mod compose;
pub mod error;
pub mod eval;
pub mod expr;
pub mod functions;
pub mod gojson;
pub mod gopath;
pub mod overrides;
pub mod parser;
pub mod target;
pub mod types;
pub mod units;

use std::collections::BTreeMap;

pub use error::{Diag, Error, Sources};
pub use parser::VariableInfo;
pub use target::{Config, Group, Target};

/// A bake definition file as read: its name (as given, used in messages) and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub data: Vec<u8>,
}

/// The files looked for when no `-f` is given, in buildx's order (Compose's names first).
pub const DEFAULT_FILENAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
    "docker-bake.json",
    "docker-bake.hcl",
    "docker-bake.override.json",
    "docker-bake.override.hcl",
];

/// What evaluation needs besides the files.
pub struct Inputs<'a> {
    /// Environment lookup (variable overrides, `--set x.args.NAME` without a value, ...).
    pub lookup_env: &'a dyn Fn(&str) -> Option<String>,
    /// `BAKE_CMD_CONTEXT`, `BAKE_LOCAL_PLATFORM`.
    pub builtin_vars: BTreeMap<String, String>,
    /// The `.env` file of the working directory, read by Compose files' interpolation.
    pub dotenv: Option<String>,
    /// Reads a file Compose refers to (`env_file`); `None` when it does not exist.
    pub read_file: &'a dyn Fn(&str) -> Option<String>,
}

/// The parsed files: every target and group, and the variables.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub config: Config,
    pub variables: Vec<VariableInfo>,
}

/// The kind of a bake file, decided by its name and, for other names, its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Hcl,
    Json,
    Compose,
}

/// Decides a file's syntax by name as buildx does: `.json`, `.hcl`, and `.yml`/`.yaml` for
/// Compose (any case); anything else is tried as HCL, then JSON (`parse_files` tries such a
/// file as Compose first).
pub fn file_kind(f: &File) -> FileKind {
    let n = f.name.to_lowercase();
    if n.ends_with(".json") {
        FileKind::Json
    } else if n.ends_with(".hcl") {
        FileKind::Hcl
    } else if n.ends_with(".yml") || n.ends_with(".yaml") {
        FileKind::Compose
    } else {
        let text = String::from_utf8_lossy(&f.data);
        if hcl::edit::parser::parse_body(&text).is_err()
            && serde_json::from_str::<serde_json::Value>(&text).is_ok()
        {
            FileKind::Json
        } else {
            FileKind::Hcl
        }
    }
}

fn sources(files: &[File]) -> Sources {
    Sources {
        files: files
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    String::from_utf8_lossy(&f.data).into_owned(),
                )
            })
            .collect(),
    }
}

fn has_known_extension(name: &str) -> bool {
    let n = name.to_lowercase();
    [".json", ".hcl", ".yml", ".yaml"]
        .iter()
        .any(|e| n.ends_with(e))
}

/// The Compose reader's view of files and environment (`.env` variables below the process
/// environment's).
fn compose_inputs<'a>(
    files: &[&'a File],
    inputs: &'a Inputs<'_>,
) -> Result<(compose::Environment<'a>, Vec<compose::ComposeFile<'a>>), String> {
    let dotenv = match &inputs.dotenv {
        Some(text) => compose::parse_dotenv(text, inputs.lookup_env)?,
        None => BTreeMap::new(),
    };
    let files = files
        .iter()
        .map(|f| compose::ComposeFile {
            name: &f.name,
            text: std::str::from_utf8(&f.data).unwrap_or(""),
        })
        .collect();
    Ok((
        compose::Environment {
            lookup: inputs.lookup_env,
            dotenv,
            read_file: inputs.read_file,
        },
        files,
    ))
}

/// Parses and evaluates all files into one configuration.
pub fn parse_files(files: &[File], inputs: &Inputs<'_>) -> Result<Parsed, Error> {
    let src = sources(files);
    let mut bodies = Vec::new();
    let mut compose = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let text = &src.files[i].1;
        let mut kind = file_kind(f);
        if kind != FileKind::Compose && !has_known_extension(&f.name) {
            // buildx tries a file of another name as Compose first.
            let (env, cf) = compose_inputs(&[f], inputs).map_err(|e| src.error(Diag::msg(e)))?;
            if compose::is_compose(&cf[0], &env) {
                kind = FileKind::Compose;
            }
        }
        let body = match kind {
            FileKind::Json => parser::parse_json(text, i as u32),
            FileKind::Hcl => parser::parse_hcl(text, i as u32),
            FileKind::Compose => {
                compose.push(f);
                continue;
            }
        };
        bodies.push(body.map_err(|d| src.error(d))?);
    }
    let mut config = Config::default();
    if !compose.is_empty() {
        let (env, files) = compose_inputs(&compose, inputs).map_err(|e| src.error(Diag::msg(e)))?;
        config = compose::read(&files, &env).map_err(|e| src.error(Diag::msg(e)))?;
    }
    let mut variables = Vec::new();
    if !bodies.is_empty() {
        let opts = parser::EvalOptions {
            lookup_env: inputs.lookup_env,
            builtin_vars: inputs.builtin_vars.clone(),
        };
        let (c, meta) = parser::evaluate(&bodies, &opts).map_err(|d| src.error(d))?;
        // As in buildx, an HCL group replaces a Compose group of the same name (groups do
        // not merge); targets merge attribute by attribute.
        config
            .groups
            .retain(|g| !c.groups.iter().any(|h| h.name == g.name));
        config.merge(c);
        variables = meta.variables;
    }
    Ok(Parsed { config, variables })
}

/// The resolved targets and groups `bake` builds or prints.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub targets: BTreeMap<String, Target>,
    pub groups: BTreeMap<String, Group>,
}

/// Expands a group name into its targets (recursively) and the groups visited.
fn resolve_group(
    c: &Config,
    name: &str,
    visited: &mut BTreeMap<String, (Vec<String>, Vec<String>)>,
) -> (Vec<String>, Vec<String>) {
    if let Some(v) = visited.get(name) {
        return v.clone();
    }
    let Some(g) = c.group(name) else {
        return (vec![name.to_string()], vec![]);
    };
    visited.insert(name.to_string(), (vec![], vec![]));
    let mut targets = Vec::new();
    let mut groups = vec![name.to_string()];
    for t in &g.targets {
        let (tt, tg) = resolve_group(c, t, visited);
        if tt.is_empty() {
            targets.push(t.clone());
        } else {
            targets.extend(tt);
        }
        groups.extend(tg);
    }
    visited.insert(name.to_string(), (targets.clone(), groups.clone()));
    (targets, groups)
}

/// A target with its inherited attributes and overrides applied, as buildx's `target`.
fn resolve_target(
    c: &Config,
    name: &str,
    visited: &mut BTreeMap<String, Option<Target>>,
    o: &overrides::Overrides,
) -> Result<Option<Target>, Diag> {
    if let Some(t) = visited.get(name) {
        return Ok(t.clone());
    }
    visited.insert(name.to_string(), None);
    let t = c
        .target(name)
        .ok_or_else(|| Diag::msg(format!("failed to find target {name}")))?;
    let mut inherited = Target::new(name);
    for parent in &t.inherits {
        if let Some(p) = resolve_target(c, parent, visited, o)? {
            inherited.merge(&p);
        }
    }
    let mut m = Target::new(name);
    m.merge(&inherited);
    m.merge(t);
    if let Some(ov) = o.get(name) {
        overrides::apply(&mut m, ov)?;
    }
    m.normalize();
    visited.insert(name.to_string(), Some(m.clone()));
    Ok(Some(m))
}

fn finish_target(mut t: Target) -> Target {
    t.inherits.clear();
    if t.context.is_none() {
        t.context = Some(".".into());
    }
    if t.dockerfile.as_deref().unwrap_or("").is_empty() {
        t.dockerfile = Some("Dockerfile".into());
    }
    t
}

fn resolve_one(c: &Config, name: &str, o: &overrides::Overrides) -> Result<Target, Diag> {
    let t = resolve_target(c, name, &mut BTreeMap::new(), o)?
        .ok_or_else(|| Diag::msg(format!("failed to find target {name}")))?;
    Ok(finish_target(t))
}

fn match_names(c: &Config, pattern: &str) -> Result<Vec<String>, Diag> {
    if !pattern.contains(['*', '?', '[', ']']) {
        return Ok(vec![pattern.to_string()]);
    }
    let mut names = Vec::new();
    for g in &c.groups {
        if overrides::glob_match(pattern, &g.name).unwrap_or(false) {
            names.push(g.name.clone());
        }
    }
    for t in &c.targets {
        if overrides::glob_match(pattern, &t.name).unwrap_or(false) {
            names.push(t.name.clone());
        }
    }
    if names.is_empty() {
        return Err(Diag::msg(format!(
            "could not find any target matching {pattern:?}"
        )));
    }
    Ok(names)
}

fn load_links(
    c: &Config,
    name: &str,
    targets: &mut BTreeMap<String, Target>,
    o: &overrides::Overrides,
    visited: &mut Vec<String>,
) -> Result<(), Diag> {
    visited.push(name.to_string());
    let contexts: Vec<String> = targets[name]
        .contexts
        .as_ref()
        .map(|c| c.values().cloned().collect())
        .unwrap_or_default();
    for v in contexts {
        let Some(linked) = v.strip_prefix("target:") else {
            continue;
        };
        if linked == name {
            return Err(Diag::msg(format!("target {linked} cannot link to itself")));
        }
        if visited.iter().any(|v| v == linked) {
            return Err(Diag::msg(format!("infinite loop from {name} to {linked}")));
        }
        if !targets.contains_key(linked) {
            let mut t2 = resolve_one(c, linked, o)?;
            t2.outputs = Some(vec![buildflags::Export {
                kind: "cacheonly".into(),
                ..Default::default()
            }]);
            t2.linked = true;
            targets.insert(linked.to_string(), t2);
        }
        load_links(c, linked, targets, o, &mut visited.clone())?;
        let t2 = targets[linked].clone();
        let t = targets.get_mut(name).expect("present");
        if let Some(ents) = &t2.entitlements {
            for e in ents {
                let mine = t.entitlements.get_or_insert_with(Vec::new);
                if !mine.contains(e) {
                    mine.push(e.clone());
                }
            }
        }
        let (p1, p2) = (
            t.platforms.clone().unwrap_or_default(),
            t2.platforms.clone().unwrap_or_default(),
        );
        if p1.len() > 1 && p2.len() > 1 && !p1.iter().all(|p| p2.contains(p)) {
            return Err(Diag::msg(format!(
                "target {linked} can't be used by {name} because its platforms [{}] are not a subset of [{}]",
                p1.join(" "),
                p2.join(" ")
            )));
        }
    }
    Ok(())
}

/// The targets (and groups) that building `names` means, as buildx's `ReadTargets`.
pub fn read_targets(
    files: &[File],
    names: &[String],
    sets: &[String],
    inputs: &Inputs<'_>,
) -> Result<Resolved, Error> {
    let parsed = parse_files(files, inputs)?;
    let src = sources(files);
    resolve(&parsed.config, names, sets, inputs).map_err(|d| src.error(d))
}

/// Resolves requested names against a parsed configuration.
pub fn resolve(
    c: &Config,
    names: &[String],
    sets: &[String],
    inputs: &Inputs<'_>,
) -> Result<Resolved, Diag> {
    // Compose service names may contain dots; buildx maps them to underscores.
    let names: Vec<String> = names.iter().map(|n| n.replace('.', "_")).collect();
    let mut matched = Vec::new();
    for n in &names {
        matched.extend(match_names(c, n)?);
    }
    let names = target::dedup_names(&matched);
    let o = overrides::parse(c, sets, inputs.lookup_env)?;

    let mut out = Resolved::default();
    for n in &names {
        let mut visited = BTreeMap::new();
        let (ts, gs) = resolve_group(c, n, &mut visited);
        for t in target::dedup_names(&ts) {
            let resolved = resolve_one(c, &t, &o)?;
            out.targets.insert(t, resolved);
        }
        for g in target::dedup_names(&gs) {
            if let Some(group) = c.group(&g) {
                out.groups.insert(g, group.clone());
            }
        }
    }
    for n in &names {
        if n == "default" && out.groups.contains_key("default") {
            continue;
        }
        out.groups
            .entry("default".into())
            .or_insert_with(|| Group {
                name: "default".into(),
                ..Group::default()
            })
            .targets
            .push(n.clone());
    }
    if let Some(g) = out.groups.get_mut("default") {
        g.targets = target::dedup_names(&g.targets);
        g.targets.sort();
    }
    let tnames: Vec<String> = out.targets.keys().cloned().collect();
    for n in tnames {
        load_links(c, &n, &mut out.targets, &o, &mut Vec::new())?;
    }
    Ok(out)
}

/// The `--print` document: `{"group": {...}, "target": {...}}`.
pub fn print_json(r: &Resolved) -> serde_json::Value {
    let mut doc = serde_json::Map::new();
    if !r.groups.is_empty() {
        doc.insert(
            "group".into(),
            serde_json::Value::Object(
                r.groups
                    .iter()
                    .map(|(k, g)| (k.clone(), g.to_json()))
                    .collect(),
            ),
        );
    }
    doc.insert(
        "target".into(),
        serde_json::Value::Object(
            r.targets
                .iter()
                .map(|(k, t)| (k.clone(), t.to_json()))
                .collect(),
        ),
    );
    serde_json::Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_src(
        name: &str,
        src: &str,
        targets: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Resolved, Error> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| env.get(k).cloned();
        let inputs = Inputs {
            lookup_env: &lookup,
            builtin_vars: BTreeMap::from([("BAKE_CMD_CONTEXT".to_string(), "cwd://".to_string())]),
            dotenv: None,
            read_file: &|_| None,
        };
        let files = [File {
            name: name.into(),
            data: src.as_bytes().to_vec(),
        }];
        let names: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
        read_targets(&files, &names, &[], &inputs)
    }

    #[test]
    fn inherits_are_transitive_and_later_wins() {
        let r = resolve_src(
            "x.hcl",
            r#"
target "a" { args = { A = "a", B = "a" } }
target "b" {
  inherits = ["a"]
  args = { B = "b" }
}
target "c" { inherits = ["b"] }
"#,
            &["c"],
            &[],
        )
        .unwrap();
        let args = r.targets["c"].args.clone().unwrap();
        assert_eq!(args["A"], Some("a".into()));
        assert_eq!(args["B"], Some("b".into()));
        assert_eq!(r.groups["default"].targets, vec!["c"]);
    }

    #[test]
    fn matrix_names_become_a_group() {
        let r = resolve_src(
            "x.hcl",
            r#"
target "app" {
  name = "app-${v}"
  matrix = { v = ["1", "2"] }
  args = { V = v }
}
"#,
            &["app"],
            &[],
        )
        .unwrap();
        assert_eq!(
            r.targets["app-2"].args.clone().unwrap()["V"],
            Some("2".into())
        );
        assert_eq!(r.groups["app"].targets, vec!["app-1", "app-2"]);
    }

    #[test]
    fn environment_overrides_follow_the_default_type() {
        let src = "variable \"N\" { default = 1 }\ntarget \"default\" { args = { N = N + 1 } }\n";
        let r = resolve_src("x.hcl", src, &["default"], &[("N", "41")]).unwrap();
        assert_eq!(
            r.targets["default"].args.clone().unwrap()["N"],
            Some("42".into())
        );
        let e = resolve_src("x.hcl", src, &["default"], &[("N", "x")]).unwrap_err();
        assert!(e.to_string().contains("failed to parse N as number"), "{e}");
    }

    #[test]
    fn json_files_interpolate_strings() {
        let r = resolve_src(
            "x.json",
            r#"{"variable": {"T": {"default": "v1"}}, "target": {"default": {"tags": ["app:${T}"]}}}"#,
            &["default"],
            &[],
        )
        .unwrap();
        assert_eq!(r.targets["default"].tags.clone().unwrap(), vec!["app:v1"]);
    }

    #[test]
    fn errors_carry_file_line_and_column() {
        let e =
            resolve_src("x.hcl", "target \"a\" {\n  tags = [FOO]\n}\n", &["a"], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.hcl:2,11-14: Unknown variable; There is no variable named \"FOO\"."
        );
        assert!(e.excerpt.unwrap().contains(">>>   tags = [FOO]"));
    }
}
