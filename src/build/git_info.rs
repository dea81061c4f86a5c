//! Git information about a local build context, attached as buildx attaches it: the commit and
//! remote of the repository the context is in become frontend attributes (`vcs:revision`,
//! `vcs:source`, and each local directory's path in the repository as `vcs:localdir:NAME`), which
//! BuildKit records in the build's provenance and history. `BUILDX_GIT_INFO=false` turns that
//! off; `BUILDX_GIT_LABELS=true` (or `full`) also labels the image with them
//! (`org.opencontainers.image.revision`/`source`, `com.docker.image.source.entrypoint`);
//! `BUILDX_GIT_CHECK_DIRTY=true` marks a revision with uncommitted changes `-dirty`.
//!
//! A remote's URL loses any user and password before it goes anywhere.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};
use kiln_bake::types::parse_go_bool;

const LABEL_REVISION: &str = "label:org.opencontainers.image.revision";
const LABEL_SOURCE: &str = "label:org.opencontainers.image.source";
const LABEL_DOCKERFILE: &str = "label:com.docker.image.source.entrypoint";

/// Which of the two kinds of git attributes the environment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    labels: bool,
    info: bool,
    check_dirty: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok();
        let labels = match var("BUILDX_GIT_LABELS").as_deref() {
            Some("full") => true,
            Some(v) => parse_go_bool(v).unwrap_or(false),
            None => false,
        };
        let info = var("BUILDX_GIT_INFO")
            .and_then(|v| parse_go_bool(&v))
            .unwrap_or(true);
        let check_dirty = var("BUILDX_GIT_CHECK_DIRTY")
            .and_then(|v| parse_go_bool(&v))
            .unwrap_or(false);
        Settings {
            labels,
            info,
            check_dirty,
        }
    }
}

/// `git` run in one directory, as buildx runs it: C locale, signatures off, no stdin.
struct Git {
    wd: PathBuf,
}

impl Git {
    /// The first line of the output with `'` removed, or git's error output.
    fn run(&self, args: &[&str]) -> std::result::Result<String, String> {
        let out = Command::new("git")
            .args(["-c", "log.showSignature=false"])
            .args(args)
            .current_dir(&self.wd)
            .env("LC_ALL", "C")
            // Reading only: never prompt, never take the index lock (`git status`).
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or("").replace('\'', ""))
    }

    /// The URL of the branch's upstream remote, else `origin`'s, else `upstream`'s, without
    /// credentials.
    fn remote_url(&self) -> Option<String> {
        let tracked = self
            .run(&["symbolic-ref", "-q", "HEAD"])
            .ok()
            .filter(|r| !r.is_empty())
            .and_then(|r| {
                self.run(&["for-each-ref", "--format=%(upstream:remotename)", &r])
                    .ok()
            })
            .filter(|r| !r.is_empty());
        tracked
            .into_iter()
            .chain(["origin".to_string(), "upstream".to_string()])
            .find_map(|remote| {
                self.run(&["remote", "get-url", &remote])
                    .ok()
                    .filter(|u| !u.is_empty())
            })
            .map(|u| strip_credentials(&u))
    }
}

/// Whether a `git` program is on `PATH` (looked up, not run).
fn git_installed() -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join("git"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A URL without its user and password, cut out of the text itself (whether or not the rest
/// parses, and keeping the rest as written); a `scheme://` free form (`git@host:org/repo`)
/// carries no password and stays as it is.
pub fn strip_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The frontend attributes for a build whose context is the local directory `context`, read
/// from the git repository it is in (none when it is in none). `dockerfile` is the `-f` path,
/// if one was given; `local_dirs` are the directories the session serves, by name.
pub fn frontend_attrs(
    context: &Path,
    dockerfile: Option<&Path>,
    local_dirs: &HashMap<String, PathBuf>,
) -> Result<BTreeMap<String, String>> {
    let settings = Settings::from_env();
    let mut out = BTreeMap::new();
    if !settings.labels && !settings.info {
        return Ok(out);
    }
    let cwd = std::env::current_dir()?;
    let wd = lexically_clean(&cwd.join(context));
    let has_dot_git = wd.join(".git").is_dir();
    if !git_installed() {
        if has_dot_git {
            bail!("git was not found in the system");
        }
        return Ok(out);
    }
    let git = Git { wd: wd.clone() };
    if git.run(&["rev-parse", "--is-inside-work-tree"]).as_deref() != Ok("true") {
        if has_dot_git {
            bail!(
                "failed to read current commit information with git rev-parse --is-inside-work-tree"
            );
        }
        return Ok(out);
    }
    let root = match git.run(&["rev-parse", "--show-toplevel"]) {
        Ok(r) => PathBuf::from(r),
        Err(e) => bail!("failed to get git root dir: {e}"),
    };

    match git.run(&["show", "--format=%H", "HEAD", "--quiet", "--"]) {
        Ok(sha) if !sha.is_empty() => {
            let dirty = settings.check_dirty
                && git
                    .run(&["status", "--porcelain", "--ignored"])
                    .map_or(true, |s| !s.trim().is_empty());
            let sha = if dirty { format!("{sha}-dirty") } else { sha };
            if settings.labels {
                out.insert(LABEL_REVISION.into(), sha.clone());
            }
            if settings.info {
                out.insert("vcs:revision".into(), sha);
            }
        }
        Ok(_) => {}
        // A repository without commits yet.
        Err(e) if is_unknown_revision(&e) => {}
        Err(e) => bail!("failed to get git commit: {e}"),
    }
    if let Some(url) = git.remote_url() {
        if settings.labels {
            out.insert(LABEL_SOURCE.into(), url.clone());
        }
        if settings.info {
            out.insert("vcs:source".into(), url);
        }
    }
    if settings.labels {
        let dockerfile = lexically_clean(&match dockerfile {
            Some(f) => cwd.join(f),
            None => wd.join("Dockerfile"),
        });
        if let Some(rel) = relative_inside(&root, &dockerfile) {
            out.insert(LABEL_DOCKERFILE.into(), rel);
        }
    }
    if settings.info {
        for (name, dir) in local_dirs {
            let Ok(dir) = std::fs::canonicalize(cwd.join(dir)) else {
                continue;
            };
            if let Some(rel) = relative_inside(&root, &dir) {
                out.insert(format!("vcs:localdir:{name}"), rel);
            }
        }
    }
    Ok(out)
}

/// The remote URL of the repository `dir` is in, for `history ls --local` (buildx's words on
/// failure).
pub fn local_repository(dir: &Path) -> Result<String> {
    if !git_installed() {
        if dir.join(".git").is_dir() {
            bail!("git was not found in the system");
        }
        bail!("could not find git repository for local filter: git was not found in the system");
    }
    let git = Git {
        wd: dir.to_path_buf(),
    };
    match git.remote_url() {
        Some(url) => Ok(url),
        None => bail!(
            "could not get remote URL for local filter: no remote URL found for either origin or upstream"
        ),
    }
}

fn is_unknown_revision(err: &str) -> bool {
    let e = err.to_lowercase();
    e.contains("unknown revision or path not in the working tree") || e.contains("bad revision")
}

/// `path` with `.` and `..` resolved by name, as Go's `filepath.Abs` leaves it.
fn lexically_clean(path: &Path) -> PathBuf {
    PathBuf::from(kiln_bake::gopath::clean_path(&path.to_string_lossy()))
}

/// `path` relative to `root` (`.` for the root itself), when it lies inside it.
fn relative_inside(root: &Path, path: &Path) -> Option<String> {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let rel = path.strip_prefix(&root).ok()?;
    let rel = rel.to_string_lossy().into_owned();
    Some(if rel.is_empty() { ".".into() } else { rel })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_leave_a_remote_url() {
        assert_eq!(
            strip_credentials("https://user:s3cret@example.com/org/repo.git"),
            "https://example.com/org/repo.git"
        );
        assert_eq!(
            strip_credentials("https://token@example.com/org/repo.git"),
            "https://example.com/org/repo.git"
        );
        assert_eq!(
            strip_credentials("https://example.com/org/repo.git"),
            "https://example.com/org/repo.git"
        );
        assert_eq!(
            strip_credentials("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        // What no URL parser takes keeps no password either, and the rest stays as written.
        for (given, kept) in [
            (
                "https://user:s3cretpw@example.com:badport/org/repo.git",
                "https://example.com:badport/org/repo.git",
            ),
            ("https://u:pw@[::1/r", "https://[::1/r"),
            ("https://u:pw@", "https://"),
            (
                "https://u:p@w@GitHub.com/Org/R.git",
                "https://GitHub.com/Org/R.git",
            ),
            ("https://u:pw@github.com", "https://github.com"),
            ("ssh://git@host/a@b", "ssh://host/a@b"),
        ] {
            assert_eq!(strip_credentials(given), kept);
        }
    }

    #[test]
    fn paths_are_cleaned_by_name() {
        assert_eq!(
            lexically_clean(Path::new("/r/sub/../Dockerfile")),
            PathBuf::from("/r/Dockerfile")
        );
        assert_eq!(lexically_clean(Path::new("/r/./a/")), PathBuf::from("/r/a"));
    }

    #[test]
    fn paths_inside_the_repository_are_relative_to_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        assert_eq!(relative_inside(&root, &root).as_deref(), Some("."));
        assert_eq!(
            relative_inside(&root, &root.join("a/b")).as_deref(),
            Some("a/b")
        );
        assert_eq!(relative_inside(&root.join("a"), &root), None);
    }

    #[test]
    fn a_repository_without_commits_has_no_revision() {
        assert!(is_unknown_revision(
            "fatal: ambiguous argument 'HEAD': unknown revision or path not in the working tree."
        ));
        assert!(!is_unknown_revision("fatal: not a git repository"));
    }
}
