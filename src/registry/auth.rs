//! Registry authentication challenges: parsing `WWW-Authenticate` and what a token endpoint
//! answers. The HTTP side (asking for the token, caching it) is in `client`.

use std::collections::BTreeMap;

/// What a registry asked for in a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        /// Scopes the registry named; kiln asks for its own as well.
        scope: Option<String>,
    },
}

/// Picks the challenge kiln can answer from a `WWW-Authenticate` value (Bearer over Basic).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let challenges = parse_challenges(header);
    if let Some(params) = challenges
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case("bearer"))
        .map(|(_, p)| p)
    {
        return Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        });
    }
    challenges
        .iter()
        .any(|(s, _)| s.eq_ignore_ascii_case("basic"))
        .then_some(Challenge::Basic)
}

/// `Scheme k=v, k="v", Scheme2 k=v` into schemes with their (lower-cased) parameters.
fn parse_challenges(header: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == '=' || c == ',' {
                break;
            }
            word.push(c);
            chars.next();
        }
        if word.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| *c == ' ') {
                chars.next();
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c.is_whitespace() {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
            if let Some((_, params)) = out.last_mut() {
                params.insert(word.to_ascii_lowercase(), value);
            }
        } else {
            out.push((word, BTreeMap::new()));
        }
    }
    out
}

/// A token endpoint's answer; registries use either field name.
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        [self.token, self.access_token]
            .into_iter()
            .find(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_parsed() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
    }

    #[test]
    fn basic_and_multiple_challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert!(matches!(
            parse_challenge(r#"Basic realm="x", Bearer realm="http://127.0.0.1/t",service=reg"#),
            Some(Challenge::Bearer { service: Some(s), .. }) if s == "reg"
        ));
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(""), None);
    }

    #[test]
    fn tokens_come_from_either_field() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("a"));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"t","access_token":"a"}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("t"));
    }
}
