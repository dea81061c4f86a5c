//! Builder names: what buildx accepts, and the `adjective_scientist` names it makes up.

use std::sync::LazyLock;

use rand::Rng;
use regex::Regex;

/// Builder and node names: a letter, then letters, digits and `._-` (buildx's rule).
static NAME_PATTERN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z][a-zA-Z0-9._-]*$").expect("valid regex"));

/// The name was not one buildx would accept. Worded as buildx words it.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid name {0}, name needs to start with a letter and may not contain symbols, except ._-"
)]
pub struct InvalidName(pub String);

/// Checks a builder or node name and returns it lower-cased, as buildx stores it.
pub fn validate_name(name: &str) -> Result<String, InvalidName> {
    if !NAME_PATTERN.is_match(name) {
        return Err(InvalidName(name.to_string()));
    }
    Ok(name.to_lowercase())
}

const ADJECTIVES: &[&str] = &[
    "admiring",
    "agitated",
    "amazing",
    "brave",
    "busy",
    "charming",
    "clever",
    "cool",
    "dazzling",
    "determined",
    "eager",
    "ecstatic",
    "elegant",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "gallant",
    "gifted",
    "gracious",
    "happy",
    "hopeful",
    "infallible",
    "inspiring",
    "jolly",
    "keen",
    "kind",
    "laughing",
    "lucid",
    "magical",
    "modest",
    "nice",
    "nifty",
    "nostalgic",
    "optimistic",
    "peaceful",
    "pensive",
    "practical",
    "quirky",
    "relaxed",
    "serene",
    "sharp",
    "sleepy",
    "stoic",
    "sweet",
    "tender",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "wonderful",
    "youthful",
    "zealous",
    "zen",
];

const SCIENTISTS: &[&str] = &[
    "agnesi",
    "archimedes",
    "babbage",
    "bardeen",
    "bell",
    "bohr",
    "boole",
    "carson",
    "cerf",
    "curie",
    "darwin",
    "dijkstra",
    "einstein",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "hamilton",
    "hawking",
    "heisenberg",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lovelace",
    "maxwell",
    "meitner",
    "mendel",
    "newton",
    "noether",
    "pascal",
    "pasteur",
    "planck",
    "ritchie",
    "shannon",
    "sinoussi",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volta",
    "wilson",
    "wu",
];

/// A random `adjective_scientist` name; from the second try on a digit is appended, so a
/// crowded store still finds a free name quickly (buildx's scheme).
pub fn random_name(attempt: usize) -> String {
    let mut rng = rand::rng();
    let mut name = format!(
        "{}_{}",
        ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
        SCIENTISTS[rng.random_range(0..SCIENTISTS.len())]
    );
    if attempt > 0 {
        name.push_str(&rng.random_range(0..10).to_string());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_buildx_names_and_lowercases_them() {
        assert_eq!(validate_name("MyBuilder").unwrap(), "mybuilder");
        for ok in ["a", "e28", "x.y_z-1", "silly_einstein"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_buildx_rejects() {
        for bad in ["", "1x", "-x", "_x", ".x", "a/b", "a b", "a:b", "ü"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_name("1x").unwrap_err().to_string(),
            "invalid name 1x, name needs to start with a letter and may not contain symbols, except ._-"
        );
    }

    #[test]
    fn random_names_are_valid() {
        for attempt in 0..6 {
            let n = random_name(attempt);
            assert_eq!(validate_name(&n).unwrap(), n);
            assert_eq!(n.chars().last().unwrap().is_ascii_digit(), attempt > 0);
        }
    }
}
