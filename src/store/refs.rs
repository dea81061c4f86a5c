//! What kiln remembers on this machine about each build it started, by builder, node and the
//! build's ref (`refs/<builder>/<node>/<ref>`, buildx's "local state"): the target and the
//! paths of the context and Dockerfile, which BuildKit's record does not hold, so `history`
//! can name a build after them as buildx does.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

const REFS: &str = "refs";

/// One build's paths as given: absolute for local ones, a URL or `-` otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BuildState {
    pub target: String,
    pub local_path: String,
    pub dockerfile_path: String,
}

/// The file of one ref; every part must be a plain name (they come from records a daemon sent).
fn ref_path(builder: &str, node: &str, r#ref: &str) -> Result<PathBuf> {
    for part in [builder, node, r#ref] {
        if part.is_empty() || part.starts_with('.') || part.contains(['/', '\\']) {
            bail!("invalid name {part:?} for local build state");
        }
    }
    Ok(super::config_dir()?
        .join(REFS)
        .join(builder)
        .join(node)
        .join(r#ref))
}

pub fn save_build_state(builder: &str, node: &str, r#ref: &str, state: &BuildState) -> Result<()> {
    let path = ref_path(builder, node, r#ref)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    super::write_atomic(&path, &serde_json::to_vec(state)?)
}

/// The state saved for a build, if kiln started it on this machine.
pub fn read_build_state(builder: &str, node: &str, r#ref: &str) -> Option<BuildState> {
    let data = std::fs::read(ref_path(builder, node, r#ref).ok()?).ok()?;
    serde_json::from_slice(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_leave_the_directory_are_refused() {
        for (b, n, r) in [
            ("..", "n", "r"),
            ("b", "a/b", "r"),
            ("b", "n", ""),
            ("b", "n", ".x"),
        ] {
            assert!(ref_path(b, n, r).is_err(), "{b} {n} {r}");
        }
    }

    #[test]
    fn state_is_written_as_buildx_writes_it() {
        let s = BuildState {
            target: "t".into(),
            local_path: "/src".into(),
            dockerfile_path: "/src/Dockerfile".into(),
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"Target":"t","LocalPath":"/src","DockerfilePath":"/src/Dockerfile"}"#
        );
    }
}
