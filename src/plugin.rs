//! Running as a Docker CLI plugin (`docker kiln ...` or, installed as `docker-buildx`,
//! `docker buildx ...`).
//!
//! The Docker CLI runs plugins as `docker-<name> <name> <args...>` after asking them for
//! metadata with `docker-cli-plugin-metadata`; kiln drops the repeated name so the rest parses
//! exactly as when kiln is run on its own.

use std::ffi::OsString;
use std::path::Path;

const METADATA_COMMAND: &str = "docker-cli-plugin-metadata";

/// The plugin name kiln was installed under, if it runs as `docker-<name>`.
fn plugin_name(argv0: &OsString) -> Option<String> {
    let file = Path::new(argv0).file_name()?.to_str()?;
    let file = file.strip_suffix(".exe").unwrap_or(file);
    file.strip_prefix("docker-").map(String::from)
}

/// Strips the plugin-name argument the Docker CLI inserts.
pub fn normalize_args(mut args: Vec<OsString>) -> Vec<OsString> {
    if args.len() >= 2 {
        if let Some(name) = args.first().and_then(plugin_name) {
            if args[1].to_str() == Some(name.as_str()) {
                args.remove(1);
            }
        }
    }
    args
}

pub fn is_metadata_request(args: &[OsString]) -> bool {
    args.get(1).and_then(|a| a.to_str()) == Some(METADATA_COMMAND)
}

/// What the Docker CLI reads to list and run the plugin.
pub fn metadata_json() -> String {
    serde_json::json!({
        "SchemaVersion": "0.1.0",
        "Vendor": "kiln",
        "Version": env!("CARGO_PKG_VERSION"),
        "ShortDescription": "Docker Buildx",
    })
    .to_string()
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn strips_the_plugin_name() {
        assert_eq!(
            normalize_args(os(&["/x/docker-buildx", "buildx", "build", "."])),
            os(&["/x/docker-buildx", "build", "."])
        );
        assert_eq!(
            normalize_args(os(&["docker-kiln", "kiln", "ls"])),
            os(&["docker-kiln", "ls"])
        );
        assert_eq!(
            normalize_args(os(&["kiln", "build", "."])),
            os(&["kiln", "build", "."])
        );
    }

    #[test]
    fn answers_metadata() {
        assert!(is_metadata_request(&os(&["docker-kiln", METADATA_COMMAND])));
        let v: serde_json::Value = serde_json::from_str(&metadata_json()).unwrap();
        assert_eq!(v["SchemaVersion"], "0.1.0");
    }
}
