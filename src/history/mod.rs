//! Build history: the records BuildKit keeps of finished and running builds, read and changed
//! through `Control/ListenBuildHistory` and `Control/UpdateBuildHistory`, with their blobs (logs,
//! traces, provenance, errors) from the content store the daemon serves on the same connection.
//!
//! This module owns what buildx's `history` commands compute and print (record names, the `ls`
//! table and JSON, `inspect`, the `.dockerbuild` bundle); it does not resolve builders (that is
//! `builder/`) and does not render progress (logs are replayed into `progress/`).

pub mod bundle;
pub mod content;
pub mod inspect;
pub mod json;
pub mod provenance;
pub mod time;

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use control::{BuildHistoryEventType, BuildHistoryRecord};

use crate::buildkit::BuildkitClient;
pub use time::{format_duration, human_duration, now_nanos, Nanos};

/// How many records buildx asks each node for.
const RECORDS_LIMIT: usize = 50;

/// The response header carrying the daemon's clock (for the age of running builds).
const HEADER_TIMESTAMP: &str = "buildkit-current-timestamp";

/// A node to ask for history: its builder's and its own name, and a live client.
#[derive(Clone)]
pub struct HistoryNode {
    pub builder: String,
    pub name: String,
    pub client: BuildkitClient,
}

/// One record as a node reported it.
#[derive(Clone)]
pub struct Record {
    pub record: BuildHistoryRecord,
    /// The daemon's clock when it answered.
    pub current_timestamp: Option<Nanos>,
    pub builder: String,
    pub node: String,
    /// Index of the node in the list the query was given.
    pub node_index: usize,
}

impl Record {
    /// What this machine remembers of the build's paths, if kiln started it here.
    pub fn local_state(&self) -> Option<crate::store::BuildState> {
        crate::store::read_build_state(&self.builder, &self.node, &self.record.r#ref)
    }

    /// The build's name, as `history ls` shows it.
    pub fn name(&self) -> String {
        build_name(&self.record.frontend_attrs, self.local_state().as_ref())
    }

    pub fn created_at(&self) -> Nanos {
        time::timestamp_nanos(&self.record.created_at)
    }

    pub fn completed_at(&self) -> Option<Nanos> {
        self.record
            .completed_at
            .as_ref()
            .map(|t| time::timestamp_nanos(&Some(*t)))
    }

    /// `BUILDER/NODE/REF`, the reference buildx shows in JSON and Docker Desktop links.
    pub fn full_ref(&self) -> String {
        format!("{}/{}/{}", self.builder, self.node, self.record.r#ref)
    }

    /// `Completed`, `Error` or `Running`, as `history ls` shows it.
    pub fn status(&self) -> &'static str {
        match (&self.record.completed_at, &self.record.error) {
            (Some(_), Some(_)) => "Error",
            (Some(_), None) => "Completed",
            (None, _) => "Running",
        }
    }
}

/// The node's BuildKit predates the history API (Engine 20.10's BuildKit 0.8).
#[derive(Debug, thiserror::Error)]
#[error(
    "the BuildKit of node {node:?} has no build history (it does not implement ListenBuildHistory)"
)]
pub struct NoHistory {
    pub node: String,
}

/// What to ask for.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// A record ref, `^N` (the N-th newest), or empty for all.
    pub r#ref: String,
    pub completed_only: bool,
    /// Docker-style filters (`status=error`, `startedAt>1h`, ...).
    pub filters: Vec<String>,
}

/// Records from every node, newest first; `^N` keeps only the N-th newest.
pub async fn query_records(nodes: &[HistoryNode], q: &Query) -> Result<Vec<Record>> {
    let (r#ref, offset) = match q.r#ref.strip_prefix('^') {
        Some(n) => (
            String::new(),
            Some(
                n.parse::<usize>()
                    .map_err(|e| anyhow!("invalid offset {:?}: {e}", q.r#ref))?,
            ),
        ),
        None => (q.r#ref.clone(), None),
    };
    // Validated as buildx does, but applied here: see `listen` for why BuildKit is not asked.
    let matchers = if q.filters.is_empty() {
        Vec::new()
    } else {
        filters_to_buildkit(&q.filters)?.1
    };
    let asks = nodes.iter().enumerate().map(|(i, node)| {
        let r#ref = r#ref.clone();
        let matchers = &matchers;
        async move {
            let (records, ts) = listen(&node.client, &node.name).await?;
            let mut recs: Vec<Record> = records
                .into_iter()
                .filter(|(kind, r)| {
                    (r#ref.is_empty() || r.r#ref == r#ref)
                        && (!q.completed_only || *kind == BuildHistoryEventType::Complete as i32)
                        && matchers.iter().all(|m| m.matches(r))
                })
                .map(|(_, record)| Record {
                    record,
                    current_timestamp: ts,
                    builder: node.builder.clone(),
                    node: node.name.clone(),
                    node_index: i,
                })
                .collect();
            // BuildKit's limit: the newest records of each node.
            recs.sort_by_key(|r| std::cmp::Reverse(r.created_at()));
            recs.truncate(RECORDS_LIMIT);
            Ok::<_, anyhow::Error>(recs)
        }
    });
    let mut out = Vec::new();
    for r in futures::future::join_all(asks).await {
        out.extend(r?);
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.created_at()));
    if let Some(mut offset) = offset {
        let mut picked = Vec::new();
        for r in out {
            if offset > 0 {
                offset -= 1;
                continue;
            }
            picked.push(r);
            break;
        }
        if offset > 0 {
            bail!("no completed build found with offset {offset}");
        }
        out = picked;
    }
    Ok(out)
}

/// One `ListenBuildHistory` with `EarlyExit`: every record the node has now, with event types.
///
/// Unlike buildx, kiln sends no `Ref`, `Filter` or `Limit`. BuildKit (v0.2x, as in Engine 28)
/// never forgets a ref once a listener asked for it by name, so a later delete of that record
/// is only queued, and while one is queued a listing with a limit or filters dereferences the
/// queued (nil) entry and takes the whole daemon down (`filterHistoryEvents`). `buildx history
/// inspect REF; buildx history rm REF; buildx history ls` does exactly that. Listing everything
/// and choosing here avoids both halves.
async fn listen(
    client: &BuildkitClient,
    node: &str,
) -> Result<(Vec<(i32, BuildHistoryRecord)>, Option<Nanos>)> {
    let req = control::BuildHistoryRequest {
        early_exit: true,
        ..Default::default()
    };
    let resp = match client.control().listen_build_history(req).await {
        Ok(r) => r,
        Err(s) if s.code() == tonic::Code::Unimplemented => {
            return Err(NoHistory {
                node: node.to_string(),
            }
            .into())
        }
        Err(s) => return Err(anyhow!("{}", s.message())).context("listing build history"),
    };
    let ts = resp
        .metadata()
        .get(HEADER_TIMESTAMP)
        .and_then(|v| v.to_str().ok())
        .map(|v| time::parse_rfc3339(v).ok_or_else(|| anyhow!("invalid {HEADER_TIMESTAMP} {v:?}")))
        .transpose()?;
    let mut stream = resp.into_inner();
    let mut out = Vec::new();
    loop {
        let ev = match stream.message().await {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                return Err(NoHistory {
                    node: node.to_string(),
                }
                .into())
            }
            Err(s) => return Err(anyhow!("{}", s.message())).context("listing build history"),
        };
        if ev.r#type == BuildHistoryEventType::Deleted as i32 {
            continue;
        }
        if let Some(r) = ev.record {
            out.push((ev.r#type, r));
        }
    }
    Ok((out, ts))
}

/// Deletes a record on one node.
pub async fn delete_record(client: &BuildkitClient, r#ref: &str) -> Result<()> {
    update(
        client,
        control::UpdateBuildHistoryRequest {
            r#ref: r#ref.to_string(),
            delete: true,
            ..Default::default()
        },
    )
    .await
}

/// Asks a node to finish writing a record (its trace is attached only then).
pub async fn finalize_record(client: &BuildkitClient, r#ref: &str) -> Result<()> {
    update(
        client,
        control::UpdateBuildHistoryRequest {
            r#ref: r#ref.to_string(),
            finalize: true,
            ..Default::default()
        },
    )
    .await
}

async fn update(client: &BuildkitClient, req: control::UpdateBuildHistoryRequest) -> Result<()> {
    match client.control().update_build_history(req).await {
        Ok(_) => Ok(()),
        Err(s) => Err(anyhow!("{}", s.message())),
    }
}

/// Refs of the completed records of one node (for `rm --all`).
pub async fn completed_refs(client: &BuildkitClient, node: &str) -> Result<Vec<String>> {
    let (records, _) = listen(client, node).await?;
    Ok(records
        .into_iter()
        .filter(|(t, _)| *t == BuildHistoryEventType::Complete as i32)
        .map(|(_, r)| r.r#ref)
        .collect())
}

/// Go's `codes.Code.String()` for a gRPC status code.
pub fn code_name(code: i32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|c| NAMES.get(c))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("Code({code})"))
}

/// The name buildx gives a build: `BUILDKIT_BUILD_NAME`, else from the context / Dockerfile
/// path and target in the frontend attributes and what this machine remembers of the build's
/// paths (`state`, for builds kiln started here).
pub fn build_name(
    attrs: &HashMap<String, String>,
    state: Option<&crate::store::BuildState>,
) -> String {
    if let Some(v) = attrs
        .get("build-arg:BUILDKIT_BUILD_NAME")
        .filter(|v| !v.is_empty())
    {
        return v.clone();
    }
    let target = attrs.get("target").cloned().unwrap_or_default();
    let context_path = match attrs.get("context") {
        Some(v) => v.clone(),
        None => attrs
            .get("vcs:localdir:context")
            .filter(|v| *v != ".")
            .cloned()
            .unwrap_or_default(),
    };
    let vcs_source = attrs.get("vcs:source").cloned().unwrap_or_default();
    let mut dockerfile = attrs
        .get("filename")
        .filter(|v| *v != "Dockerfile")
        .cloned()
        .unwrap_or_default();
    if let Some(dir) = attrs.get("vcs:localdir:dockerfile").filter(|v| *v != ".") {
        dockerfile = join_clean(dir, &dockerfile);
    }

    let mut local_path = String::new();
    if let Some(st) = state.filter(|st| !is_remote_url(&st.local_path)) {
        if !st.local_path.is_empty() && st.local_path != "-" {
            local_path = st.local_path.clone();
        }
        if !matches!(st.dockerfile_path.as_str(), "" | "-" | "Dockerfile") {
            dockerfile = st.dockerfile_path.clone();
        }
    }
    let has_default_name = dockerfile.ends_with("/Dockerfile") || dockerfile.is_empty();
    let dockerfile = dockerfile
        .strip_suffix("/Dockerfile")
        .unwrap_or(&dockerfile)
        .to_string();
    let mut res = String::new();
    if dockerfile.starts_with(&local_path) && dockerfile.len() > local_path.len() {
        // The Dockerfile is inside the context: name it from the context's own directory on.
        let from = local_path.rfind('/').map_or(0, |i| i + 1);
        res = dockerfile[from..].to_string();
    } else {
        let path = if dockerfile.is_empty() {
            &local_path
        } else {
            &dockerfile
        };
        if !path.is_empty() {
            let cut = path.rfind('/');
            res = path[cut.map_or(0, |i| i + 1)..].to_string();
            if !has_default_name {
                let parent = match cut {
                    Some(i) => base(&path[..i]),
                    None => base(path),
                };
                res = join_clean(&parent, &res);
            }
        }
    }
    if !context_path.is_empty() {
        res = context_path;
    }
    if !target.is_empty() {
        if res.is_empty() {
            res = target;
        } else {
            res = format!("{res} ({target})");
        }
    }
    if res.is_empty() && !vcs_source.is_empty() {
        return vcs_source;
    }
    res
}

/// Whether `s` names a remote context (git or http URL), as buildx tells them from paths.
fn is_remote_url(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.starts_with("github.com/")
}

/// Go's `filepath.Base`.
fn base(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

/// Go's `filepath.Join` (which cleans the result).
fn join_clean(a: &str, b: &str) -> String {
    let joined = match (a.is_empty(), b.is_empty()) {
        (true, true) => return String::new(),
        (true, false) => b.to_string(),
        (false, true) => a.to_string(),
        (false, false) => format!("{a}/{b}"),
    };
    clean(&joined)
}

/// Go's `path.Clean`.
fn clean(p: &str) -> String {
    kiln_bake::gopath::clean_path(p)
}

/// Keeps the last `n` characters, marking the cut with `..`.
pub fn trim_beginning(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let start = s.len() - n + 2;
    let start = (start..s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    format!("..{}", &s[start..])
}

/// A filter BuildKit may not apply itself (older daemons ignore them), checked locally too.
enum Matcher {
    Value {
        key: String,
        value: String,
        negate: bool,
    },
    Time {
        key: String,
        cmp: i64,
        op: String,
    },
}

impl Matcher {
    fn matches(&self, rec: &BuildHistoryRecord) -> bool {
        match self {
            Matcher::Value { key, value, negate } => {
                let got = match key.as_str() {
                    "ref" => rec.r#ref.clone(),
                    "repository" => rec
                        .frontend_attrs
                        .get("vcs:source")
                        .cloned()
                        .or_else(|| {
                            rec.frontend_attrs
                                .get("context")
                                .and_then(|c| git_remote(c))
                        })
                        .unwrap_or_default(),
                    _ => match (&rec.completed_at, &rec.error) {
                        (Some(_), Some(e)) if e.message.contains("context canceled") => {
                            "canceled".into()
                        }
                        (Some(_), Some(_)) => "error".into(),
                        (Some(_), None) => "completed".into(),
                        (None, _) => "running".into(),
                    },
                };
                if *negate {
                    got != *value
                } else if key == "status" {
                    got == *value
                } else {
                    got.contains(value.as_str())
                }
            }
            Matcher::Time { key, cmp, op } => {
                let created = time::timestamp_nanos(&rec.created_at);
                let completed = rec.completed_at.map(|t| time::timestamp_nanos(&Some(t)));
                let val = match key.as_str() {
                    "startedAt" => created.div_euclid(1_000_000_000),
                    "completedAt" => completed.map(|c| c.div_euclid(1_000_000_000)).unwrap_or(0),
                    _ => completed.map(|c| c - created).unwrap_or(0),
                };
                match op.as_str() {
                    ">=" => val >= *cmp,
                    "<=" => val <= *cmp,
                    ">" => val > *cmp,
                    _ => val < *cmp,
                }
            }
        }
    }
}

/// The remote of a git context (`https://host/repo.git#ref`, `git@host:repo`), if it is one.
fn git_remote(context: &str) -> Option<String> {
    let remote = context.split('#').next().unwrap_or(context);
    let is_git = remote.starts_with("git://")
        || remote.starts_with("git@")
        || remote.starts_with("ssh://")
        || ((remote.starts_with("https://") || remote.starts_with("http://"))
            && (remote.ends_with(".git") || context.contains(".git#")));
    is_git.then(|| remote.to_string())
}

/// buildx's translation of `--filter` values into BuildKit's filter syntax, with the local
/// checks it applies as well.
fn filters_to_buildkit(filters: &[String]) -> Result<(Vec<String>, Vec<Matcher>)> {
    let mut out = Vec::new();
    let mut matchers = Vec::new();
    for f in filters {
        let Some((key, value, sep)) = cut_any(f, &["!=", "=", "<=", "<", ">=", ">"]) else {
            bail!("invalid filter {f:?}");
        };
        let mut sep = sep.to_string();
        match key {
            "ref" | "repository" | "status" => {
                if sep != "=" && sep != "!=" {
                    bail!("invalid separator for {f:?}, expected = or !=");
                }
                matchers.push(Matcher::Value {
                    key: key.into(),
                    value: value.into(),
                    negate: sep == "!=",
                });
                if sep == "=" {
                    sep = if key == "status" { "==" } else { "~=" }.into();
                }
            }
            "startedAt" | "completedAt" | "duration" => {
                if sep == "=" || sep == "!=" {
                    bail!("invalid separator for {f:?}, expected <=, <, >= or >");
                }
                let cmp = if key == "duration" {
                    time::parse_go_duration(value)
                        .ok_or_else(|| anyhow!("invalid duration {value}"))?
                } else if let Some(d) = time::parse_go_duration(value) {
                    (now_nanos() - d).div_euclid(1_000_000_000)
                } else {
                    let t = time::parse_rfc3339(value)
                        .ok_or_else(|| anyhow!("invalid time {value}"))?;
                    t.div_euclid(1_000_000_000)
                };
                matchers.push(Matcher::Time {
                    key: key.into(),
                    cmp,
                    op: sep.clone(),
                });
            }
            _ => bail!("unsupported filter {f:?}"),
        }
        out.push(format!("{key}{sep}{value}"));
    }
    Ok((out, matchers))
}

/// The first of `seps` found in `s` (in the order given), splitting around it.
fn cut_any<'a>(s: &'a str, seps: &[&'a str]) -> Option<(&'a str, &'a str, &'a str)> {
    seps.iter()
        .find_map(|sep| s.find(sep).map(|i| (&s[..i], &s[i + sep.len()..], *sep)))
}

/// `history ls` in buildx's table: BUILD ID, NAME, STATUS, CREATED AT, DURATION (and an
/// "Open" link to Docker Desktop when stdout is a terminal).
pub fn ls_table(records: &[Record], now: Nanos, trunc: bool, is_term: bool) -> String {
    let mut text = String::from("BUILD ID\tNAME\tSTATUS\tCREATED AT\tDURATION\t\n");
    for r in records {
        let name = r.name();
        let name = if trunc {
            trim_beginning(&name, 36)
        } else {
            name
        };
        let link = if is_term {
            let url = desktop_url(&r.full_ref());
            format!("\x1b]8;;{url}\x1b\\Open\x1b]8;;\x1b\\")
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{}\t{}\t{}\t{} ago\t{}\t{}\n",
            r.record.r#ref,
            name,
            r.status(),
            human_duration(now - r.created_at()),
            ls_duration(r),
            link
        ));
    }
    crate::builder::display::tabwrite(&text, 10, 3)
}

/// `history ls --format json`: one object per line, keys sorted as Go's maps are.
pub fn ls_json(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        let mut m = serde_json::Map::new();
        m.insert("cached_steps".into(), r.record.num_cached_steps.into());
        if let Some(c) = r.completed_at() {
            m.insert("completed_at".into(), time::rfc3339_nano(c, 0).into());
        }
        m.insert(
            "completed_steps".into(),
            r.record.num_completed_steps.into(),
        );
        m.insert(
            "created_at".into(),
            time::rfc3339_nano(r.created_at(), 0).into(),
        );
        m.insert("name".into(), r.name().into());
        m.insert("ref".into(), r.full_ref().into());
        m.insert("status".into(), r.status().into());
        m.insert("total_steps".into(), r.record.num_total_steps.into());
        out.push_str(&json::go_compact(&serde_json::Value::Object(m)));
        out.push('\n');
    }
    out
}

/// `ls`'s order: running builds first, then newest first.
pub fn sort_for_ls(records: &mut [Record]) {
    records.sort_by(|a, b| {
        let running = |r: &Record| r.record.completed_at.is_none();
        running(b)
            .cmp(&running(a))
            .then_with(|| b.created_at().cmp(&a.created_at()))
    });
}

fn ls_duration(r: &Record) -> String {
    let last = r.completed_at().or(r.current_timestamp);
    match last {
        None => String::new(),
        Some(last) => {
            let mut v = format_duration(last - r.created_at());
            if r.completed_at().is_none() {
                v.push('+');
            }
            v
        }
    }
}

/// Docker Desktop's link to a build.
pub fn desktop_url(full_ref: &str) -> String {
    format!("docker-desktop://dashboard/build/{full_ref}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_follow_buildx() {
        assert_eq!(build_name(&attrs(&[]), None), "");
        assert_eq!(
            build_name(
                &attrs(&[("build-arg:BUILDKIT_BUILD_NAME", "mine"), ("target", "t")]),
                None
            ),
            "mine"
        );
        assert_eq!(
            build_name(&attrs(&[("filename", "Dockerfile.tty")]), None),
            "Dockerfile.tty"
        );
        assert_eq!(build_name(&attrs(&[("filename", "Dockerfile")]), None), "");
        assert_eq!(
            build_name(&attrs(&[("filename", "rj2.Dockerfile")]), None),
            "rj2.Dockerfile"
        );
        assert_eq!(
            build_name(&attrs(&[("filename", "sub/Dockerfile")]), None),
            "sub"
        );
        assert_eq!(build_name(&attrs(&[("target", "export")]), None), "export");
        assert_eq!(
            build_name(&attrs(&[("filename", "sub/Custom.dockerfile")]), None),
            "sub/Custom.dockerfile"
        );
        assert_eq!(
            build_name(
                &attrs(&[
                    ("context", "https://example.com/r.git#main"),
                    ("target", "app")
                ]),
                None
            ),
            "https://example.com/r.git#main (app)"
        );
        assert_eq!(
            build_name(&attrs(&[("vcs:source", "https://github.com/a/b")]), None),
            "https://github.com/a/b"
        );
    }

    #[test]
    fn names_use_the_paths_this_machine_remembers() {
        let state = |local: &str, dockerfile: &str| crate::store::BuildState {
            target: String::new(),
            local_path: local.into(),
            dockerfile_path: dockerfile.into(),
        };
        // A context directory and its default Dockerfile: the directory's name.
        assert_eq!(
            build_name(&attrs(&[]), Some(&state("/src/myproj", ""))),
            "myproj"
        );
        // A Dockerfile inside the context: from the context's directory on.
        assert_eq!(
            build_name(
                &attrs(&[("filename", "App.Dockerfile")]),
                Some(&state("/src/myproj", "/src/myproj/docker/App.Dockerfile"))
            ),
            "myproj/docker/App.Dockerfile"
        );
        // Outside it: its directory and name.
        assert_eq!(
            build_name(
                &attrs(&[("filename", "App.Dockerfile")]),
                Some(&state("/src/myproj", "/elsewhere/docker/App.Dockerfile"))
            ),
            "docker/App.Dockerfile"
        );
        // A remote context's state is not used.
        assert_eq!(
            build_name(&attrs(&[]), Some(&state("https://example.com/r.git", ""))),
            ""
        );
    }

    #[test]
    fn long_names_keep_their_end() {
        assert_eq!(trim_beginning("abc", 36), "abc");
        let long = "/tmp/.tmpabcdefgh/kiln-session/3xvbv2593cvrj18cg7fli439l";
        let t = trim_beginning(long, 36);
        assert_eq!(t, "..-session/3xvbv2593cvrj18cg7fli439l");
        assert_eq!(t.len(), 36);
    }

    #[test]
    fn filters_translate_like_buildx() {
        let (f, m) = filters_to_buildkit(&[
            "status=error".to_string(),
            "ref!=abc".to_string(),
            "repository=github.com/x".to_string(),
            "duration>2s".to_string(),
        ])
        .unwrap();
        assert_eq!(
            f,
            [
                "status==error",
                "ref!=abc",
                "repository~=github.com/x",
                "duration>2s"
            ]
        );
        assert_eq!(m.len(), 4);
        assert!(filters_to_buildkit(&["status>1".into()]).is_err());
        assert!(filters_to_buildkit(&["nope=1".into()]).is_err());
        assert!(filters_to_buildkit(&["startedAt=1h".into()]).is_err());
    }

    #[test]
    fn status_matcher_tells_errors_and_cancels_apart() {
        let mut rec = BuildHistoryRecord {
            completed_at: Some(Default::default()),
            ..Default::default()
        };
        let m = |v: &str| Matcher::Value {
            key: "status".into(),
            value: v.into(),
            negate: false,
        };
        assert!(m("completed").matches(&rec));
        rec.error = Some(bollard_buildkit_proto::google::rpc::Status {
            code: 1,
            message: "context canceled".into(),
            details: vec![],
        });
        assert!(m("canceled").matches(&rec));
        rec.completed_at = None;
        assert!(m("running").matches(&rec));
    }

    #[test]
    fn code_names_are_gos() {
        assert_eq!(code_name(1), "Canceled");
        assert_eq!(code_name(2), "Unknown");
        assert_eq!(code_name(99), "Code(99)");
    }
}
