//! Walking a local directory the way fsutil's `FS` + `FilterFS` + hardlink reset do for
//! `Send`: entries in lexical order, depth first, the root itself left out; include/exclude
//! patterns applied with the same shortcuts (so the same directories are pruned or descended);
//! a directory that is filtered out is still sent, just before the first descendant that is
//! included; hardlinks point at the first *sent* path of their inode.
//!
//! It yields stats and host paths; numbering them and putting them on the wire is `send.rs`.

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _};
use bollard_buildkit_proto::fsutil::types::Stat;

use super::followlinks::{dedupe_paths, follow_links};
use super::patterns::{MatchInfo, PatternMatcher};
use super::stat::{is_dir, is_symlink, stat_path};
use super::FilterOpts;

/// One entry to send: its stat (path relative to the root) and where it is on this host.
#[derive(Debug, Clone)]
pub struct Entry {
    pub stat: Stat,
    pub host_path: PathBuf,
}

/// Characters that make a pattern more than a plain path prefix.
const PATTERN_CHARS: &[char] = &['*', '[', ']', '?', '^', '\\'];

/// Include/exclude filtering for one walk, built from the daemon's filter metadata.
#[derive(Debug)]
pub struct Filter {
    include: Option<PatternMatcher>,
    exclude: Option<PatternMatcher>,
    /// Every include pattern is a literal path (or `path/*`, `path/**`), so a directory that is
    /// not a prefix of one cannot contain a match and need not be read.
    only_prefix_includes: bool,
    /// Likewise for `!` exceptions: an excluded directory that no exception points into can be
    /// pruned.
    only_prefix_exclude_exceptions: bool,
}

impl Filter {
    /// Builds the filter for `root`; follow paths are resolved against the tree now and join the
    /// include patterns.
    pub fn new(root: &Path, opts: &FilterOpts) -> anyhow::Result<Self> {
        let mut include: Option<Vec<String>> =
            (!opts.include_patterns.is_empty()).then(|| opts.include_patterns.clone());
        if !opts.follow_paths.is_empty() {
            if let Some(targets) = follow_links(root, &opts.follow_paths)? {
                let mut all = include.unwrap_or_default();
                all.extend(targets);
                include = dedupe_paths(all);
            }
        }

        let include = match include.filter(|v| !v.is_empty()) {
            Some(p) => Some(
                PatternMatcher::new(&p)
                    .with_context(|| format!("invalid includepatterns: {p:?}"))?,
            ),
            None => None,
        };
        let exclude = if opts.exclude_patterns.is_empty() {
            None
        } else {
            Some(
                PatternMatcher::new(&opts.exclude_patterns).with_context(|| {
                    format!("invalid excludepatterns: {:?}", opts.exclude_patterns)
                })?,
            )
        };
        let literal =
            |p: &&super::patterns::Pattern| !p.without_trailing_glob().contains(PATTERN_CHARS);
        let only_prefix_includes = include.as_ref().is_none_or(|m| {
            m.patterns()
                .iter()
                .filter(|p| !p.is_exclusion())
                .all(|p| literal(&p))
        });
        let only_prefix_exclude_exceptions = exclude.as_ref().is_none_or(|m| {
            m.patterns()
                .iter()
                .filter(|p| p.is_exclusion())
                .all(|p| literal(&p))
        });
        Ok(Filter {
            include,
            exclude,
            only_prefix_includes,
            only_prefix_exclude_exceptions,
        })
    }

    /// Whether some pattern of the given polarity names a path inside `dir`.
    fn points_into(m: &PatternMatcher, dir: &str, exclusion: bool) -> bool {
        let dir_slash = format!("{dir}/");
        m.patterns()
            .iter()
            .filter(|p| p.is_exclusion() == exclusion)
            .any(|p| format!("{}/", p.without_trailing_glob()).starts_with(&dir_slash))
    }
}

#[derive(Debug)]
enum Decision {
    /// Do not send and do not descend.
    Prune,
    /// Do not send, but descend (a descendant may be sent).
    Hide,
    Send,
}

struct Parent {
    host_path: PathBuf,
    rel: String,
    include: MatchInfo,
    exclude: MatchInfo,
    sent: bool,
}

struct Walker<'a> {
    filter: &'a Filter,
    cancel: &'a AtomicBool,
    parents: Vec<Parent>,
    /// (device, inode) of multiply-linked files -> first sent path.
    hardlinks: HashMap<(u64, u64), String>,
    emit: &'a mut dyn FnMut(Entry) -> anyhow::Result<()>,
}

/// Walks `root` (symlinks in the root path itself resolved first) and calls `emit` for each entry
/// in send order. Stops with an error when `cancel` is set.
pub fn walk(
    root: &Path,
    opts: &FilterOpts,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(Entry) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let root =
        std::fs::canonicalize(root).with_context(|| format!("resolve {}", root.display()))?;
    let md = std::fs::metadata(&root).with_context(|| format!("stat {}", root.display()))?;
    if !md.is_dir() {
        bail!("stat {}: not a directory", root.display());
    }
    let filter = Filter::new(&root, opts)?;
    let mut walker = Walker {
        filter: &filter,
        cancel,
        parents: Vec::new(),
        hardlinks: HashMap::new(),
        emit,
    };
    let entries = read_dir_sorted(&root).with_context(|| format!("open {}", root.display()))?;
    walker.walk_entries(&root, "", entries)
}

/// A directory's entries sorted by name bytes, as Go's `os.ReadDir` returns them.
fn read_dir_sorted(dir: &Path) -> io::Result<Vec<(std::ffi::OsString, bool)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // The entry's own type, not its symlink target's: links are sent as links.
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if is_gone(&e) => continue,
            Err(e) => return Err(e),
        };
        out.push((entry.file_name(), is_dir));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

impl Walker<'_> {
    fn walk_entries(
        &mut self,
        dir: &Path,
        dir_rel: &str,
        entries: Vec<(std::ffi::OsString, bool)>,
    ) -> anyhow::Result<()> {
        for (name, entry_is_dir) in entries {
            if self.cancel.load(Ordering::Relaxed) {
                bail!("walk of {} cancelled", dir.display());
            }
            let host_path = dir.join(&name);
            let name = name.to_string_lossy();
            let rel = if dir_rel.is_empty() {
                name.into_owned()
            } else {
                format!("{dir_rel}/{name}")
            };
            let (decision, include, exclude) = self.decide(&rel, entry_is_dir);
            if matches!(decision, Decision::Prune) {
                continue;
            }
            let sent = matches!(decision, Decision::Send);
            if sent && !self.send(&host_path, &rel)? {
                // Vanished between listing and stat: nothing to send or descend into.
                continue;
            }
            if !entry_is_dir {
                continue;
            }
            let children = match read_dir_sorted(&host_path) {
                Ok(c) => c,
                Err(e) if is_gone(&e) => continue,
                // An unreadable directory that is filtered out anyway does not fail the walk.
                Err(e) if !sent && e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(e) => return Err(e).with_context(|| format!("open {}", host_path.display())),
            };
            self.parents.push(Parent {
                host_path: host_path.clone(),
                rel: rel.clone(),
                include,
                exclude,
                sent,
            });
            let res = self.walk_entries(&host_path, &rel, children);
            self.parents.pop();
            res?;
        }
        Ok(())
    }

    fn decide(&self, rel: &str, entry_is_dir: bool) -> (Decision, MatchInfo, MatchInfo) {
        let f = self.filter;
        let mut hide = false;
        let mut include_info = MatchInfo::default();
        let mut exclude_info = MatchInfo::default();
        let none = MatchInfo::default();
        let parent = self.parents.last();

        if let Some(m) = &f.include {
            let (matched, info) =
                m.matches_using_parent_results(rel, parent.map_or(&none, |p| &p.include));
            include_info = info;
            if !matched {
                if entry_is_dir && f.only_prefix_includes && !Filter::points_into(m, rel, false) {
                    return (Decision::Prune, include_info, exclude_info);
                }
                hide = true;
            }
        }
        if let Some(m) = &f.exclude {
            let (matched, info) =
                m.matches_using_parent_results(rel, parent.map_or(&none, |p| &p.exclude));
            exclude_info = info;
            if matched {
                if entry_is_dir
                    && f.only_prefix_exclude_exceptions
                    && (!m.has_exclusions() || !Filter::points_into(m, rel, true))
                {
                    return (Decision::Prune, include_info, exclude_info);
                }
                hide = true;
            }
        }
        let decision = if hide { Decision::Hide } else { Decision::Send };
        (decision, include_info, exclude_info)
    }

    /// Sends the entry, preceded by any filtered-out ancestors not sent yet. Returns false when
    /// the entry disappeared before it could be stat'ed.
    fn send(&mut self, host_path: &Path, rel: &str) -> anyhow::Result<bool> {
        let md = match std::fs::symlink_metadata(host_path) {
            Ok(md) => md,
            Err(e) if is_gone(&e) => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("lstat {}", host_path.display())),
        };
        let mut stat = stat_path(host_path, rel, &md)
            .with_context(|| format!("stat {}", host_path.display()))?;

        for i in 0..self.parents.len() {
            if self.parents[i].sent {
                continue;
            }
            let p = &self.parents[i];
            let pmd = std::fs::symlink_metadata(&p.host_path)
                .with_context(|| format!("lstat {}", p.host_path.display()))?;
            let pstat = stat_path(&p.host_path, &p.rel, &pmd)
                .with_context(|| format!("stat {}", p.host_path.display()))?;
            let host_path = p.host_path.clone();
            self.parents[i].sent = true;
            (self.emit)(Entry {
                stat: pstat,
                host_path,
            })?;
        }

        if !is_dir(stat.mode) && !is_symlink(stat.mode) && md.nlink() > 1 {
            match self.hardlinks.get(&(md.dev(), md.ino())) {
                Some(first) => stat.linkname = first.clone(),
                None => {
                    self.hardlinks.insert((md.dev(), md.ino()), rel.to_string());
                }
            }
        }
        (self.emit)(Entry {
            stat,
            host_path: host_path.to_path_buf(),
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::stat::mode;
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn list(root: &Path, opts: &FilterOpts) -> Vec<Stat> {
        let mut out = Vec::new();
        walk(root, opts, &AtomicBool::new(false), &mut |e| {
            out.push(e.stat);
            Ok(())
        })
        .unwrap();
        out
    }

    fn paths(root: &Path, opts: &FilterOpts) -> Vec<String> {
        list(root, opts).into_iter().map(|s| s.path).collect()
    }

    fn opts(include: &[&str], exclude: &[&str], follow: &[&str]) -> FilterOpts {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect();
        FilterOpts {
            include_patterns: v(include),
            exclude_patterns: v(exclude),
            follow_paths: v(follow),
        }
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, rel).unwrap();
    }

    #[test]
    fn walk_order_is_lexical_depth_first_without_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in ["b", "a/z", "a/b/c", "a.txt", "A", "a-b"] {
            touch(root, f);
        }
        std::fs::create_dir(root.join("empty")).unwrap();
        assert_eq!(
            paths(root, &FilterOpts::default()),
            ["A", "a", "a/b", "a/b/c", "a/z", "a-b", "a.txt", "b", "empty"]
        );
    }

    #[test]
    fn stats_carry_go_modes_owner_size_mtime_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(root, "dir/file");
        touch(root, "exe");
        touch(root, "suid");
        std::fs::set_permissions(root.join("dir"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(
            root.join("dir/file"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::set_permissions(root.join("exe"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        symlink("dir/file", root.join("link")).unwrap();
        std::fs::hard_link(root.join("dir/file"), root.join("hard")).unwrap();

        let stats = list(root, &FilterOpts::default());
        let by = |p: &str| stats.iter().find(|s| s.path == p).unwrap().clone();
        let me = std::fs::metadata(root.join("exe")).unwrap();

        let d = by("dir");
        assert_eq!(d.mode, mode::DIR | 0o750);
        assert_eq!(d.size, 0);
        let f = by("dir/file");
        assert_eq!(f.mode, 0o640);
        assert_eq!(f.size, "dir/file".len() as i64);
        assert_eq!((f.uid, f.gid), (me.uid(), me.gid()));
        assert_eq!(f.linkname, "");
        assert_eq!(by("exe").mode, 0o755);
        assert_eq!(by("suid").mode, mode::SETUID | 0o755);
        let l = by("link");
        assert_eq!(l.mode, mode::SYMLINK | 0o777);
        assert_eq!(l.linkname, "dir/file");
        assert_eq!(l.size, "dir/file".len() as i64);
        // `dir/file` is walked first, so the later path links to it.
        let h = by("hard");
        assert_eq!(h.mode, 0o640);
        assert_eq!(h.linkname, "dir/file");
        assert_eq!(h.size, f.size);
        let mtime = std::fs::symlink_metadata(root.join("exe")).unwrap();
        assert_eq!(
            by("exe").mod_time,
            mtime.mtime() * 1_000_000_000 + mtime.mtime_nsec()
        );
    }

    #[test]
    fn hardlinks_point_at_the_first_sent_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(root, "a");
        std::fs::hard_link(root.join("a"), root.join("b")).unwrap();
        std::fs::hard_link(root.join("a"), root.join("c")).unwrap();
        let stats = list(root, &opts(&[], &["a"], &[]));
        let got: Vec<_> = stats
            .iter()
            .map(|s| (s.path.as_str(), s.linkname.as_str()))
            .collect();
        assert_eq!(got, [("b", ""), ("c", "b")]);
    }

    #[test]
    fn excluded_dirs_are_pruned_unless_an_exception_reaches_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "keep.txt",
            "node_modules/x/y.js",
            "docs/a.md",
            "docs/keep/b.md",
            "logs/1.log",
        ] {
            touch(root, f);
        }
        assert_eq!(
            paths(
                root,
                &opts(&[], &["node_modules", "docs", "!docs/keep", "*.log"], &[])
            ),
            [
                "docs",
                "docs/keep",
                "docs/keep/b.md",
                "keep.txt",
                "logs",
                "logs/1.log"
            ]
        );
        assert_eq!(
            paths(root, &opts(&[], &["**/*.md", "logs/"], &[])),
            [
                "docs",
                "docs/keep",
                "keep.txt",
                "node_modules",
                "node_modules/x",
                "node_modules/x/y.js"
            ]
        );
    }

    #[test]
    fn include_patterns_send_matches_and_their_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "Dockerfile",
            ".dockerignore",
            "src/main.go",
            "src/lib/a.go",
            "other/x",
        ] {
            touch(root, f);
        }
        assert_eq!(
            paths(root, &opts(&["src/lib"], &[], &[])),
            ["src", "src/lib", "src/lib/a.go"]
        );
        assert_eq!(
            paths(root, &opts(&["**/*.go"], &["src/lib"], &[])),
            ["src", "src/main.go"]
        );
        assert_eq!(
            paths(root, &opts(&["Dockerfile", ".dockerignore"], &[], &[])),
            [".dockerignore", "Dockerfile"]
        );
    }

    #[test]
    fn follow_paths_fetch_the_dockerfile_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(root, "build/Dockerfile.real");
        touch(root, "src/a");
        symlink("build/Dockerfile.real", root.join("Dockerfile")).unwrap();
        // The frontend asks for the Dockerfile and .dockerignore (which is absent here).
        assert_eq!(
            paths(root, &opts(&[], &[], &["Dockerfile", ".dockerignore"])),
            ["Dockerfile", "build", "build/Dockerfile.real"]
        );
        // A follow path of the root itself asks for everything; like fsutil it then adds no
        // include patterns, so explicit ones still apply.
        assert_eq!(paths(root, &opts(&[], &[], &["."])).len(), 5);
        assert_eq!(paths(root, &opts(&["src"], &[], &["."])), ["src", "src/a"]);
    }

    #[test]
    fn missing_root_is_an_error_naming_it() {
        let err = walk(
            Path::new("/nonexistent/kiln-test"),
            &FilterOpts::default(),
            &AtomicBool::new(false),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/kiln-test"),
            "{err:#}"
        );
    }
}
