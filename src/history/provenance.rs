//! The provenance buildx puts into `--metadata-file`: the SLSA predicate BuildKit recorded in a
//! build's history record, read back through the daemon's content service right after the build
//! and written as `buildx.build.provenance` (or `buildx.build.provenance/<platform>` per platform).
//!
//! This module owns choosing the record's provenance blob and shaping it (SLSA v0.2 always;
//! `min` drops `buildConfig` and `metadata`); it does not write the metadata file (the commands
//! do) and it never names the record to the daemon (see [`super::listen`]).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use base64::Engine as _;
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use serde_json::{Map, Value};

use super::content::ContentStore;
use super::NoHistory;
use crate::builder::Builder;
use crate::buildkit::BuildkitClient;

/// The key buildx writes a single result's provenance under (`KEY/<platform>` for several).
pub const METADATA_KEY: &str = "buildx.build.provenance";

const SLSA_V1: &str = "https://slsa.dev/provenance/v1";
const BUILD_TYPE_V02: &str = "https://mobyproject.org/buildkit@v1";

/// How much provenance the metadata file carries (`BUILDX_METADATA_PROVENANCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetadataProvenance {
    /// The predicate without `buildConfig` and `metadata` (buildx's default).
    #[default]
    Min,
    /// The whole predicate.
    Max,
    /// No provenance key.
    Disabled,
}

impl MetadataProvenance {
    /// `BUILDX_METADATA_PROVENANCE` as buildx reads it.
    pub fn from_env() -> MetadataProvenance {
        MetadataProvenance::parse(&std::env::var("BUILDX_METADATA_PROVENANCE").unwrap_or_default())
    }

    /// `min`, `max`, `disabled`, or a boolean (false disables); anything else is `min`.
    pub fn parse(v: &str) -> MetadataProvenance {
        match v {
            "min" => MetadataProvenance::Min,
            "max" => MetadataProvenance::Max,
            "disabled" => MetadataProvenance::Disabled,
            _ if kiln_bake::types::parse_go_bool(v) == Some(false) => MetadataProvenance::Disabled,
            _ => MetadataProvenance::Min,
        }
    }
}

/// The provenance keys buildx adds to a finished build's metadata, read from its history record
/// on the node that ran it (`buildx.build.ref` in the exporter response is `BUILDER/NODE/REF`).
pub async fn for_build(
    builder: &Builder,
    exporter_response: &BTreeMap<String, String>,
    mode: MetadataProvenance,
) -> Result<BTreeMap<String, String>> {
    let found = exporter_response
        .get("buildx.build.ref")
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(builder_node, r#ref)| Some((builder_node.rsplit_once('/')?.1, r#ref)))
        .and_then(|(node, r#ref)| Some((builder.nodes.iter().find(|n| n.name == node)?, r#ref)));
    let Some((node, r#ref)) = found.filter(|_| mode != MetadataProvenance::Disabled) else {
        return Ok(BTreeMap::new());
    };
    let client = BuildkitClient::connect(node.driver.clone()).await?;
    metadata_keys(&client, &node.name, r#ref, mode).await
}

/// The metadata keys for the provenance of record `ref` on one node, base64 JSON as buildx
/// stores them in the exporter response. Empty when the mode is disabled or the node's BuildKit
/// has no history API (Engine 20.10), as with buildx.
pub async fn metadata_keys(
    client: &BuildkitClient,
    node: &str,
    r#ref: &str,
    mode: MetadataProvenance,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if mode == MetadataProvenance::Disabled {
        return Ok(out);
    }
    let records = match super::listen(client, node).await {
        Ok((records, _)) => records,
        Err(e) if e.is::<NoHistory>() => return Ok(out),
        Err(e) => return Err(e),
    };
    let store = ContentStore::new(client.channel());
    for (_, rec) in records.into_iter().filter(|(_, r)| r.r#ref == r#ref) {
        for (key, (desc, predicate_type)) in provenance_blobs(&rec) {
            let blob = store
                .read(&desc.digest)
                .await
                .context("failed to load provenance blob from build record")?;
            out.insert(key, encode(&blob, &predicate_type, mode)?);
        }
    }
    Ok(out)
}

/// The provenance attestation of each result with its metadata key. As buildx reads a record:
/// a record with a single result (which also holds the exporters' descriptors) is not looked at
/// per platform, so a multi-platform build that exported something has no provenance key.
fn provenance_blobs(
    rec: &control::BuildHistoryRecord,
) -> Vec<(String, (control::Descriptor, String))> {
    if let Some(res) = &rec.result {
        return provenance_of(res)
            .map(|p| vec![(METADATA_KEY.to_string(), p)])
            .unwrap_or_default();
    }
    rec.results
        .iter()
        .filter_map(|(platform, res)| {
            provenance_of(res).map(|p| (format!("{METADATA_KEY}/{platform}"), p))
        })
        .collect()
}

/// The first in-toto attestation with a SLSA provenance predicate, and its predicate type.
fn provenance_of(res: &control::BuildResultInfo) -> Option<(control::Descriptor, String)> {
    res.attestations.iter().find_map(|a| {
        let kind = a.annotations.get("in-toto.io/predicate-type")?;
        (a.media_type == "application/vnd.in-toto+json"
            && kind.starts_with("https://slsa.dev/provenance/"))
        .then(|| (a.clone(), kind.clone()))
    })
}

/// The predicate as buildx writes it: SLSA v0.2, trimmed for `min`, compact JSON in base64.
fn encode(blob: &[u8], predicate_type: &str, mode: MetadataProvenance) -> Result<String> {
    let pred: Value = serde_json::from_slice(blob).context("failed to unmarshal provenance")?;
    let mut pred = if predicate_type == SLSA_V1 {
        slsa1_to_slsa02(&pred)
    } else {
        pred
    };
    if mode == MetadataProvenance::Min {
        if let Value::Object(m) = &mut pred {
            m.shift_remove("buildConfig");
            m.shift_remove("metadata");
        }
    }
    let json = serde_json::to_vec(&pred).context("failed to marshal provenance")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(json))
}

/// BuildKit's SLSA v1 predicate in v0.2's shape, field for field as BuildKit converts it
/// (`ConvertToSLSA02`), keys in the order Go writes them and empty optional fields left out.
fn slsa1_to_slsa02(p: &Value) -> Value {
    let def = field(p, "buildDefinition");
    let run = field(p, "runDetails");
    let ext = field(def, "externalParameters");
    let int = field(def, "internalParameters");
    let mut out = Map::new();

    let mut builder = Map::new();
    builder.insert("id".into(), text(field(field(run, "builder"), "id")));
    out.insert("builder".into(), builder.into());
    out.insert("buildType".into(), BUILD_TYPE_V02.into());
    let materials: Vec<Value> = field(def, "resolvedDependencies")
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut o = Map::new();
            put_nonempty(&mut o, "uri", field(m, "uri"));
            put_nonempty(&mut o, "digest", field(m, "digest"));
            Value::Object(o)
        })
        .collect();
    if !materials.is_empty() {
        out.insert("materials".into(), materials.into());
    }

    let src = field(ext, "configSource");
    let mut config_source = Map::new();
    put_nonempty(&mut config_source, "uri", field(src, "uri"));
    put_nonempty(&mut config_source, "digest", field(src, "digest"));
    put_nonempty(&mut config_source, "entryPoint", field(src, "path"));
    let mut environment = Map::new();
    environment.insert("platform".into(), text(field(int, "builderPlatform")));
    // The daemon's custom provenance environment sits beside builderPlatform in v1.
    if let Some(m) = int.as_object() {
        for (k, v) in m {
            if !k.eq_ignore_ascii_case("buildConfig") && !k.eq_ignore_ascii_case("builderPlatform")
            {
                environment.insert(k.clone(), v.clone());
            }
        }
    }
    let mut invocation = Map::new();
    invocation.insert("configSource".into(), config_source.into());
    invocation.insert(
        "parameters".into(),
        match field(ext, "request") {
            Value::Object(m) => Value::Object(m.clone()),
            _ => Value::Object(Map::new()),
        },
    );
    invocation.insert("environment".into(), environment.into());
    out.insert("invocation".into(), invocation.into());
    put_nonempty(&mut out, "buildConfig", field(int, "buildConfig"));

    let md = field(run, "metadata");
    if md.is_object() {
        let mut meta = Map::new();
        put_nonempty(&mut meta, "buildInvocationID", field(md, "invocationID"));
        put_nonempty(&mut meta, "buildStartedOn", field(md, "startedOn"));
        put_nonempty(&mut meta, "buildFinishedOn", field(md, "finishedOn"));
        let c = field(md, "buildkit_completeness");
        let mut completeness = Map::new();
        completeness.insert("parameters".into(), flag(field(c, "request")));
        completeness.insert("environment".into(), true.into());
        completeness.insert("materials".into(), flag(field(c, "resolvedDependencies")));
        meta.insert("completeness".into(), completeness.into());
        meta.insert(
            "reproducible".into(),
            flag(field(md, "buildkit_reproducible")),
        );
        meta.insert(
            "https://mobyproject.org/buildkit@v1#metadata".into(),
            match field(md, "buildkit_metadata") {
                Value::Object(m) => Value::Object(m.clone()),
                _ => Value::Object(Map::new()),
            },
        );
        if flag(field(md, "buildkit_hermetic")) == Value::Bool(true) {
            meta.insert(
                "https://mobyproject.org/buildkit@v1#hermetic".into(),
                true.into(),
            );
        }
        out.insert("metadata".into(), meta.into());
    }
    Value::Object(out)
}

/// A field of a JSON object the way Go's decoder finds it: the exact key, else any key equal
/// to it ignoring case (BuildKit writes `invocationId` where the struct says `invocationID`).
fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    let Some(m) = v.as_object() else {
        return &NULL;
    };
    m.get(name)
        .or_else(|| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .unwrap_or(&NULL)
}

fn text(v: &Value) -> Value {
    Value::String(v.as_str().unwrap_or_default().to_string())
}

fn flag(v: &Value) -> Value {
    Value::Bool(v.as_bool().unwrap_or(false))
}

/// Go's `omitempty`: null, "", false, 0, and empty arrays and objects are left out.
fn put_nonempty(m: &mut Map<String, Value>, key: &str, v: &Value) {
    let empty = match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    };
    if !empty {
        m.insert(key.to_string(), v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(s: &str) -> Value {
        let dt = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        serde_json::from_slice(&dt).unwrap()
    }

    #[test]
    fn modes_parse_like_buildx() {
        assert_eq!(MetadataProvenance::parse(""), MetadataProvenance::Min);
        assert_eq!(MetadataProvenance::parse("min"), MetadataProvenance::Min);
        assert_eq!(MetadataProvenance::parse("max"), MetadataProvenance::Max);
        assert_eq!(
            MetadataProvenance::parse("disabled"),
            MetadataProvenance::Disabled
        );
        assert_eq!(
            MetadataProvenance::parse("false"),
            MetadataProvenance::Disabled
        );
        assert_eq!(MetadataProvenance::parse("0"), MetadataProvenance::Disabled);
        assert_eq!(MetadataProvenance::parse("true"), MetadataProvenance::Min);
        assert_eq!(MetadataProvenance::parse("MAX"), MetadataProvenance::Min);
    }

    #[test]
    fn min_drops_build_config_and_metadata_keeping_order() {
        let blob = json!({
            "builder": {"id": ""},
            "buildType": BUILD_TYPE_V02,
            "materials": [{"uri": "pkg:docker/busybox@latest", "digest": {"sha256": "ab"}}],
            "invocation": {"configSource": {"entryPoint": "Dockerfile"}},
            "buildConfig": {"llbDefinition": []},
            "metadata": {"buildInvocationID": "x"},
        });
        let dt = serde_json::to_vec(&blob).unwrap();
        let min = decode(
            &encode(
                &dt,
                "https://slsa.dev/provenance/v0.2",
                MetadataProvenance::Min,
            )
            .unwrap(),
        );
        let keys: Vec<_> = min.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["builder", "buildType", "materials", "invocation"]);
        let max = decode(
            &encode(
                &dt,
                "https://slsa.dev/provenance/v0.2",
                MetadataProvenance::Max,
            )
            .unwrap(),
        );
        assert_eq!(max, blob);
    }

    #[test]
    fn slsa1_converts_to_slsa02_as_buildkit_does() {
        let v1 = json!({
            "buildDefinition": {
                "buildType": "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md",
                "externalParameters": {
                    "configSource": {"path": "Dockerfile"},
                    "request": {"frontend": "dockerfile.v0", "locals": [{"name": "context"}]}
                },
                "internalParameters": {"buildConfig": {"llbDefinition": [{"id": "step0"}]}, "builderPlatform": "linux/amd64"},
                "resolvedDependencies": [{"uri": "pkg:docker/busybox@latest", "digest": {"sha256": "ab"}}]
            },
            "runDetails": {
                "builder": {"id": ""},
                "metadata": {
                    "invocationId": "inv",
                    "startedOn": "2025-01-01T00:00:00Z",
                    "finishedOn": "2025-01-01T00:00:01Z",
                    "buildkit_metadata": {"vcs": {"source": "x"}},
                    "buildkit_completeness": {"request": true, "resolvedDependencies": false}
                }
            }
        });
        let got = slsa1_to_slsa02(&v1);
        assert_eq!(
            got,
            json!({
                "builder": {"id": ""},
                "buildType": BUILD_TYPE_V02,
                "materials": [{"uri": "pkg:docker/busybox@latest", "digest": {"sha256": "ab"}}],
                "invocation": {
                    "configSource": {"entryPoint": "Dockerfile"},
                    "parameters": {"frontend": "dockerfile.v0", "locals": [{"name": "context"}]},
                    "environment": {"platform": "linux/amd64"}
                },
                "buildConfig": {"llbDefinition": [{"id": "step0"}]},
                "metadata": {
                    "buildInvocationID": "inv",
                    "buildStartedOn": "2025-01-01T00:00:00Z",
                    "buildFinishedOn": "2025-01-01T00:00:01Z",
                    "completeness": {"parameters": true, "environment": true, "materials": false},
                    "reproducible": false,
                    "https://mobyproject.org/buildkit@v1#metadata": {"vcs": {"source": "x"}}
                }
            })
        );
        let keys: Vec<_> = got.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "builder",
                "buildType",
                "materials",
                "invocation",
                "buildConfig",
                "metadata"
            ]
        );
    }

    fn attestation(kind: &str) -> control::Descriptor {
        control::Descriptor {
            media_type: "application/vnd.in-toto+json".into(),
            digest: format!("sha256:{kind}"),
            size: 1,
            annotations: [("in-toto.io/predicate-type".to_string(), kind.to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn single_result_wins_over_platforms_as_in_buildx() {
        let prov = attestation("https://slsa.dev/provenance/v0.2");
        let per_platform = control::BuildResultInfo {
            attestations: vec![prov.clone()],
            ..Default::default()
        };
        let mut rec = control::BuildHistoryRecord {
            results: [("linux/arm64".to_string(), per_platform.clone())]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let keys: Vec<_> = provenance_blobs(&rec).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["buildx.build.provenance/linux/arm64"]);

        // An exporter's descriptors make a single result without provenance.
        rec.result = Some(control::BuildResultInfo::default());
        assert!(provenance_blobs(&rec).is_empty());

        rec.result = Some(control::BuildResultInfo {
            attestations: vec![attestation("https://spdx.dev/Document"), prov],
            ..Default::default()
        });
        let keys: Vec<_> = provenance_blobs(&rec).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["buildx.build.provenance"]);
    }
}
