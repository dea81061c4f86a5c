//! Exporter specs (`-o/--output`, `--load`, `--push`), parsed once into types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Result};

/// The exporters a user can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    Image,
    Local,
    Tar,
    Oci,
    Docker,
    /// Opts out of default outputs (only the cache is exported).
    CacheOnly,
    /// Anything else is passed to BuildKit as written (it may know exporters kiln doesn't).
    Other,
}

/// One `--output`, as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    pub kind: ExporterKind,
    /// The type name as the user spelled it (`registry` becomes `image` with `push=true`).
    pub type_name: String,
    pub dest: Option<String>,
    pub attrs: BTreeMap<String, String>,
}

impl ExportSpec {
    /// Parses one `-o` value: `type=...,dest=...,k=v`, or the shorthands `DIR` (local) and `-`
    /// (tar on stdout).
    pub fn parse(s: &str) -> Result<Self> {
        let fields = split_csv(s)?;
        if fields.len() == 1 && fields[0] == s && !s.starts_with("type=") {
            let (kind, name) = if s == "-" {
                (ExporterKind::Tar, "tar")
            } else {
                (ExporterKind::Local, "local")
            };
            return Ok(ExportSpec {
                kind,
                type_name: name.into(),
                dest: Some(s.to_string()),
                attrs: BTreeMap::new(),
            });
        }
        let mut type_name = None;
        let mut dest = None;
        let mut attrs = BTreeMap::new();
        for field in fields {
            let Some((k, v)) = field.split_once('=') else {
                bail!("invalid value {field}");
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "type" => type_name = Some(v.to_string()),
                "dest" => dest = Some(v.to_string()),
                other => {
                    attrs.insert(other.to_string(), v.to_string());
                }
            }
        }
        let Some(mut type_name) = type_name.filter(|t| !t.is_empty()) else {
            bail!("type is required for output");
        };
        if type_name == "registry" {
            type_name = "image".into();
            attrs.insert("push".into(), "true".into());
        }
        let kind = match type_name.as_str() {
            "image" => ExporterKind::Image,
            "local" => ExporterKind::Local,
            "tar" => ExporterKind::Tar,
            "oci" => ExporterKind::Oci,
            "docker" => ExporterKind::Docker,
            "cacheonly" => ExporterKind::CacheOnly,
            _ => ExporterKind::Other,
        };
        Ok(ExportSpec {
            kind,
            type_name,
            dest,
            attrs,
        })
    }

    pub fn is_push(&self) -> bool {
        self.attrs
            .get("push")
            .map(|v| parse_bool(v))
            .unwrap_or(false)
    }

    /// Where the result lands on the client, if anywhere.
    pub fn client_target(&self) -> Result<Option<ClientTarget>> {
        let tar = self.attrs.get("tar").map(|v| parse_bool(v)).unwrap_or(true);
        let (file, dir) = match self.kind {
            ExporterKind::Local => (false, true),
            ExporterKind::Tar => (true, false),
            ExporterKind::Oci | ExporterKind::Docker => (tar, !tar),
            _ => (false, false),
        };
        if dir {
            match self.dest.as_deref() {
                None | Some("") => bail!("dest is required for {} exporter", self.type_name),
                Some("-") => bail!("dest cannot be stdout for {} exporter", self.type_name),
                Some(d) => {
                    let p = PathBuf::from(d);
                    if p.exists() && !p.is_dir() {
                        bail!("destination directory {d} is a file");
                    }
                    return Ok(Some(if self.kind == ExporterKind::Local {
                        ClientTarget::Dir(p)
                    } else {
                        ClientTarget::Layout(p)
                    }));
                }
            }
        }
        if file {
            let dest = match self.dest.as_deref() {
                None | Some("") if self.kind == ExporterKind::Docker => return Ok(None),
                None | Some("") | Some("-") => "-",
                Some(d) => d,
            };
            if dest == "-" {
                if console::Term::stdout().is_term() {
                    bail!(
                        "dest file is required for {} exporter. refusing to write to console",
                        self.type_name
                    );
                }
                return Ok(Some(ClientTarget::Stdout));
            }
            let p = PathBuf::from(dest);
            if p.is_dir() {
                bail!("destination file {dest} is a directory");
            }
            return Ok(Some(ClientTarget::File(p)));
        }
        Ok(None)
    }
}

/// Where an export result lands on the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTarget {
    Dir(PathBuf),
    File(PathBuf),
    Stdout,
    /// An OCI layout directory (`oci`/`docker` with `tar=false`): BuildKit writes its blobs
    /// through the session's content store, the client records the image in `index.json`.
    Layout(PathBuf),
}

/// The exporter response key holding the exported image's descriptor (base64 of its JSON).
const IMAGE_DESCRIPTOR_KEY: &str = "containerimage.descriptor";

/// The JSON of the image descriptor an exporter reported, if it reported one.
pub fn reported_descriptor(
    response: &std::collections::BTreeMap<String, String>,
) -> Result<Option<Vec<u8>>> {
    use base64::Engine as _;
    let Some(encoded) = response.get(IMAGE_DESCRIPTOR_KEY) else {
        return Ok(None);
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("decoding the exported image's descriptor: {e}"))
}

/// Go's `strconv.ParseBool`, which is what buildx uses for attribute values.
pub fn parse_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// Splits a CSV record the way Go's encoding/csv does for one line (quotes group commas).
pub fn split_csv(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = s.chars().peekable();
    let mut field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes => {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    in_quotes = false;
                }
            }
            '"' if field_start => in_quotes = true,
            ',' if !in_quotes => {
                out.push(std::mem::take(&mut cur));
                field_start = true;
                continue;
            }
            c => cur.push(c),
        }
        field_start = false;
    }
    if in_quotes {
        bail!("invalid value {s:?}: unterminated quote");
    }
    out.push(cur);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands() {
        let l = ExportSpec::parse("out").unwrap();
        assert_eq!(l.kind, ExporterKind::Local);
        assert_eq!(l.dest.as_deref(), Some("out"));
        let t = ExportSpec::parse("-").unwrap();
        assert_eq!(t.kind, ExporterKind::Tar);
    }

    #[test]
    fn full_form_and_registry() {
        let e = ExportSpec::parse("type=registry,name=r/x:1").unwrap();
        assert_eq!(e.kind, ExporterKind::Image);
        assert!(e.is_push());
        assert_eq!(e.attrs["name"], "r/x:1");
        let e = ExportSpec::parse("type=tar,dest=out.tar").unwrap();
        assert_eq!(e.dest.as_deref(), Some("out.tar"));
        assert_eq!(
            e.client_target().unwrap(),
            Some(ClientTarget::File("out.tar".into()))
        );
    }

    #[test]
    fn oci_and_docker_without_tar_write_a_layout_directory() {
        for t in ["oci", "docker"] {
            let e = ExportSpec::parse(&format!("type={t},dest=out,tar=false")).unwrap();
            assert_eq!(
                e.client_target().unwrap(),
                Some(ClientTarget::Layout("out".into()))
            );
        }
        let e = ExportSpec::parse("type=oci,tar=false").unwrap();
        assert_eq!(
            e.client_target().unwrap_err().to_string(),
            "dest is required for oci exporter"
        );
    }

    #[test]
    fn errors_read_like_buildx() {
        assert_eq!(
            ExportSpec::parse("dest=x,foo=bar").unwrap_err().to_string(),
            "type is required for output"
        );
        assert_eq!(
            ExportSpec::parse("type=local,bogus")
                .unwrap_err()
                .to_string(),
            "invalid value bogus"
        );
        assert!(ExportSpec::parse("type=local")
            .unwrap()
            .client_target()
            .is_err());
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(
            split_csv(r#"type=image,"name=a,b",x=1"#).unwrap(),
            vec!["type=image", "name=a,b", "x=1"]
        );
    }
}
