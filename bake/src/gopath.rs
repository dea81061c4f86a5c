//! Go's `path` package for slash-separated paths, as buildx and BuildKit apply it: lexical
//! only, never the filesystem. Shared with the kiln crate (build options, fsutil, lint output),
//! so both sides clean paths exactly as Go does.

/// Lexically cleans a slash-separated path the way Go's `path.Clean` does: no empty or `.`
/// elements, `..` folded into its parent where there is one, `.` for an empty result.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                // `..` at the root stays at the root.
                _ if rooted => {}
                _ => parts.push(".."),
            },
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_like_go() {
        assert_eq!(clean_path("./x/../y/"), "y");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("../a/./b"), "../a/b");
        assert_eq!(clean_path("/../a"), "/a");
    }

    #[test]
    fn clean_path_follows_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./a/", "a"),
            ("a//b/./c/..", "a/b"),
            ("/../a", "/a"),
            ("../../a", "../../a"),
            ("a/../..", ".."),
            ("/", "/"),
            ("!./foo", "!./foo"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }
}
