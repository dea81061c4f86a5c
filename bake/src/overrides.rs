//! `--set target.attr=value` overrides (and the flags that are shorthands for them: `--push`,
//! `--load`, `--sbom`, `--provenance`, `--call`, `--no-cache`, `--pull`): parsed against the
//! configuration (target-name globs), then applied to a resolved target.

use std::collections::BTreeMap;

use crate::buildflags::{dedupe_by_key, remove_dupes, Attest, Cache, Export, Secret, Ssh};
use crate::error::Diag;
use crate::target::{Config, Target};
use crate::types::parse_go_bool;

/// One override of one attribute key (`tags`, `args.FOO`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Override {
    pub value: String,
    pub values: Vec<String>,
    pub append: bool,
}

/// Target name to attribute key to override, keys in the order first given.
pub type Overrides = BTreeMap<String, Vec<(String, Override)>>;

/// Go's `path.Match` for target-name globs (`*`, `?`, `[...]`, no `/` in names).
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, String> {
    glob::Pattern::new(pattern)
        .map(|p| p.matches(name))
        .map_err(|_| "syntax error in pattern".to_string())
}

fn expand_targets(c: &Config, pattern: &str) -> Result<Vec<String>, Diag> {
    if c.target(pattern).is_some() {
        return Ok(vec![pattern.to_string()]);
    }
    let mut names = Vec::new();
    for t in &c.targets {
        match glob_match(pattern, &t.name) {
            Ok(true) => names.push(t.name.clone()),
            Ok(false) => {}
            Err(e) => {
                return Err(Diag::msg(format!(
                    "could not match targets with '{pattern}': {e}"
                )))
            }
        }
    }
    if names.is_empty() {
        return Err(Diag::msg(format!(
            "could not find any target matching '{pattern}'"
        )));
    }
    Ok(names)
}

const LIST_KEYS: &[&str] = &[
    "output",
    "cache-to",
    "cache-from",
    "tags",
    "platform",
    "secrets",
    "ssh",
    "attest",
    "entitlements",
    "network",
    "annotations",
];

/// Parses `--set` values as buildx's `newOverrides`.
pub fn parse(
    c: &Config,
    sets: &[String],
    lookup_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Overrides, Diag> {
    let mut m: Overrides = BTreeMap::new();
    for v in sets {
        let (lhs, value) = match v.split_once('=') {
            Some((l, r)) => (l, Some(r)),
            None => (v.as_str(), None),
        };
        let append = lhs.ends_with('+');
        let skey = lhs.trim_end_matches('+');
        let skey = if append { &lhs[..lhs.len() - 1] } else { skey };
        let keys: Vec<&str> = skey.splitn(3, '.').collect();
        if keys.len() < 2 {
            return Err(Diag::msg(format!(
                "invalid override key {skey}, expected target.name"
            )));
        }
        if value.is_none() && keys[1] != "args" {
            return Err(Diag::msg(format!(
                "invalid override {v}, expected target.name=value"
            )));
        }
        let names = expand_targets(c, keys[0])?;
        let okey = keys[1..].join(".");
        for name in names {
            let entries = m.entry(name).or_default();
            let idx = match entries.iter().position(|(k, _)| *k == okey) {
                Some(i) => i,
                None => {
                    entries.push((okey.clone(), Override::default()));
                    entries.len() - 1
                }
            };
            let o = &mut entries[idx].1;
            if LIST_KEYS.contains(&keys[1]) {
                if let Some(val) = value {
                    o.append = append;
                    o.values.push(val.to_string());
                }
                continue;
            }
            if keys[1] == "args" || keys[1] == "contexts" {
                if keys.len() != 3 {
                    return Err(Diag::msg(format!(
                        "invalid key {lhs}, {} requires name",
                        keys[1]
                    )));
                }
                if value.is_none() {
                    match lookup_env(keys[2]) {
                        Some(env) => o.value = env,
                        None => {
                            // An unset variable leaves the key as declared (and unset).
                            if o.value.is_empty() {
                                entries.remove(idx);
                            }
                            continue;
                        }
                    }
                }
            }
            if let Some(val) = value {
                o.value = val.to_string();
            }
        }
    }
    Ok(m)
}

fn parse_all<T>(
    values: &[String],
    f: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    values
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| f(s))
        .collect()
}

fn bool_value(key: &str, v: &str) -> Result<bool, Diag> {
    parse_go_bool(v).ok_or_else(|| Diag::msg(format!("invalid value {v} for boolean key {key}")))
}

/// Applies one target's overrides, as buildx's `AddOverrides`.
pub fn apply(t: &mut Target, overrides: &[(String, Override)]) -> Result<(), Diag> {
    for (key, o) in overrides {
        let (head, rest) = match key.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (key.as_str(), None),
        };
        let value = o.value.clone();
        let need = |what: &str, example: &str| -> Result<String, Diag> {
            rest.map(String::from)
                .ok_or_else(|| Diag::msg(format!("invalid format for {what}, expecting {example}")))
        };
        let wrap = |what: &'static str| {
            move |e: String| Diag::msg(format!("invalid value for {what}: {e}"))
        };
        match head {
            "context" => t.context = Some(value),
            "dockerfile" => t.dockerfile = Some(value),
            "args" => {
                let k = need("args", "args.<name>=<value>")?;
                t.args
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k, Some(value));
            }
            "contexts" => {
                let k = need("contexts", "contexts.<name>=<value>")?;
                t.contexts
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k, value);
            }
            "labels" => {
                let k = need("labels", "labels.<name>=<value>")?;
                t.labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k, Some(value));
            }
            "tags" => {
                if o.append {
                    t.tags
                        .get_or_insert_with(Vec::new)
                        .extend(o.values.iter().cloned());
                } else {
                    t.tags = Some(o.values.clone());
                }
            }
            "cache-from" | "cache-to" => {
                let mut entries = Vec::new();
                for v in o.values.iter().filter(|s| !s.is_empty()) {
                    entries.extend(Cache::parse_entries(v).map_err(Diag::msg)?);
                }
                let slot = if head == "cache-from" {
                    &mut t.cache_from
                } else {
                    &mut t.cache_to
                };
                if o.append {
                    let mut all = slot.take().unwrap_or_default();
                    all.extend(entries);
                    *slot = Some(remove_dupes(all));
                } else {
                    *slot = Some(entries);
                }
            }
            "target" => t.target = Some(value),
            "call" => t.call = Some(value),
            "secrets" => {
                let s = parse_all(&o.values, Secret::parse).map_err(wrap("outputs"))?;
                if o.append {
                    let mut all = t.secrets.take().unwrap_or_default();
                    all.extend(s);
                    t.secrets = Some(dedupe_by_key(all, |x| x.id.clone()));
                } else {
                    t.secrets = Some(s);
                }
            }
            "ssh" => {
                let s = parse_all(&o.values, |v| Ok(Ssh::parse(v))).map_err(wrap("outputs"))?;
                if o.append {
                    let mut all = t.ssh.take().unwrap_or_default();
                    all.extend(s);
                    t.ssh = Some(dedupe_by_key(all, |x| x.id.clone()));
                } else {
                    t.ssh = Some(s);
                }
            }
            "platform" => {
                if o.append {
                    t.platforms
                        .get_or_insert_with(Vec::new)
                        .extend(o.values.iter().cloned());
                } else {
                    t.platforms = Some(o.values.clone());
                }
            }
            "output" => {
                let outs = parse_all(&o.values, Export::parse).map_err(wrap("outputs"))?;
                if o.append {
                    let mut all = t.outputs.take().unwrap_or_default();
                    all.extend(outs);
                    t.outputs = Some(remove_dupes(all));
                } else {
                    t.outputs = Some(outs);
                }
            }
            "entitlements" => t
                .entitlements
                .get_or_insert_with(Vec::new)
                .extend(o.values.iter().cloned()),
            "annotations" => t
                .annotations
                .get_or_insert_with(Vec::new)
                .extend(o.values.iter().cloned()),
            "attest" => {
                let a = parse_all(&o.values, Attest::parse).map_err(wrap("attest"))?;
                let mut all = t.attest.take().unwrap_or_default();
                all.extend(a);
                t.attest = Some(dedupe_by_key(all, |x| x.kind.clone()));
            }
            "no-cache" => t.no_cache = Some(bool_value("no-cache", &value)?),
            "no-cache-filter" => {
                if o.append {
                    t.no_cache_filter
                        .get_or_insert_with(Vec::new)
                        .extend(o.values.iter().cloned());
                } else {
                    t.no_cache_filter = Some(o.values.clone());
                }
            }
            "shm-size" => t.shm_size = Some(value),
            "ulimits" => {
                if o.append {
                    t.ulimits
                        .get_or_insert_with(Vec::new)
                        .extend(o.values.iter().cloned());
                } else {
                    t.ulimits = Some(o.values.clone());
                }
            }
            "network" => t.network = Some(value),
            "pull" => t.pull = Some(bool_value("pull", &value)?),
            "push" => {
                let push = bool_value("push", &value)?;
                t.outputs = Some(set_push(t.outputs.take().unwrap_or_default(), push));
            }
            "load" => {
                let load = bool_value("load", &value)?;
                t.outputs = Some(set_load(t.outputs.take().unwrap_or_default(), load));
            }
            "extra-hosts" => {
                let k = need("extra-hosts", "extra-hosts.<hostname>=<ip>")?;
                t.extra_hosts
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k, Some(value));
            }
            other => return Err(Diag::msg(format!("unknown key: {other}"))),
        }
    }
    Ok(())
}

/// `push=true|false` on outputs, as buildx's `setPushOverride`.
fn set_push(mut outputs: Vec<Export>, push: bool) -> Vec<Export> {
    if !push {
        let mut i = 0;
        while i < outputs.len() {
            match outputs[i].kind.as_str() {
                "registry" => {
                    // buildx swaps the removed entry with the last one.
                    let last = outputs.len() - 1;
                    outputs.swap(i, last);
                    outputs.pop();
                    continue;
                }
                "image" => {
                    outputs[i].attrs.insert("push".into(), "false".into());
                }
                _ => {}
            }
            i += 1;
        }
        return outputs;
    }
    let mut add = true;
    for o in &mut outputs {
        if o.kind != "docker" {
            add = false;
        }
        if o.kind == "image" {
            o.attrs.insert("push".into(), "true".into());
        }
    }
    if add {
        outputs.push(Export {
            kind: "image".into(),
            attrs: BTreeMap::from([("push".to_string(), "true".to_string())]),
            dest: String::new(),
        });
    }
    outputs
}

/// `load=true` on outputs, as buildx's `setLoadOverride`.
fn set_load(mut outputs: Vec<Export>, load: bool) -> Vec<Export> {
    if !load {
        return outputs;
    }
    for o in &outputs {
        match o.kind.as_str() {
            "docker" => {
                if o.dest.is_empty() {
                    return outputs;
                }
            }
            "image" | "registry" | "oci" => {}
            _ => return outputs,
        }
    }
    outputs.push(Export {
        kind: "docker".into(),
        ..Export::default()
    });
    outputs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            groups: vec![],
            targets: vec![Target::new("app"), Target::new("api"), Target::new("db")],
        }
    }

    #[test]
    fn globs_and_appends() {
        let c = config();
        let o = parse(
            &c,
            &[
                "a*.tags=x".into(),
                "a*.tags+=y".into(),
                "db.args.A=1".into(),
            ],
            &|_| None,
        )
        .unwrap();
        assert_eq!(o["app"][0].1.values, vec!["x", "y"]);
        assert!(o["app"][0].1.append);
        let mut t = Target::new("db");
        apply(&mut t, &o["db"]).unwrap();
        assert_eq!(t.args.unwrap()["A"], Some("1".into()));
    }

    #[test]
    fn unknown_pattern_fails() {
        assert!(parse(&config(), &["x*.tags=a".into()], &|_| None).is_err());
        assert!(parse(&config(), &["app=a".into()], &|_| None).is_err());
    }

    #[test]
    fn push_and_load() {
        let outs = set_push(vec![], true);
        assert_eq!(outs[0].kind, "image");
        let outs = set_load(vec![Export::parse("type=image").unwrap()], true);
        assert_eq!(outs.len(), 2);
    }
}
