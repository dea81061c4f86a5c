//! `--progress=rawjson`: each status message as one line of JSON, in the shape Go's
//! `encoding/json` gives BuildKit's `client.SolveStatus`.
//!
//! Field names, their order, `omitempty`, base64 for `[]byte`, RFC 3339 UTC timestamps with
//! trimmed nanoseconds, sorted map keys and Go's HTML-safe escaping (`<` as `\u003c`) are all
//! reproduced, so tools written against buildx's output can read kiln's. The same encoder
//! serves the `buildx.build.warnings` metadata entry ([`warning_json`]).

use base64::Engine as _;
use bollard_buildkit_proto::google::protobuf::Timestamp;
use bollard_buildkit_proto::moby::buildkit::v1::{
    StatusResponse, Vertex, VertexLog, VertexStatus, VertexWarning,
};
use bollard_buildkit_proto::pb;

use super::format::{rfc3339_nano, timestamp_nanos};

/// Builds one JSON object with keys in insertion order, whatever serde_json's map features.
struct Obj {
    out: String,
    empty: bool,
}

impl Obj {
    fn new() -> Self {
        Obj {
            out: String::from("{"),
            empty: true,
        }
    }

    fn raw(&mut self, key: &str, value: &str) -> &mut Self {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        self.out.push_str(&go_string(key));
        self.out.push(':');
        self.out.push_str(value);
        self
    }

    fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.raw(key, &go_string(value))
    }

    /// `omitempty` string.
    fn str_opt(&mut self, key: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.str(key, value);
        }
        self
    }

    fn int_opt(&mut self, key: &str, value: i64) -> &mut Self {
        if value != 0 {
            self.raw(key, &value.to_string());
        }
        self
    }

    fn bool_opt(&mut self, key: &str, value: bool) -> &mut Self {
        if value {
            self.raw(key, "true");
        }
        self
    }

    fn bytes_opt(&mut self, key: &str, value: &[u8]) -> &mut Self {
        if !value.is_empty() {
            self.raw(key, &go_bytes(value));
        }
        self
    }

    fn array_opt<T>(&mut self, key: &str, items: &[T], f: impl Fn(&T) -> String) -> &mut Self {
        if !items.is_empty() {
            let parts: Vec<String> = items.iter().map(f).collect();
            self.raw(key, &format!("[{}]", parts.join(",")));
        }
        self
    }

    fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.out);
        out.push('}');
        out
    }
}

/// A JSON string escaped as Go does: serde_json's escaping plus `<`, `>`, `&`, U+2028, U+2029.
fn go_string(s: &str) -> String {
    let json = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A Go `[]byte`: standard base64 in a string, `null` when nil (which is what an empty protobuf
/// bytes field decodes to in Go).
fn go_bytes(b: &[u8]) -> String {
    if b.is_empty() {
        return "null".to_string();
    }
    format!(
        "\"{}\"",
        base64::engine::general_purpose::STANDARD.encode(b)
    )
}

fn time(ts: &Timestamp) -> String {
    format!("\"{}\"", rfc3339_nano(timestamp_nanos(ts)))
}

fn time_or_epoch(ts: &Option<Timestamp>) -> String {
    ts.as_ref()
        .map(time)
        .unwrap_or_else(|| format!("\"{}\"", rfc3339_nano(0)))
}

fn vertex(v: &Vertex) -> String {
    let mut o = Obj::new();
    o.str_opt("digest", &v.digest)
        .array_opt("inputs", &v.inputs, |i| go_string(i))
        .str_opt("name", &v.name);
    if let Some(t) = &v.started {
        o.raw("started", &time(t));
    }
    if let Some(t) = &v.completed {
        o.raw("completed", &time(t));
    }
    o.bool_opt("cached", v.cached).str_opt("error", &v.error);
    if let Some(pg) = &v.progress_group {
        o.raw("progressGroup", &progress_group(pg));
    }
    o.finish()
}

fn progress_group(pg: &pb::ProgressGroup) -> String {
    Obj::new()
        .str_opt("id", &pg.id)
        .str_opt("name", &pg.name)
        .bool_opt("weak", pg.weak)
        .finish()
}

fn status(s: &VertexStatus) -> String {
    let mut o = Obj::new();
    o.str("id", &s.id)
        .str_opt("vertex", &s.vertex)
        .str_opt("name", &s.name)
        .int_opt("total", s.total)
        .raw("current", &s.current.to_string())
        .raw("timestamp", &time_or_epoch(&s.timestamp));
    if let Some(t) = &s.started {
        o.raw("started", &time(t));
    }
    if let Some(t) = &s.completed {
        o.raw("completed", &time(t));
    }
    o.finish()
}

fn log(l: &VertexLog) -> String {
    Obj::new()
        .str_opt("vertex", &l.vertex)
        .int_opt("stream", l.stream)
        .raw("data", &go_bytes(&l.msg))
        .raw("timestamp", &time_or_epoch(&l.timestamp))
        .finish()
}

/// One warning as `client.VertexWarning` marshals (also the shape of `buildx.build.warnings`).
pub fn warning_json(w: &VertexWarning) -> String {
    let mut o = Obj::new();
    o.str_opt("vertex", &w.vertex)
        .int_opt("level", w.level)
        .bytes_opt("short", &w.short)
        .array_opt("detail", &w.detail, |d| go_bytes(d))
        .str_opt("url", &w.url);
    if let Some(info) = &w.info {
        o.raw("sourceInfo", &source_info(info));
    }
    o.array_opt("range", &w.ranges, range);
    o.finish()
}

fn source_info(si: &pb::SourceInfo) -> String {
    let mut o = Obj::new();
    o.str_opt("filename", &si.filename)
        .bytes_opt("data", &si.data);
    if let Some(def) = &si.definition {
        o.raw("definition", &definition(def));
    }
    o.str_opt("language", &si.language);
    o.finish()
}

fn range(r: &pb::Range) -> String {
    let mut o = Obj::new();
    if let Some(p) = &r.start {
        o.raw("start", &position(p));
    }
    if let Some(p) = &r.end {
        o.raw("end", &position(p));
    }
    o.finish()
}

fn position(p: &pb::Position) -> String {
    Obj::new()
        .int_opt("line", i64::from(p.line))
        .int_opt("character", i64::from(p.character))
        .finish()
}

/// Go's `encoding/json` writes map keys sorted.
fn sorted_map<V>(map: &std::collections::HashMap<String, V>, f: impl Fn(&V) -> String) -> String {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    let mut o = Obj::new();
    for k in keys {
        o.raw(k, &f(&map[k]));
    }
    o.finish()
}

fn definition(d: &pb::Definition) -> String {
    let mut o = Obj::new();
    o.array_opt("def", &d.def, |b| go_bytes(b));
    if !d.metadata.is_empty() {
        o.raw("metadata", &sorted_map(&d.metadata, op_metadata));
    }
    if let Some(src) = &d.source {
        o.raw("Source", &source(src));
    }
    o.finish()
}

fn op_metadata(m: &pb::OpMetadata) -> String {
    let mut o = Obj::new();
    o.bool_opt("ignore_cache", m.ignore_cache);
    if !m.description.is_empty() {
        o.raw("description", &sorted_map(&m.description, |v| go_string(v)));
    }
    if let Some(ec) = &m.export_cache {
        o.raw(
            "export_cache",
            &Obj::new().bool_opt("Value", ec.value).finish(),
        );
    }
    if !m.caps.is_empty() {
        o.raw("caps", &sorted_map(&m.caps, |v| v.to_string()));
    }
    if let Some(pg) = &m.progress_group {
        o.raw("progress_group", &progress_group(pg));
    }
    o.finish()
}

fn source(s: &pb::Source) -> String {
    let mut o = Obj::new();
    if !s.locations.is_empty() {
        o.raw(
            "locations",
            &sorted_map(&s.locations, |locs| {
                Obj::new()
                    .array_opt("locations", &locs.locations, |l| {
                        Obj::new()
                            .int_opt("sourceIndex", i64::from(l.source_index))
                            .array_opt("ranges", &l.ranges, range)
                            .finish()
                    })
                    .finish()
            }),
        );
    }
    o.array_opt("infos", &s.infos, source_info);
    o.finish()
}

/// One status message as a line of `--progress=rawjson` output (without the newline).
pub fn status_json(s: &StatusResponse) -> String {
    Obj::new()
        .array_opt("vertexes", &s.vertexes, vertex)
        .array_opt("statuses", &s.statuses, status)
        .array_opt("logs", &s.logs, log)
        .array_opt("warnings", &s.warnings, warning_json)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    #[test]
    fn status_json_matches_go_shape() {
        let s = StatusResponse {
            vertexes: vec![Vertex {
                digest: "sha256:aaa".into(),
                inputs: vec!["sha256:bbb".into()],
                name: "[1/2] FROM busybox".into(),
                started: ts(1_714_566_896, 789_000_000),
                ..Default::default()
            }],
            statuses: vec![VertexStatus {
                id: "transferring context:".into(),
                vertex: "sha256:aaa".into(),
                current: 0,
                timestamp: ts(1_714_566_897, 0),
                ..Default::default()
            }],
            logs: vec![VertexLog {
                vertex: "sha256:aaa".into(),
                stream: 1,
                msg: b"hi <there>\n".to_vec(),
                timestamp: ts(1_714_566_897, 500),
            }],
            warnings: vec![],
        };
        assert_eq!(
            status_json(&s),
            concat!(
                r#"{"vertexes":[{"digest":"sha256:aaa","inputs":["sha256:bbb"],"#,
                r#""name":"[1/2] FROM busybox","started":"2024-05-01T12:34:56.789Z"}],"#,
                r#""statuses":[{"id":"transferring context:","vertex":"sha256:aaa","current":0,"#,
                r#""timestamp":"2024-05-01T12:34:57Z"}],"#,
                r#""logs":[{"vertex":"sha256:aaa","stream":1,"data":"aGkgPHRoZXJlPgo=","#,
                r#""timestamp":"2024-05-01T12:34:57.0000005Z"}]}"#
            )
        );
        assert_eq!(status_json(&StatusResponse::default()), "{}");
    }

    #[test]
    fn warning_json_includes_source_and_escapes_html() {
        let w = VertexWarning {
            vertex: "sha256:aaa".into(),
            level: 1,
            short: b"JSONArgsRecommended: x".to_vec(),
            detail: vec![b"a & b".to_vec()],
            url: "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/".into(),
            info: Some(pb::SourceInfo {
                filename: "Dockerfile".into(),
                data: b"FROM busybox\n".to_vec(),
                language: "Dockerfile".into(),
                definition: None,
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
        };
        assert_eq!(
            warning_json(&w),
            concat!(
                r#"{"vertex":"sha256:aaa","level":1,"short":"SlNPTkFyZ3NSZWNvbW1lbmRlZDogeA==","#,
                r#""detail":["YSAmIGI="],"url":"https://docs.docker.com/go/dockerfile/rule/json-args-recommended/","#,
                r#""sourceInfo":{"filename":"Dockerfile","data":"RlJPTSBidXN5Ym94Cg==","language":"Dockerfile"},"#,
                r#""range":[{"start":{"line":3},"end":{"line":3}}]}"#
            )
        );
        assert_eq!(go_string("<a&b>"), r#""\u003ca\u0026b\u003e""#);
    }
}
