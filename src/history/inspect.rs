//! `history inspect`: one record turned into buildx's summary (source, timing, configuration,
//! build args, materials from provenance, attachments, the error and its step's last logs),
//! printed as buildx's aligned text or its JSON.

use std::collections::HashMap;

use anyhow::{Context, Result};
use base64::Engine as _;
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use serde_json::{json, Map, Value};

use super::content::ContentStore;
use super::json::go_indent;
use super::time::{format_duration, local_date_time, local_offset, rfc3339_nano, Nanos};
use super::{build_name, code_name, desktop_url, Record};
use crate::buildkit::BuildkitClient;
use crate::platform::Platform;

/// How many of the failed step's last log lines `inspect` shows.
const ERROR_LOG_LINES: usize = 16;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Default, Clone)]
pub struct Config {
    pub network: String,
    pub extra_hosts: Vec<String>,
    pub hostname: String,
    pub cgroup_parent: String,
    pub image_resolve_mode: String,
    pub multi_platform: bool,
    pub no_cache: bool,
    pub no_cache_filter: Vec<String>,
    pub shm_size: String,
    pub ulimit: String,
    pub cache_mount_ns: String,
    pub dockerfile_check_config: String,
    pub source_date_epoch: String,
    pub sandbox_hostname: String,
    pub rest_raw: Vec<KeyValue>,
}

#[derive(Debug, Default, Clone)]
pub struct ErrorOutput {
    pub code: i32,
    pub message: String,
    /// The failed step's name and last log lines (from the error's vertex).
    pub name: String,
    pub logs: Vec<String>,
    /// The Dockerfile excerpts of the error, as buildx prints them.
    pub sources: String,
    /// The record carries the full error (with stack) as a blob.
    pub has_external: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Material {
    pub uri: String,
    pub digests: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct Attachment {
    pub digest: String,
    pub platform: Option<String>,
    pub kind: String,
}

/// What `inspect` shows, in buildx's field order.
#[derive(Debug, Default, Clone)]
pub struct Inspection {
    pub name: String,
    pub r#ref: String,
    pub context: String,
    pub dockerfile: String,
    pub vcs_repository: String,
    pub vcs_revision: String,
    pub target: String,
    pub platform: Vec<String>,
    pub keep_git_dir: bool,
    pub named_contexts: Vec<KeyValue>,
    pub started_at: Option<Nanos>,
    pub completed_at: Option<Nanos>,
    pub duration: Nanos,
    pub status: &'static str,
    pub error: Option<ErrorOutput>,
    pub num_completed_steps: i32,
    pub num_total_steps: i32,
    pub num_cached_steps: i32,
    pub build_args: Vec<KeyValue>,
    pub labels: Vec<KeyValue>,
    pub config: Config,
    pub materials: Vec<Material>,
    pub attachments: Vec<Attachment>,
    pub errors: Vec<String>,
    /// `BUILDER/NODE/REF`.
    pub full_ref: String,
}

/// Reads the record's blobs (provenance, results, the full error) and the failed step's logs.
pub async fn inspect(client: &BuildkitClient, rec: &Record) -> Result<Inspection> {
    let store = ContentStore::new(client.channel());
    let default_platform = client
        .list_workers()
        .await
        .context("failed to list workers")?
        .iter()
        .find_map(|w| w.platforms.first().cloned())
        .unwrap_or_default();
    let mut out = from_record(rec, &default_platform);

    if let (Some(err), Some(ext)) = (out.error.as_mut(), rec.record.external_error.as_ref()) {
        err.has_external = true;
        let dt = store
            .read(&ext.digest)
            .await
            .with_context(|| format!("failed to read external error {}", ext.digest))?;
        // The blob is the `google.rpc.Status` of the failure with BuildKit's typed details.
        let status = tonic::Status::with_details(
            tonic::Code::Unknown,
            err.message.clone(),
            bytes::Bytes::from(dt),
        );
        let solve_err = crate::progress::error::SolveError::from_status(&status);
        let mut sources = String::new();
        for src in &solve_err.sources {
            if let Some(info) = &src.info {
                sources.push_str(&crate::progress::error::render_source_excerpt(
                    info,
                    &src.ranges,
                ));
                sources.push('\n');
            }
        }
        err.sources = sources;
        if let Some(vertex) = &solve_err.vertex {
            let (name, logs) = vertex_logs(client, &rec.record.r#ref, vertex).await?;
            err.name = name;
            err.logs = logs;
        }
    }

    let attachments = all_attachments(&store, &rec.record).await?;
    if let Some(prov) = attachments
        .iter()
        .find(|a| a.kind.starts_with("https://slsa.dev/provenance/"))
    {
        let dt = store
            .read(&prov.descriptor.digest)
            .await
            .with_context(|| format!("failed to read provenance {}", prov.descriptor.digest))?;
        let v: Value = serde_json::from_slice(&dt).with_context(|| {
            format!("failed to unmarshal provenance {}", prov.descriptor.digest)
        })?;
        out.materials = materials(&v, &prov.kind);
    }
    out.attachments = attachments
        .into_iter()
        .map(|a| Attachment {
            digest: a.descriptor.digest.clone(),
            platform: a.platform,
            kind: a.kind,
        })
        .collect();
    Ok(out)
}

/// Everything that comes from the record itself (no blobs).
pub fn from_record(rec: &Record, default_platform: &str) -> Inspection {
    let r = &rec.record;
    let mut attrs: HashMap<String, String> = r.frontend_attrs.clone();
    attrs.remove("frontend.caps");
    let mut out = Inspection {
        r#ref: r.r#ref.clone(),
        full_ref: rec.full_ref(),
        ..Default::default()
    };

    // buildx prefers its local state of the paths; kiln keeps none, so the attributes speak.
    if let Some(v) = attrs.remove("context") {
        out.context = v;
    }
    if let Some(f) = attrs.get("filename") {
        out.dockerfile = match attrs.get("vcs:localdir:dockerfile") {
            Some(dir) => super::join_clean(dir, f),
            None => f.clone(),
        };
    }
    attrs.remove("filename");
    // As buildx computes it: after `context` and `filename` have been taken out.
    out.name = build_name(&attrs, rec.local_state().as_ref());
    if !attrs.contains_key("context") {
        out.vcs_repository = attrs.get("vcs:source").cloned().unwrap_or_default();
        out.vcs_revision = attrs.get("vcs:revision").cloned().unwrap_or_default();
    }
    if let Some(t) = attrs.remove("target") {
        out.target = t;
    }
    if let Some(p) = attrs.remove("platform") {
        let mut pp = Vec::new();
        for one in p.split(',') {
            match one.parse::<Platform>() {
                Ok(pl) => pp.push(pl.to_string()),
                Err(e) => {
                    out.errors.push(format!("failed to parse {p}: ({e})"));
                    pp.clear();
                    break;
                }
            }
        }
        if pp.is_empty() && out.errors.is_empty() {
            pp.push(default_platform.to_string());
        }
        out.platform = pp;
    }
    if let Some(v) = attrs.remove("build-arg:BUILDKIT_CONTEXT_KEEP_GIT_DIR") {
        out.keep_git_dir = parse_bool(&v, &mut out.errors);
    }
    out.named_contexts = key_values(&attrs, "context:");

    out.started_at = r.created_at.map(|t| super::time::timestamp_nanos(&Some(t)));
    out.status = "running";
    if let Some(c) = rec.completed_at() {
        out.completed_at = Some(c);
        out.status = "completed";
    }
    if r.error.is_some() || r.external_error.is_some() {
        let mut e = ErrorOutput::default();
        if let Some(err) = &r.error {
            out.status = if err.code == tonic::Code::Cancelled as i32 {
                "canceled"
            } else {
                "failed"
            };
            e.code = err.code;
            e.message = err.message.clone();
        }
        out.error = Some(e);
    }
    if let Some(s) = out.started_at {
        out.duration = match out.completed_at {
            Some(c) => c - s,
            None => rec.current_timestamp.map(|t| t - s).unwrap_or(0),
        };
    }
    out.num_completed_steps = r.num_completed_steps;
    out.num_total_steps = r.num_total_steps;
    out.num_cached_steps = r.num_cached_steps;
    out.build_args = key_values(&attrs, "build-arg:");
    out.labels = key_values(&attrs, "label:");

    let c = &mut out.config;
    let take = |attrs: &mut HashMap<String, String>, k: &str| attrs.remove(k);
    c.network = take(&mut attrs, "force-network-mode").unwrap_or_default();
    c.hostname = take(&mut attrs, "hostname").unwrap_or_default();
    c.cgroup_parent = take(&mut attrs, "cgroup-parent").unwrap_or_default();
    c.image_resolve_mode = take(&mut attrs, "image-resolve-mode").unwrap_or_default();
    if let Some(v) = take(&mut attrs, "build-arg:BUILDKIT_MULTI_PLATFORM") {
        c.multi_platform = parse_bool(&v, &mut out.errors);
    }
    if let Some(v) = take(&mut attrs, "multi-platform") {
        c.multi_platform = parse_bool(&v, &mut out.errors);
    }
    // buildx reads `no-cache` twice and the first read removes it, so a filter list is
    // never shown; kept that way for parity.
    if let Some(v) = take(&mut attrs, "no-cache") {
        c.no_cache = v.is_empty();
    }
    if let Some(v) = take(&mut attrs, "add-hosts") {
        c.extra_hosts = csv_fields(&v);
    }
    c.shm_size = take(&mut attrs, "shm-size").unwrap_or_default();
    c.ulimit = take(&mut attrs, "ulimit").unwrap_or_default();
    c.cache_mount_ns = take(&mut attrs, "build-arg:BUILDKIT_CACHE_MOUNT_NS").unwrap_or_default();
    c.dockerfile_check_config =
        take(&mut attrs, "build-arg:BUILDKIT_DOCKERFILE_CHECK").unwrap_or_default();
    c.source_date_epoch = take(&mut attrs, "build-arg:SOURCE_DATE_EPOCH").unwrap_or_default();
    c.sandbox_hostname = take(&mut attrs, "build-arg:SANDBOX_HOSTNAME").unwrap_or_default();
    let mut rest: Vec<KeyValue> = attrs
        .iter()
        .filter(|(k, _)| {
            !["vcs:", "build-arg:", "label:", "context:", "attest:"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| KeyValue {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    c.rest_raw = rest;
    out
}

/// Go's `strconv.ParseBool`, noting a bad value the way buildx does.
fn parse_bool(v: &str, errors: &mut Vec<String>) -> bool {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
        "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
        _ => {
            errors.push(format!(
                "failed to parse {v}: (strconv.ParseBool: parsing {v:?}: invalid syntax)"
            ));
            false
        }
    }
}

/// The fields of one CSV record (quotes honoured).
fn csv_fields(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn key_values(attrs: &HashMap<String, String>, prefix: &str) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = attrs
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(prefix).map(|name| KeyValue {
                name: name.to_string(),
                value: v.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The step's name and its last log lines, replayed from the record's status stream.
async fn vertex_logs(
    client: &BuildkitClient,
    r#ref: &str,
    digest: &str,
) -> Result<(String, Vec<String>)> {
    let mut stream = client
        .control()
        .status(control::StatusRequest {
            r#ref: r#ref.to_string(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("failed to load vertex logs {digest}"))?
        .into_inner();
    let mut name = String::new();
    let mut logs: Vec<String> = Vec::new();
    // Per stream, the line still open at the end of the last chunk.
    let mut open: HashMap<i64, Option<usize>> = HashMap::new();
    while let Some(ev) = stream
        .message()
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
    {
        if let Some(v) = ev.vertexes.iter().find(|v| v.digest == digest) {
            name = v.name.clone();
        }
        for l in ev.logs.iter().filter(|l| l.vertex == digest) {
            let parts: Vec<&[u8]> = l.msg.split(|b| *b == b'\n').collect();
            let n = parts.len();
            for (i, p) in parts.into_iter().enumerate() {
                let text = String::from_utf8_lossy(p).into_owned();
                let mut wrote = false;
                if i == 0 {
                    if let Some(Some(idx)) = open.get(&l.stream) {
                        logs[*idx].push_str(&text);
                        wrote = true;
                    }
                }
                if !wrote {
                    if !p.is_empty() {
                        logs.push(text);
                    }
                    open.insert(l.stream, logs.len().checked_sub(1));
                }
                if i == n - 1 && p.is_empty() {
                    open.insert(l.stream, None);
                }
            }
        }
    }
    if logs.len() > ERROR_LOG_LINES {
        logs.drain(..logs.len() - ERROR_LOG_LINES);
    }
    Ok((name, logs))
}

/// A blob attached to a record: results (image indexes and manifests) and attestations.
pub struct FoundAttachment {
    pub platform: Option<String>,
    pub descriptor: control::Descriptor,
    pub kind: String,
}

/// The predicate type of an attestation, else the media type.
fn descriptor_type(d: &control::Descriptor) -> String {
    d.annotations
        .get("in-toto.io/predicate-type")
        .cloned()
        .unwrap_or_else(|| d.media_type.clone())
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

async fn all_attachments(
    store: &ContentStore,
    rec: &control::BuildHistoryRecord,
) -> Result<Vec<FoundAttachment>> {
    let mut out = Vec::new();
    if let Some(res) = &rec.result {
        for a in &res.attestations {
            out.push(FoundAttachment {
                platform: None,
                descriptor: a.clone(),
                kind: descriptor_type(a),
            });
        }
        let mut keys: Vec<_> = res.results.keys().collect();
        keys.sort();
        for k in keys {
            walk_attachments(store, res.results[k].clone(), None, &mut out).await;
        }
    }
    let mut platforms: Vec<_> = rec.results.keys().collect();
    platforms.sort();
    for key in platforms {
        let p: Platform = key
            .parse()
            .with_context(|| format!("invalid platform {key:?} in build record"))?;
        let ri = &rec.results[key];
        for a in &ri.attestations {
            out.push(FoundAttachment {
                platform: Some(p.to_string()),
                descriptor: a.clone(),
                kind: descriptor_type(a),
            });
        }
        let mut keys: Vec<_> = ri.results.keys().collect();
        keys.sort();
        for k in keys {
            walk_attachments(store, ri.results[k].clone(), Some(p.to_string()), &mut out).await;
        }
    }
    out.sort_by(|a, b| {
        a.platform
            .is_some()
            .cmp(&b.platform.is_some())
            .then_with(|| a.platform.cmp(&b.platform))
            .then_with(|| a.kind.cmp(&b.kind))
    });
    Ok(out)
}

/// A result and, for an index, the manifests it lists (attestation manifests left out), as
/// far as the store holds them.
async fn walk_attachments(
    store: &ContentStore,
    root: control::Descriptor,
    platform: Option<String>,
    out: &mut Vec<FoundAttachment>,
) {
    let mut todo = vec![(root, platform)];
    while let Some((desc, platform)) = todo.pop() {
        if !matches!(store.info(&desc.digest).await, Ok(Some(_))) {
            continue;
        }
        let is_attestation = desc
            .annotations
            .get("vnd.docker.reference.type")
            .is_some_and(|t| t == "attestation-manifest");
        if !is_attestation {
            out.push(FoundAttachment {
                platform: platform.clone(),
                kind: descriptor_type(&desc),
                descriptor: desc.clone(),
            });
        }
        if !INDEX_TYPES.contains(&desc.media_type.as_str()) {
            continue;
        }
        let Ok(dt) = store.read(&desc.digest).await else {
            continue;
        };
        let Ok(index) = serde_json::from_slice::<Value>(&dt) else {
            continue;
        };
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        // Depth-first in index order.
        for m in manifests.iter().rev() {
            let p = m
                .get("platform")
                .and_then(|p| {
                    let os = p["os"].as_str()?;
                    let arch = p["architecture"].as_str()?;
                    let mut s = format!("{os}/{arch}");
                    if let Some(v) = p["variant"].as_str().filter(|v| !v.is_empty()) {
                        s.push('/');
                        s.push_str(v);
                    }
                    Some(s)
                })
                .or_else(|| platform.clone());
            let child = control::Descriptor {
                media_type: m["mediaType"].as_str().unwrap_or_default().to_string(),
                digest: m["digest"].as_str().unwrap_or_default().to_string(),
                size: m["size"].as_i64().unwrap_or_default(),
                annotations: m["annotations"]
                    .as_object()
                    .map(|a| {
                        a.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            todo.push((child, p));
        }
    }
}

/// Resolved dependencies from SLSA provenance (v0.2 `materials` or v1 `resolvedDependencies`).
fn materials(pred: &Value, kind: &str) -> Vec<Material> {
    let list = if kind == "https://slsa.dev/provenance/v0.2" {
        &pred["materials"]
    } else {
        &pred["buildDefinition"]["resolvedDependencies"]
    };
    list.as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| Material {
                    uri: m["uri"].as_str().unwrap_or_default().to_string(),
                    digests: m["digest"]
                        .as_object()
                        .map(|d| {
                            d.iter()
                                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or_default()))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Inspection {
    /// `inspect --format json`: buildx's struct with its field names and `omitempty`s.
    pub fn to_json(&self) -> String {
        let mut m = Map::new();
        let s = |m: &mut Map<String, Value>, k: &str, v: &str| {
            if !v.is_empty() {
                m.insert(k.into(), v.into());
            }
        };
        let kvs = |m: &mut Map<String, Value>, k: &str, v: &[KeyValue]| {
            if !v.is_empty() {
                m.insert(k.into(), v.iter().map(kv_json).collect());
            }
        };
        s(&mut m, "Name", &self.name);
        m.insert("Ref".into(), self.r#ref.clone().into());
        s(&mut m, "Context", &self.context);
        s(&mut m, "Dockerfile", &self.dockerfile);
        s(&mut m, "VCSRepository", &self.vcs_repository);
        s(&mut m, "VCSRevision", &self.vcs_revision);
        s(&mut m, "Target", &self.target);
        if !self.platform.is_empty() {
            m.insert("Platform".into(), json!(self.platform));
        }
        if self.keep_git_dir {
            m.insert("KeepGitDir".into(), true.into());
        }
        kvs(&mut m, "NamedContexts", &self.named_contexts);
        if let Some(t) = self.started_at {
            m.insert("StartedAt".into(), rfc3339_nano(t, local_offset(t)).into());
        }
        if let Some(t) = self.completed_at {
            m.insert(
                "CompletedAt".into(),
                rfc3339_nano(t, local_offset(t)).into(),
            );
        }
        if self.duration != 0 {
            m.insert("Duration".into(), self.duration.into());
        }
        s(&mut m, "Status", self.status);
        if let Some(e) = &self.error {
            let mut em = Map::new();
            if e.code != 0 {
                em.insert("Code".into(), e.code.into());
            }
            s(&mut em, "Message", &e.message);
            s(&mut em, "Name", &e.name);
            if !e.logs.is_empty() {
                em.insert("Logs".into(), json!(e.logs));
            }
            if !e.sources.is_empty() {
                em.insert(
                    "Sources".into(),
                    base64::engine::general_purpose::STANDARD
                        .encode(e.sources.as_bytes())
                        .into(),
                );
            }
            m.insert("Error".into(), Value::Object(em));
        }
        m.insert("NumCompletedSteps".into(), self.num_completed_steps.into());
        m.insert("NumTotalSteps".into(), self.num_total_steps.into());
        m.insert("NumCachedSteps".into(), self.num_cached_steps.into());
        kvs(&mut m, "BuildArgs", &self.build_args);
        kvs(&mut m, "Labels", &self.labels);
        let c = &self.config;
        let mut cm = Map::new();
        s(&mut cm, "Network", &c.network);
        if !c.extra_hosts.is_empty() {
            cm.insert("ExtraHosts".into(), json!(c.extra_hosts));
        }
        s(&mut cm, "Hostname", &c.hostname);
        s(&mut cm, "CgroupParent", &c.cgroup_parent);
        s(&mut cm, "ImageResolveMode", &c.image_resolve_mode);
        if c.multi_platform {
            cm.insert("MultiPlatform".into(), true.into());
        }
        if c.no_cache {
            cm.insert("NoCache".into(), true.into());
        }
        if !c.no_cache_filter.is_empty() {
            cm.insert("NoCacheFilter".into(), json!(c.no_cache_filter));
        }
        s(&mut cm, "ShmSize", &c.shm_size);
        s(&mut cm, "Ulimit", &c.ulimit);
        s(&mut cm, "CacheMountNS", &c.cache_mount_ns);
        s(&mut cm, "DockerfileCheckConfig", &c.dockerfile_check_config);
        s(&mut cm, "SourceDateEpoch", &c.source_date_epoch);
        s(&mut cm, "SandboxHostname", &c.sandbox_hostname);
        kvs(&mut cm, "RestRaw", &c.rest_raw);
        m.insert("Config".into(), Value::Object(cm));
        if !self.materials.is_empty() {
            let ms = self
                .materials
                .iter()
                .map(|mat| {
                    let mut o = Map::new();
                    s(&mut o, "URI", &mat.uri);
                    if !mat.digests.is_empty() {
                        o.insert("Digests".into(), json!(mat.digests));
                    }
                    Value::Object(o)
                })
                .collect();
            m.insert("Materials".into(), ms);
        }
        if !self.attachments.is_empty() {
            let atts = self
                .attachments
                .iter()
                .map(|a| {
                    let mut o = Map::new();
                    s(&mut o, "Digest", &a.digest);
                    s(&mut o, "Platform", a.platform.as_deref().unwrap_or(""));
                    s(&mut o, "Type", &a.kind);
                    Value::Object(o)
                })
                .collect();
            m.insert("Attachments".into(), atts);
        }
        if !self.errors.is_empty() {
            m.insert("Errors".into(), json!(self.errors));
        }
        let mut out = go_indent(&Value::Object(m));
        out.push('\n');
        out
    }

    /// buildx's text: aligned sections, tables of args and labels, materials, attachments,
    /// the error, and where to read the logs. `show_ref` when the user named no record.
    pub fn to_text(&self, show_ref: bool, logs_command: &str) -> String {
        let mut o = String::new();
        let mut tw = String::new();
        let line = |tw: &mut String, k: &str, v: &str| {
            tw.push_str(k);
            tw.push_str(":\t");
            tw.push_str(v);
            tw.push('\n');
        };
        if !self.name.is_empty() {
            line(&mut tw, "Name", &self.name);
        }
        if show_ref && !self.r#ref.is_empty() {
            line(&mut tw, "Ref", &self.r#ref);
        }
        if !self.context.is_empty() {
            line(&mut tw, "Context", &self.context);
        }
        if !self.dockerfile.is_empty() {
            line(&mut tw, "Dockerfile", &self.dockerfile);
        }
        if !self.vcs_repository.is_empty() {
            line(&mut tw, "VCS Repository", &self.vcs_repository);
        }
        if !self.vcs_revision.is_empty() {
            line(&mut tw, "VCS Revision", &self.vcs_revision);
        }
        if !self.target.is_empty() {
            line(&mut tw, "Target", &self.target);
        }
        if !self.platform.is_empty() {
            line(&mut tw, "Platforms", &self.platform.join(", "));
        }
        if self.keep_git_dir {
            line(&mut tw, "Keep Git Dir", "true");
        }
        o.push_str(&tab_padded(&tw));
        o.push('\n');
        print_table(&mut o, &self.named_contexts, "Named Context");

        let mut tw = String::new();
        line(
            &mut tw,
            "Started",
            &self.started_at.map(local_date_time).unwrap_or_default(),
        );
        let running = if self.status == "running" {
            " (running)"
        } else {
            ""
        };
        line(
            &mut tw,
            "Duration",
            &format!("{}{running}", format_duration(self.duration)),
        );
        match (self.status, &self.error) {
            ("failed", Some(e)) => line(
                &mut tw,
                "Error",
                &format!("{} {}", code_name(e.code), e.message),
            ),
            ("canceled", _) => line(&mut tw, "Status", "Canceled"),
            _ => {}
        }
        let cached = f64::from(self.num_cached_steps) / f64::from(self.num_total_steps) * 100.0;
        line(
            &mut tw,
            "Build Steps",
            &format!(
                "{}/{} ({}% cached)",
                self.num_completed_steps,
                self.num_total_steps,
                go_percent(cached)
            ),
        );
        o.push_str(&tab_padded(&tw));
        o.push('\n');

        let c = &self.config;
        let mut tw = String::new();
        let pairs: [(&str, String); 14] = [
            ("Network", c.network.clone()),
            ("Hostname", c.hostname.clone()),
            ("Extra Hosts", c.extra_hosts.join(", ")),
            ("Cgroup Parent", c.cgroup_parent.clone()),
            ("Image Resolve Mode", c.image_resolve_mode.clone()),
            (
                "Multi-Platform",
                if c.multi_platform {
                    "true".into()
                } else {
                    String::new()
                },
            ),
            (
                "No Cache",
                if c.no_cache {
                    "true".into()
                } else {
                    String::new()
                },
            ),
            ("No Cache Filter", c.no_cache_filter.join(", ")),
            ("Shm Size", c.shm_size.clone()),
            ("Resource Limits", c.ulimit.clone()),
            ("Cache Mount Namespace", c.cache_mount_ns.clone()),
            ("Dockerfile Check Config", c.dockerfile_check_config.clone()),
            ("Source Date Epoch", c.source_date_epoch.clone()),
            ("Sandbox Hostname", c.sandbox_hostname.clone()),
        ];
        for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
            line(&mut tw, k, v);
        }
        for kv in &c.rest_raw {
            line(&mut tw, &kv.name, &kv.value);
        }
        o.push_str(&tab_padded(&tw));
        o.push('\n');

        print_table(&mut o, &self.build_args, "Build Arg");
        print_table(&mut o, &self.labels, "Label");

        if !self.materials.is_empty() {
            o.push_str("Materials:\n");
            let mut tw = String::from("URI\tDIGEST\n");
            for m in &self.materials {
                tw.push_str(&format!("{}\t{}\n", m.uri, m.digests.join(", ")));
            }
            o.push_str(&tab_padded(&tw));
            o.push('\n');
        }
        if !self.attachments.is_empty() {
            o.push_str("Attachments:\n");
            let mut tw = String::from("DIGEST\tPLATFORM\tTYPE\n");
            for a in &self.attachments {
                tw.push_str(&format!(
                    "{}\t{}\t{}\n",
                    a.digest,
                    a.platform.as_deref().unwrap_or(""),
                    a.kind
                ));
            }
            o.push_str(&tab_padded(&tw));
            o.push('\n');
        }
        if let Some(e) = &self.error {
            o.push_str(&e.sources);
            if !e.logs.is_empty() {
                o.push_str("Logs:\n");
                o.push_str(&format!("> => {}:\n", e.name));
                for l in &e.logs {
                    o.push_str(&format!("> {l}\n"));
                }
                o.push('\n');
            }
            if e.has_external {
                o.push_str("Enable --debug to see stack traces for error\n");
            }
        }
        o.push_str(&format!(
            "Print build logs: {logs_command} {}\n",
            self.r#ref
        ));
        o.push_str(&format!(
            "View build in Docker Desktop: {}\n",
            desktop_url(&self.full_ref)
        ));
        o
    }
}

fn kv_json(kv: &KeyValue) -> Value {
    let mut o = Map::new();
    if !kv.name.is_empty() {
        o.insert("Name".into(), kv.name.clone().into());
    }
    if !kv.value.is_empty() {
        o.insert("Value".into(), kv.value.clone().into());
    }
    Value::Object(o)
}

/// Go's `%.0f` (round half to even; `NaN` stays `NaN`).
fn go_percent(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    format!("{:.0}", v)
}

fn print_table(o: &mut String, kvs: &[KeyValue], title: &str) {
    if kvs.is_empty() {
        return;
    }
    let mut tw = format!("{}\tVALUE\n", title.to_uppercase());
    for kv in kvs {
        tw.push_str(&format!("{}\t{}\n", kv.name, kv.value));
    }
    o.push_str(&tab_padded(&tw));
    o.push('\n');
}

/// Go's `tabwriter.NewWriter(w, 1, 8, 1, '\t', 0)`: columns padded with tabs to the next
/// multiple of 8 after the widest cell plus one.
pub fn tab_padded(text: &str) -> String {
    const TABWIDTH: usize = 8;
    let lines: Vec<Vec<&str>> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    if text.is_empty() {
        return String::new();
    }
    let mut widths = vec![0usize; lines.len()];
    let mut cell_widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    // Column by column, a block is a run of lines that have a (tab-terminated) cell there.
    let max_cols = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    for col in 0..max_cols.saturating_sub(1) {
        let mut i = 0;
        while i < lines.len() {
            if lines[i].len() <= col + 1 {
                i += 1;
                continue;
            }
            let start = i;
            let mut width = 1;
            while i < lines.len() && lines[i].len() > col + 1 {
                width = width.max(lines[i][col].chars().count() + 1);
                i += 1;
            }
            for w in cell_widths.iter_mut().take(i).skip(start) {
                w[col] = width;
            }
        }
    }
    widths.clear();
    let mut out = String::new();
    for (line, ws) in lines.iter().zip(&cell_widths) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let cellw = ws[j].div_ceil(TABWIDTH) * TABWIDTH;
                let n = cellw - cell.chars().count();
                out.extend(std::iter::repeat_n('\t', n.div_ceil(TABWIDTH)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_padding_matches_gos_tabwriter() {
        assert_eq!(
            tab_padded("Image Resolve Mode:\tlocal\nNo Cache:\ttrue\n"),
            "Image Resolve Mode:\tlocal\nNo Cache:\t\ttrue\n"
        );
        assert_eq!(
            tab_padded("Started:\tx\nDuration:\t2.5s\nBuild Steps:\t8/8\n"),
            "Started:\tx\nDuration:\t2.5s\nBuild Steps:\t8/8\n"
        );
        assert_eq!(
            tab_padded("URI\tDIGEST\npkg:docker/busybox@latest?platform=linux%2Famd64\tsha256:x\n"),
            "URI\t\t\t\t\t\t\tDIGEST\npkg:docker/busybox@latest?platform=linux%2Famd64\tsha256:x\n"
        );
        assert_eq!(tab_padded(""), "");
    }

    #[test]
    fn go_rounds_half_to_even() {
        assert_eq!(go_percent(12.5), "12");
        assert_eq!(go_percent(13.5), "14");
        assert_eq!(go_percent(f64::NAN), "NaN");
    }

    fn record(attrs: &[(&str, &str)]) -> Record {
        Record {
            record: control::BuildHistoryRecord {
                r#ref: "abc".into(),
                frontend_attrs: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                created_at: Some(prost_types_ts(10, 0)),
                completed_at: Some(prost_types_ts(12, 500_000_000)),
                num_total_steps: 8,
                num_completed_steps: 8,
                num_cached_steps: 1,
                ..Default::default()
            },
            current_timestamp: None,
            builder: "default".into(),
            node: "default".into(),
            node_index: 0,
        }
    }

    fn prost_types_ts(
        seconds: i64,
        nanos: i32,
    ) -> bollard_buildkit_proto::google::protobuf::Timestamp {
        bollard_buildkit_proto::google::protobuf::Timestamp { seconds, nanos }
    }

    #[test]
    fn fields_come_from_frontend_attrs_like_buildx() {
        let i = from_record(
            &record(&[
                ("filename", "Dockerfile.tty"),
                ("image-resolve-mode", "local"),
                ("no-cache", ""),
                ("attest:provenance", "mode=min"),
                ("build-arg:FOO", "bar"),
                ("label:a", "b"),
                ("platform", "linux/amd64,linux/arm64"),
                ("target", "app"),
                ("add-hosts", "a:1.2.3.4,b:5.6.7.8"),
                ("something", "else"),
            ]),
            "linux/amd64",
        );
        // buildx drops `filename` before naming the record.
        assert_eq!(i.name, "app");
        assert_eq!(i.dockerfile, "Dockerfile.tty");
        assert_eq!(i.target, "app");
        assert_eq!(i.platform, ["linux/amd64", "linux/arm64"]);
        assert_eq!(i.status, "completed");
        assert_eq!(i.duration, 2_500_000_000);
        assert!(i.config.no_cache);
        assert_eq!(i.config.image_resolve_mode, "local");
        assert_eq!(i.config.extra_hosts, ["a:1.2.3.4", "b:5.6.7.8"]);
        assert_eq!(
            i.config.rest_raw,
            [KeyValue {
                name: "something".into(),
                value: "else".into()
            }]
        );
        assert_eq!(i.build_args.len(), 1);
        assert_eq!(i.labels.len(), 1);
        let json: Value = serde_json::from_str(&i.to_json()).unwrap();
        assert_eq!(json["Status"], "completed");
        assert_eq!(json["Config"]["NoCache"], true);
        assert_eq!(json["Duration"], 2_500_000_000i64);
        let text = i.to_text(false, "kiln history logs");
        assert!(text.contains("Build Steps:\t8/8 (12% cached)\n"), "{text}");
        assert!(text.contains("No Cache:\t\ttrue\n"), "{text}");
        assert!(text.ends_with(
            "View build in Docker Desktop: docker-desktop://dashboard/build/default/default/abc\n"
        ));
    }

    #[test]
    fn failed_and_canceled_builds() {
        let mut r = record(&[]);
        r.record.error = Some(bollard_buildkit_proto::google::rpc::Status {
            code: 2,
            message: "process did not complete".into(),
            details: vec![],
        });
        let i = from_record(&r, "");
        assert_eq!(i.status, "failed");
        assert!(i
            .to_text(true, "kiln history logs")
            .contains("Error:\t\tUnknown process did not complete\n"));
        r.record.error.as_mut().unwrap().code = 1;
        assert_eq!(from_record(&r, "").status, "canceled");
    }
}
