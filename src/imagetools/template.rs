//! The part of Go's `text/template` that `imagetools inspect --format` needs: text, field
//! chains (`{{.Manifest.Digest}}`) and `{{json .Field}}`, evaluated over a JSON value whose
//! top-level keys are buildx's template field names.

use anyhow::{bail, Result};
use serde_json::Value;

use super::gojson;

/// The fields buildx's inspect template offers.
pub const FIELDS: [&str; 5] = ["Name", "Manifest", "Image", "Provenance", "SBOM"];

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Field { json: bool, path: Vec<String> },
}

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses and checks field names, so a typo fails before anything is fetched.
    pub fn parse(src: &str) -> Result<Template> {
        let mut nodes = Vec::new();
        let mut rest = src;
        while let Some(start) = rest.find("{{") {
            let mut text = rest[..start].to_string();
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("--format: unclosed action in {src:?}");
            };
            let mut action = &after[..end];
            if let Some(a) = action.strip_prefix('-') {
                if a.starts_with(char::is_whitespace) {
                    text = text.trim_end().to_string();
                    action = a;
                }
            }
            let mut trim_next = false;
            if let Some(a) = action.strip_suffix('-') {
                if a.ends_with(char::is_whitespace) {
                    trim_next = true;
                    action = a;
                }
            }
            if !text.is_empty() {
                nodes.push(Node::Text(text));
            }
            nodes.push(parse_action(action.trim())?);
            rest = &after[end + 2..];
            if trim_next {
                rest = rest.trim_start();
            }
        }
        if !rest.is_empty() {
            nodes.push(Node::Text(rest.to_string()));
        }
        Ok(Template { nodes })
    }

    /// buildx prints its summary, not the template, when the template starts with
    /// `{{.Manifest` (the documented default `{{.Manifest}}` among them).
    pub fn is_manifest_summary(&self) -> bool {
        matches!(self.nodes.first(), Some(Node::Field { json: false, path }) if path.first().is_some_and(|f| f.starts_with("Manifest")))
    }

    /// Whether evaluating needs the top-level field `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.nodes.iter().any(
            |n| matches!(n, Node::Field { path, .. } if path.first().is_some_and(|f| f == name)),
        )
    }

    pub fn render(&self, root: &Value) -> Result<String> {
        let mut out = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Field { json, path } => {
                    let v = lookup(root, path);
                    if *json {
                        out.push_str(&gojson::marshal_indent(v.unwrap_or(&Value::Null)));
                    } else {
                        match v {
                            None => out.push_str("<no value>"),
                            Some(Value::String(s)) => out.push_str(s),
                            Some(Value::Number(n)) => out.push_str(&n.to_string()),
                            Some(Value::Bool(b)) => out.push_str(&b.to_string()),
                            Some(Value::Null) => out.push_str("<nil>"),
                            Some(_) => bail!(
                                "--format: {{{{.{}}}}} is a structure; print it with {{{{json .{}}}}}",
                                path.join("."),
                                path.join(".")
                            ),
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

fn parse_action(action: &str) -> Result<Node> {
    let (json, chain) = match action.strip_prefix("json") {
        Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim()),
        _ => (false, action),
    };
    let Some(chain) = chain.strip_prefix('.') else {
        bail!("--format: unsupported action {{{{{action}}}}}: use fields such as {{{{.Name}}}} or {{{{json .Manifest}}}}");
    };
    if chain.is_empty() {
        bail!("--format: {{{{.}}}} is not supported; use {{{{json .Manifest}}}} and friends");
    }
    let path: Vec<String> = chain.split('.').map(str::to_string).collect();
    if path
        .iter()
        .any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        bail!("--format: unsupported action {{{{{action}}}}}");
    }
    if !FIELDS.contains(&path[0].as_str()) {
        bail!(
            "--format: can't evaluate field {} (fields are {})",
            path[0],
            FIELDS.join(", ")
        );
    }
    Ok(Node::Field { json, path })
}

/// Follows Go field names into JSON keys (`MediaType` is `mediaType`, `OSVersion` is
/// `os.version`); map keys are taken as they are.
fn lookup<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = root;
    for name in path {
        let Value::Object(map) = cur else {
            return None;
        };
        cur = map
            .get(name)
            .or_else(|| map.get(&json_name(name)))
            .or_else(|| {
                let wanted = name.to_ascii_lowercase();
                map.iter()
                    .find(|(k, _)| k.to_ascii_lowercase().replace(['.', '_'], "") == wanted)
                    .map(|(_, v)| v)
            })?;
    }
    Some(cur)
}

fn json_name(go: &str) -> String {
    match go {
        "URLs" => "urls".into(),
        "OS" => "os".into(),
        "RootFS" => "rootfs".into(),
        _ => {
            let mut c = go.chars();
            match c.next() {
                Some(f) => f.to_ascii_lowercase().to_string() + c.as_str(),
                None => String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_text_fields_and_json() {
        let t = Template::parse("name={{.Name}} {{ json .Manifest }}\n").unwrap();
        let root = json!({"Name": "n", "Manifest": {"mediaType": "m", "digest": "d"}});
        assert_eq!(
            t.render(&root).unwrap(),
            "name=n {\n  \"mediaType\": \"m\",\n  \"digest\": \"d\"\n}\n"
        );
        assert!(t.uses("Manifest"));
        assert!(!t.uses("Image"));
    }

    #[test]
    fn go_field_names_map_to_json_keys() {
        let t = Template::parse(
            "{{.Image.Config.WorkingDir}} {{.Manifest.MediaType}} {{.Image.OSVersion}}",
        )
        .unwrap();
        let root = json!({"Image": {"config": {"WorkingDir": "/w"}, "os.version": "10"}, "Manifest": {"mediaType": "m"}});
        assert_eq!(t.render(&root).unwrap(), "/w m 10");
    }

    #[test]
    fn manifest_templates_are_the_summary() {
        assert!(Template::parse("{{.Manifest}}")
            .unwrap()
            .is_manifest_summary());
        assert!(Template::parse("{{ .Manifest.Digest }}")
            .unwrap()
            .is_manifest_summary());
        assert!(!Template::parse("{{json .Manifest}}")
            .unwrap()
            .is_manifest_summary());
        assert!(!Template::parse("x{{.Manifest}}")
            .unwrap()
            .is_manifest_summary());
    }

    #[test]
    fn unknown_fields_and_actions_are_rejected() {
        let e = Template::parse("{{.Nope}}").unwrap_err().to_string();
        assert!(e.contains("can't evaluate field Nope"), "{e}");
        assert!(Template::parse("{{range .Image}}").is_err());
        assert!(Template::parse("{{.Name").is_err());
    }
}
