//! Resolved bake data: targets, groups and the whole configuration, whichever file format they
//! came from (HCL, JSON or Compose all produce these), with buildx's merge rules (later
//! definitions override earlier ones attribute by attribute; some lists append) and the JSON
//! form `bake --print` writes.

use std::collections::BTreeMap;

use serde_json::{json, Map as JsonMap, Value as Json};

use crate::buildflags::{dedupe_by_key, remove_dupes, Attest, Cache, Export, Secret, Ssh};

/// One build target. `None` means "not set", which matters for merging.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Target {
    pub name: String,
    pub description: String,
    pub inherits: Vec<String>,
    pub annotations: Option<Vec<String>>,
    pub attest: Option<Vec<Attest>>,
    pub context: Option<String>,
    pub contexts: Option<BTreeMap<String, String>>,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    /// `None` values are declared without a value and are dropped on merge.
    pub args: Option<BTreeMap<String, Option<String>>>,
    pub labels: Option<BTreeMap<String, Option<String>>>,
    pub tags: Option<Vec<String>>,
    pub cache_from: Option<Vec<Cache>>,
    pub cache_to: Option<Vec<Cache>>,
    pub target: Option<String>,
    pub secrets: Option<Vec<Secret>>,
    pub ssh: Option<Vec<Ssh>>,
    pub platforms: Option<Vec<String>>,
    pub outputs: Option<Vec<Export>>,
    pub pull: Option<bool>,
    pub no_cache: Option<bool>,
    pub network: Option<String>,
    pub no_cache_filter: Option<Vec<String>>,
    pub shm_size: Option<String>,
    pub ulimits: Option<Vec<String>>,
    pub call: Option<String>,
    pub entitlements: Option<Vec<String>>,
    pub extra_hosts: Option<BTreeMap<String, Option<String>>>,
    /// Built only because another target uses it as a `target:` context.
    pub linked: bool,
}

/// A named list of targets (or other groups).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub targets: Vec<String>,
}

/// Every group and target the files define, in definition order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub groups: Vec<Group>,
    pub targets: Vec<Target>,
}

fn merge_map(
    into: &mut Option<BTreeMap<String, Option<String>>>,
    from: &Option<BTreeMap<String, Option<String>>>,
) {
    if let Some(from) = from {
        for (k, v) in from {
            if v.is_none() {
                continue;
            }
            into.get_or_insert_with(BTreeMap::new)
                .insert(k.clone(), v.clone());
        }
    }
}

fn append<T: Clone>(into: &mut Option<Vec<T>>, from: &Option<Vec<T>>) {
    if let Some(from) = from {
        into.get_or_insert_with(Vec::new)
            .extend(from.iter().cloned());
    }
}

fn replace<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
    if from.is_some() {
        *into = from.clone();
    }
}

impl Target {
    pub fn new(name: &str) -> Target {
        Target {
            name: name.to_string(),
            ..Target::default()
        }
    }

    /// Applies `other` on top of `self`, as buildx's `Target.Merge`.
    pub fn merge(&mut self, o: &Target) {
        replace(&mut self.context, &o.context);
        replace(&mut self.dockerfile, &o.dockerfile);
        replace(&mut self.dockerfile_inline, &o.dockerfile_inline);
        merge_map(&mut self.args, &o.args);
        if let Some(c) = &o.contexts {
            let m = self.contexts.get_or_insert_with(BTreeMap::new);
            for (k, v) in c {
                m.insert(k.clone(), v.clone());
            }
        }
        merge_map(&mut self.labels, &o.labels);
        replace(&mut self.tags, &o.tags);
        replace(&mut self.target, &o.target);
        replace(&mut self.call, &o.call);
        append(&mut self.annotations, &o.annotations);
        if o.attest.is_some() {
            append(&mut self.attest, &o.attest);
            self.attest = self.attest.take().map(normalize_attests);
        }
        if o.secrets.is_some() {
            append(&mut self.secrets, &o.secrets);
            self.secrets = self
                .secrets
                .take()
                .map(|s| dedupe_by_key(s, |x| x.id.clone()));
        }
        if o.ssh.is_some() {
            append(&mut self.ssh, &o.ssh);
            self.ssh = self.ssh.take().map(|s| dedupe_by_key(s, |x| x.id.clone()));
        }
        replace(&mut self.platforms, &o.platforms);
        if o.cache_from.is_some() {
            append(&mut self.cache_from, &o.cache_from);
            self.cache_from = self.cache_from.take().map(remove_dupes);
        }
        replace(&mut self.cache_to, &o.cache_to);
        replace(&mut self.outputs, &o.outputs);
        replace(&mut self.pull, &o.pull);
        replace(&mut self.no_cache, &o.no_cache);
        replace(&mut self.network, &o.network);
        append(&mut self.no_cache_filter, &o.no_cache_filter);
        replace(&mut self.shm_size, &o.shm_size);
        append(&mut self.ulimits, &o.ulimits);
        if !o.description.is_empty() {
            self.description = o.description.clone();
        }
        append(&mut self.entitlements, &o.entitlements);
        merge_map(&mut self.extra_hosts, &o.extra_hosts);
        self.inherits.extend(o.inherits.iter().cloned());
    }

    /// De-duplicates lists and drops empty entries, as buildx's `normalize`.
    pub fn normalize(&mut self) {
        fn dedup_str(v: &mut Option<Vec<String>>) {
            if let Some(list) = v {
                let mut seen = std::collections::HashSet::new();
                list.retain(|s| !s.is_empty() && seen.insert(s.clone()));
            }
        }
        dedup_str(&mut self.annotations);
        self.attest = self
            .attest
            .take()
            .and_then(|a| non_empty(normalize_attests(a)));
        dedup_str(&mut self.tags);
        self.secrets = self
            .secrets
            .take()
            .and_then(|s| non_empty(dedupe_by_key(s, |x| x.id.clone())));
        self.ssh = self
            .ssh
            .take()
            .and_then(|s| non_empty(dedupe_by_key(s, |x| x.id.clone())));
        dedup_str(&mut self.platforms);
        self.cache_from = self
            .cache_from
            .take()
            .and_then(|c| non_empty(remove_dupes(c)));
        self.cache_to = self
            .cache_to
            .take()
            .and_then(|c| non_empty(remove_dupes(c)));
        self.outputs = self.outputs.take().and_then(|c| non_empty(remove_dupes(c)));
        dedup_str(&mut self.no_cache_filter);
        dedup_str(&mut self.ulimits);
        if self.network.as_deref() == Some("host") {
            self.entitlements
                .get_or_insert_with(Vec::new)
                .push("network.host".into());
        }
        dedup_str(&mut self.entitlements);
        if let Some(c) = &mut self.contexts {
            c.retain(|_, v| !v.is_empty());
            if c.is_empty() {
                self.contexts = None;
            }
        }
    }

    /// The target as `bake --print` shows it (keys in buildx's field order).
    pub fn to_json(&self) -> Json {
        // buildx escapes interpolation markers again so the printed file can be read back.
        fn esc(s: &str) -> String {
            s.replace("${", "$${").replace("%{", "%%{")
        }
        fn strs(v: &[String]) -> Json {
            Json::Array(v.iter().map(|s| Json::String(s.clone())).collect())
        }
        fn map(m: &BTreeMap<String, Option<String>>, escape: bool) -> Json {
            Json::Object(
                m.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Some(s) if escape => Json::String(esc(s)),
                            Some(s) => Json::String(s.clone()),
                            None => Json::Null,
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            )
        }
        let mut m = JsonMap::new();
        if !self.description.is_empty() {
            m.insert("description".into(), json!(self.description));
        }
        if !self.inherits.is_empty() {
            m.insert("inherits".into(), strs(&self.inherits));
        }
        if let Some(a) = self.annotations.as_ref().filter(|a| !a.is_empty()) {
            m.insert(
                "annotations".into(),
                Json::Array(a.iter().map(|s| json!(esc(s))).collect()),
            );
        }
        if let Some(a) = self.attest.as_ref().filter(|a| !a.is_empty()) {
            m.insert(
                "attest".into(),
                Json::Array(a.iter().map(Attest::to_json).collect()),
            );
        }
        if let Some(c) = &self.context {
            m.insert("context".into(), json!(c));
        }
        if let Some(c) = self.contexts.as_ref().filter(|c| !c.is_empty()) {
            m.insert("contexts".into(), json!(c));
        }
        if let Some(d) = &self.dockerfile {
            m.insert("dockerfile".into(), json!(d));
        }
        if let Some(d) = &self.dockerfile_inline {
            m.insert("dockerfile-inline".into(), json!(esc(d)));
        }
        if let Some(a) = self.args.as_ref().filter(|a| !a.is_empty()) {
            m.insert("args".into(), map(a, true));
        }
        if let Some(a) = self.labels.as_ref().filter(|a| !a.is_empty()) {
            m.insert("labels".into(), map(a, true));
        }
        if let Some(t) = self.tags.as_ref().filter(|t| !t.is_empty()) {
            m.insert("tags".into(), strs(t));
        }
        if let Some(c) = self.cache_from.as_ref().filter(|c| !c.is_empty()) {
            m.insert(
                "cache-from".into(),
                Json::Array(c.iter().map(Cache::to_json).collect()),
            );
        }
        if let Some(c) = self.cache_to.as_ref().filter(|c| !c.is_empty()) {
            m.insert(
                "cache-to".into(),
                Json::Array(c.iter().map(Cache::to_json).collect()),
            );
        }
        if let Some(t) = &self.target {
            m.insert("target".into(), json!(t));
        }
        if let Some(s) = self.secrets.as_ref().filter(|s| !s.is_empty()) {
            m.insert(
                "secret".into(),
                Json::Array(s.iter().map(Secret::to_json).collect()),
            );
        }
        if let Some(s) = self.ssh.as_ref().filter(|s| !s.is_empty()) {
            m.insert(
                "ssh".into(),
                Json::Array(s.iter().map(Ssh::to_json).collect()),
            );
        }
        if let Some(p) = self.platforms.as_ref().filter(|p| !p.is_empty()) {
            m.insert("platforms".into(), strs(p));
        }
        if let Some(o) = self.outputs.as_ref().filter(|o| !o.is_empty()) {
            m.insert(
                "output".into(),
                Json::Array(o.iter().map(Export::to_json).collect()),
            );
        }
        if let Some(p) = self.pull {
            m.insert("pull".into(), json!(p));
        }
        if let Some(p) = self.no_cache {
            m.insert("no-cache".into(), json!(p));
        }
        if let Some(n) = &self.network {
            m.insert("network".into(), json!(n));
        }
        if let Some(f) = self.no_cache_filter.as_ref().filter(|f| !f.is_empty()) {
            m.insert("no-cache-filter".into(), strs(f));
        }
        if let Some(s) = &self.shm_size {
            m.insert("shm-size".into(), json!(s));
        }
        if let Some(u) = self.ulimits.as_ref().filter(|u| !u.is_empty()) {
            m.insert("ulimits".into(), strs(u));
        }
        if let Some(c) = &self.call {
            m.insert("call".into(), json!(c));
        }
        if let Some(e) = self.entitlements.as_ref().filter(|e| !e.is_empty()) {
            m.insert("entitlements".into(), strs(e));
        }
        if let Some(h) = self.extra_hosts.as_ref().filter(|h| !h.is_empty()) {
            m.insert("extra-hosts".into(), map(h, true));
        }
        Json::Object(m)
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

fn normalize_attests(a: Vec<Attest>) -> Vec<Attest> {
    dedupe_by_key(a, |x| x.kind.clone())
}

impl Group {
    pub fn to_json(&self) -> Json {
        let mut m = JsonMap::new();
        if !self.description.is_empty() {
            m.insert("description".into(), json!(self.description));
        }
        m.insert("targets".into(), json!(self.targets));
        Json::Object(m)
    }
}

/// Removes repeated names keeping the first.
pub fn dedup_names(v: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    v.iter()
        .filter(|s| seen.insert(s.as_str()))
        .cloned()
        .collect()
}

impl Config {
    /// Adds another file's definitions: groups gain targets, targets merge by name.
    pub fn merge(&mut self, other: Config) {
        for g in other.groups {
            match self.groups.iter_mut().find(|x| x.name == g.name) {
                Some(existing) => {
                    for t in g.targets {
                        if !existing.targets.contains(&t) {
                            existing.targets.push(t);
                        }
                    }
                }
                None => self.groups.push(g),
            }
        }
        for t in other.targets {
            match self.targets.iter_mut().find(|x| x.name == t.name) {
                Some(existing) => existing.merge(&t),
                None => self.targets.push(t),
            }
        }
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_replaces_tags_and_appends_cache_from() {
        let mut a = Target::new("a");
        a.tags = Some(vec!["x".into()]);
        a.cache_from = Some(vec![Cache::parse_entries("r/a").unwrap().remove(0)]);
        a.args = Some(BTreeMap::from([("A".into(), Some("1".into()))]));
        let mut b = Target::new("a");
        b.tags = Some(vec!["y".into()]);
        b.cache_from = Some(vec![Cache::parse_entries("r/b").unwrap().remove(0)]);
        b.args = Some(BTreeMap::from([
            ("A".into(), None),
            ("B".into(), Some("2".into())),
        ]));
        a.merge(&b);
        assert_eq!(a.tags, Some(vec!["y".to_string()]));
        assert_eq!(a.cache_from.as_ref().unwrap().len(), 2);
        assert_eq!(a.args.as_ref().unwrap()["A"], Some("1".into()));
        assert_eq!(a.args.as_ref().unwrap()["B"], Some("2".into()));
    }

    #[test]
    fn json_escapes_interpolation_in_args() {
        let mut t = Target::new("a");
        t.args = Some(BTreeMap::from([("A".into(), Some("${x}".into()))]));
        assert_eq!(t.to_json()["args"]["A"], json!("$${x}"));
    }
}
