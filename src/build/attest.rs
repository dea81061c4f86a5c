//! Attestations (`--attest`, `--provenance`, `--sbom`) and annotations (`--annotation`), parsed
//! once into types and turned into the frontend and exporter attributes BuildKit reads.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use super::exporter::split_csv;
use crate::platform::Platform;

/// One requested attestation; `disabled` turns a default one off (`--provenance=false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    pub kind: String,
    pub disabled: bool,
    pub attrs: BTreeMap<String, String>,
}

impl Attest {
    pub fn parse(s: &str) -> Result<Attest> {
        let mut kind = String::new();
        let mut disabled = false;
        let mut attrs = BTreeMap::new();
        for field in split_csv(s)? {
            let Some((k, v)) = field.split_once('=') else {
                bail!("invalid value {field}");
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "type" => kind = v.to_string(),
                "disabled" => {
                    disabled = go_bool(v).with_context(|| format!("invalid value {field}"))?
                }
                _ => {
                    attrs.insert(k.to_string(), v.to_string());
                }
            }
        }
        if kind.is_empty() {
            bail!("attestation type not specified");
        }
        Ok(Attest {
            kind,
            disabled,
            attrs,
        })
    }

    /// `--provenance VALUE` / `--sbom VALUE`: a boolean switches the type on or off, anything
    /// else is that type's attributes.
    pub fn shorthand(kind: &str, value: &str) -> Result<Attest> {
        match go_bool(value) {
            Some(on) => Attest::parse(&format!("type={kind},disabled={}", !on)),
            None => Attest::parse(&format!("type={kind},{value}")),
        }
    }

    /// The frontend's form of an enabled attestation: `type=...` then the attributes sorted.
    fn frontend_value(&self) -> String {
        let mut parts = vec![csv_pair("type", &self.kind)];
        parts.extend(self.attrs.iter().map(|(k, v)| csv_pair(k, v)));
        parts.join(",")
    }
}

/// Go's `strconv.ParseBool`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// One `key=value` CSV field, quoted when it holds a comma or a quote.
fn csv_pair(k: &str, v: &str) -> String {
    let pair = format!("{k}={v}");
    if pair.contains(',') || pair.contains('"') {
        format!("\"{}\"", pair.replace('"', "\"\""))
    } else {
        pair
    }
}

/// All attestation flags of one build, first mention of a type winning as in buildx.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attests(pub Vec<Attest>);

impl Attests {
    pub fn from_flags(
        attest: &[String],
        provenance: Option<&str>,
        sbom: Option<&str>,
    ) -> Result<Self> {
        let mut all = Vec::new();
        for a in attest {
            all.push(Attest::parse(a).context("--attest")?);
        }
        if let Some(p) = provenance.filter(|p| !p.is_empty()) {
            all.push(Attest::shorthand("provenance", p).context("--provenance")?);
        }
        if let Some(s) = sbom.filter(|s| !s.is_empty()) {
            all.push(Attest::shorthand("sbom", s).context("--sbom")?);
        }
        let mut out: Vec<Attest> = Vec::new();
        for a in all {
            if !out.iter().any(|o| o.kind == a.kind) {
                out.push(a);
            }
        }
        Ok(Attests(out))
    }

    pub fn mentions(&self, kind: &str) -> bool {
        self.0.iter().any(|a| a.kind == kind)
    }

    /// `attest:TYPE` frontend attributes for the enabled attestations.
    pub fn frontend_attrs(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter(|a| !a.disabled)
            .map(|a| (format!("attest:{}", a.kind), a.frontend_value()))
            .collect()
    }

    pub fn any_enabled(&self) -> bool {
        self.0.iter().any(|a| !a.disabled)
    }
}

/// Where an annotation goes: the image manifest (default), the index, or their descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AnnotationLevel {
    Default,
    Manifest,
    ManifestDescriptor,
    Index,
    IndexDescriptor,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Annotation {
    pub level: AnnotationLevel,
    pub platform: Option<Platform>,
    pub key: String,
    pub value: String,
}

impl Annotation {
    /// Parses `[TYPE[,TYPE...]:]KEY=VALUE`, where TYPE is `manifest`, `manifest-descriptor`,
    /// `index` or `index-descriptor`, optionally with `[PLATFORM]`.
    pub fn parse(s: &str) -> Result<Vec<Annotation>> {
        let (k, value) = s
            .split_once('=')
            .with_context(|| format!("invalid annotation {s:?}, expected key=value"))?;
        let Some((types, key)) = k.split_once(':') else {
            return Ok(vec![Annotation {
                level: AnnotationLevel::Default,
                platform: None,
                key: k.to_string(),
                value: value.to_string(),
            }]);
        };
        let re = regex::Regex::new(r"^([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?$").expect("static regex");
        let mut out = Vec::new();
        for t in types.split(',') {
            let caps = re.captures(t).with_context(|| {
                format!("invalid annotation type {t:?}, expected type and optional platform in square brackets")
            })?;
            let level = match &caps[1] {
                "manifest" => AnnotationLevel::Manifest,
                "manifest-descriptor" => AnnotationLevel::ManifestDescriptor,
                "index" => AnnotationLevel::Index,
                "index-descriptor" => AnnotationLevel::IndexDescriptor,
                other => bail!("unknown annotation type {other:?}"),
            };
            let platform = match caps.get(2) {
                Some(p) => Some(
                    p.as_str()
                        .parse::<Platform>()
                        .with_context(|| format!("invalid platform {:?}", p.as_str()))?,
                ),
                None => None,
            };
            out.push(Annotation {
                level,
                platform,
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        Ok(out)
    }

    /// The exporter attribute BuildKit reads: `annotation[-TYPE[PLATFORM]].KEY`.
    pub fn exporter_key(&self) -> String {
        let prefix = match (self.level, &self.platform) {
            (AnnotationLevel::Default, _) => "annotation".to_string(),
            (AnnotationLevel::Manifest, Some(p)) => format!("annotation-manifest[{p}]"),
            (AnnotationLevel::Manifest, None) => "annotation-manifest".to_string(),
            (AnnotationLevel::ManifestDescriptor, Some(p)) => {
                format!("annotation-manifest-descriptor[{p}]")
            }
            (AnnotationLevel::ManifestDescriptor, None) => {
                "annotation-manifest-descriptor".to_string()
            }
            (AnnotationLevel::Index, _) => "annotation-index".to_string(),
            (AnnotationLevel::IndexDescriptor, _) => "annotation-index-descriptor".to_string(),
        };
        format!("{prefix}.{}", self.key)
    }

    pub fn targets_index(&self) -> bool {
        matches!(
            self.level,
            AnnotationLevel::Index | AnnotationLevel::IndexDescriptor
        )
    }
}

pub fn parse_annotations(values: &[String]) -> Result<Vec<Annotation>> {
    let mut out = Vec::new();
    for v in values.iter().filter(|v| !v.is_empty()) {
        out.extend(Annotation::parse(v)?);
    }
    Ok(out)
}

/// Whether buildx's environment switch for default attestations is on.
pub fn default_attestations_disabled() -> Result<bool> {
    match std::env::var("BUILDX_NO_DEFAULT_ATTESTATIONS") {
        Ok(v) => {
            go_bool(&v).with_context(|| format!("invalid BUILDX_NO_DEFAULT_ATTESTATIONS {v:?}"))
        }
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_like_buildx() {
        let a = Attests::from_flags(&[], Some("mode=max"), Some("true")).unwrap();
        let attrs = a.frontend_attrs();
        assert_eq!(attrs["attest:provenance"], "type=provenance,mode=max");
        assert_eq!(attrs["attest:sbom"], "type=sbom");
        let off = Attests::from_flags(&[], Some("false"), None).unwrap();
        assert!(off.mentions("provenance"));
        assert!(off.frontend_attrs().is_empty());
    }

    #[test]
    fn attest_flag_wins_over_shorthand() {
        let a = Attests::from_flags(&["type=sbom,generator=img:1".into()], None, Some("false"))
            .unwrap();
        assert_eq!(
            a.frontend_attrs()["attest:sbom"],
            "type=sbom,generator=img:1"
        );
    }

    #[test]
    fn attest_errors() {
        assert_eq!(
            Attest::parse("mode=max").unwrap_err().to_string(),
            "attestation type not specified"
        );
        assert!(Attest::parse("type=sbom,junk").is_err());
    }

    #[test]
    fn annotations_levels_and_keys() {
        let a = parse_annotations(&[
            "org.opencontainers.image.title=x".into(),
            "index,manifest[linux/amd64]:k=v".into(),
        ])
        .unwrap();
        assert_eq!(
            a[0].exporter_key(),
            "annotation.org.opencontainers.image.title"
        );
        assert_eq!(a[1].exporter_key(), "annotation-index.k");
        assert_eq!(a[2].exporter_key(), "annotation-manifest[linux/amd64].k");
        assert!(a[1].targets_index());
        assert!(Annotation::parse("bogus:k=v").is_err());
        assert!(Annotation::parse("novalue").is_err());
    }
}
