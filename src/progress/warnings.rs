//! Build warnings (Dockerfile lint results and the like) collected from the status stream, and
//! the block buildx prints once the progress display has finished:
//!
//! ```text
//!
//!  1 warning found (use docker --debug to expand):
//!  - JSONArgsRecommended: JSON arguments recommended for CMD ... (line 3)
//! ```
//!
//! With debug on, each warning is expanded with its detail lines, its URL and the source excerpt.

use bollard_buildkit_proto::moby::buildkit::v1::VertexWarning;

use super::error::render_source_excerpt;

const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// The same warning reported by several vertexes (or platforms) counts once, as in buildx,
/// which compares everything but the vertex and the LLB definition. First-seen order is kept.
pub(crate) fn dedup_warnings(all: &[VertexWarning]) -> Vec<VertexWarning> {
    let key = |w: &VertexWarning| {
        let mut k = w.clone();
        k.vertex.clear();
        if let Some(info) = k.info.as_mut() {
            info.definition = None;
        }
        k
    };
    let mut keys: Vec<VertexWarning> = Vec::new();
    let mut out = Vec::new();
    for w in all {
        let k = key(w);
        if !keys.contains(&k) {
            keys.push(k);
            out.push(w.clone());
        }
    }
    out
}

/// buildx's end-of-build warnings block; empty when there are no warnings. The heading is
/// yellow, as buildx prints it whatever the output is.
pub fn render_warnings(warnings: &[VertexWarning], debug: bool) -> String {
    if warnings.is_empty() {
        return String::new();
    }
    let mut heading = if warnings.len() == 1 {
        "1 warning found".to_string()
    } else {
        format!("{} warnings found", warnings.len())
    };
    if !debug {
        heading.push_str(" (use docker --debug to expand)");
    }
    heading.push_str(":\n");
    let mut out = format!("\n {YELLOW}{heading}{RESET}");
    for w in warnings {
        out.push_str(&format!(" - {}\n", String::from_utf8_lossy(&w.short)));
        if !debug {
            continue;
        }
        for d in &w.detail {
            out.push_str(&String::from_utf8_lossy(d));
            out.push('\n');
        }
        if !w.url.is_empty() {
            out.push_str(&format!("More info: {}\n", w.url));
        }
        if let Some(info) = &w.info {
            if !w.ranges.is_empty() {
                out.push_str(&render_source_excerpt(info, &w.ranges));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::pb;

    fn warning(vertex: &str) -> VertexWarning {
        VertexWarning {
            vertex: vertex.into(),
            level: 1,
            short: b"JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)".to_vec(),
            detail: vec![b"JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals".to_vec()],
            url: "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/".into(),
            info: Some(pb::SourceInfo {
                filename: "Dockerfile".into(),
                data: b"FROM busybox\nRUN true\nCMD echo hi\n".to_vec(),
                definition: Some(pb::Definition {
                    def: vec![vertex.as_bytes().to_vec()],
                    ..Default::default()
                }),
                language: "Dockerfile".into(),
            }),
            ranges: vec![pb::Range {
                start: Some(pb::Position {
                    line: 3,
                    character: 0,
                }),
                end: Some(pb::Position {
                    line: 3,
                    character: 0,
                }),
            }],
        }
    }

    #[test]
    fn warnings_block_matches_buildx() {
        let ws = dedup_warnings(&[warning("sha256:a"), warning("sha256:b")]);
        assert_eq!(ws.len(), 1);
        assert_eq!(
            render_warnings(&ws, false),
            "\n \x1b[33m1 warning found (use docker --debug to expand):\n\x1b[0m - JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals (line 3)\n"
        );
        let debug = render_warnings(&ws, true);
        assert!(debug.starts_with("\n \x1b[33m1 warning found:\n\x1b[0m - JSONArgs"));
        assert!(debug.contains(
            "More info: https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\nDockerfile:3\n--------------------\n   1 |     FROM busybox\n   2 |     RUN true\n   3 | >>> CMD echo hi\n   4 |     \n--------------------\n\n"
        ));
        assert_eq!(render_warnings(&[], false), "");
        let mut two = ws.clone();
        two.push(VertexWarning {
            short: b"Other".to_vec(),
            ..Default::default()
        });
        assert!(render_warnings(&two, false).contains("2 warnings found"));
    }
}
