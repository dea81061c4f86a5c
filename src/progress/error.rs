//! Rendering a failed solve the way buildx prints it after the progress display: the Dockerfile
//! excerpt around the failing instruction, then `ERROR: failed to build: failed to solve: ...`.
//!
//! BuildKit attaches typed details to the gRPC status (`grpc-status-details-bin`, a
//! `google.rpc.Status`). Its own types are registered with `typeurl` as
//! `github.com/moby/buildkit/errdefs.Source+json` and carry Go-JSON bodies, so both that form and
//! plain protobuf `Any`s of `errdefs.Source`/`Vertex`/`Frontend` are understood. The
//! `------ > [2/2] RUN ...:` log block is not here: it belongs to the progress display
//! ([`super::Printer::finish`]), which is also why buildx omits it with `--progress=quiet`.

use base64::Engine as _;
use bollard_buildkit_proto::google::rpc::Status as RpcStatus;
use bollard_buildkit_proto::pb;
use prost::Message as _;
use serde::Deserialize;

/// `errdefs.Source`: where in a frontend's input (usually the Dockerfile) the error is.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SourceDetail {
    #[prost(message, optional, tag = "1")]
    pub info: Option<pb::SourceInfo>,
    #[prost(message, repeated, tag = "2")]
    pub ranges: Vec<pb::Range>,
}

/// `errdefs.Vertex`: the digest of the vertex that failed.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexDetail {
    #[prost(string, tag = "1")]
    pub digest: String,
}

/// `errdefs.Frontend`: which frontend produced the error.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FrontendDetail {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub source: String,
}

/// What kiln understood of a failed solve's gRPC status.
#[derive(Clone, Debug)]
pub struct SolveError {
    pub code: tonic::Code,
    pub message: String,
    /// In the order BuildKit attached them (innermost first), which is the order buildx prints.
    pub sources: Vec<SourceDetail>,
    pub vertex: Option<String>,
    pub frontend: Option<FrontendDetail>,
}

impl SolveError {
    pub fn from_status(status: &tonic::Status) -> SolveError {
        let mut err = SolveError {
            code: status.code(),
            message: status.message().to_string(),
            sources: Vec::new(),
            vertex: None,
            frontend: None,
        };
        let Ok(rpc) = RpcStatus::decode(status.details()) else {
            return err;
        };
        for any in &rpc.details {
            let name = any.type_url.rsplit('/').next().unwrap_or_default();
            let (name, is_json) = match name.strip_suffix("+json") {
                Some(n) => (n, true),
                None => (name, false),
            };
            match name.rsplit('.').next().unwrap_or_default() {
                "Source" if name.ends_with("errdefs.Source") => {
                    let src = if is_json {
                        serde_json::from_slice::<JsonSource>(&any.value)
                            .ok()
                            .map(JsonSource::into_detail)
                    } else {
                        SourceDetail::decode(any.value.as_slice()).ok()
                    };
                    err.sources.extend(src);
                }
                "Vertex" if name.ends_with("errdefs.Vertex") => {
                    let v = if is_json {
                        serde_json::from_slice::<JsonVertex>(&any.value)
                            .ok()
                            .map(|v| v.digest)
                    } else {
                        VertexDetail::decode(any.value.as_slice())
                            .ok()
                            .map(|v| v.digest)
                    };
                    if let Some(d) = v.filter(|d| !d.is_empty()) {
                        err.vertex = Some(d);
                    }
                }
                "Frontend" if name.ends_with("errdefs.Frontend") => {
                    let f = if is_json {
                        serde_json::from_slice::<JsonFrontend>(&any.value)
                            .ok()
                            .map(|f| FrontendDetail {
                                name: f.name,
                                source: f.source,
                            })
                    } else {
                        FrontendDetail::decode(any.value.as_slice()).ok()
                    };
                    err.frontend = f.or(err.frontend.take());
                }
                _ => {}
            }
        }
        err
    }

    /// The error text buildx shows for the status: the message, prefixed with the code's Go
    /// name unless the code is Unknown (e.g. `Canceled: context canceled`).
    pub fn text(&self) -> String {
        match self.code {
            tonic::Code::Ok | tonic::Code::Unknown => self.message.clone(),
            code => format!("{}: {}", go_code_name(code), self.message),
        }
    }

    /// Source excerpts, then `ERROR: <context>: ...: <text>`. `context` is the chain of wrapping
    /// messages outermost first, e.g. `["failed to build", "failed to solve"]`.
    pub fn render(&self, context: &[&str]) -> String {
        let mut out = String::new();
        for src in &self.sources {
            if let Some(info) = &src.info {
                out.push_str(&render_source_excerpt(info, &src.ranges));
            }
        }
        out.push_str("ERROR: ");
        for c in context {
            out.push_str(c);
            out.push_str(": ");
        }
        out.push_str(&self.text());
        out.push('\n');
        out
    }

    /// The process exit code buildx uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self.code {
            tonic::Code::Internal => 100,
            tonic::Code::ResourceExhausted => 102,
            tonic::Code::Cancelled => 130,
            _ => 1,
        }
    }
}

/// What `docker buildx build` prints for a failed solve, after the progress display and the
/// warnings block. The failed steps' logs in `summary` are not repeated: buildx shows them once,
/// in the display's `------` block (and not at all with `--progress=quiet`).
pub fn render_solve_error(status: &tonic::Status, _summary: &super::Summary) -> String {
    SolveError::from_status(status).render(&["failed to build", "failed to solve"])
}

/// Fallback for errors that are not a solve status: `ERROR: <message>`.
#[cfg_attr(not(test), allow(dead_code))]
pub fn render_error(message: &str) -> String {
    format!("ERROR: {message}\n")
}

fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// The excerpt BuildKit's `errdefs.Source.Print` writes: a `file:line` title, the affected lines
/// marked `>>>` with a little context, between dashed rules. Empty when the ranges do not fall
/// inside the file.
pub fn render_source_excerpt(info: &pb::SourceInfo, ranges: &[pb::Range]) -> String {
    let text = String::from_utf8_lossy(&info.data);
    let lines: Vec<&str> = text.split('\n').collect();
    let line_of = |p: &Option<pb::Position>| p.as_ref().map_or(0, |p| p.line);
    let Some((mut start, mut end)) = ranges.iter().fold(None::<(i32, i32)>, |acc, r| {
        let s = line_of(&r.start);
        let e = line_of(&r.end).max(s);
        Some(match acc {
            None => (s, e),
            Some((a, b)) => (a.min(s), b.max(e)),
        })
    }) else {
        return String::new();
    };
    let n = lines.len() as i32;
    if start > n || start < 1 {
        return String::new();
    }
    end = end.min(n);

    // Up to two lines of context each way (four for a single line), as BuildKit counts them.
    let pad = if end == start { 4 } else { 2 };
    let first_line = start;
    let mut p = 0;
    while p < pad {
        if start > 1 {
            start -= 1;
            p += 1;
        }
        if end != n {
            end += 1;
            p += 1;
        }
        p += 1;
    }

    let contains = |l: i32| {
        ranges.iter().any(|r| {
            let s = line_of(&r.start);
            s <= l && line_of(&r.end).max(s) >= l
        })
    };
    let mut out = format!("{}:{first_line}\n--------------------\n", info.filename);
    for i in start..=end {
        let marker = if contains(i) { ">>>" } else { "   " };
        out.push_str(&format!(" {i:3} | {marker} {}\n", lines[(i - 1) as usize]));
    }
    out.push_str("--------------------\n");
    out
}

#[derive(Deserialize)]
struct JsonSource {
    info: Option<JsonSourceInfo>,
    #[serde(default)]
    ranges: Option<Vec<JsonRange>>,
}

#[derive(Deserialize)]
struct JsonSourceInfo {
    #[serde(default)]
    filename: String,
    /// Go's `[]byte` in JSON: base64.
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    language: String,
}

#[derive(Deserialize)]
struct JsonRange {
    start: Option<JsonPosition>,
    end: Option<JsonPosition>,
}

#[derive(Deserialize)]
struct JsonPosition {
    #[serde(default)]
    line: i32,
    #[serde(default)]
    character: i32,
}

#[derive(Deserialize)]
struct JsonVertex {
    #[serde(default)]
    digest: String,
}

#[derive(Deserialize)]
struct JsonFrontend {
    #[serde(default)]
    name: String,
    #[serde(default)]
    source: String,
}

impl JsonSource {
    fn into_detail(self) -> SourceDetail {
        let pos = |p: Option<JsonPosition>| {
            p.map(|p| pb::Position {
                line: p.line,
                character: p.character,
            })
        };
        SourceDetail {
            info: self.info.map(|i| pb::SourceInfo {
                filename: i.filename,
                data: i
                    .data
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                    .unwrap_or_default(),
                definition: None,
                language: i.language,
            }),
            ranges: self
                .ranges
                .unwrap_or_default()
                .into_iter()
                .map(|r| pb::Range {
                    start: pos(r.start),
                    end: pos(r.end),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_buildkit_proto::google::protobuf::Any;

    const DOCKERFILE: &str = "FROM busybox\nRUN exit 1\n";

    fn range(line: i32) -> pb::Range {
        pb::Range {
            start: Some(pb::Position { line, character: 0 }),
            end: Some(pb::Position { line, character: 0 }),
        }
    }

    fn status_with(details: Vec<Any>) -> tonic::Status {
        let msg = "process \"/bin/sh -c exit 1\" did not complete successfully: exit code: 1";
        let rpc = RpcStatus {
            code: tonic::Code::Unknown as i32,
            message: msg.to_string(),
            details,
        };
        tonic::Status::with_details(tonic::Code::Unknown, msg, rpc.encode_to_vec().into())
    }

    fn json_source_any() -> Any {
        let body = serde_json::json!({
            "info": {
                "filename": "Dockerfile",
                "data": base64::engine::general_purpose::STANDARD.encode(DOCKERFILE),
                "language": "Dockerfile",
                "definition": {"def": ["AAAA"]}
            },
            "ranges": [{"start": {"line": 2}, "end": {"line": 2}}]
        });
        Any {
            type_url: "github.com/moby/buildkit/errdefs.Source+json".into(),
            value: serde_json::to_vec(&body).unwrap(),
        }
    }

    const EXPECTED: &str = "Dockerfile:2\n\
--------------------\n\
\x20  1 |     FROM busybox\n\
\x20  2 | >>> RUN exit 1\n\
\x20  3 |     \n\
--------------------\n\
ERROR: failed to build: failed to solve: process \"/bin/sh -c exit 1\" did not complete successfully: exit code: 1\n";

    #[test]
    fn renders_buildx_excerpt_from_json_source_detail() {
        let vertex = Any {
            type_url: "github.com/moby/buildkit/errdefs.Vertex+json".into(),
            value: br#"{"digest":"sha256:abc"}"#.to_vec(),
        };
        let stack = Any {
            type_url: "github.com/moby/buildkit/stack.Stack+json".into(),
            value: br#"{"frames":[]}"#.to_vec(),
        };
        let status = status_with(vec![stack, vertex, json_source_any()]);
        assert_eq!(render_solve_error(&status, &Default::default()), EXPECTED);
        let err = SolveError::from_status(&status);
        assert_eq!(err.vertex.as_deref(), Some("sha256:abc"));
        assert_eq!(err.exit_code(), 1);
    }

    #[test]
    fn renders_excerpt_from_protobuf_source_detail() {
        let src = SourceDetail {
            info: Some(pb::SourceInfo {
                filename: "Dockerfile".into(),
                data: DOCKERFILE.as_bytes().to_vec(),
                definition: None,
                language: "Dockerfile".into(),
            }),
            ranges: vec![range(2)],
        };
        let any = Any {
            type_url: "type.googleapis.com/errdefs.Source".into(),
            value: src.encode_to_vec(),
        };
        assert_eq!(
            render_solve_error(&status_with(vec![any]), &Default::default()),
            EXPECTED
        );
    }

    #[test]
    fn plain_status_without_details() {
        let status = tonic::Status::cancelled("context canceled");
        let err = SolveError::from_status(&status);
        assert_eq!(
            err.render(&["failed to solve"]),
            "ERROR: failed to solve: Canceled: context canceled\n"
        );
        assert_eq!(err.exit_code(), 130);
        assert_eq!(render_error("boom"), "ERROR: boom\n");
    }

    #[test]
    fn excerpt_context_around_multi_line_range() {
        let info = pb::SourceInfo {
            filename: "Dockerfile".into(),
            data: b"FROM a\nRUN b\nRUN c \\\n  d\nRUN e\nRUN f\nRUN g".to_vec(),
            definition: None,
            language: String::new(),
        };
        let r = pb::Range {
            start: Some(pb::Position {
                line: 3,
                character: 0,
            }),
            end: Some(pb::Position {
                line: 4,
                character: 0,
            }),
        };
        assert_eq!(
            render_source_excerpt(&info, &[r]),
            "Dockerfile:3\n--------------------\n   2 |     RUN b\n   3 | >>> RUN c \\\n   4 | >>>   d\n   5 |     RUN e\n--------------------\n"
        );
        assert_eq!(render_source_excerpt(&info, &[range(99)]), "");
        assert_eq!(render_source_excerpt(&info, &[]), "");
    }
}
