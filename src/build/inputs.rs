//! The build's inputs: which local directories the session exposes and the frontend attributes
//! that name them (context, Dockerfile location, remote contexts, stdin).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::options::{BuildOptions, ContextSource, DockerfileSource};

/// Inputs ready for a solve. Temporary directories live as long as this value (or any clone
/// of it: the solves of one build on several nodes share them).
#[derive(Debug, Clone)]
pub struct PreparedInputs {
    pub dirs: HashMap<String, PathBuf>,
    pub frontend_attrs: BTreeMap<String, String>,
    /// Lets BuildKit reuse what it already has of this context from earlier builds.
    pub shared_key: String,
    pub uploads: crate::buildkit::session::Uploads,
    /// OCI layouts of `oci-layout://` named contexts, by content store id.
    pub oci_stores: HashMap<String, PathBuf>,
    _temp: Vec<std::sync::Arc<tempfile::TempDir>>,
}

pub fn prepare(opts: &BuildOptions) -> Result<PreparedInputs> {
    let mut p = PreparedInputs {
        dirs: HashMap::new(),
        frontend_attrs: BTreeMap::new(),
        shared_key: String::new(),
        uploads: Default::default(),
        oci_stores: HashMap::new(),
        _temp: Vec::new(),
    };
    let named = super::named_contexts::resolve(&opts.named_contexts)?;
    p.dirs.extend(named.dirs);
    p.frontend_attrs.extend(named.frontend_attrs);
    p.oci_stores = named.oci_stores;
    let context = opts
        .context
        .clone()
        .context("please specify build context (e.g. \".\" for the current directory)")?;
    let dockerfile = opts.dockerfile.clone().unwrap_or(DockerfileSource::Default);
    let mut dockerfile_dir: Option<PathBuf> = None;
    let mut dockerfile_name = String::from("Dockerfile");
    let mut dockerfile_text: Option<Vec<u8>> = None;

    match &context {
        ContextSource::Stdin => {
            if dockerfile == DockerfileSource::Stdin {
                bail!("invalid argument: can't use stdin for both build context and dockerfile");
            }
            // Peek enough to tell a tarball from a Dockerfile, then stream the rest untouched.
            let mut head = Vec::with_capacity(1024);
            std::io::stdin()
                .take(1024)
                .read_to_end(&mut head)
                .context("reading the build context from stdin")?;
            if is_archive(&head) {
                let reader = std::io::Cursor::new(head).chain(std::io::stdin());
                let url = p.uploads.add(Box::new(reader));
                p.frontend_attrs.insert("context".into(), url);
                if let DockerfileSource::Path(f) = &dockerfile {
                    dockerfile_name = f.display().to_string();
                }
                p.frontend_attrs
                    .insert("filename".into(), dockerfile_name.clone());
                return Ok(p);
            }
            let mut data = head;
            std::io::stdin()
                .read_to_end(&mut data)
                .context("reading the Dockerfile from stdin")?;
            if dockerfile != DockerfileSource::Default {
                bail!("ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles");
            }
            let empty = tempfile::Builder::new().prefix("kiln-empty-").tempdir()?;
            p.dirs.insert("context".into(), empty.path().to_path_buf());
            p._temp.push(std::sync::Arc::new(empty));
            dockerfile_text = Some(data);
        }
        ContextSource::Local(dir) => {
            p.dirs.insert("context".into(), dir.clone());
            p.shared_key = std::fs::canonicalize(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| dir.display().to_string());
            match &dockerfile {
                DockerfileSource::Stdin => dockerfile_text = Some(read_stdin_dockerfile()?),
                DockerfileSource::Inline(text) => dockerfile_text = Some(text.clone().into_bytes()),
                DockerfileSource::Default => dockerfile_dir = Some(dir.clone()),
                DockerfileSource::Path(f) => {
                    let parent = f.parent().filter(|p| !p.as_os_str().is_empty());
                    dockerfile_dir = Some(parent.unwrap_or(Path::new(".")).to_path_buf());
                    dockerfile_name = f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .with_context(|| format!("invalid Dockerfile path {}", f.display()))?;
                }
            }
        }
        ContextSource::Remote(url) => {
            p.frontend_attrs.insert("context".into(), url.clone());
            match &dockerfile {
                DockerfileSource::Stdin => dockerfile_text = Some(read_stdin_dockerfile()?),
                DockerfileSource::Inline(text) => dockerfile_text = Some(text.clone().into_bytes()),
                DockerfileSource::Path(f) if f.is_absolute() => {
                    dockerfile_dir = f.parent().map(Path::to_path_buf);
                    dockerfile_name = f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    p.frontend_attrs
                        .insert("dockerfilekey".into(), "dockerfile".into());
                }
                DockerfileSource::Path(f) => {
                    // Relative to the remote context: the frontend resolves it there.
                    dockerfile_name = f.display().to_string();
                }
                DockerfileSource::Default => {}
            }
        }
    }

    if let Some(text) = dockerfile_text {
        let dir = tempfile::Builder::new()
            .prefix("kiln-dockerfile-")
            .tempdir()?;
        std::fs::write(dir.path().join("Dockerfile"), text)
            .context("writing the Dockerfile read from stdin")?;
        dockerfile_dir = Some(dir.path().to_path_buf());
        dockerfile_name = "Dockerfile".into();
        p.frontend_attrs
            .insert("dockerfilekey".into(), "dockerfile".into());
        p._temp.push(std::sync::Arc::new(dir));
    }

    if let Some(dir) = dockerfile_dir {
        dockerfile_name = lowercase_dockerfile_fallback(&dir, &dockerfile_name);
        let file = dir.join(&dockerfile_name);
        if !file.exists() {
            bail!(
                "failed to read dockerfile: open {}: no such file or directory",
                file.display()
            );
        }
        p.dirs.insert("dockerfile".into(), dir);
    }
    p.frontend_attrs.insert("filename".into(), dockerfile_name);
    if let ContextSource::Local(dir) = &context {
        let dockerfile = match &dockerfile {
            DockerfileSource::Path(f) => Some(f.as_path()),
            _ => None,
        };
        // As buildx: the build goes on without what git could not tell.
        match super::git_info::frontend_attrs(dir, dockerfile, &p.dirs) {
            Ok(attrs) => p.frontend_attrs.extend(attrs),
            Err(e) => eprintln!(
                "WARNING: current commit information was not captured by the build: {e:#}"
            ),
        }
    }
    Ok(p)
}

fn read_stdin_dockerfile() -> Result<Vec<u8>> {
    let mut data = Vec::new();
    std::io::stdin()
        .read_to_end(&mut data)
        .context("reading the Dockerfile from stdin")?;
    Ok(data)
}

/// `dockerfile` is accepted when `Dockerfile` is absent, as the Docker CLI has always done.
fn lowercase_dockerfile_fallback(dir: &Path, name: &str) -> String {
    if name == "Dockerfile" && !dir.join(name).exists() && dir.join("dockerfile").exists() {
        return "dockerfile".into();
    }
    name.to_string()
}

/// Whether stdin holds an archive (tar, or a compressed stream) rather than a Dockerfile.
fn is_archive(data: &[u8]) -> bool {
    const MAGICS: &[&[u8]] = &[
        &[0x1f, 0x8b],                   // gzip
        b"BZh",                          // bzip2
        &[0xfd, b'7', b'z', b'X', b'Z'], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],       // zstd
    ];
    if MAGICS.iter().any(|m| data.starts_with(m)) {
        return true;
    }
    data.len() >= 262 && &data[257..262] == b"ustar"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_dockerfile_uses_its_directory() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::create_dir(ctx.path().join("sub")).unwrap();
        std::fs::write(ctx.path().join("sub/Build.df"), "FROM scratch").unwrap();
        let opts = BuildOptions {
            context: Some(ContextSource::Local(ctx.path().into())),
            dockerfile: Some(DockerfileSource::Path(ctx.path().join("sub/Build.df"))),
            ..Default::default()
        };
        let p = prepare(&opts).unwrap();
        assert_eq!(p.frontend_attrs["filename"], "Build.df");
        assert_eq!(p.dirs["dockerfile"], ctx.path().join("sub"));
        assert_eq!(p.dirs["context"], ctx.path());
    }

    #[test]
    fn missing_dockerfile_is_a_clear_error() {
        let ctx = tempfile::tempdir().unwrap();
        let opts = BuildOptions {
            context: Some(ContextSource::Local(ctx.path().into())),
            ..Default::default()
        };
        let e = prepare(&opts).unwrap_err().to_string();
        assert!(e.contains("failed to read dockerfile"), "{e}");
    }

    #[test]
    fn lowercase_dockerfile_is_found() {
        let ctx = tempfile::tempdir().unwrap();
        std::fs::write(ctx.path().join("dockerfile"), "FROM scratch").unwrap();
        let opts = BuildOptions {
            context: Some(ContextSource::Local(ctx.path().into())),
            ..Default::default()
        };
        assert_eq!(
            prepare(&opts).unwrap().frontend_attrs["filename"],
            "dockerfile"
        );
    }

    #[test]
    fn recognises_archives() {
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(is_archive(&tar));
        assert!(is_archive(&[0x1f, 0x8b, 0]));
        assert!(!is_archive(b"FROM busybox\n"));
    }
}
