//! Image references (`[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`) and content digests, parsed once
//! with the grammar and Docker Hub normalisation of `distribution/reference`
//! (`busybox` is `docker.io/library/busybox`).

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use sha2::Digest as _;

/// Docker Hub's canonical name, as references spell it.
pub const DOCKER_HUB: &str = "docker.io";

/// A content digest, `ALGORITHM:HEX` (sha256 or sha512).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    Format(String),
    #[error("unsupported digest algorithm in {0:?}")]
    Algorithm(String),
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(data))
        ))
    }

    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map(|(a, _)| a).unwrap_or("")
    }

    pub fn hex(&self) -> &str {
        self.0.split_once(':').map(|(_, h)| h).unwrap_or("")
    }

    /// Whether `data` hashes to this digest.
    pub fn matches(&self, data: &[u8]) -> bool {
        let actual = match self.algorithm() {
            "sha256" => hex::encode(sha2::Sha256::digest(data)),
            "sha512" => hex::encode(sha2::Sha512::digest(data)),
            _ => return false,
        };
        actual == self.hex()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(DigestError::Format(s.into()));
        };
        let len = match algo {
            "sha256" => 64,
            "sha512" => 128,
            a if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c)) =>
            {
                return Err(DigestError::Algorithm(s.into()))
            }
            _ => return Err(DigestError::Format(s.into())),
        };
        if hex.len() != len
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Format(s.into()));
        }
        Ok(Digest(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A repository in a registry: `127.0.0.1:5000/team/app`, `docker.io/library/busybox`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository {
    /// Host and optional port, as written in references (`docker.io` for Docker Hub).
    pub registry: String,
    /// The path inside the registry (`library/busybox`).
    pub path: String,
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub repository: Repository,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: {0:?}")]
    Format(String),
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("invalid repository name {0:?}: 64-character hexadecimal strings are ambiguous with image IDs")]
    Ambiguous(String),
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    TooLong(String),
    #[error("invalid reference {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
}

static ANCHORED: LazyLock<Regex> = LazyLock::new(|| {
    let alnum = "[a-z0-9]+";
    let separator = "(?:[._]|__|[-]+)";
    let component = format!("{alnum}(?:{separator}{alnum})*");
    let path = format!("{component}(?:/{component})*");
    let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain =
        format!(r"(?:{domain_component}(?:\.{domain_component})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?");
    let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    Regex::new(&format!(
        "^((?:{domain}/)?{path})(?::({tag}))?(?:@({digest}))?$"
    ))
    .expect("static regex")
});

impl Reference {
    /// The repository with this reference's tag, or `latest` when it has neither tag nor digest
    /// (what `docker pull NAME` means).
    pub fn tag_or_default(&self) -> Reference {
        let mut r = self.clone();
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".into());
        }
        r
    }

    /// This reference pinned to `digest` (the tag, if any, is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// A reference to `repository` itself (no tag, no digest).
    pub fn from_repository(repository: Repository) -> Reference {
        Reference {
            repository,
            tag: None,
            digest: None,
        }
    }

    /// What the registry API calls this manifest: the digest when pinned, else the tag (or
    /// `latest`).
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ReferenceError::Ambiguous(s.into()));
        }
        let (registry, remainder) = split_registry(s);
        let name_part = remainder.split(['@', ':']).next().unwrap_or("");
        if name_part.to_lowercase() != name_part {
            return Err(ReferenceError::Uppercase(name_part.into()));
        }
        let full = format!("{registry}/{remainder}");
        let caps = ANCHORED
            .captures(&full)
            .ok_or_else(|| ReferenceError::Format(s.into()))?;
        let name = &caps[1];
        if name.len() > 255 {
            return Err(ReferenceError::TooLong(name.into()));
        }
        let path = name[registry.len() + 1..].to_string();
        let digest = match caps.get(3) {
            Some(d) => Some(
                d.as_str()
                    .parse()
                    .map_err(|source| ReferenceError::Digest {
                        reference: s.into(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(Reference {
            repository: Repository { registry, path },
            tag: caps.get(2).map(|t| t.as_str().to_string()),
            digest,
        })
    }
}

/// Splits off the registry the way Docker does: the first component is a registry when it has a
/// `.` or `:`, is `localhost`, or has uppercase letters; otherwise the name is on Docker Hub,
/// where one-component names live under `library/`.
fn split_registry(s: &str) -> (String, String) {
    let (registry, rest) = match s.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.to_lowercase() != first =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), s.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    let rest = if registry == DOCKER_HUB && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest
    };
    (registry, rest)
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:659500e77c89c17604a36ef4409774d4ea5079f68978eda5fab791ec1e78444d";

    fn parse(s: &str) -> String {
        s.parse::<Reference>().unwrap().to_string()
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(parse("busybox"), "docker.io/library/busybox");
        assert_eq!(parse("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(parse("user/app"), "docker.io/user/app");
        assert_eq!(
            parse("index.docker.io/busybox"),
            "docker.io/library/busybox"
        );
        assert_eq!(
            parse("docker.io/library/busybox:latest"),
            "docker.io/library/busybox:latest"
        );
    }

    #[test]
    fn registries_with_ports_and_digests() {
        let r: Reference = format!("127.0.0.1:5000/team/app:v1@{D}").parse().unwrap();
        assert_eq!(r.repository.registry, "127.0.0.1:5000");
        assert_eq!(r.repository.path, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest.as_ref().unwrap().as_str(), D);
        assert_eq!(r.manifest_key(), D);
        assert_eq!(parse("localhost/app"), "localhost/app");
        assert_eq!(parse("[::1]:5000/app:x"), "[::1]:5000/app:x");
        let bare: Reference = "localhost:5000/app".parse().unwrap();
        assert_eq!(bare.manifest_key(), "latest");
        assert_eq!(
            bare.tag_or_default().to_string(),
            "localhost:5000/app:latest"
        );
    }

    #[test]
    fn malformed_references_are_rejected() {
        for bad in [
            "",
            "upper/App",
            "app:",
            "app@sha256:abc",
            "a//b",
            "-app",
            "app:tag:tag",
            "app@",
            "app:tág",
        ] {
            assert!(
                bad.parse::<Reference>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(matches!(
            "Busybox".parse::<Reference>(),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            D[7..].parse::<Reference>(),
            Err(ReferenceError::Ambiguous(_))
        ));
    }

    #[test]
    fn digests_are_checked() {
        let d: Digest = D.parse().unwrap();
        assert_eq!(d.hex().len(), 64);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(matches!(
            "md5:abc".parse::<Digest>(),
            Err(DigestError::Algorithm(_))
        ));
        let data = b"hello";
        assert!(Digest::sha256_of(data).matches(data));
        assert!(!Digest::sha256_of(data).matches(b"other"));
    }
}
