//! Path patterns with the semantics of `github.com/moby/patternmatcher`, which BuildKit uses for
//! include/exclude filters on local directories and Docker uses for `.dockerignore`.
//!
//! A pattern list is evaluated in order: a plain pattern marks a path as matched, a `!` pattern
//! un-marks it, and the last pattern that applies wins. A pattern also applies to everything
//! below a directory it matches. This module only matches strings; walking a tree with the
//! matcher (and the shortcuts that make that fast) lives in `walk.rs`.

use kiln_bake::gopath::clean_path;
use regex::Regex;

/// A pattern list that could not be turned into a matcher.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("illegal exclusion pattern: \"!\"")]
    LoneExclamation,
    #[error("syntax error in pattern {pattern:?}: {source}")]
    Syntax {
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    /// No wildcard: the path must equal the pattern.
    Exact,
    /// `prefix**`: anything starting with the text before the `**`.
    Prefix,
    /// `**suffix` with a literal suffix.
    Suffix,
    Regex(Regex),
}

/// One cleaned pattern from a list.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    /// Whether this is a `!` exception that re-includes what earlier patterns matched.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    /// The pattern with one trailing `/**` or `/*` removed: the directory every match lies in,
    /// which the walker uses to decide whether a directory can hold a match at all.
    pub(crate) fn without_trailing_glob(&self) -> &str {
        let s = self.cleaned.as_str();
        let s = s.strip_suffix("/**").unwrap_or(s);
        s.strip_suffix("/*").unwrap_or(s)
    }

    fn compile(cleaned: String, exclusion: bool) -> Result<Self, PatternError> {
        let chars: Vec<char> = cleaned.chars().collect();
        let mut re = String::from("^");
        let mut kind_is = KindTag::Exact;
        let mut i = 0;
        let mut first = true;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    // `**/` means the same as `**`: any number of leading directories, even none.
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        // A trailing `**` accepts everything below, as in .gitignore.
                        if kind_is == KindTag::Exact {
                            kind_is = KindTag::Prefix;
                        } else {
                            re.push_str(".*");
                            kind_is = KindTag::Regex;
                        }
                    } else {
                        re.push_str("(.*/)?");
                        kind_is = KindTag::Regex;
                    }
                    if first {
                        kind_is = KindTag::Suffix;
                    }
                }
                '*' => {
                    re.push_str("[^/]*");
                    kind_is = KindTag::Regex;
                }
                '?' => {
                    re.push_str("[^/]");
                    kind_is = KindTag::Regex;
                }
                '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                    re.push('\\');
                    re.push(c);
                }
                '\\' => {
                    if let Some(&next) = chars.get(i) {
                        i += 1;
                        re.push('\\');
                        re.push(next);
                        kind_is = KindTag::Regex;
                    } else {
                        re.push('\\');
                    }
                }
                '[' | ']' => {
                    re.push(c);
                    kind_is = KindTag::Regex;
                }
                _ => re.push(c),
            }
            first = false;
        }
        let kind = match kind_is {
            KindTag::Exact => Kind::Exact,
            KindTag::Prefix => Kind::Prefix,
            KindTag::Suffix => Kind::Suffix,
            KindTag::Regex => {
                re.push('$');
                Kind::Regex(Regex::new(&re).map_err(|e| PatternError::Syntax {
                    pattern: cleaned.clone(),
                    source: Box::new(e),
                })?)
            }
        };
        Ok(Pattern {
            cleaned,
            exclusion,
            kind,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            Kind::Suffix => {
                let suffix = &self.cleaned[2..];
                // `**/foo` also matches a top-level `foo`, which has no slash before it.
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }

    /// Whether the pattern matches `path` or one of its ancestor directories.
    fn matches_self_or_ancestor(&self, path: &str) -> bool {
        self.matches(path) || ancestors(path).any(|dir| self.matches(dir))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KindTag {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// The strict ancestors of a slash-separated relative path, outermost first: `a/b/c` gives `a`,
/// `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Per-pattern results for a directory, handed to its children so that a pattern which matched
/// the directory is not evaluated again for everything below it.
#[derive(Debug, Clone, Default)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered list of patterns, as built from `.dockerignore` or from BuildKit's filter
/// metadata.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Parses patterns: surrounding whitespace is dropped, blank ones are skipped, each is
    /// cleaned like a path (`./a/` becomes `a`), and a leading `!` makes an exception.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let mut out = PatternMatcher::default();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean_path(p);
            let (exclusion, p) = match p.strip_prefix('!') {
                Some("") => return Err(PatternError::LoneExclamation),
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            out.exclusions |= exclusion;
            out.patterns.push(Pattern::compile(p, exclusion)?);
        }
        Ok(out)
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Whether `path` (slash-separated, relative) is matched by the list, counting a match on any
    /// ancestor directory as a match on the path.
    pub fn matches_or_parent_matches(&self, path: &str) -> bool {
        let mut matched = false;
        for pat in &self.patterns {
            // An include pattern cannot change an already-matched path, and an exception
            // cannot change an unmatched one.
            if pat.exclusion != matched {
                continue;
            }
            if pat.matches_self_or_ancestor(path) {
                matched = !pat.exclusion;
            }
        }
        matched
    }

    /// Like [`Self::matches_or_parent_matches`], reusing the results computed for the parent
    /// directory during a walk (pass `MatchInfo::default()` when there is no parent).
    pub fn matches_using_parent_results(
        &self,
        path: &str,
        parent: &MatchInfo,
    ) -> (bool, MatchInfo) {
        let known = parent.parent_matched.len() == self.patterns.len();
        let mut matched = false;
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        for (i, pat) in self.patterns.iter().enumerate() {
            let mut m = known && parent.parent_matched[i];
            if !m {
                if pat.exclusion != matched {
                    continue;
                }
                m = if known {
                    pat.matches(path)
                } else {
                    pat.matches_self_or_ancestor(path)
                };
            }
            info.parent_matched[i] = m;
            if m {
                matched = !pat.exclusion;
            }
        }
        (matched, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(patterns: &[&str], path: &str) -> bool {
        PatternMatcher::new(patterns)
            .unwrap()
            .matches_or_parent_matches(path)
    }

    #[test]
    fn plain_patterns_match_paths_and_everything_below() {
        assert!(matches(&["foo"], "foo"));
        assert!(matches(&["foo"], "foo/bar/baz"));
        assert!(!matches(&["foo"], "foobar"));
        assert!(!matches(&["foo"], "bar/foo"));
        assert!(matches(&["./foo/"], "foo/x"));
        assert!(matches(&["  foo  "], "foo"));
        // A leading slash survives cleaning and so never matches a relative path; the
        // .dockerignore reader strips it before patterns get here.
        assert!(!matches(&["/foo"], "foo"));
    }

    #[test]
    fn single_star_and_question_mark_stay_within_one_element() {
        assert!(matches(&["*.go"], "main.go"));
        assert!(!matches(&["*.go"], "cmd/main.go"));
        assert!(matches(&["*/*.go"], "cmd/main.go"));
        assert!(matches(&["a?c"], "abc"));
        assert!(!matches(&["a?c"], "a/c"));
        assert!(matches(&["[a-c]x"], "bx"));
        assert!(!matches(&["[a-c]x"], "dx"));
        assert!(matches(&["a.b"], "a.b"));
        assert!(!matches(&["a*.b"], "aXb"));
    }

    #[test]
    fn double_star_crosses_directories() {
        assert!(matches(&["**/*.go"], "main.go"));
        assert!(matches(&["**/*.go"], "a/b/main.go"));
        assert!(matches(&["**/foo"], "foo"));
        assert!(matches(&["**/foo"], "x/y/foo"));
        assert!(matches(&["a/**/b"], "a/b"));
        assert!(matches(&["a/**/b"], "a/x/y/b"));
        assert!(!matches(&["a/**/b"], "b"));
        assert!(matches(&["foo/**"], "foo/x"));
        assert!(matches(&["**"], "anything/at/all"));
        assert!(matches(&["*/**"], "a/b"));
    }

    #[test]
    fn exceptions_reinclude_after_a_match() {
        let p = ["*.md", "!README.md"];
        assert!(matches(&p, "CHANGES.md"));
        assert!(!matches(&p, "README.md"));
        // Order matters: a later plain pattern wins over an earlier exception.
        assert!(matches(&["!README.md", "*.md"], "README.md"));
        // An exception re-includes a child of an excluded directory.
        let p = ["docs", "!docs/keep.txt"];
        assert!(matches(&p, "docs/other.txt"));
        assert!(!matches(&p, "docs/keep.txt"));
        assert!(matches(&p, "docs"));
        // ...and everything below a re-included directory.
        let p = ["vendor", "!vendor/keep"];
        assert!(!matches(&p, "vendor/keep/a/b"));
    }

    #[test]
    fn nested_excludes_with_exceptions() {
        let p = ["a", "!a/b", "a/b/c"];
        assert!(matches(&p, "a/x"));
        assert!(!matches(&p, "a/b/y"));
        assert!(matches(&p, "a/b/c"));
        assert!(matches(&p, "a/b/c/d"));
    }

    #[test]
    fn lone_exclamation_is_an_error() {
        assert!(matches!(
            PatternMatcher::new(&["!"]),
            Err(PatternError::LoneExclamation)
        ));
        assert!(PatternMatcher::new(&["[a-"]).is_err());
    }

    #[test]
    fn parent_results_agree_with_full_evaluation() {
        let patterns = ["a", "!a/b", "a/b/c*", "**/z"];
        let m = PatternMatcher::new(&patterns).unwrap();
        let (a, ia) = m.matches_using_parent_results("a", &MatchInfo::default());
        let (ab, iab) = m.matches_using_parent_results("a/b", &ia);
        let (abc, _) = m.matches_using_parent_results("a/b/cd", &iab);
        let (abz, _) = m.matches_using_parent_results("a/b/z", &iab);
        let (abx, _) = m.matches_using_parent_results("a/b/x", &iab);
        assert_eq!((a, ab, abc, abz, abx), (true, false, true, true, false),);
        for p in ["a", "a/b", "a/b/cd", "a/b/z", "a/b/x"] {
            let fresh = m.matches_using_parent_results(p, &MatchInfo::default()).0;
            assert_eq!(fresh, m.matches_or_parent_matches(p), "{p}");
        }
    }
}
