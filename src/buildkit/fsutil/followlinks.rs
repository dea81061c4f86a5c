//! Follow paths: BuildKit asks for a few named paths (the Dockerfile, `.dockerignore`) and wants
//! symlinks along them resolved, so that the targets are sent too. Each path is walked one
//! element at a time; a symlink met on the way is replaced by its target (relative to the
//! context root, never escaping it) and resolution continues from there. The result becomes
//! extra include patterns, as fsutil's `FollowLinks` produces them.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use anyhow::Context as _;
use kiln_bake::gopath::clean_path;

/// Resolves `paths` under `root` into the include patterns that cover them and every symlink
/// target they lead to. `None` means one of them is the root itself, so nothing is filtered.
pub fn follow_links(root: &Path, paths: &[String]) -> anyhow::Result<Option<Vec<String>>> {
    let mut resolver = Resolver {
        root,
        resolved: BTreeSet::new(),
    };
    for p in paths {
        resolver.add(p)?;
    }
    Ok(dedupe_paths(resolver.resolved.into_iter().collect()))
}

/// Drops paths already covered by an earlier one (`a/b` after `a`); expects `in_` sorted the way
/// fsutil sorts it. `None` when a path is `.`: the whole tree is wanted, so there is no filter.
pub fn dedupe_paths(in_: Vec<String>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(in_.len());
    let mut last = String::new();
    for s in in_ {
        if s == "." {
            return None;
        }
        // Starting from an empty `last` means a leading `/...` path is dropped; fsutil does the
        // same, and the patterns it builds never start with `/`.
        if s.starts_with(&format!("{last}/")) {
            continue;
        }
        last = s.clone();
        out.push(s);
    }
    Some(out)
}

struct Resolver<'a> {
    root: &'a Path,
    resolved: BTreeSet<String>,
}

/// Joins slash-separated elements and cleans the result, like Go's `filepath.Join`.
fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => String::new(),
        (true, false) => clean_path(b),
        (false, true) => clean_path(a),
        (false, false) => clean_path(&format!("{a}/{b}")),
    }
}

fn dir_of(p: &str) -> String {
    match p.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => clean_path(&p[..i]),
        None => ".".to_string(),
    }
}

fn base_of(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

impl Resolver<'_> {
    fn add(&mut self, path: &str) -> anyhow::Result<()> {
        let mut rest = join(".", path);
        let mut current = ".".to_string();
        loop {
            let (first, remainder) = match rest.split_once('/') {
                Some((f, r)) => (f.to_string(), r.to_string()),
                None => (rest.clone(), String::new()),
            };
            current = join(&current, &first);
            let targets = self.symlink_targets(&current, true)?;
            rest = remainder;
            if (rest.is_empty() || !targets.is_empty()) && self.resolved.contains(&current) {
                // Already resolved; this also ends symlink cycles.
                return Ok(());
            }
            if !targets.is_empty() {
                self.resolved.insert(current.clone());
                for target in targets {
                    self.add(&join(&target, &rest))?;
                }
                return Ok(());
            }
            if rest.is_empty() {
                self.resolved.insert(current);
                return Ok(());
            }
        }
    }

    /// Where the symlink(s) at `p` point, as absolute paths within the root. With wildcards in
    /// the last element, every matching sibling that is a symlink counts. Missing paths and
    /// non-symlinks give nothing.
    fn symlink_targets(&self, p: &str, allow_wildcard: bool) -> anyhow::Result<Vec<String>> {
        let base = base_of(p);
        if allow_wildcard && contains_wildcards(base) {
            let dir = dir_of(p);
            let Some(abs_dir) = self.inside_root(&dir) else {
                return Ok(Vec::new());
            };
            let entries = match std::fs::read_dir(&abs_dir) {
                Ok(rd) => rd,
                Err(e) if is_not_found(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e).with_context(|| format!("readdir {}", abs_dir.display())),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.with_context(|| format!("readdir {}", abs_dir.display()))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            let mut out = Vec::new();
            for name in names {
                if go_match(base, &name) {
                    out.extend(self.symlink_targets(&join(&dir, &name), false)?);
                }
            }
            return Ok(out);
        }
        if p == "." || p == "/" {
            return Ok(Vec::new());
        }
        let Some(abs) = self.inside_root(p) else {
            return Ok(Vec::new());
        };
        let md = match std::fs::symlink_metadata(&abs) {
            Ok(md) => md,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("lstat {}", abs.display())),
        };
        if !md.file_type().is_symlink() {
            return Ok(Vec::new());
        }
        let link =
            std::fs::read_link(&abs).with_context(|| format!("readlink {}", abs.display()))?;
        let link = clean_path(&link.to_string_lossy());
        if link.starts_with('/') {
            return Ok(vec![link]);
        }
        // Joining under `/` folds away any `..` that would climb out of the root.
        Ok(vec![join("/", &join(&dir_of(p), &link))])
    }

    /// The host path for a relative path, unless it climbs out of the root.
    fn inside_root(&self, rel: &str) -> Option<std::path::PathBuf> {
        if rel == ".." || rel.starts_with("../") {
            return None;
        }
        let rel = rel.trim_start_matches('/');
        if rel.is_empty() || rel == "." {
            return Some(self.root.to_path_buf());
        }
        Some(self.root.join(rel))
    }
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

fn contains_wildcards(name: &str) -> bool {
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Matches one path element against a Go `filepath.Match` pattern (`*`, `?`, `[...]` with `^`
/// negation and ranges, `\` escapes). A malformed pattern matches nothing.
pub fn go_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_from(&p, &n).unwrap_or(false)
}

fn match_from(p: &[char], n: &[char]) -> Option<bool> {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point for the most recent `*`: pattern index after it, name index it
    // currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi + 1, ni));
                    pi += 1;
                    continue;
                }
                c if ni < n.len() && n[ni] != '/' => {
                    let (ok, next) = match c {
                        '?' => (true, pi + 1),
                        '[' => match_class(p, pi, n[ni])?,
                        '\\' => {
                            let lit = *p.get(pi + 1)?;
                            (lit == n[ni], pi + 2)
                        }
                        _ => (c == n[ni], pi + 1),
                    };
                    if ok {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Some(true);
        }
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp;
                ni = sn + 1;
            }
            _ => return Some(false),
        }
    }
}

/// Matches `c` against the class starting at `p[start] == '['`; returns whether it matched and
/// the index after the class, or `None` when the class is malformed.
fn match_class(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = class_char(p, &mut i)?;
        let hi = if p.get(i) == Some(&'-') && p.get(i + 1) != Some(&']') {
            i += 1;
            class_char(p, &mut i)?
        } else {
            lo
        };
        if lo <= c && c <= hi {
            matched = true;
        }
    }
    Some((matched != negate, i))
}

fn class_char(p: &[char], i: &mut usize) -> Option<char> {
    let mut ch = *p.get(*i)?;
    if ch == '\\' {
        *i += 1;
        ch = *p.get(*i)?;
    }
    *i += 1;
    Some(ch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn go_glob_matches_single_elements() {
        assert!(go_match("Dockerfile*", "Dockerfile.dev"));
        assert!(go_match("*", "x"));
        assert!(go_match("a?c", "abc"));
        assert!(go_match("[a-c]", "b"));
        assert!(!go_match("[^a-c]", "b"));
        assert!(go_match("\\*", "*"));
        assert!(!go_match("\\*", "x"));
        assert!(!go_match("[", "["));
        assert!(!go_match("a*", "b"));
        assert!(go_match("*.txt", ".txt"));
    }

    #[test]
    fn dedupe_drops_covered_paths_and_root_disables_filtering() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dedupe_paths(v(&["a", "a/b", "ab", "c/d"])),
            Some(v(&["a", "ab", "c/d"]))
        );
        assert_eq!(dedupe_paths(v(&["a", "."])), None);
    }

    #[test]
    fn symlinks_along_follow_paths_add_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/sub/Dockerfile"), "FROM scratch").unwrap();
        symlink("real", root.join("link")).unwrap();
        symlink("/real/sub/Dockerfile", root.join("abs")).unwrap();
        symlink("../../../outside", root.join("escape")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();

        let got = follow_links(
            root,
            &[
                "link/sub/Dockerfile".into(),
                "abs".into(),
                "missing/.dockerignore".into(),
                "escape".into(),
                "loop1".into(),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            got,
            vec![
                "abs",
                "escape",
                "link",
                "loop1",
                "loop2",
                "missing/.dockerignore",
                "outside",
                "real/sub/Dockerfile",
            ]
        );
        assert_eq!(follow_links(root, &["./".into()]).unwrap(), None);
    }

    #[test]
    fn wildcards_in_follow_paths_resolve_matching_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("target.txt"), "x").unwrap();
        symlink("target.txt", root.join("Dockerfile.link")).unwrap();
        std::fs::write(root.join("Dockerfile"), "x").unwrap();
        let got = follow_links(root, &["Dockerfile*".into()])
            .unwrap()
            .unwrap();
        assert_eq!(got, vec!["Dockerfile*", "target.txt"]);
    }
}
