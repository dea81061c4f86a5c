//! Reading `.dockerignore` files into exclude patterns, with the rules of moby's `ignorefile`
//! package that BuildKit's Dockerfile frontend uses: a UTF-8 BOM is dropped, `#` starts a
//! comment only in the first column, whitespace around a pattern is trimmed, blank lines are
//! skipped, and each pattern is cleaned like a path with a leading `/` removed (a `!` exception
//! keeps its `!`).
//!
//! Matching the patterns against paths is [`crate::buildkit::fsutil::PatternMatcher`]'s job; the
//! daemon normally reads `.dockerignore` itself, so this reader serves the features where kiln
//! has to apply it on the client.

// Nothing on the client applies .dockerignore yet (the daemon does it for builds); the reader is
// here for the features that will, and is exercised by its tests.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read};

use kiln_bake::gopath::clean_path;

use crate::buildkit::fsutil::PatternMatcher;

/// Reads the patterns of a `.dockerignore` file, in order.
pub fn read_patterns<R: Read>(reader: R) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut reader = BufReader::new(reader);
    let mut raw = Vec::new();
    let mut first = true;
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let mut line: &[u8] = &raw;
        if let Some(rest) = line.strip_suffix(b"\n") {
            line = rest;
        }
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
        if first {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
            first = false;
        }
        let line = String::from_utf8_lossy(line);
        // Comments are recognised before trimming: an indented `#` is a pattern.
        if line.starts_with('#') {
            continue;
        }
        let pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let (invert, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, pattern),
        };
        let mut pattern = if pattern.is_empty() {
            String::new()
        } else {
            let cleaned = clean_path(pattern);
            match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            }
        };
        if invert {
            pattern.insert(0, '!');
        }
        out.push(pattern);
    }
    Ok(out)
}

/// Whether `path` (slash-separated, relative to the context) is excluded by `.dockerignore`
/// patterns, counting exclusion of any parent directory.
pub fn is_excluded(matcher: &PatternMatcher, path: &str) -> bool {
    let path = clean_path(path);
    // The context root itself can never be excluded.
    path != "." && matcher.matches_or_parent_matches(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Vec<String> {
        read_patterns(s.as_bytes()).unwrap()
    }

    #[test]
    fn reader_skips_comments_and_blanks_and_trims() {
        let got = read("# comment\n\n  node_modules  \n\t\n*.log\r\n  # not a comment\n");
        assert_eq!(got, ["node_modules", "*.log", "# not a comment"]);
    }

    #[test]
    fn reader_cleans_paths_and_strips_leading_slash() {
        let got = read("/foo/bar/\n./baz\na//b/../c\n/\n.\n!/keep/./me\n! spaced\n!\n");
        assert_eq!(
            got,
            ["foo/bar", "baz", "a/c", "/", ".", "!keep/me", "!spaced", "!"]
        );
    }

    #[test]
    fn reader_drops_a_bom_on_the_first_line_only() {
        let got = read("\u{feff}first\n\u{feff}second\n");
        assert_eq!(got, ["first", "\u{feff}second"]);
        assert_eq!(read(""), Vec::<String>::new());
        assert_eq!(read("no-newline-at-end"), ["no-newline-at-end"]);
    }

    #[test]
    fn patterns_from_a_dockerignore_exclude_as_docker_does() {
        let patterns = read("**/*.md\n!README.md\nbuild\n!build/keep\n.git\n");
        let m = PatternMatcher::new(&patterns).unwrap();
        assert!(is_excluded(&m, "docs/guide.md"));
        assert!(is_excluded(&m, "CHANGES.md"));
        assert!(!is_excluded(&m, "README.md"));
        assert!(is_excluded(&m, "build/out.o"));
        assert!(!is_excluded(&m, "build/keep/x"));
        assert!(is_excluded(&m, ".git/HEAD"));
        assert!(!is_excluded(&m, "src/main.rs"));
        assert!(!is_excluded(&m, "."));
        assert!(is_excluded(&m, "./build/x"));
    }
}
