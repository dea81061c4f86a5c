//! Compose files (`compose.yaml`, `docker-compose.yml`, ...) read as buildx 0.29.1 reads them:
//! the services that have a `build` section become targets named after the service (dots
//! become underscores), all in the `default` group.
//!
//! The loading follows compose-go as buildx drives it: each document is interpolated from the
//! environment (and a `.env` file), merged into the files before it with Compose's merge rules,
//! put in canonical form, then the `services` (only `image`, `build`, `environment`, `env_file`)
//! and `secrets` are validated against the schema, decoded and checked for consistency. The
//! `x-bake` extension of a build section adds the bake attributes Compose has no field for.
//!
//! `extends` (same file or another) and top-level `include` are applied per document before
//! merging, as compose-go does; services' `env_file`s feed `environment`, hence `args` without
//! a value.
//!
//! This module does not open files itself: the caller passes the contents (and the `.env`
//! text), and a reader for the files Compose refers to (`env_file`, `extends.file`, `include`).
//! YAML itself stays in [`yaml`], so the YAML crate can be swapped there alone.

mod template;
mod yaml;

use std::collections::BTreeMap;

use crate::buildflags::{remove_dupes, Attest, Cache, Export, Secret, Ssh};
use crate::target::{dedup_names, Config, Group, Target};
use template::TemplateError;
use yaml::{Node, Tag};

pub use template::parse_dotenv;

/// What Compose interpolation and `args` without a value read: the process environment, then
/// the `.env` file's variables (the environment wins).
pub struct Environment<'a> {
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    pub dotenv: BTreeMap<String, String>,
    /// Reads a file a service's `env_file` names (relative to the working directory, as
    /// buildx leaves compose-go's working directory empty); `None` when it does not exist.
    pub read_file: &'a dyn Fn(&str) -> Option<String>,
}

impl Environment<'_> {
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name).or_else(|| self.dotenv.get(name).cloned())
    }
}

/// A Compose file: its name (for messages) and contents.
pub struct ComposeFile<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// Reads Compose files into bake targets, as buildx's `ParseCompose`: each file is first
/// validated on its own (as buildx does before merging), then all are loaded together.
pub fn read(files: &[ComposeFile<'_>], env: &Environment<'_>) -> Result<Config, String> {
    for f in files {
        let unnamed = ComposeFile {
            name: "",
            text: f.text,
        };
        load(&[unnamed], env, false)?;
    }
    let project =
        load(files, env, true).map_err(|e| format!("failed to parse compose file: {e}"))?;
    targets(&project, env).map_err(|e| format!("failed to parse compose file: {e}"))
}

/// Whether a file of another name loads as Compose (buildx tries Compose first).
pub fn is_compose(file: &ComposeFile<'_>, env: &Environment<'_>) -> bool {
    load(std::slice::from_ref(file), env, false).is_ok()
}

// ---------------------------------------------------------------------------------------------
// Paths in the model, as compose-go's `tree.Path`.

fn path_string(p: &[String]) -> String {
    p.join(".")
}

fn matches(p: &[String], pattern: &[&str]) -> bool {
    p.len() == pattern.len() && p.iter().zip(pattern).all(|(a, b)| *b == "*" || a == b)
}

fn go_sprint(n: &Node) -> String {
    match n {
        Node::Null => "<nil>".into(),
        Node::Bool(b) => b.to_string(),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => f.to_string(),
        Node::Str(s) => s.clone(),
        Node::List(l) => format!(
            "[{}]",
            l.iter().map(go_sprint).collect::<Vec<_>>().join(" ")
        ),
        Node::Map(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_sprint(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn go_type(n: &Node) -> &'static str {
    match n {
        Node::Null => "<nil>",
        Node::Bool(_) => "bool",
        Node::Int(_) => "int",
        Node::Float(_) => "float64",
        Node::Str(_) => "string",
        Node::List(_) => "[]interface {}",
        Node::Map(_) => "map[string]interface {}",
    }
}

// ---------------------------------------------------------------------------------------------
// Loading: interpolate, merge, canonical form, defaults, paths.

fn interpolate(n: Node, path: &mut Vec<String>, env: &Environment<'_>) -> Result<Node, String> {
    Ok(match n {
        Node::Str(s) => {
            let lookup = |k: &str| env.get(k);
            match template::substitute(&s, &lookup) {
                Ok(v) => Node::Str(v),
                Err(TemplateError::Invalid(t)) => {
                    return Err(format!(
                        "invalid interpolation format for {}.\nYou may need to escape any $ with another $.\n{t}",
                        path_string(path)
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "error while interpolating {}: {e}",
                        path_string(path)
                    ))
                }
            }
        }
        Node::Map(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                path.push(k.clone());
                out.insert(k, interpolate(v, path, env)?);
                path.pop();
            }
            Node::Map(out)
        }
        Node::List(l) => {
            let mut out = Vec::with_capacity(l.len());
            for v in l {
                path.push("[]".into());
                out.push(interpolate(v, path, env)?);
                path.pop();
            }
            Node::List(out)
        }
        other => other,
    })
}

fn to_sequence(n: Node) -> Vec<Node> {
    match n {
        Node::Map(m) => {
            let mut seq: Vec<String> = Vec::new();
            for (k, v) in m {
                match v {
                    Node::Null => seq.push(k),
                    Node::List(items) => {
                        for i in items {
                            seq.push(format!("{k}={}", go_sprint(&i)));
                        }
                    }
                    v => seq.push(format!("{k}={}", go_sprint(&v))),
                }
            }
            seq.sort();
            seq.into_iter().map(Node::Str).collect()
        }
        Node::List(l) => l,
        Node::Str(s) => vec![Node::Str(s)],
        _ => vec![],
    }
}

fn to_build(n: Node) -> BTreeMap<String, Node> {
    match n {
        Node::Str(s) => BTreeMap::from([("context".to_string(), Node::Str(s))]),
        Node::Map(m) => m,
        _ => BTreeMap::new(),
    }
}

/// compose-go's `mergeYaml`: `o` (a later file) on top of `e`.
fn merge(e: Node, o: Node, p: &mut Vec<String>) -> Result<Node, String> {
    const SEQUENCES: &[&[&str]] = &[
        &["services", "*", "build", "args"],
        &["services", "*", "build", "additional_contexts"],
        &["services", "*", "build", "labels"],
        &["services", "*", "environment"],
        &["services", "*", "env_file"],
        &["services", "*", "labels"],
        &["services", "*", "annotations"],
    ];
    if matches(p, &["services", "*", "build"]) {
        return merge_maps(to_build(e), to_build(o), p).map(Node::Map);
    }
    if SEQUENCES.iter().any(|s| matches(p, s)) {
        let mut seq = to_sequence(e);
        seq.extend(to_sequence(o));
        return Ok(Node::List(seq));
    }
    if matches(p, &["services", "*", "build", "extra_hosts"])
        || matches(p, &["services", "*", "extra_hosts"])
    {
        let mut seq = to_sequence(e);
        for v in to_sequence(o) {
            if !seq.contains(&v) {
                seq.push(v);
            }
        }
        return Ok(Node::List(seq));
    }
    if matches(p, &["services", "*", "command"]) || matches(p, &["services", "*", "entrypoint"]) {
        return Ok(o);
    }
    match (e, o) {
        (e, Node::Null) => Ok(e),
        (Node::Map(a), Node::Map(b)) => merge_maps(a, b, p).map(Node::Map),
        (Node::List(mut a), Node::List(b)) => {
            a.extend(b);
            Ok(Node::List(a))
        }
        (Node::Map(_) | Node::List(_), _) => Err(format!("cannot override {}", path_string(p))),
        (_, o) => Ok(o),
    }
}

fn merge_maps(
    mut a: BTreeMap<String, Node>,
    b: BTreeMap<String, Node>,
    p: &mut Vec<String>,
) -> Result<BTreeMap<String, Node>, String> {
    for (k, v) in b {
        match a.remove(&k) {
            None => {
                a.insert(k, v);
            }
            Some(existing) => {
                p.push(k.clone());
                let merged = merge(existing, v, p)?;
                p.pop();
                a.insert(k, merged);
            }
        }
    }
    Ok(a)
}

/// compose-go's `ApplyExtends` on one document: a service with `extends` (a service name,
/// or `{service, file}`) is its base service, itself extended first, with the service merged
/// on top by the merge rules of later files. A base from another file has its relative paths
/// (build context, additional contexts, env files) rebased onto that file's directory.
fn apply_extends(
    cfg: &mut BTreeMap<String, Node>,
    file: &str,
    env: &Environment<'_>,
) -> Result<(), String> {
    let Some(Node::Map(services)) = cfg.get("services") else {
        return Ok(());
    };
    let mut extended = Vec::new();
    for name in services.keys() {
        if let Some(merged) = extend_service(name, services, file, env, &mut Vec::new())? {
            extended.push((name.clone(), merged));
        }
    }
    if let Some(Node::Map(services)) = cfg.get_mut("services") {
        services.extend(extended);
    }
    Ok(())
}

/// The service `name` of `services` (read from `file`) with its `extends` applied, `None` when
/// it has none.
fn extend_service(
    name: &str,
    services: &BTreeMap<String, Node>,
    file: &str,
    env: &Environment<'_>,
    chain: &mut Vec<(String, String)>,
) -> Result<Option<Node>, String> {
    let Some(Node::Map(service)) = services.get(name) else {
        return Ok(None);
    };
    let Some(ext) = service.get("extends") else {
        return Ok(None);
    };
    let link = (file.to_string(), name.to_string());
    if chain.contains(&link) {
        let mut lines = vec!["Circular reference:".to_string()];
        for (i, (f, s)) in chain.iter().chain([&link]).enumerate() {
            let verb = if i == 0 { "" } else { "extends " };
            lines.push(format!("  {verb}{s} in {f}"));
        }
        return Err(lines.join("\n"));
    }
    chain.push(link);
    let (reference, other) = match ext {
        Node::Str(s) => (s.clone(), None),
        Node::Map(m) => (
            str_of(m.get("service")),
            match m.get("file") {
                Some(Node::Str(f)) => Some(f.clone()),
                _ => None,
            },
        ),
        other => {
            return Err(format!(
                "services.{name}.extends must be a string or object, got {}",
                go_type(other)
            ))
        }
    };
    let base = match other {
        None => {
            let Some(b) = services.get(&reference) else {
                return Err(format!(
                    "cannot extend service {name:?} in {file}: service {reference:?} not found"
                ));
            };
            extend_service(&reference, services, file, env, chain)?.unwrap_or_else(|| b.clone())
        }
        Some(path) => {
            let text = (env.read_file)(&path)
                .ok_or_else(|| format!("open {path}: no such file or directory"))?;
            let mut dict = BTreeMap::new();
            for doc in yaml::documents(&path, &text)? {
                if let Node::Map(d) = interpolate(doc.root, &mut Vec::new(), env)? {
                    dict = merge_maps(dict, d, &mut Vec::new())?;
                }
            }
            let other_services = match dict.remove("services") {
                Some(Node::Map(m)) => m,
                _ => BTreeMap::new(),
            };
            let Some(b) = other_services.get(&reference) else {
                return Err(format!(
                    "cannot extend service {name:?} in {file}: service {reference:?} not found in {path}"
                ));
            };
            let mut base = extend_service(&reference, &other_services, &path, env, chain)?
                .unwrap_or_else(|| b.clone());
            let dir = match path.rfind('/') {
                Some(i) => &path[..i],
                None => "",
            };
            rebase_paths(&mut base, dir);
            base
        }
    };
    let mut service = service.clone();
    service.remove("extends");
    let mut base = match base {
        Node::Map(m) => m,
        _ => BTreeMap::new(),
    };
    base.remove("extends");
    let merged = merge(
        Node::Map(base),
        Node::Map(service),
        &mut vec!["services".to_string(), name.to_string()],
    )?;
    Ok(Some(merged))
}

/// `dir/p` as Go's `filepath.Join` (`p` alone when absolute or `dir` is empty).
fn join_dir(dir: &str, p: &str) -> String {
    if dir.is_empty() || p.starts_with('/') {
        p.to_string()
    } else {
        clean_path(&format!("{dir}/{p}"))
    }
}

fn dir_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => p[..i].to_string(),
        None => String::new(),
    }
}

/// compose-go's `ApplyInclude` on one document: each `include` entry (a path, or `{path,
/// env_file, project_directory}`) is loaded as its own project, interpolated from the
/// environment plus its env files (`.env` of its directory by default), with paths made
/// relative to its project directory, and its services and secrets imported (a name that is
/// already defined differently is an error).
fn apply_include(
    cfg: &mut BTreeMap<String, Node>,
    base_dir: &str,
    env: &Environment<'_>,
    included: &mut Vec<String>,
) -> Result<(), String> {
    let Some(inc) = cfg.remove("include") else {
        return Ok(());
    };
    let strings = |n: Option<&Node>| -> Vec<String> {
        match n {
            Some(Node::Str(s)) => vec![s.clone()],
            Some(Node::List(l)) => l.iter().map(|n| str_of(Some(n))).collect(),
            _ => Vec::new(),
        }
    };
    let entries = match inc {
        Node::List(l) => l,
        Node::Null => Vec::new(),
        other => return Err(format!("include must be a array, got {}", go_type(&other))),
    };
    for entry in entries {
        let (paths, env_files, project_dir) = match &entry {
            Node::Str(s) => (vec![s.clone()], None, None),
            Node::Map(m) => (
                strings(m.get("path")),
                m.get("env_file").map(|n| strings(Some(n))),
                m.get("project_directory").map(|n| str_of(Some(n))),
            ),
            _ => continue,
        };
        let paths: Vec<String> = paths.iter().map(|p| join_dir(base_dir, p)).collect();
        let Some(first) = paths.first().cloned() else {
            continue;
        };
        if included.contains(&first) || included.len() > 32 {
            return Err(format!(
                "include cycle detected:\n{}\n include {}",
                included[0],
                included[1..]
                    .iter()
                    .chain([&first])
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n include ")
            ));
        }
        let project_dir = match project_dir {
            None => dir_of(&first),
            Some(d) => join_dir(base_dir, &d),
        };
        let mut from_files: BTreeMap<String, String> = BTreeMap::new();
        let env_files = match env_files {
            Some(files) => files
                .iter()
                .filter(|f| *f != "/dev/null")
                .map(|f| {
                    let f = join_dir(base_dir, f);
                    (env.read_file)(&f)
                        .map(|t| (f.clone(), t))
                        .ok_or_else(|| format!("stat {f}: no such file or directory"))
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => {
                let f = join_dir(&project_dir, ".env");
                (env.read_file)(&f).map(|t| (f, t)).into_iter().collect()
            }
        };
        for (f, text) in env_files {
            let vars = template::parse_dotenv(&text, &|k| {
                from_files.get(k).cloned().or_else(|| env.get(k))
            })
            .map_err(|e| format!("failed to read {f}: {e}"))?;
            from_files.extend(vars);
        }
        let mut dotenv = env.dotenv.clone();
        for (k, v) in from_files {
            dotenv.entry(k).or_insert(v);
        }
        let sub_env = Environment {
            lookup: env.lookup,
            dotenv,
            read_file: env.read_file,
        };
        included.push(first.clone());
        let mut dict = BTreeMap::new();
        for p in &paths {
            let text =
                (env.read_file)(p).ok_or_else(|| format!("open {p}: no such file or directory"))?;
            for doc in yaml::documents(p, &text)? {
                let Node::Map(mut d) = interpolate(doc.root, &mut Vec::new(), &sub_env)? else {
                    return Err("top-level object must be a mapping".into());
                };
                apply_extends(&mut d, p, &sub_env)?;
                apply_include(&mut d, &project_dir, &sub_env, included)?;
                dict = merge_maps(dict, d, &mut Vec::new())?;
                enforce_unicity(&mut dict)?;
                canonical(&mut dict)?;
                enforce_unicity(&mut dict)?;
            }
        }
        included.pop();
        if let Some(Node::Map(services)) = dict.get_mut("services") {
            for svc in services.values_mut() {
                if let Node::Map(m) = svc {
                    if let Some(Node::Map(b)) = m.get_mut("build") {
                        b.entry("context".into()).or_insert(Node::Str(".".into()));
                    }
                }
                rebase_paths(svc, &project_dir);
            }
        }
        if let Some(Node::Map(secrets)) = dict.get_mut("secrets") {
            for s in secrets.values_mut() {
                if let Node::Map(s) = s {
                    if let Some(Node::Str(f)) = s.get_mut("file") {
                        if !f.starts_with('~') {
                            *f = join_dir(&project_dir, f);
                        }
                    }
                }
            }
        }
        for kind in ["services", "secrets"] {
            let Some(Node::Map(imported)) = dict.remove(kind) else {
                continue;
            };
            let target = cfg
                .entry(kind.to_string())
                .or_insert_with(|| Node::Map(BTreeMap::new()));
            if matches!(target, Node::Null) {
                *target = Node::Map(BTreeMap::new());
            }
            let Node::Map(target) = target else { continue };
            for (k, v) in imported {
                match target.get(&k) {
                    Some(existing) if *existing != v => {
                        return Err(format!("{kind}.{k} conflicts with imported resource"));
                    }
                    _ => {
                        target.insert(k, v);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Relative paths of a service read from another file, made relative to that file's `dir`.
fn rebase_paths(service: &mut Node, dir: &str) {
    if dir.is_empty() || dir == "." {
        return;
    }
    let local = |s: &str| {
        !(s.is_empty()
            || s.starts_with('/')
            || s.starts_with('~')
            || s.contains("://")
            || s.starts_with("service:")
            || s.starts_with("target:")
            || s.starts_with("github.com/")
            || s.starts_with("git@"))
    };
    let join = |n: &mut Node| {
        if let Node::Str(s) = n {
            if local(s) {
                *s = clean_path(&format!("{dir}/{s}"));
            }
        }
    };
    let Node::Map(svc) = service else { return };
    match svc.get_mut("build") {
        Some(b @ Node::Str(_)) => join(b),
        Some(Node::Map(b)) => {
            if let Some(c) = b.get_mut("context") {
                join(c);
            }
            if let Some(Node::Map(ac)) = b.get_mut("additional_contexts") {
                ac.values_mut().for_each(join);
            }
        }
        _ => {}
    }
    match svc.get_mut("env_file") {
        Some(f @ Node::Str(_)) => join(f),
        Some(Node::List(files)) => {
            for f in files {
                match f {
                    Node::Map(m) => {
                        if let Some(p) = m.get_mut("path") {
                            join(p);
                        }
                    }
                    f => join(f),
                }
            }
        }
        _ => {}
    }
}

/// compose-go's `EnforceUnicity` for the lists bake reads: later `KEY=` entries replace
/// earlier ones in place.
fn enforce_unicity(dict: &mut BTreeMap<String, Node>) -> Result<(), String> {
    let Some(Node::Map(services)) = dict.get_mut("services") else {
        return Ok(());
    };
    for (name, svc) in services.iter_mut() {
        let Node::Map(svc) = svc else { continue };
        let mut lists: Vec<(Vec<String>, &mut Node)> = Vec::new();
        for (k, v) in svc.iter_mut() {
            match k.as_str() {
                "environment" | "labels" | "annotations" => lists.push((vec![k.clone()], v)),
                "build" => {
                    if let Node::Map(b) = v {
                        for (bk, bv) in b.iter_mut() {
                            if ["args", "additional_contexts", "tags", "labels"]
                                .contains(&bk.as_str())
                            {
                                lists.push((vec![k.clone(), bk.clone()], bv));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for (sub, node) in lists {
            let Node::List(items) = node else { continue };
            let mut seq: Vec<Node> = Vec::new();
            let mut keys: BTreeMap<String, usize> = BTreeMap::new();
            for (i, entry) in std::mem::take(items).into_iter().enumerate() {
                let Node::Str(s) = &entry else {
                    return Err(format!(
                        "services.{name}.{}[{i}]: unexpected type {}",
                        sub.join("."),
                        go_type(&entry)
                    ));
                };
                let key = s.split_once('=').map(|(k, _)| k).unwrap_or(s).to_string();
                match keys.get(&key) {
                    Some(&j) => seq[j] = entry,
                    None => {
                        keys.insert(key, seq.len());
                        seq.push(entry);
                    }
                }
            }
            *items = seq;
        }
    }
    Ok(())
}

/// compose-go's `Canonical` for the parts bake reads.
fn canonical(dict: &mut BTreeMap<String, Node>) -> Result<(), String> {
    let Some(Node::Map(services)) = dict.get_mut("services") else {
        return Ok(());
    };
    for (name, svc) in services.iter_mut() {
        let Node::Map(svc) = svc else { continue };
        if let Some(Node::Str(f)) = svc.get("env_file") {
            let f = f.clone();
            svc.insert("env_file".into(), Node::List(vec![Node::Str(f)]));
        }
        let Some(build) = svc.get_mut("build") else {
            continue;
        };
        let p = format!("services.{name}.build");
        match build {
            Node::Str(s) => {
                *build = Node::Map(BTreeMap::from([("context".into(), Node::Str(s.clone()))]));
            }
            Node::Map(_) => {}
            other => return Err(format!("{p}: invalid type {} for build", go_type(other))),
        }
        let Node::Map(b) = build else { unreachable!() };
        if let Some(Node::List(secrets)) = b.get_mut("secrets") {
            for (i, s) in secrets.iter_mut().enumerate() {
                match s {
                    Node::Map(_) => {}
                    Node::Str(src) => {
                        *s = Node::Map(BTreeMap::from([("source".into(), Node::Str(src.clone()))]));
                    }
                    other => {
                        return Err(format!(
                            "{p}.secrets.[{i}]: unsupported type {}",
                            go_type(other)
                        ))
                    }
                }
            }
        }
        for k in ["provenance", "sbom"] {
            if let Some(v) = b.get_mut(k) {
                if !matches!(v, Node::Str(_)) {
                    *v = Node::Str(go_sprint(v));
                }
            }
        }
        if let Some(ac) = b.get_mut("additional_contexts") {
            match ac {
                Node::Map(_) => {}
                Node::List(items) => {
                    let mut m = BTreeMap::new();
                    for e in items.iter() {
                        let s = go_sprint(e);
                        let Some((k, v)) = s.split_once('=') else {
                            return Err(format!(
                                "{p}.additional_contexts: invalid value {s}, expected key=value"
                            ));
                        };
                        m.insert(k.to_string(), Node::Str(v.to_string()));
                    }
                    *ac = Node::Map(m);
                }
                other => {
                    return Err(format!(
                        "{p}.additional_contexts: invalid type {}",
                        go_type(other)
                    ))
                }
            }
        }
        if let Some(ssh) = b.get_mut("ssh") {
            match ssh {
                Node::Map(_) => {}
                Node::List(items) => {
                    let mut m = BTreeMap::new();
                    for e in items.iter() {
                        let Node::Str(s) = e else {
                            return Err(format!("invalid ssh key type {}", go_type(e)));
                        };
                        match s.split_once('=') {
                            Some((id, path)) => {
                                m.insert(id.to_string(), Node::Str(path.to_string()));
                            }
                            None if s == "default" => {
                                m.insert(s.clone(), Node::Null);
                            }
                            None => return Err(format!("invalid ssh key {s:?}")),
                        }
                    }
                    *ssh = Node::Map(m);
                }
                other => return Err(format!("{p}.ssh: invalid type {} for ssh", go_type(other))),
            }
        }
        if let Some(Node::Map(ul)) = b.get("ulimits") {
            for (k, v) in ul {
                if !matches!(v, Node::Map(_) | Node::Int(_)) {
                    return Err(format!(
                        "{p}.ulimits.{k}: invalid type {} for external",
                        go_type(v)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Removes the paths a `!reset` / `!override` tag names from the earlier files' model.
fn apply_tags(dict: &mut BTreeMap<String, Node>, tags: &[(Vec<String>, Tag)]) {
    for (path, _) in tags {
        let mut cur = &mut *dict;
        for (i, k) in path.iter().enumerate() {
            if i + 1 == path.len() {
                cur.remove(k);
                break;
            }
            match cur.get_mut(k) {
                Some(Node::Map(m)) => cur = m,
                _ => break,
            }
        }
    }
}

/// Go's `filepath.Clean` (Unix).
fn clean_path(p: &str) -> String {
    crate::gopath::clean_path(p)
}

fn expand_user(p: &str, env: &Environment<'_>) -> String {
    match (p.strip_prefix('~'), (env.lookup)("HOME")) {
        (Some(rest), Some(home)) => clean_path(&format!("{home}/{rest}")),
        _ => p.to_string(),
    }
}

/// compose-go's relative path resolution with an empty working directory: paths are cleaned.
fn resolve_paths(dict: &mut BTreeMap<String, Node>, env: &Environment<'_>) {
    let context_path = |v: &mut Node| {
        if let Node::Str(s) = v {
            let remote = s.contains("://")
                || s.starts_with("service:")
                || [
                    "https://",
                    "http://",
                    "git://",
                    "ssh://",
                    "github.com/",
                    "git@",
                ]
                .iter()
                .any(|p| s.starts_with(p));
            if !remote && !s.is_empty() {
                *s = clean_path(&expand_user(s, env));
            }
        }
    };
    let unix_path = |v: &mut Node| {
        if let Node::Str(s) = v {
            let e = expand_user(s, env);
            *s = if e.starts_with('/') {
                e
            } else {
                clean_path(&e)
            };
        }
    };
    if let Some(Node::Map(services)) = dict.get_mut("services") {
        for svc in services.values_mut() {
            let Node::Map(svc) = svc else { continue };
            let Some(Node::Map(b)) = svc.get_mut("build") else {
                continue;
            };
            if let Some(c) = b.get_mut("context") {
                context_path(c);
            }
            if let Some(Node::Map(ac)) = b.get_mut("additional_contexts") {
                ac.values_mut().for_each(context_path);
            }
            if let Some(Node::Map(ssh)) = b.get_mut("ssh") {
                ssh.values_mut().for_each(unix_path);
            }
        }
    }
    if let Some(Node::Map(secrets)) = dict.get_mut("secrets") {
        for s in secrets.values_mut() {
            if let Node::Map(s) = s {
                if let Some(f) = s.get_mut("file") {
                    unix_path(f);
                }
            }
        }
    }
}

/// The loaded model, filtered to what bake reads, validated and decoded.
struct Project {
    services: BTreeMap<String, Service>,
    secrets: BTreeMap<String, SecretDef>,
}

struct Service {
    image: String,
    build: Option<Build>,
    environment: BTreeMap<String, Option<String>>,
}

#[derive(Default)]
struct SecretDef {
    name: String,
    file: String,
    environment: String,
    external: bool,
}

#[derive(Default)]
struct Build {
    context: String,
    dockerfile: String,
    dockerfile_inline: String,
    args: BTreeMap<String, Option<String>>,
    provenance: String,
    sbom: String,
    ssh: Vec<(String, String)>,
    labels: BTreeMap<String, String>,
    cache_from: Vec<String>,
    cache_to: Vec<String>,
    no_cache: bool,
    additional_contexts: BTreeMap<String, String>,
    pull: bool,
    extra_hosts: BTreeMap<String, Vec<String>>,
    network: String,
    target: String,
    secrets: Vec<String>,
    shm_size: i64,
    tags: Vec<String>,
    ulimits: BTreeMap<String, (i64, i64)>,
    platforms: Vec<String>,
    x_bake: Option<Node>,
}

fn load(
    files: &[ComposeFile<'_>],
    env: &Environment<'_>,
    consistency: bool,
) -> Result<Project, String> {
    let mut dict: BTreeMap<String, Node> = BTreeMap::new();
    for f in files {
        for doc in yaml::documents(f.name, f.text)? {
            let Node::Map(mut cfg) = interpolate(doc.root, &mut Vec::new(), env)? else {
                return Err("top-level object must be a mapping".into());
            };
            apply_extends(&mut cfg, f.name, env)?;
            apply_include(&mut cfg, "", env, &mut vec![f.name.to_string()])?;
            apply_tags(&mut dict, &doc.tags);
            // A `!reset` value is dropped from this document too.
            let resets: Vec<_> = doc
                .tags
                .iter()
                .filter(|(_, t)| *t == Tag::Reset)
                .cloned()
                .collect();
            apply_tags(&mut cfg, &resets);
            let merged = merge_maps(std::mem::take(&mut dict), cfg, &mut Vec::new())?;
            dict = merged;
            enforce_unicity(&mut dict)?;
            canonical(&mut dict)?;
            enforce_unicity(&mut dict)?;
        }
    }
    if dict.is_empty() {
        return Err("empty compose file".into());
    }
    // Default values: a build section without context builds `.`.
    if let Some(Node::Map(services)) = dict.get_mut("services") {
        for svc in services.values_mut() {
            if let Node::Map(svc) = svc {
                if let Some(Node::Map(b)) = svc.get_mut("build") {
                    b.entry("context".into()).or_insert(Node::Str(".".into()));
                }
            }
        }
    }
    resolve_paths(&mut dict, env);

    // Only what bake reads is validated and decoded.
    let mut filtered: BTreeMap<String, Node> = BTreeMap::new();
    if let Some(s) = dict.remove("services") {
        let services = match s {
            Node::Map(m) => Node::Map(
                m.into_iter()
                    .map(|(name, svc)| {
                        let kept = match svc {
                            Node::Map(fields) => Node::Map(
                                fields
                                    .into_iter()
                                    .filter(|(k, _)| {
                                        ["image", "build", "environment", "env_file"]
                                            .contains(&k.as_str())
                                    })
                                    .collect(),
                            ),
                            Node::Null => Node::Map(BTreeMap::new()),
                            other => other,
                        };
                        (name, kept)
                    })
                    .collect(),
            ),
            other => other,
        };
        if matches!(services, Node::Map(_)) {
            filtered.insert("services".into(), services);
        }
    }
    if let Some(s) = dict.remove("secrets") {
        filtered.insert("secrets".into(), s);
    }
    if filtered.is_empty() {
        return Err("empty compose file".into());
    }
    schema::validate(&filtered)?;
    let project = decode(filtered, env)?;
    if consistency {
        check_consistency(&project)?;
    }
    Ok(project)
}

mod schema {
    //! The parts of the Compose JSON schema that cover what bake reads.

    use super::Node;
    use std::collections::BTreeMap;

    fn kind(n: &Node) -> &'static str {
        match n {
            Node::Null => "null",
            Node::Bool(_) => "boolean",
            Node::Int(_) => "integer",
            Node::Float(_) => "number",
            Node::Str(_) => "string",
            Node::List(_) => "array",
            Node::Map(_) => "object",
        }
    }

    fn expect(p: &str, n: &Node, allowed: &[&str]) -> Result<(), String> {
        let k = kind(n);
        if allowed.contains(&k) || (k == "integer" && allowed.contains(&"number")) {
            Ok(())
        } else {
            Err(format!("{p} must be a {}", allowed.join(" or ")))
        }
    }

    fn name_ok(name: &str, extra: &str) -> bool {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    }

    fn string_array(p: &str, n: &Node, unique: bool) -> Result<(), String> {
        let Node::List(items) = n else {
            return expect(p, n, &["array"]);
        };
        for (i, it) in items.iter().enumerate() {
            expect(&format!("{p}.{i}"), it, &["string"])?;
            if unique && items[..i].contains(it) {
                return Err(format!("{p} array items must be unique"));
            }
        }
        Ok(())
    }

    fn list_or_dict(p: &str, n: &Node) -> Result<(), String> {
        match n {
            Node::Map(m) => {
                for (k, v) in m {
                    expect(
                        &format!("{p}.{k}"),
                        v,
                        &["string", "number", "boolean", "null"],
                    )?;
                }
                Ok(())
            }
            Node::List(_) => string_array(p, n, true),
            _ => Err(format!("{p} must be a object or array")),
        }
    }

    pub fn validate(d: &BTreeMap<String, Node>) -> Result<(), String> {
        if let Some(s) = d.get("services") {
            let Node::Map(services) = s else {
                return expect("services", s, &["object"]);
            };
            for (name, svc) in services {
                if !name_ok(name, "._-") {
                    return Err(format!(
                        "services additional properties '{name}' not allowed"
                    ));
                }
                let p = format!("services.{name}");
                let Node::Map(svc) = svc else {
                    return expect(&p, svc, &["object"]);
                };
                if let Some(i) = svc.get("image") {
                    expect(&format!("{p}.image"), i, &["string"])?;
                }
                if let Some(e) = svc.get("environment") {
                    list_or_dict(&format!("{p}.environment"), e)?;
                }
                if let Some(b) = svc.get("build") {
                    build(&format!("{p}.build"), b)?;
                }
            }
        }
        if let Some(s) = d.get("secrets") {
            let Node::Map(secrets) = s else {
                return expect("secrets", s, &["object"]);
            };
            for (name, sec) in secrets {
                if !name_ok(name, "._-") {
                    return Err(format!(
                        "secrets additional properties '{name}' not allowed"
                    ));
                }
                let p = format!("secrets.{name}");
                let Node::Map(sec) = sec else {
                    return expect(&p, sec, &["object"]);
                };
                for (k, v) in sec {
                    let q = format!("{p}.{k}");
                    match k.as_str() {
                        "name" | "environment" | "file" | "driver" | "template_driver" => {
                            expect(&q, v, &["string"])?
                        }
                        "external" => expect(&q, v, &["boolean", "string", "object"])?,
                        "labels" => list_or_dict(&q, v)?,
                        "driver_opts" => expect(&q, v, &["object"])?,
                        k if k.starts_with("x-") => {}
                        _ => return Err(format!("{p} additional properties '{k}' not allowed")),
                    }
                }
            }
        }
        Ok(())
    }

    fn build(p: &str, b: &Node) -> Result<(), String> {
        let Node::Map(b) = b else {
            return expect(p, b, &["string", "object"]);
        };
        for (k, v) in b {
            let q = format!("{p}.{k}");
            match k.as_str() {
                "context" | "dockerfile" | "dockerfile_inline" | "network" | "target"
                | "isolation" => expect(&q, v, &["string"])?,
                "entitlements" | "cache_from" | "cache_to" | "tags" | "platforms" => {
                    string_array(&q, v, false)?
                }
                "args" | "ssh" | "labels" | "additional_contexts" => list_or_dict(&q, v)?,
                "no_cache" | "pull" | "privileged" | "provenance" | "sbom" => {
                    expect(&q, v, &["boolean", "string"])?
                }
                "shm_size" => expect(&q, v, &["integer", "string"])?,
                "extra_hosts" => match v {
                    Node::Map(m) => {
                        for (h, ip) in m {
                            let r = format!("{q}.{h}");
                            match ip {
                                Node::List(_) => string_array(&r, ip, false)?,
                                _ => expect(&r, ip, &["string", "array"])?,
                            }
                        }
                    }
                    _ => string_array(&q, v, true)?,
                },
                "secrets" => {
                    let Node::List(items) = v else {
                        return expect(&q, v, &["array"]);
                    };
                    for (i, it) in items.iter().enumerate() {
                        let r = format!("{q}.{i}");
                        let Node::Map(m) = it else {
                            return expect(&r, it, &["string", "object"]);
                        };
                        for (mk, mv) in m {
                            match mk.as_str() {
                                "source" | "target" | "uid" | "gid" => {
                                    expect(&format!("{r}.{mk}"), mv, &["string"])?
                                }
                                "mode" => expect(&format!("{r}.{mk}"), mv, &["number", "string"])?,
                                k if k.starts_with("x-") => {}
                                _ => {
                                    return Err(format!(
                                        "{r} additional properties '{mk}' not allowed"
                                    ))
                                }
                            }
                        }
                    }
                }
                "ulimits" => {
                    let Node::Map(m) = v else {
                        return expect(&q, v, &["object"]);
                    };
                    for (name, u) in m {
                        let r = format!("{q}.{name}");
                        if !name.chars().all(|c| c.is_ascii_lowercase()) || name.is_empty() {
                            return Err(format!("{q} additional properties '{name}' not allowed"));
                        }
                        match u {
                            Node::Map(lim) => {
                                for req in ["soft", "hard"] {
                                    if !lim.contains_key(req) {
                                        return Err(format!("{r} {req} is required"));
                                    }
                                }
                                for (lk, lv) in lim {
                                    match lk.as_str() {
                                        "soft" | "hard" => expect(
                                            &format!("{r}.{lk}"),
                                            lv,
                                            &["integer", "string"],
                                        )?,
                                        k if k.starts_with("x-") => {}
                                        _ => {
                                            return Err(format!(
                                                "{r} additional properties '{lk}' not allowed"
                                            ))
                                        }
                                    }
                                }
                            }
                            _ => expect(&r, u, &["integer", "string", "object"])?,
                        }
                    }
                }
                k if k.starts_with("x-") => {}
                _ => return Err(format!("{p} additional properties '{k}' not allowed")),
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding into typed values (compose-go's mapstructure hooks).

fn str_of(n: Option<&Node>) -> String {
    match n {
        Some(Node::Str(s)) => s.clone(),
        _ => String::new(),
    }
}

fn string_list(n: Option<&Node>) -> Vec<String> {
    match n {
        Some(Node::List(l)) => l.iter().map(go_sprint).collect(),
        Some(Node::Str(s)) => vec![s.clone()],
        _ => vec![],
    }
}

fn bool_of(p: &str, n: Option<&Node>) -> Result<bool, String> {
    match n {
        None | Some(Node::Null) => Ok(false),
        Some(Node::Bool(b)) => Ok(*b),
        Some(Node::Str(s)) => crate::types::parse_go_bool(s)
            .ok_or_else(|| format!("{p}: invalid boolean value {s:?}")),
        Some(other) => Err(format!("{p}: expected a boolean, got {}", go_type(other))),
    }
}

/// `MappingWithEquals`: `null` values (and list entries without `=`) are declared unset.
fn mapping_with_equals(
    p: &str,
    n: Option<&Node>,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut out = BTreeMap::new();
    match n {
        Some(Node::Map(m)) => {
            for (k, v) in m {
                let v = match v {
                    Node::Null => None,
                    v => Some(go_sprint(v)),
                };
                out.insert(k.clone(), v);
            }
        }
        Some(Node::List(l)) => {
            for e in l {
                let s = go_sprint(e);
                let (k, v) = match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (s.clone(), None),
                };
                if k.ends_with(char::is_whitespace) {
                    return Err(format!(
                        "environment variable {k} is declared with a trailing space"
                    ));
                }
                out.insert(k, v);
            }
        }
        None | Some(Node::Null) => {}
        Some(other) => {
            return Err(format!(
                "{p}: unexpected value type {} for mapping",
                go_type(other)
            ))
        }
    }
    Ok(out)
}

/// Go's `units.RAMInBytes`.
fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let err = || format!("invalid size: '{s}'");
    let t = s.trim_end_matches(['b', 'B']);
    let t = t.trim_end_matches(['i', 'I']);
    let (num, mult) = match t.chars().last() {
        Some(c) if "kKmMgGtTpP".contains(c) => {
            let pow = "kmgtp".find(c.to_ascii_lowercase()).unwrap() as u32 + 1;
            (&t[..t.len() - 1], 1024i64.pow(pow))
        }
        _ => (t, 1),
    };
    // The suffix letters may only follow a unit or a number, as the Go expression allows.
    if s.len() - t.len() > 0 && mult == 1 && !s[t.len()..].eq_ignore_ascii_case("b") {
        return Err(err());
    }
    let num = num.strip_suffix(' ').unwrap_or(num);
    if num.is_empty()
        || !num.chars().next().unwrap().is_ascii_digit()
        || !num.chars().all(|c| c.is_ascii_digit() || c == '.')
        || num.ends_with('.')
        || num.contains("..")
    {
        return Err(err());
    }
    let first = num.split('.').take(2).collect::<Vec<_>>().join(".");
    let v: f64 = first.parse().map_err(|_| err())?;
    Ok((v * mult as f64) as i64)
}

/// Go's `units.BytesSize` (`%.4g` with binary units).
fn bytes_size(n: i64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = n as f64;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    let digits = if size >= 1.0 {
        size.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = (4 - digits).max(0) as usize;
    let mut s = format!("{size:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[i])
}

fn int_of(p: &str, n: &Node) -> Result<i64, String> {
    match n {
        Node::Int(i) => Ok(*i),
        Node::Str(s) => s
            .parse()
            .map_err(|_| format!("{p}: cannot parse {s:?} as int")),
        other => Err(format!("{p}: expected int, got {}", go_type(other))),
    }
}

fn decode_build(p: &str, b: &BTreeMap<String, Node>) -> Result<Build, String> {
    let mut out = Build {
        context: str_of(b.get("context")),
        dockerfile: str_of(b.get("dockerfile")),
        dockerfile_inline: str_of(b.get("dockerfile_inline")),
        args: mapping_with_equals(&format!("{p}.args"), b.get("args"))?,
        provenance: str_of(b.get("provenance")),
        sbom: str_of(b.get("sbom")),
        cache_from: string_list(b.get("cache_from")),
        cache_to: string_list(b.get("cache_to")),
        no_cache: bool_of(&format!("{p}.no_cache"), b.get("no_cache"))?,
        pull: bool_of(&format!("{p}.pull"), b.get("pull"))?,
        network: str_of(b.get("network")),
        target: str_of(b.get("target")),
        tags: string_list(b.get("tags")),
        platforms: string_list(b.get("platforms")),
        x_bake: b.get("x-bake").cloned(),
        ..Build::default()
    };
    bool_of(&format!("{p}.privileged"), b.get("privileged"))?;
    match b.get("labels") {
        Some(Node::Map(m)) => {
            for (k, v) in m {
                let v = match v {
                    Node::Null => String::new(),
                    v => go_sprint(v),
                };
                out.labels.insert(k.clone(), v);
            }
        }
        Some(Node::List(l)) => {
            for e in l {
                let s = go_sprint(e);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                out.labels.insert(k.to_string(), v.to_string());
            }
        }
        _ => {}
    }
    if let Some(Node::Map(m)) = b.get("ssh") {
        for (id, path) in m {
            let path = match path {
                Node::Null => String::new(),
                v => go_sprint(v),
            };
            out.ssh.push((id.clone(), path));
        }
    }
    if let Some(Node::Map(m)) = b.get("additional_contexts") {
        for (k, v) in m {
            let v = match v {
                Node::Null => String::new(),
                v => go_sprint(v),
            };
            out.additional_contexts.insert(k.clone(), v);
        }
    }
    let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match b.get("extra_hosts") {
        Some(Node::Map(m)) => {
            for (h, ip) in m {
                let ips = match ip {
                    Node::Null => vec![String::new()],
                    Node::List(l) => l.iter().map(go_sprint).collect(),
                    v => vec![go_sprint(v)],
                };
                hosts.insert(h.clone(), ips);
            }
        }
        Some(Node::List(l)) => {
            for e in l {
                let s = go_sprint(e);
                let Some((h, ip)) = s.split_once('=').or_else(|| s.split_once(':')) else {
                    return Err(format!("invalid additional host, missing IP: {s}"));
                };
                hosts
                    .entry(h.to_string())
                    .or_default()
                    .extend(ip.split(',').map(String::from));
            }
        }
        _ => {}
    }
    for (h, ips) in &mut hosts {
        if h.is_empty() || h.contains([':', '=']) {
            return Err(format!("bad host name '{h}'"));
        }
        for ip in ips.iter_mut() {
            if ip.len() > 2 && ip.starts_with('[') && ip.ends_with(']') {
                *ip = ip[1..ip.len() - 1].to_string();
            }
        }
    }
    out.extra_hosts = hosts;
    if let Some(Node::List(l)) = b.get("secrets") {
        for s in l {
            if let Node::Map(m) = s {
                out.secrets.push(str_of(m.get("source")));
            }
        }
    }
    match b.get("shm_size") {
        Some(Node::Int(i)) => out.shm_size = *i,
        Some(Node::Str(s)) => {
            out.shm_size = ram_in_bytes(s).map_err(|e| {
                format!("decoding failed due to the following error(s):\n\n'{p}.shm_size' {e}")
            })?
        }
        _ => {}
    }
    if let Some(Node::Map(m)) = b.get("ulimits") {
        for (name, u) in m {
            let q = format!("{p}.ulimits.{name}");
            let lim = match u {
                // A single value sets compose-go's `Single`, which buildx does not read.
                Node::Int(_) | Node::Str(_) => {
                    int_of(&q, u)?;
                    (0, 0)
                }
                Node::Map(l) => (
                    int_of(&q, l.get("soft").unwrap_or(&Node::Int(0)))?,
                    int_of(&q, l.get("hard").unwrap_or(&Node::Int(0)))?,
                ),
                other => return Err(format!("{q}: invalid type {}", go_type(other))),
            };
            out.ulimits.insert(name.clone(), lim);
        }
    }
    Ok(out)
}

fn decode(d: BTreeMap<String, Node>, env: &Environment<'_>) -> Result<Project, String> {
    let mut project = Project {
        services: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    if let Some(Node::Map(secrets)) = d.get("secrets") {
        for (name, s) in secrets {
            let Node::Map(s) = s else { continue };
            let external = match s.get("external") {
                Some(Node::Map(_)) => true,
                other => bool_of(&format!("secrets.{name}.external"), other)?,
            };
            project.secrets.insert(
                name.clone(),
                SecretDef {
                    name: str_of(s.get("name")),
                    file: str_of(s.get("file")),
                    environment: str_of(s.get("environment")),
                    external,
                },
            );
        }
    }
    if let Some(Node::Map(services)) = d.get("services") {
        for (name, s) in services {
            let Node::Map(s) = s else { continue };
            let p = format!("services.{name}");
            let build = match s.get("build") {
                Some(Node::Map(b)) => Some(decode_build(&format!("services[{name}].build"), b)?),
                _ => None,
            };
            // `env_file` variables first, `environment` entries override them (a bare name
            // too: it is then looked up in the environment only), as compose-go.
            let mut environment = env_files(s.get("env_file"), env)?;
            environment.extend(mapping_with_equals(
                &format!("{p}.environment"),
                s.get("environment"),
            )?);
            for (k, v) in environment.iter_mut() {
                if v.is_none() {
                    *v = env.get(k);
                }
            }
            project.services.insert(
                name.clone(),
                Service {
                    image: str_of(s.get("image")),
                    build,
                    environment,
                },
            );
        }
    }
    Ok(project)
}

/// A service's `env_file` entries (a path, or `{path, required}` with `required` true by
/// default) read in order, later files overriding earlier ones; values interpolate from the
/// environment first, then the variables above them.
fn env_files(
    n: Option<&Node>,
    env: &Environment<'_>,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let mut out = BTreeMap::new();
    let entries = match n {
        Some(Node::List(l)) => l.clone(),
        Some(s @ Node::Str(_)) => vec![s.clone()],
        _ => Vec::new(),
    };
    for entry in entries {
        let (path, required) = match &entry {
            Node::Map(m) => (
                str_of(m.get("path")),
                match m.get("required") {
                    None => true,
                    other => bool_of("env_file.required", other)?,
                },
            ),
            other => (str_of(Some(other)), true),
        };
        let Some(text) = (env.read_file)(&path) else {
            if required {
                return Err(format!(
                    "env file {path} not found: stat {path}: no such file or directory"
                ));
            }
            continue;
        };
        let vars = template::parse_dotenv(&text, &|k| env.get(k))
            .map_err(|e| format!("failed to read {path}: {e}"))?;
        out.extend(vars.into_iter().map(|(k, v)| (k, Some(v))));
    }
    Ok(out)
}

fn check_consistency(project: &Project) -> Result<(), String> {
    for (name, s) in &project.services {
        let Some(b) = &s.build else {
            if s.image.is_empty() {
                return Err(format!(
                    "service {name:?} has neither an image nor a build context specified: invalid compose project"
                ));
            }
            continue;
        };
        if !b.dockerfile_inline.is_empty() && !b.dockerfile.is_empty() {
            return Err(format!(
                "service {name:?} declares mutualy exclusive dockerfile and dockerfile_inline: invalid compose project"
            ));
        }
        for (add, c) in &b.additional_contexts {
            if let Some(target) = c.strip_prefix("service:") {
                match project.services.get(target) {
                    None => {
                        return Err(format!(
                        "service {name:?} declares unknown service {target:?} as additional contexts {add}"
                    ))
                    }
                    Some(t) if t.build.is_none() => {
                        return Err(format!(
                        "service {name:?} declares non-buildable service {target:?} as additional contexts {add}"
                    ))
                    }
                    _ => {}
                }
            }
        }
        for secret in &b.secrets {
            if !project.secrets.contains_key(secret) {
                return Err(format!(
                    "service {name:?} refers to undefined build secret {secret}: invalid compose project"
                ));
            }
        }
    }
    for (name, s) in &project.secrets {
        if !s.external && s.file.is_empty() && s.environment.is_empty() {
            return Err(format!(
                "secret {name:?} must declare either `file` or `environment`: invalid compose project"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Targets, as buildx's `ParseCompose`.

use crate::units::ULIMIT_NAMES;

fn sanitize_target_name(name: &str) -> String {
    name.replace('.', "_")
}

fn named_contexts(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| {
            let v = match v
                .strip_prefix("service:")
                .or_else(|| v.strip_prefix("target:"))
            {
                Some(t) => format!("target:{}", sanitize_target_name(t)),
                None => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

fn caches(entries: &[String]) -> Result<Vec<Cache>, String> {
    let mut out = Vec::new();
    for e in entries {
        out.extend(Cache::parse_entries(e)?);
    }
    Ok(out)
}

fn targets(project: &Project, env: &Environment<'_>) -> Result<Config, String> {
    let mut c = Config::default();
    if project.services.is_empty() {
        return Ok(c);
    }
    let mut group = Group {
        name: "default".into(),
        ..Group::default()
    };
    for (name, s) in &project.services {
        let Some(b) = &s.build else { continue };
        let tname = sanitize_target_name(name);
        if !tname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "invalid service name {tname:?}: only \"[a-zA-Z0-9_-]+\" are allowed"
            ));
        }
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let mut t = Target::new(&tname);
        t.context = some(&b.context);
        t.dockerfile = some(&b.dockerfile);
        t.dockerfile_inline = some(&b.dockerfile_inline);
        if !b.additional_contexts.is_empty() {
            t.contexts = Some(named_contexts(&b.additional_contexts));
        }
        if b.shm_size > 0 {
            t.shm_size = Some(bytes_size(b.shm_size));
        }
        t.network = some(&b.network);
        let mut ulimits = Vec::new();
        for (n, (soft, hard)) in &b.ulimits {
            if !ULIMIT_NAMES.contains(&n.as_str()) {
                return Err(format!("invalid ulimit type: {n}"));
            }
            if soft > hard {
                return Err(format!(
                    "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
                ));
            }
            ulimits.push(format!("{n}={soft}:{hard}"));
        }
        t.ulimits = (!ulimits.is_empty()).then_some(ulimits);
        t.extra_hosts = Some(
            b.extra_hosts
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.join(","))))
                .collect(),
        );
        let mut ssh: Vec<Ssh> = b
            .ssh
            .iter()
            .map(|(id, path)| Ssh {
                id: id.clone(),
                paths: if path.is_empty() {
                    vec![]
                } else {
                    vec![path.clone()]
                },
            })
            .collect();
        ssh.sort_by(|a, b| (&a.id, &a.paths).cmp(&(&b.id, &b.paths)));
        t.ssh = (!ssh.is_empty()).then_some(ssh);
        let mut secrets = Vec::new();
        for src in &b.secrets {
            let def = project.secrets.get(src);
            if let Some(d) = def.filter(|d| d.external) {
                return Err(format!("unsupported external secret {}", d.name));
            }
            secrets.push(Secret {
                id: src.clone(),
                src: def.map(|d| d.file.clone()).unwrap_or_default(),
                env: def.map(|d| d.environment.clone()).unwrap_or_default(),
            });
        }
        t.secrets = (!secrets.is_empty()).then_some(secrets);
        t.labels = Some(
            b.labels
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
        );
        let cache_from = caches(&b.cache_from)?;
        t.cache_from = (!cache_from.is_empty()).then_some(cache_from);
        let cache_to = caches(&b.cache_to)?;
        t.cache_to = (!cache_to.is_empty()).then_some(cache_to);
        let mut attests = Vec::new();
        if !b.sbom.is_empty() {
            attests.push(Attest::parse(&Attest::canonicalize("sbom", &b.sbom))?);
        }
        if !b.provenance.is_empty() {
            attests.push(Attest::parse(&Attest::canonicalize(
                "provenance",
                &b.provenance,
            ))?);
        }
        t.attest = (!attests.is_empty()).then_some(attests);
        t.no_cache = b.no_cache.then_some(true);
        t.pull = b.pull.then_some(true);
        t.tags = (!b.tags.is_empty()).then(|| b.tags.clone());
        t.platforms = (!b.platforms.is_empty()).then(|| b.platforms.clone());
        let args: BTreeMap<String, Option<String>> = b
            .args
            .iter()
            .filter_map(|(k, v)| {
                let v = match v {
                    Some(v) => Some(v.clone()),
                    None => s
                        .environment
                        .get(k)
                        .cloned()
                        .flatten()
                        .or_else(|| env.get(k)),
                };
                v.map(|v| (k.clone(), Some(v)))
            })
            .collect();
        t.args = (!args.is_empty()).then_some(args);
        if let Some(x) = &b.x_bake {
            apply_x_bake(&mut t, x)?;
        }
        t.target = some(&b.target);
        if t.tags.as_ref().is_none_or(|t| t.is_empty()) && !s.image.is_empty() {
            t.tags = Some(vec![s.image.clone()]);
        }
        group.targets.push(tname);
        c.targets.push(t);
    }
    c.groups.push(group);
    Ok(c)
}

/// A `stringArray` of the `x-bake` extension: a list, or one string split on white space.
fn x_strings(k: &str, n: Option<&Node>) -> Result<Vec<String>, String> {
    match n {
        None | Some(Node::Null) => Ok(vec![]),
        Some(Node::List(l)) => l
            .iter()
            .map(|e| match e {
                Node::List(_) | Node::Map(_) => Err(format!(
                    "yaml: unmarshal errors:\n  cannot unmarshal sequence into x-bake.{k}"
                )),
                Node::Null => Ok(String::new()),
                e => Ok(go_sprint(e)),
            })
            .collect(),
        Some(Node::Map(_)) => Err(format!(
            "yaml: unmarshal errors:\n  cannot unmarshal !!map into x-bake.{k}"
        )),
        Some(e) => Ok(go_sprint(e).split_whitespace().map(String::from).collect()),
    }
}

fn x_bool(k: &str, n: Option<&Node>) -> Result<Option<bool>, String> {
    match n {
        None | Some(Node::Null) => Ok(None),
        Some(Node::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(format!(
            "yaml: unmarshal errors:\n  cannot unmarshal {} `{}` into bool (x-bake.{k})",
            go_type(other),
            go_sprint(other)
        )),
    }
}

fn dedup_append(into: &mut Option<Vec<String>>, more: Vec<String>) {
    let mut all = into.take().unwrap_or_default();
    all.extend(more);
    *into = Some(dedup_names(&all));
}

/// buildx's `composeExtTarget`.
fn apply_x_bake(t: &mut Target, x: &Node) -> Result<(), String> {
    let m = match x {
        Node::Map(m) => m,
        Node::Null => return Ok(()),
        other => {
            return Err(format!(
                "yaml: unmarshal errors:\n  cannot unmarshal {} into x-bake",
                go_type(other)
            ))
        }
    };
    let tags = x_strings("tags", m.get("tags"))?;
    if !tags.is_empty() {
        dedup_append(&mut t.tags, tags);
    }
    let cf = x_strings("cache-from", m.get("cache-from"))?;
    if !cf.is_empty() {
        let mut all = t.cache_from.take().unwrap_or_default();
        all.extend(caches(&cf)?);
        t.cache_from = Some(remove_dupes(all));
    }
    let ct = x_strings("cache-to", m.get("cache-to"))?;
    if !ct.is_empty() {
        let mut all = t.cache_to.take().unwrap_or_default();
        all.extend(caches(&ct)?);
        t.cache_to = Some(remove_dupes(all));
    }
    let secrets = x_strings("secret", m.get("secret"))?;
    if !secrets.is_empty() {
        let mut all = t.secrets.take().unwrap_or_default();
        for s in &secrets {
            all.push(Secret::parse(s)?);
        }
        t.secrets = Some(crate::buildflags::dedupe_by_key(all, |s| s.id.clone()));
    }
    let ssh = x_strings("ssh", m.get("ssh"))?;
    if !ssh.is_empty() {
        let mut all = t.ssh.take().unwrap_or_default();
        all.extend(ssh.iter().map(|s| Ssh::parse(s)));
        let mut all = crate::buildflags::dedupe_by_key(all, |s| s.id.clone());
        all.sort_by(|a, b| (&a.id, &a.paths).cmp(&(&b.id, &b.paths)));
        t.ssh = Some(all);
    }
    let platforms = x_strings("platforms", m.get("platforms"))?;
    if !platforms.is_empty() {
        dedup_append(&mut t.platforms, platforms);
    }
    let outputs = x_strings("output", m.get("output"))?;
    if !outputs.is_empty() {
        let mut all = t.outputs.take().unwrap_or_default();
        for o in &outputs {
            all.push(Export::parse(o)?);
        }
        t.outputs = Some(remove_dupes(all));
    }
    if let Some(p) = x_bool("pull", m.get("pull"))? {
        t.pull = Some(p);
    }
    if let Some(p) = x_bool("no-cache", m.get("no-cache"))? {
        t.no_cache = Some(p);
    }
    let ncf = x_strings("no-cache-filter", m.get("no-cache-filter"))?;
    if !ncf.is_empty() {
        dedup_append(&mut t.no_cache_filter, ncf);
    }
    match m.get("contexts") {
        None | Some(Node::Null) => {}
        Some(Node::Map(c)) => {
            let c: BTreeMap<String, String> = c
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Node::Null => String::new(),
                        v => go_sprint(v),
                    };
                    (k.clone(), v)
                })
                .collect();
            let contexts = t.contexts.get_or_insert_with(BTreeMap::new);
            for (k, v) in named_contexts(&c) {
                contexts.entry(k).or_insert(v);
            }
        }
        Some(other) => {
            return Err(format!(
                "yaml: unmarshal errors:\n  cannot unmarshal {} into x-bake.contexts",
                go_type(other)
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_one(text: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| vars.get(k).cloned();
        let env = Environment {
            lookup: &lookup,
            dotenv: BTreeMap::new(),
            read_file: &|_| None,
        };
        read(
            &[ComposeFile {
                name: "compose.yaml",
                text,
            }],
            &env,
        )
    }

    #[test]
    fn env_files_extends_and_include_read_through_the_reader() {
        let files = BTreeMap::from([
            ("a.env", "FOO=from-file\nBAR=${FOO}-x\n"),
            ("inc/compose.yaml", "services:\n  lib:\n    build: ./src\n"),
        ]);
        let reader = move |p: &str| files.get(p).map(|s| s.to_string());
        let lookup = |_: &str| None;
        let env = Environment {
            lookup: &lookup,
            dotenv: BTreeMap::new(),
            read_file: &reader,
        };
        let text = "include: [inc/compose.yaml]\nservices:\n  base:\n    env_file: a.env\n    build:\n      args: [FOO, BAR]\n  app:\n    extends: base\n";
        let c = read(
            &[ComposeFile {
                name: "compose.yaml",
                text,
            }],
            &env,
        )
        .unwrap();
        let app = c.targets.iter().find(|t| t.name == "app").unwrap();
        let args = app.args.clone().unwrap();
        assert_eq!(args["FOO"].as_deref(), Some("from-file"));
        assert_eq!(args["BAR"].as_deref(), Some("from-file-x"));
        let lib = c.targets.iter().find(|t| t.name == "lib").unwrap();
        assert_eq!(lib.context.as_deref(), Some("inc/src"));
    }

    #[test]
    fn services_with_build_become_targets() {
        let c = read_one(
            "services:\n  db:\n    image: postgres\n  web.app:\n    image: app:${TAG:-latest}\n    build:\n      context: ./dir\n      args: [A=1, B]\n      shm_size: 128m\n",
            &[("B", "from-env")],
        )
        .unwrap();
        assert_eq!(c.groups[0].targets, vec!["web_app"]);
        let t = &c.targets[0];
        assert_eq!(t.context.as_deref(), Some("dir"));
        assert_eq!(t.tags, Some(vec!["app:latest".to_string()]));
        assert_eq!(t.shm_size.as_deref(), Some("128MiB"));
        let args = t.args.clone().unwrap();
        assert_eq!(args["B"], Some("from-env".into()));
    }

    #[test]
    fn invalid_files_are_refused() {
        assert!(read_one("services:\n  a:\n    build:\n      bogus: 1\n", &[]).is_err());
        assert!(read_one("services:\n  a: {}\n", &[]).is_err());
        assert!(read_one("x-foo: 1\n", &[]).is_err());
        assert!(read_one(
            "services:\n  a:\n    build: .\n    image: ${X:?set X}\n",
            &[]
        )
        .is_err());
    }

    #[test]
    fn sizes_print_as_go_does() {
        assert_eq!(bytes_size(128 * 1024 * 1024), "128MiB");
        assert_eq!(bytes_size(1536 * 1024 * 1024), "1.5GiB");
        assert_eq!(bytes_size(1000), "1000B");
        assert_eq!(ram_in_bytes("2g").unwrap(), 2 << 30);
        assert_eq!(ram_in_bytes("64MB").unwrap(), 64 << 20);
        assert!(ram_in_bytes("lots").is_err());
    }

    #[test]
    fn paths_are_cleaned() {
        assert_eq!(clean_path("./a//b/../c/"), "a/c");
        assert_eq!(clean_path("../x"), "../x");
        assert_eq!(clean_path("."), ".");
    }
}
