//! The `.dockerbuild` bundle `history export` writes (Docker Desktop imports it): a gzipped
//! OCI layout whose manifest has the record as its config
//! (`application/vnd.buildkit.historyrecord.v0`) and the record's blobs as layers: the trace
//! (with secrets in command lines masked), the status stream, attestations, results (typed
//! `application/json`, the real type kept in an annotation) and the full error. Several
//! records become an index of such manifests.
//!
//! The record is encoded as buildx's Go code encodes the protobuf struct (field names, order,
//! `omitempty`), so the config blob is the one buildx writes for the same record.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{anyhow, Context, Result};
use base64::Engine as _;
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use super::content::ContentStore;
use super::json::go_indent;
use super::Record;

pub const HISTORY_RECORD_MEDIA_TYPE: &str = "application/vnd.buildkit.historyrecord.v0";
const REF_DESCRIPTOR_MEDIA_TYPE: &str = "vnd.export-build.descriptor.mediatype";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// One record to export, with the platform of its node's first worker.
pub struct Export {
    pub record: Record,
    pub default_platform: String,
}

/// A descriptor as OCI writes it (`mediaType`, `digest`, `size`, `annotations`).
#[derive(Clone, Debug)]
struct Desc {
    media_type: String,
    digest: String,
    size: i64,
    annotations: BTreeMap<String, String>,
}

impl Desc {
    fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("mediaType".into(), self.media_type.clone().into());
        m.insert("digest".into(), self.digest.clone().into());
        m.insert("size".into(), self.size.into());
        if !self.annotations.is_empty() {
            m.insert("annotations".into(), json!(self.annotations));
        }
        Value::Object(m)
    }
}

/// Blobs gathered for the archive, by digest.
#[derive(Default)]
struct Blobs {
    data: BTreeMap<String, Vec<u8>>,
}

impl Blobs {
    fn add_json(&mut self, media_type: &str, v: &Value) -> Desc {
        self.add(media_type, go_indent(v).into_bytes())
    }

    fn add(&mut self, media_type: &str, data: Vec<u8>) -> Desc {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
        let d = Desc {
            media_type: media_type.to_string(),
            digest: digest.clone(),
            size: data.len() as i64,
            annotations: BTreeMap::new(),
        };
        self.data.insert(digest, data);
        d
    }
}

/// The bundle of `records` (their blobs read from each record's node's `stores`).
pub async fn export(stores: &[ContentStore], records: Vec<Export>) -> Result<Vec<u8>> {
    let mut blobs = Blobs::default();
    let single = records.len() == 1;
    let mut manifests = Vec::new();
    for e in records {
        let store = stores
            .get(e.record.node_index)
            .ok_or_else(|| anyhow!("no content store for node {}", e.record.node))?;
        let r#ref = e.record.record.r#ref.clone();
        let mut desc = export_record(store, e, &mut blobs)
            .await
            .context("failed to export record")?;
        if !single {
            desc.annotations
                .insert("vnd.buildkit.history.reference".into(), r#ref);
        }
        manifests.push(desc);
    }
    let top = if single {
        manifests.remove(0)
    } else {
        let idx = json!({
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": manifests.iter().map(Desc::json).collect::<Vec<_>>(),
        });
        blobs.add_json(INDEX, &idx)
    };
    let tar = layout_tar(&top, &blobs).context("failed to create dockerbuild archive")?;
    Ok(gzip_stored(&tar))
}

async fn export_record(store: &ContentStore, e: Export, blobs: &mut Blobs) -> Result<Desc> {
    let mut rec = e.record.record;
    sanitize_record(&mut rec);
    let mut layers = Vec::new();
    let mut visited = HashSet::new();

    if let Some(trace) = rec.trace.clone() {
        if load(store, &trace, &mut visited)
            .await
            .context("failed to load trace descriptor")?
            .is_some()
        {
            let dt = store.read(&trace.digest).await?;
            let clean = sanitize_trace(&dt).context("failed to sanitize trace")?;
            let d = blobs.add(&trace.media_type, clean);
            if let Some(t) = rec.trace.as_mut() {
                t.digest = d.digest.clone();
                t.size = d.size;
            }
            layers.push(d);
        }
    }

    let config = blobs.add_json(
        HISTORY_RECORD_MEDIA_TYPE,
        &record_json(&rec, &e.default_platform),
    );

    if let Some(logs) = &rec.logs {
        if let Some(d) = load(store, logs, &mut visited)
            .await
            .context("failed to load logs descriptor")?
        {
            blobs
                .data
                .insert(d.digest.clone(), store.read(&d.digest).await?);
            layers.push(d);
        }
    }
    if let Some(res) = &rec.result {
        layers.extend(load_result(store, res, &mut visited, blobs).await?);
    }
    if let Some(ext) = &rec.external_error {
        if let Some(d) = load(store, ext, &mut visited)
            .await
            .context("failed to load external error descriptor")?
        {
            blobs
                .data
                .insert(d.digest.clone(), store.read(&d.digest).await?);
            layers.push(d);
        }
    }
    let mut keys: Vec<_> = rec.results.keys().cloned().collect();
    keys.sort();
    for k in keys {
        layers.extend(load_result(store, &rec.results[&k], &mut visited, blobs).await?);
    }

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.json(),
        "layers": layers.iter().map(Desc::json).collect::<Vec<_>>(),
    });
    Ok(blobs.add_json(MANIFEST, &manifest))
}

async fn load_result(
    store: &ContentStore,
    res: &control::BuildResultInfo,
    visited: &mut HashSet<String>,
    blobs: &mut Blobs,
) -> Result<Vec<Desc>> {
    let mut out = Vec::new();
    for a in &res.attestations {
        if let Some(d) = load(store, a, visited)
            .await
            .context("failed to load attestation descriptor")?
        {
            blobs
                .data
                .insert(d.digest.clone(), store.read(&d.digest).await?);
            out.push(d);
        }
    }
    let mut keys: Vec<_> = res.results.keys().collect();
    keys.sort();
    for k in keys {
        if let Some(mut d) = load(store, &res.results[k], visited)
            .await
            .context("failed to load result descriptor")?
        {
            blobs
                .data
                .insert(d.digest.clone(), store.read(&d.digest).await?);
            // Typed as plain JSON so that importers don't walk into the image.
            d.annotations
                .insert(REF_DESCRIPTOR_MEDIA_TYPE.into(), d.media_type.clone());
            d.media_type = "application/json".into();
            out.push(d);
        }
    }
    Ok(out)
}

/// The descriptor if not yet seen, after checking the store holds the blob.
async fn load(
    store: &ContentStore,
    d: &control::Descriptor,
    visited: &mut HashSet<String>,
) -> Result<Option<Desc>> {
    if !visited.insert(d.digest.clone()) {
        return Ok(None);
    }
    if !d.digest.starts_with("sha256:") || d.digest.len() != 71 {
        return Err(anyhow!("failed to parse digest {:?}", d.digest));
    }
    if store.info(&d.digest).await?.is_none() {
        return Err(anyhow!("failed to get info: {}: not found", d.digest));
    }
    Ok(Some(Desc {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: d.annotations.clone().into_iter().collect(),
    }))
}

/// Cache imports keep only `scope` and `ref` (tokens and URLs are left behind).
fn sanitize_record(rec: &mut control::BuildHistoryRecord) {
    if let Some(v) = rec.frontend_attrs.get_mut("cache-imports") {
        *v = sanitize_cache_imports(v).unwrap_or_default();
    }
}

fn sanitize_cache_imports(v: &str) -> Option<String> {
    let arr: Vec<Value> = serde_json::from_str(v).ok()?;
    let cleaned: Vec<Value> = arr
        .into_iter()
        .map(|ci| {
            let attrs: BTreeMap<String, String> = ci["Attrs"]
                .as_object()
                .map(|a| {
                    a.iter()
                        .filter(|(k, _)| *k == "scope" || *k == "ref")
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            json!({"Type": ci["Type"].as_str().unwrap_or_default(), "Attrs": attrs})
        })
        .collect();
    Some(super::json::go_compact(&Value::Array(cleaned)))
}

/// The fields of buildx's `otelutil.Span`.
const SPAN_FIELDS: [&str; 16] = [
    "Name",
    "SpanContext",
    "Parent",
    "SpanKind",
    "StartTime",
    "EndTime",
    "Attributes",
    "Events",
    "Links",
    "Status",
    "DroppedAttributes",
    "DroppedEvents",
    "DroppedLinks",
    "ChildSpanCount",
    "Resource",
    "InstrumentationLibrary",
];

/// Masks credentials in the string attributes of every span, re-encoding the spans as Go's
/// indented encoder does (one value per line group).
fn sanitize_trace(dt: &[u8]) -> Result<Vec<u8>> {
    let mut out = String::new();
    for span in serde_json::Deserializer::from_slice(dt).into_iter::<Value>() {
        let span = span?;
        // buildx decodes into its own span type and re-encodes it: only these fields, in
        // this order, survive.
        let mut span = Value::Object(
            SPAN_FIELDS
                .iter()
                .filter_map(|k| span.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect(),
        );
        if let Some(attrs) = span.get_mut("Attributes").and_then(Value::as_array_mut) {
            for a in attrs {
                let v = &mut a["Value"];
                if v["Type"] == "STRING" {
                    if let Some(s) = v["Value"].as_str() {
                        let clean = sanitize_command(s);
                        v["Value"] = clean.into();
                    }
                }
            }
        }
        out.push_str(&go_indent(&span));
        out.push('\n');
    }
    Ok(out.into_bytes())
}

/// Masks `token=...`-style values and GitHub tokens in a command line.
pub fn sanitize_command(value: &str) -> String {
    use std::sync::OnceLock;
    static RES: OnceLock<[regex::Regex; 3]> = OnceLock::new();
    let [attrs, ghs, ghpat] = RES.get_or_init(|| {
        [
            regex::Regex::new(
                r"(?i)(ghtoken|token|access_key_id|secret_access_key|session_token)=[^ ,]+",
            )
            .expect("valid regex"),
            regex::Regex::new(r"(?:ghu|ghs)_[A-Za-z0-9]{36}").expect("valid regex"),
            regex::Regex::new(r"github_pat_\w{82}").expect("valid regex"),
        ]
    });
    let v = attrs.replace_all(value, "${1}=xxxxx");
    let v = ghs.replace_all(&v, "xxxxx");
    ghpat.replace_all(&v, "xxxxx").into_owned()
}

/// The record as Go's `encoding/json` writes `controlapi.BuildHistoryRecord` (proto field
/// names, proto order, everything `omitempty`), plus buildx's `DefaultPlatform`.
pub fn record_json(r: &control::BuildHistoryRecord, default_platform: &str) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "Ref", &r.r#ref);
    put_str(&mut m, "Frontend", &r.frontend);
    put_map(&mut m, "FrontendAttrs", &r.frontend_attrs);
    if !r.exporters.is_empty() {
        let ex = r
            .exporters
            .iter()
            .map(|e| {
                let mut o = Map::new();
                put_str(&mut o, "Type", &e.r#type);
                put_map(&mut o, "Attrs", &e.attrs);
                Value::Object(o)
            })
            .collect();
        m.insert("Exporters".into(), ex);
    }
    if let Some(e) = &r.error {
        let mut o = Map::new();
        if e.code != 0 {
            o.insert("code".into(), e.code.into());
        }
        put_str(&mut o, "message", &e.message);
        if !e.details.is_empty() {
            let ds = e
                .details
                .iter()
                .map(|d| {
                    let mut a = Map::new();
                    put_str(&mut a, "type_url", &d.type_url);
                    if !d.value.is_empty() {
                        a.insert(
                            "value".into(),
                            base64::engine::general_purpose::STANDARD
                                .encode(&d.value)
                                .into(),
                        );
                    }
                    Value::Object(a)
                })
                .collect();
            o.insert("details".into(), ds);
        }
        m.insert("error".into(), Value::Object(o));
    }
    put_ts(&mut m, "CreatedAt", &r.created_at);
    put_ts(&mut m, "CompletedAt", &r.completed_at);
    put_desc(&mut m, "logs", &r.logs);
    put_map(&mut m, "ExporterResponse", &r.exporter_response);
    if let Some(res) = &r.result {
        m.insert("Result".into(), result_json(res));
    }
    if !r.results.is_empty() {
        let sorted: BTreeMap<_, _> = r.results.iter().collect();
        let o: Map<String, Value> = sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), result_json(v)))
            .collect();
        m.insert("Results".into(), Value::Object(o));
    }
    put_int(&mut m, "Generation", r.generation);
    put_desc(&mut m, "trace", &r.trace);
    if r.pinned {
        m.insert("pinned".into(), true.into());
    }
    put_int(&mut m, "numCachedSteps", r.num_cached_steps);
    put_int(&mut m, "numTotalSteps", r.num_total_steps);
    put_int(&mut m, "numCompletedSteps", r.num_completed_steps);
    put_desc(&mut m, "externalError", &r.external_error);
    put_int(&mut m, "numWarnings", r.num_warnings);
    m.insert("DefaultPlatform".into(), default_platform.into());
    Value::Object(m)
}

fn result_json(res: &control::BuildResultInfo) -> Value {
    let mut o = Map::new();
    put_desc(&mut o, "ResultDeprecated", &res.result_deprecated);
    if !res.attestations.is_empty() {
        o.insert(
            "Attestations".into(),
            res.attestations.iter().map(desc_json).collect(),
        );
    }
    if !res.results.is_empty() {
        // Go sorts map keys as strings.
        let sorted: BTreeMap<String, &control::Descriptor> = res
            .results
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let rs: Map<String, Value> = sorted.into_iter().map(|(k, v)| (k, desc_json(v))).collect();
        o.insert("Results".into(), Value::Object(rs));
    }
    Value::Object(o)
}

fn desc_json(d: &control::Descriptor) -> Value {
    let mut o = Map::new();
    put_str(&mut o, "media_type", &d.media_type);
    put_str(&mut o, "digest", &d.digest);
    if d.size != 0 {
        o.insert("size".into(), d.size.into());
    }
    put_map(&mut o, "annotations", &d.annotations);
    Value::Object(o)
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: &str) {
    if !v.is_empty() {
        m.insert(k.into(), v.into());
    }
}

fn put_int(m: &mut Map<String, Value>, k: &str, v: i32) {
    if v != 0 {
        m.insert(k.into(), v.into());
    }
}

fn put_map(m: &mut Map<String, Value>, k: &str, v: &HashMap<String, String>) {
    if !v.is_empty() {
        let sorted: BTreeMap<_, _> = v.iter().collect();
        m.insert(k.into(), json!(sorted));
    }
}

fn put_ts(
    m: &mut Map<String, Value>,
    k: &str,
    v: &Option<bollard_buildkit_proto::google::protobuf::Timestamp>,
) {
    if let Some(t) = v {
        let mut o = Map::new();
        if t.seconds != 0 {
            o.insert("seconds".into(), t.seconds.into());
        }
        if t.nanos != 0 {
            o.insert("nanos".into(), t.nanos.into());
        }
        m.insert(k.into(), Value::Object(o));
    }
}

fn put_desc(m: &mut Map<String, Value>, k: &str, v: &Option<control::Descriptor>) {
    if let Some(d) = v {
        m.insert(k.into(), desc_json(d));
    }
}

/// The OCI layout as containerd's archive exporter writes it: `blobs/`, `blobs/sha256/`, the
/// blobs, `index.json` and `oci-layout`, in name order, owned by root, dated 1970.
fn layout_tar(top: &Desc, blobs: &Blobs) -> Result<Vec<u8>> {
    let mut tar = Vec::new();
    tar_entry(&mut tar, "blobs/", 0o755, None)?;
    tar_entry(&mut tar, "blobs/sha256/", 0o755, None)?;
    for (digest, data) in &blobs.data {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        tar_entry(&mut tar, &format!("blobs/sha256/{hex}"), 0o444, Some(data))?;
    }
    let index = super::json::go_compact(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [top.json()],
    }));
    tar_entry(&mut tar, "index.json", 0o644, Some(index.as_bytes()))?;
    tar_entry(
        &mut tar,
        "oci-layout",
        0o444,
        Some(br#"{"imageLayoutVersion":"1.0.0"}"#),
    )?;
    tar.extend_from_slice(&[0u8; 1024]);
    Ok(tar)
}

/// One ustar entry: a directory when `data` is `None`.
fn tar_entry(out: &mut Vec<u8>, name: &str, mode: u32, data: Option<&[u8]>) -> Result<()> {
    if name.len() > 100 {
        return Err(anyhow!("tar entry name too long: {name}"));
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{:0width$o}\0", v, width = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    let size = data.map(|d| d.len() as u64).unwrap_or(0);
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, 0);
    h[156] = if data.is_some() { b'0' } else { b'5' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    out.extend_from_slice(&h);
    if let Some(d) = data {
        out.extend_from_slice(d);
        let pad = (512 - d.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    Ok(())
}

/// A gzip member holding `data` in stored (uncompressed) deflate blocks: valid for every
/// gzip reader, with no compression library in the tree.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(65_535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut crc = !0u32;
    for b in data {
        crc = table[((crc ^ u32::from(*b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn gzip_and_tar_are_readable() {
        let mut blobs = Blobs::default();
        let d = blobs.add_json(MANIFEST, &json!({"a": 1}));
        let tar = layout_tar(&d, &blobs).unwrap();
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[257..262], b"ustar");
        let gz = gzip_stored(&tar);
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.dockerbuild");
        std::fs::write(&p, &gz).unwrap();
        let out = std::process::Command::new("tar")
            .arg("tzf")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(list.contains("index.json"), "{list}");
        assert!(
            list.contains(&format!("blobs/sha256/{}", &d.digest[7..])),
            "{list}"
        );
    }

    #[test]
    fn record_json_follows_gos_encoding() {
        let mut r = control::BuildHistoryRecord {
            r#ref: "abc".into(),
            frontend: "dockerfile.v0".into(),
            created_at: Some(bollard_buildkit_proto::google::protobuf::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            num_total_steps: 3,
            ..Default::default()
        };
        r.frontend_attrs.insert("z".into(), "1 && 2".into());
        r.frontend_attrs.insert("a".into(), "".into());
        let s = go_indent(&record_json(&r, "linux/amd64"));
        assert_eq!(
            s,
            "{\n  \"Ref\": \"abc\",\n  \"Frontend\": \"dockerfile.v0\",\n  \"FrontendAttrs\": {\n    \"a\": \"\",\n    \"z\": \"1 \\u0026\\u0026 2\"\n  },\n  \"CreatedAt\": {\n    \"seconds\": 5\n  },\n  \"numTotalSteps\": 3,\n  \"DefaultPlatform\": \"linux/amd64\"\n}"
        );
    }

    #[test]
    fn secrets_in_commands_are_masked() {
        assert_eq!(
            sanitize_command("--cache-to type=gha,token=abc123,scope=x"),
            "--cache-to type=gha,token=xxxxx,scope=x"
        );
        assert_eq!(
            sanitize_command(&format!("echo ghs_{}", "a".repeat(36))),
            "echo xxxxx"
        );
        assert_eq!(
            sanitize_cache_imports(
                r#"[{"Type":"gha","Attrs":{"token":"t","scope":"s","url":"u"}}]"#
            )
            .unwrap(),
            r#"[{"Type":"gha","Attrs":{"scope":"s"}}]"#
        );
    }
}
