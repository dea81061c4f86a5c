//! The structured target attributes (outputs, caches, secrets, SSH, attestations): parsed from
//! buildx's CSV strings or from HCL objects, de-duplicated and merged as buildx does, and written
//! in the JSON shapes `bake --print` shows.

use std::collections::BTreeMap;

use hcl::Value;
use serde_json::{json, Map as JsonMap, Value as Json};

use crate::eval::to_str;
use crate::types::{csv_fields, parse_go_bool};

/// An `output` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Export {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
    pub dest: String,
}

/// A `cache-from` / `cache-to` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cache {
    pub kind: String,
    pub attrs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Secret {
    pub id: String,
    pub src: String,
    pub env: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ssh {
    pub id: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attest {
    pub kind: String,
    pub disabled: bool,
    pub attrs: BTreeMap<String, String>,
}

impl Export {
    pub fn parse(s: &str) -> Result<Export, String> {
        let fields = csv_fields(s, ',')?;
        let mut e = Export::default();
        if fields.len() == 1 && fields[0] == s && !s.starts_with("type=") {
            e.kind = if s == "-" { "tar" } else { "local" }.into();
            e.dest = s.into();
            if s != "-" {
                return Ok(e);
            }
        }
        if e.kind.is_empty() {
            for f in fields {
                let (k, v) = f
                    .split_once('=')
                    .ok_or_else(|| format!("invalid value {f}"))?;
                match k.trim().to_lowercase().as_str() {
                    "type" => e.kind = v.into(),
                    "dest" => e.dest = v.into(),
                    key => {
                        e.attrs.insert(key.into(), v.into());
                    }
                }
            }
        }
        e.validate()?;
        Ok(e)
    }

    fn from_value(v: &Value) -> Result<Export, String> {
        if let Value::String(s) = v {
            return Export::parse(s);
        }
        let mut m = string_map(v)?;
        let e = Export {
            kind: m.remove("type").unwrap_or_default(),
            dest: m.remove("dest").unwrap_or_default(),
            attrs: m,
        };
        e.validate()?;
        Ok(e)
    }

    fn validate(&self) -> Result<(), String> {
        if self.kind.is_empty() {
            return Err("type is required for output".into());
        }
        Ok(())
    }

    pub fn to_json(&self) -> Json {
        let mut m: BTreeMap<&str, &str> = self
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        m.insert("type", &self.kind);
        if !self.dest.is_empty() {
            m.insert("dest", &self.dest);
        }
        json!(m)
    }
}

impl Cache {
    /// One CSV string; a string without `=` is a list of registry refs.
    pub fn parse_entries(s: &str) -> Result<Vec<Cache>, String> {
        if s.is_empty() {
            return Ok(vec![]);
        }
        if !s.contains('=') {
            return csv_fields(s, ',')?
                .into_iter()
                .map(|f| Cache::parse_one(&f))
                .collect();
        }
        Ok(vec![Cache::parse_one(s)?])
    }

    fn parse_one(s: &str) -> Result<Cache, String> {
        let fields = csv_fields(s, ',')?;
        if fields.len() == 1 && !fields[0].contains('=') {
            return Ok(Cache {
                kind: "registry".into(),
                attrs: BTreeMap::from([("ref".to_string(), fields[0].clone())]),
            });
        }
        let mut c = Cache::default();
        for f in fields {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| format!("invalid value {f}"))?;
            match k.to_lowercase().as_str() {
                "type" => c.kind = v.into(),
                key => {
                    c.attrs.insert(key.into(), v.into());
                }
            }
        }
        if c.kind.is_empty() {
            return Err(format!("type required form> {s:?}"));
        }
        Ok(c)
    }

    fn from_value(v: &Value) -> Result<Vec<Cache>, String> {
        if let Value::String(s) = v {
            return Cache::parse_entries(s);
        }
        let mut m = string_map(v)?;
        let c = Cache {
            kind: m.remove("type").unwrap_or_default(),
            attrs: m,
        };
        if c.kind.is_empty() {
            return Err(format!(
                "type required form> {:?}",
                crate::types::to_json_text(v)
            ));
        }
        Ok(vec![c])
    }

    pub fn to_json(&self) -> Json {
        let mut m: BTreeMap<&str, &str> = self
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        m.insert("type", &self.kind);
        json!(m)
    }
}

impl Secret {
    pub fn parse(s: &str) -> Result<Secret, String> {
        let fields = csv_fields(s, ',').map_err(|e| format!("failed to parse csv secret: {e}"))?;
        let mut sec = Secret::default();
        let mut typ = String::new();
        for f in fields {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| format!("invalid field '{f}' must be a key=value pair"))?;
            match k.to_lowercase().as_str() {
                "type" => {
                    if v != "file" && v != "env" {
                        return Err(format!("unsupported secret type {v:?}"));
                    }
                    typ = v.into();
                }
                "id" => sec.id = v.into(),
                "source" | "src" => sec.src = v.into(),
                "env" => sec.env = v.into(),
                key => return Err(format!("unexpected key '{key}' in '{f}'")),
            }
        }
        if typ == "env" && sec.env.is_empty() {
            sec.env = std::mem::take(&mut sec.src);
        }
        Ok(sec)
    }

    fn from_value(v: &Value) -> Result<Secret, String> {
        if let Value::String(s) = v {
            return Secret::parse(s);
        }
        let m = object_fields(v, &["id", "src", "env"])?;
        Ok(Secret {
            id: m.get("id").cloned().unwrap_or_default(),
            src: m.get("src").cloned().unwrap_or_default(),
            env: m.get("env").cloned().unwrap_or_default(),
        })
    }

    pub fn to_json(&self) -> Json {
        let mut m = JsonMap::new();
        for (k, v) in [("id", &self.id), ("src", &self.src), ("env", &self.env)] {
            if !v.is_empty() {
                m.insert(k.into(), Json::String(v.clone()));
            }
        }
        Json::Object(m)
    }
}

impl Ssh {
    pub fn parse(s: &str) -> Ssh {
        match s.split_once('=') {
            Some((id, paths)) => Ssh {
                id: id.into(),
                paths: paths.split(',').map(String::from).collect(),
            },
            None => Ssh {
                id: s.into(),
                paths: vec![],
            },
        }
    }

    fn from_value(v: &Value) -> Result<Ssh, String> {
        if let Value::String(s) = v {
            return Ok(Ssh::parse(s));
        }
        let Value::Object(m) = v else {
            return Err(format!(
                "object required, but have {}",
                crate::eval::type_name(v)
            ));
        };
        for k in m.keys() {
            if k != "id" && k != "paths" {
                return Err(format!("unsupported attribute {k:?}"));
            }
        }
        let id = match m.get("id") {
            Some(Value::Null) | None => String::new(),
            Some(v) => to_str(v)?,
        };
        let paths = match m.get("paths") {
            Some(Value::Null) | None => vec![],
            Some(Value::Array(items)) => items.iter().map(to_str).collect::<Result<_, _>>()?,
            Some(_) => return Err("list of string required".into()),
        };
        Ok(Ssh { id, paths })
    }

    pub fn to_json(&self) -> Json {
        let mut m = JsonMap::new();
        if !self.id.is_empty() {
            m.insert("id".into(), Json::String(self.id.clone()));
        }
        if !self.paths.is_empty() {
            m.insert("paths".into(), json!(self.paths));
        }
        Json::Object(m)
    }
}

impl Attest {
    pub fn parse(s: &str) -> Result<Attest, String> {
        let mut a = Attest::default();
        for f in csv_fields(s, ',')? {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| format!("invalid value {f}"))?;
            match k.trim().to_lowercase().as_str() {
                "type" => a.kind = v.into(),
                "disabled" => {
                    a.disabled = parse_go_bool(v).ok_or_else(|| {
                        format!(
                            "invalid value {f}: strconv.ParseBool: parsing {v:?}: invalid syntax"
                        )
                    })?
                }
                _ => {
                    a.attrs.insert(k.into(), v.into());
                }
            }
        }
        if a.kind.is_empty() {
            return Err("attestation type not specified".into());
        }
        Ok(a)
    }

    fn from_value(v: &Value) -> Result<Attest, String> {
        if let Value::String(s) = v {
            return Attest::parse(s);
        }
        let m = string_map(v)?;
        let mut a = Attest::default();
        for (k, v) in m {
            match k.as_str() {
                "type" => a.kind = v,
                "disabled" => {
                    a.disabled = parse_go_bool(&v).ok_or_else(|| {
                        format!("strconv.ParseBool: parsing {v:?}: invalid syntax")
                    })?
                }
                _ => {
                    a.attrs.insert(k, v);
                }
            }
        }
        Ok(a)
    }

    pub fn to_json(&self) -> Json {
        let mut m: BTreeMap<&str, Json> = self
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), Json::String(v.clone())))
            .collect();
        m.insert("type", Json::String(self.kind.clone()));
        if self.disabled {
            m.insert("disabled", Json::Bool(true));
        }
        json!(m)
    }

    /// `type=..,disabled=true` forms used by `--sbom` / `--provenance`.
    pub fn canonicalize(kind: &str, input: &str) -> String {
        if input.is_empty() {
            return String::new();
        }
        match parse_go_bool(input) {
            Some(b) => format!("type={kind},disabled={}", !b),
            None => format!("type={kind},{input}"),
        }
    }
}

/// A value converted to `map(string)`; null entries are dropped as cty's unknown/null are.
fn string_map(v: &Value) -> Result<BTreeMap<String, String>, String> {
    match v {
        Value::Object(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                if v.is_null() {
                    continue;
                }
                out.insert(
                    k.clone(),
                    to_str(v).map_err(|_| "map of string required".to_string())?,
                );
            }
            Ok(out)
        }
        other => Err(format!(
            "map of string required, but have {}",
            crate::eval::type_name(other)
        )),
    }
}

fn object_fields(v: &Value, allowed: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let m = string_map(v)?;
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(format!("unsupported attribute {k:?}"));
        }
    }
    Ok(m)
}

/// Elements of a list attribute, skipping empty strings as buildx does; a non-list is an error
/// naming the list type wanted.
fn elements<'v>(v: &'v Value, want: &str) -> Result<Vec<&'v Value>, String> {
    match v {
        Value::Array(items) => Ok(items
            .iter()
            .filter(|i| !matches!(i, Value::Null) && !matches!(i, Value::String(s) if s.is_empty()))
            .collect()),
        other => Err(format!(
            "Inappropriate value for attribute: {want} required, but have {}.",
            crate::eval::type_name(other)
        )),
    }
}

pub fn exports_from_value(v: &Value) -> Result<Vec<Export>, String> {
    elements(v, "list of map of string")?
        .into_iter()
        .map(Export::from_value)
        .collect()
}

pub fn caches_from_value(v: &Value) -> Result<Vec<Cache>, String> {
    let mut out = Vec::new();
    for e in elements(v, "list of map of string")? {
        out.extend(Cache::from_value(e)?);
    }
    Ok(out)
}

pub fn secrets_from_value(v: &Value) -> Result<Vec<Secret>, String> {
    elements(v, "list of object")?
        .into_iter()
        .map(Secret::from_value)
        .collect()
}

pub fn ssh_from_value(v: &Value) -> Result<Vec<Ssh>, String> {
    elements(v, "list of object")?
        .into_iter()
        .map(Ssh::from_value)
        .collect()
}

pub fn attests_from_value(v: &Value) -> Result<Vec<Attest>, String> {
    elements(v, "list of map of string")?
        .into_iter()
        .map(Attest::from_value)
        .collect()
}

/// buildx's `removeDupes`: walking backwards, a later duplicate is swapped with the last
/// element and dropped (this reorders, and the reordering shows in `--print`).
pub fn remove_dupes<T: PartialEq>(mut s: Vec<T>) -> Vec<T> {
    if s.len() < 2 {
        return s;
    }
    let mut i = s.len() as isize - 2;
    while i >= 0 {
        let iu = i as usize;
        let mut j = iu + 1;
        while j < s.len() {
            if s[iu] == s[j] {
                let last = s.len() - 1;
                s.swap(j, last);
                s.pop();
                break;
            }
            j += 1;
        }
        i -= 1;
    }
    s
}

/// De-duplication by key where the later entry replaces the earlier one in place.
pub fn dedupe_by_key<T, K: PartialEq>(s: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in s {
        let k = key(&item);
        match out.iter().position(|x| key(x) == k) {
            Some(i) => out[i] = item,
            None => out.push(item),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse_shorthands() {
        assert_eq!(Export::parse("./out").unwrap().kind, "local");
        assert_eq!(Export::parse("-").unwrap().kind, "tar");
        let e = Export::parse("type=image,push=true").unwrap();
        assert_eq!(e.to_json(), json!({"type": "image", "push": "true"}));
        assert!(Export::parse("push=true,dest=x").is_err());
    }

    #[test]
    fn caches_parse_refs() {
        let c = Cache::parse_entries("a/b:c,d/e:f").unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].to_json(), json!({"type": "registry", "ref": "d/e:f"}));
    }

    #[test]
    fn remove_dupes_reorders_like_buildx() {
        assert_eq!(remove_dupes(vec![1, 2, 1, 3]), vec![1, 2, 3]);
        assert_eq!(remove_dupes(vec![1, 1, 2, 3]), vec![1, 3, 2]);
    }

    #[test]
    fn secrets_env_type() {
        let s = Secret::parse("type=env,id=A,src=B").unwrap();
        assert_eq!((s.env.as_str(), s.src.as_str()), ("B", ""));
    }
}
