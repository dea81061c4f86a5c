//! `--call`: evaluating a build through one of the frontend's subrequests (`check`, `outline`,
//! `targets`, ...) instead of building it, and printing the answer as buildx does.
//!
//! A subrequest is a solve whose frontend attribute `requestid` is `frontend.<name>`. Its answer
//! travels in the frontend result's metadata (`result.json`, `result.txt`, `result.statuscode`,
//! `version`), which BuildKit only hands back to a client that runs the frontend through its
//! gateway (`moby.buildkit.v1.frontend.LLBBridge`), as buildx's `c.Build` does: the `Control/Solve`
//! carries no frontend and no exporters, and the gateway's `Solve` names the Dockerfile frontend.
//! This module owns that exchange and the rendering; which attributes a solve gets is `build/`'s.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use bollard_buildkit_proto::pb;
use kiln_bake::gopath::clean_path;
use serde::Deserialize;

use crate::builder::display::tabwrite;

/// `--call NAME[,format=FORMAT][,ignorestatus=BOOL]`, parsed as buildx's `ParseCallFunc` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFunc {
    /// The subrequest without its `frontend.` prefix; `check` is stored as `lint`.
    pub name: String,
    /// `json` prints the raw `result.json`; anything else prints the human form.
    pub format: String,
    /// Exit 0 even when the subrequest reports a non-zero status (lint warnings).
    pub ignore_status: bool,
}

impl CallFunc {
    /// `None` for an empty value and for `build` (a normal build).
    pub fn parse(value: &str) -> Result<Option<CallFunc>> {
        if value.is_empty() {
            return Ok(None);
        }
        let mut f = CallFunc {
            name: String::new(),
            format: String::new(),
            ignore_status: false,
        };
        for field in super::exporter::split_csv(value)? {
            match field.split_once('=') {
                Some(("format", v)) => f.format = v.to_string(),
                Some(("ignorestatus", v)) => {
                    f.ignore_status = go_parse_bool(v).ok_or_else(|| {
                        anyhow::anyhow!(
                            "invalid ignorestatus print value: {v}: strconv.ParseBool: parsing {v:?}: invalid syntax"
                        )
                    })?
                }
                Some(_) => bail!("invalid print field: {field}"),
                None => {
                    if !f.name.is_empty() {
                        bail!("invalid print value: {value}");
                    }
                    f.name = field;
                }
            }
        }
        // "check" is buildx's alias for the frontend's "lint".
        if f.name == "check" {
            f.name = "lint".into();
        }
        if f.name == "build" {
            return Ok(None);
        }
        Ok(Some(f))
    }

    /// The method as the user names it (`check` rather than the frontend's `lint`).
    pub fn display_name(&self) -> &str {
        if self.name == "lint" {
            "check"
        } else {
            &self.name
        }
    }

    /// A clear error when the node's frontend does not know this subrequest (Engine 20.10's
    /// frontend predates them all; kiln never fetches a newer frontend image instead).
    pub fn unsupported_error(
        &self,
        status: &tonic::Status,
        builder: &str,
        node: &str,
    ) -> Option<anyhow::Error> {
        let needle = format!("unsupported request {}", self.request_id());
        status.message().contains(&needle).then(|| {
            anyhow::anyhow!(
                "--call {}: the Dockerfile frontend of node {node:?} (builder {builder:?}) does not support this subrequest ({needle})",
                self.display_name()
            )
        })
    }

    /// The frontend attribute that selects the subrequest.
    pub fn request_id(&self) -> String {
        format!("frontend.{}", self.name)
    }
}

fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// What a subrequest printed and the exit code it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: String,
    pub exit_code: u8,
    /// A lint `buildError` with its source excerpt: shown as the command's error after stdout.
    pub error: Option<String>,
}

/// buildx's `printResult`: the subrequest's answer for stdout, and the exit code
/// (`result.statuscode` unless `ignorestatus`). A lint `buildError` comes back as the error
/// to report, with its source excerpt, as buildx reports it.
///
/// `dockerfile_name` is the Dockerfile as the user named it ([`dockerfile_mapping_src`]); lint
/// excerpts carry that name instead of the frontend's.
pub fn render_result(
    f: &CallFunc,
    res: &BTreeMap<String, String>,
    dockerfile_name: Option<&str>,
) -> Result<Rendered> {
    let mut out = String::new();
    let mut error = None;
    let get = |k: &str| res.get(k).map(String::as_str).unwrap_or_default();
    match f.name.as_str() {
        "outline" => print_value(&mut out, print_outline, OUTLINE_VERSION, &f.format, res)?,
        "targets" => print_value(&mut out, print_targets, TARGETS_VERSION, &f.format, res)?,
        "lint" => {
            let mut results: LintResults = match res.get("result.json") {
                Some(j) => serde_json::from_str(j)?,
                None => LintResults::default(),
            };
            if let Some(name) = dockerfile_name {
                for s in results.sources.iter_mut().flatten() {
                    s.filename = name.to_string();
                }
            }
            let n = results.warnings.len();
            if f.format != "json" && n > 0 {
                if n == 1 {
                    out.push_str("Check complete, 1 warning has been found!\n");
                } else {
                    out.push_str(&format!("Check complete, {n} warnings have been found!\n"));
                }
            }
            print_value(
                &mut out,
                |_, w| results.print_to(w),
                LINT_VERSION,
                &f.format,
                res,
            )?;
            if let Some(e) = &results.error {
                if f.format != "json" && n > 0 {
                    out.push('\n');
                }
                error = Some(results.error_text(e));
            } else if n == 0 && f.format != "json" {
                out.push_str("Check complete, no warnings found.\n");
            }
        }
        _ => {
            if let (Some(j), "json") = (res.get("result.json"), f.format.as_str()) {
                out.push_str(j);
                out.push('\n');
            } else if let Some(t) = res.get("result.txt") {
                out.push_str(t);
            } else {
                out.push_str(&format!("{} {:?}\n", describe(f), res));
            }
        }
    }
    let mut exit_code = 0;
    if !f.ignore_status {
        if let Ok(n) = get("result.statuscode").parse::<i64>() {
            if n != 0 {
                exit_code = u8::try_from(n).unwrap_or(1);
            }
        }
    }
    if error.is_some() {
        exit_code = 0;
    }
    Ok(Rendered {
        stdout: out,
        exit_code,
        error,
    })
}

/// The name buildx gives the Dockerfile in lint output (its `DockerfileMappingSrc`): `stdin` for
/// `-f -`, the `-f` path as given, else `CONTEXT/Dockerfile` (cleaned as Go's `filepath.Join`
/// does). `None` where buildx's name is a temporary directory (a Dockerfile piped as the context).
pub fn dockerfile_mapping_src(context: &str, file: Option<&str>) -> Option<String> {
    match file {
        Some("-") => Some("stdin".into()),
        Some(f) if !f.is_empty() => Some(f.to_string()),
        _ if context == "-" => None,
        _ => Some(clean_path(&format!("{context}/Dockerfile"))),
    }
}

/// buildx's `CallFunc.String()`.
fn describe(f: &CallFunc) -> String {
    let mut e = Vec::new();
    if !f.name.is_empty() {
        e.push(format!("Name:{:?}", f.name));
    }
    if !f.format.is_empty() {
        e.push(format!("Format:{:?}", f.format));
    }
    if f.ignore_status {
        e.push("IgnoreStatus:true".to_string());
    }
    e.join(" ")
}

const OUTLINE_VERSION: &str = "1.0.0";
const TARGETS_VERSION: &str = "1.0.0";
const LINT_VERSION: &str = "1.0.0";

/// buildx's `printValue`: raw JSON, or the frontend's own text when its structure is newer than
/// kiln knows, or kiln's rendering of the JSON.
fn print_value(
    out: &mut String,
    printer: impl FnOnce(&str, &mut String) -> Result<()>,
    version: &str,
    format: &str,
    res: &BTreeMap<String, String>,
) -> Result<()> {
    let json = res.get("result.json").map(String::as_str).unwrap_or("");
    if format == "json" {
        out.push_str(json);
        out.push('\n');
        return Ok(());
    }
    let theirs = res.get("version").map(String::as_str).unwrap_or("");
    let txt = res.get("result.txt").map(String::as_str).unwrap_or("");
    if !theirs.is_empty() && version_less(version, theirs) && !txt.is_empty() {
        out.push_str(txt);
        return Ok(());
    }
    printer(json, out)
}

/// Docker's `versions.LessThan`: dotted numeric comparison.
fn version_less(a: &str, b: &str) -> bool {
    let parts = |s: &str| -> Vec<u64> { s.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x < y;
        }
    }
    false
}

// ---- BuildKit's printers (frontend/subrequests/{outline,targets,lint}) ----

/// Go marshals a nil slice as `null`.
fn null_as_empty<'de, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
struct Outline {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    args: Vec<OutlineArg>,
    #[serde(default, deserialize_with = "null_as_empty")]
    secrets: Vec<OutlineRequirement>,
    #[serde(default, deserialize_with = "null_as_empty")]
    ssh: Vec<OutlineRequirement>,
}

#[derive(Debug, Deserialize)]
struct OutlineArg {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct OutlineRequirement {
    name: String,
    #[serde(default)]
    required: bool,
}

fn print_outline(json: &str, out: &mut String) -> Result<()> {
    let o: Outline = serde_json::from_str(json)?;
    if !o.name.is_empty() || !o.description.is_empty() {
        let name = if o.name.is_empty() {
            "(default)"
        } else {
            &o.name
        };
        let mut t = format!("TARGET:\t{name}\n");
        if !o.description.is_empty() {
            t.push_str(&format!("DESCRIPTION:\t{}\n", o.description));
        }
        out.push_str(&tabwrite(&t, 0, 1));
        out.push('\n');
    }
    if !o.args.is_empty() {
        let mut t = "BUILD ARG\tVALUE\tDESCRIPTION\n".to_string();
        for a in &o.args {
            t.push_str(&format!("{}\t{}\t{}\n", a.name, a.value, a.description));
        }
        out.push_str(&tabwrite(&t, 0, 3));
        out.push('\n');
    }
    for (title, list) in [("SECRET", &o.secrets), ("SSH", &o.ssh)] {
        if list.is_empty() {
            continue;
        }
        let mut t = format!("{title}\tREQUIRED\n");
        for s in list {
            let req = if s.required { "true" } else { "" };
            t.push_str(&format!("{}\t{req}\n", s.name));
        }
        out.push_str(&tabwrite(&t, 0, 3));
        out.push('\n');
    }
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct TargetList {
    #[serde(default, deserialize_with = "null_as_empty")]
    targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    #[serde(default)]
    name: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    description: String,
}

fn print_targets(json: &str, out: &mut String) -> Result<()> {
    let l: TargetList = serde_json::from_str(json)?;
    let mut t = "TARGET\tDESCRIPTION\n".to_string();
    for target in &l.targets {
        let name = match (target.name.is_empty(), target.default) {
            (true, true) => "(default)".to_string(),
            (false, true) => format!("{} (default)", target.name),
            _ => target.name.clone(),
        };
        t.push_str(&format!("{name}\t{}\n", target.description));
    }
    out.push_str(&tabwrite(&t, 0, 1));
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
struct LintResults {
    #[serde(default, deserialize_with = "null_as_empty")]
    warnings: Vec<LintWarning>,
    #[serde(default, deserialize_with = "null_as_empty")]
    sources: Vec<Option<JsonSourceInfo>>,
    #[serde(rename = "buildError", default)]
    error: Option<LintBuildError>,
}

#[derive(Debug, Deserialize)]
struct LintWarning {
    #[serde(rename = "ruleName", default)]
    rule_name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    location: Option<JsonLocation>,
}

#[derive(Debug, Deserialize)]
struct LintBuildError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    location: JsonLocation,
}

#[derive(Debug, Default, Deserialize)]
struct JsonLocation {
    #[serde(rename = "sourceIndex", default)]
    source_index: i32,
    #[serde(default, deserialize_with = "null_as_empty")]
    ranges: Vec<JsonRange>,
}

#[derive(Debug, Deserialize)]
struct JsonRange {
    #[serde(default)]
    start: Option<JsonPosition>,
    #[serde(default)]
    end: Option<JsonPosition>,
}

#[derive(Debug, Default, Deserialize)]
struct JsonPosition {
    #[serde(default)]
    line: i32,
    #[serde(default)]
    character: i32,
}

#[derive(Debug, Deserialize)]
struct JsonSourceInfo {
    #[serde(default)]
    filename: String,
    /// Go's `[]byte` in JSON: base64.
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    language: String,
}

impl JsonSourceInfo {
    fn to_pb(&self) -> pb::SourceInfo {
        use base64::Engine;
        pb::SourceInfo {
            filename: self.filename.clone(),
            data: self
                .data
                .as_deref()
                .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
                .unwrap_or_default(),
            definition: None,
            language: self.language.clone(),
        }
    }
}

impl JsonLocation {
    fn pb_ranges(&self) -> Vec<pb::Range> {
        let pos = |p: &Option<JsonPosition>| {
            p.as_ref().map(|p| pb::Position {
                line: p.line,
                character: p.character,
            })
        };
        self.ranges
            .iter()
            .map(|r| pb::Range {
                start: pos(&r.start),
                end: pos(&r.end),
            })
            .collect()
    }
}

impl LintResults {
    fn source(&self, index: i32) -> Option<&JsonSourceInfo> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.sources.get(i))
            .and_then(Option::as_ref)
    }

    /// `LintResults.PrintTo`: warnings ordered by file and line, each with its rule, URL,
    /// detail and the source excerpt.
    fn print_to(&self, out: &mut String) -> Result<()> {
        for w in &self.warnings {
            let i = w.location.as_ref().map_or(0, |l| l.source_index);
            if i >= 0 && i as usize >= self.sources.len() {
                bail!("sourceIndex is out of range");
            }
        }
        let mut order: Vec<&LintWarning> = self.warnings.iter().collect();
        let index = |w: &LintWarning| w.location.as_ref().map_or(0, |l| l.source_index);
        let first_line = |w: &LintWarning| {
            w.location
                .as_ref()
                .and_then(|l| l.ranges.first())
                .and_then(|r| r.start.as_ref())
                .map_or(0, |p| p.line)
        };
        let no_ranges = |w: &LintWarning| w.location.as_ref().is_none_or(|l| l.ranges.is_empty());
        order.sort_by(|a, b| {
            use std::cmp::Ordering;
            let (ia, ib) = (index(a), index(b));
            if ia < 0 && ib < 0 {
                return a.rule_name.cmp(&b.rule_name);
            } else if ia < 0 || ib < 0 {
                return if ia < 0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
            }
            let fa = self.source(ia).map(|s| s.filename.as_str()).unwrap_or("");
            let fb = self.source(ib).map(|s| s.filename.as_str()).unwrap_or("");
            if fa != fb {
                return fa.cmp(fb);
            }
            match (no_ranges(a), no_ranges(b)) {
                (true, true) => a.rule_name.cmp(&b.rule_name),
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => first_line(a).cmp(&first_line(b)),
            }
        });
        for w in order {
            out.push_str(&format!("\nWARNING: {}", w.rule_name));
            if !w.url.is_empty() {
                out.push_str(&format!(" - {}", w.url));
            }
            out.push_str(&format!("\n{}\n", w.detail));
            let Some(loc) = &w.location else { continue };
            if loc.source_index < 0 {
                continue;
            }
            if let Some(src) = self.source(loc.source_index) {
                out.push_str(&crate::progress::error::render_source_excerpt(
                    &src.to_pb(),
                    &loc.pb_ranges(),
                ));
            }
        }
        Ok(())
    }

    /// `LintResults.PrintErrorTo`: the message, then its source excerpt.
    fn error_text(&self, e: &LintBuildError) -> String {
        let mut s = format!("{}\n", e.message);
        if let Some(src) = self.source(e.location.source_index) {
            s.push_str(&crate::progress::error::render_source_excerpt(
                &src.to_pb(),
                &e.location.pb_ranges(),
            ));
        }
        s
    }
}

// ---- the gateway exchange ----

/// The few `moby.buildkit.v1.frontend` (LLBBridge) messages kiln needs, by their field numbers
/// in BuildKit's `frontend/gateway/pb/gateway.proto`.
mod gateway {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SolveRequest {
        #[prost(string, tag = "2")]
        pub frontend: String,
        #[prost(map = "string, string", tag = "3")]
        pub frontend_opt: HashMap<String, String>,
        #[prost(bool, tag = "5")]
        pub allow_result_return: bool,
        #[prost(bool, tag = "6")]
        pub allow_result_array_ref: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SolveResponse {
        #[prost(string, tag = "1")]
        pub r#ref: String,
        #[prost(message, optional, tag = "3")]
        pub result: Option<GatewayResult>,
    }

    /// `Result`, without the refs a subrequest never returns.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GatewayResult {
        #[prost(map = "string, bytes", tag = "10")]
        pub metadata: HashMap<String, Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReturnRequest {
        #[prost(message, optional, tag = "1")]
        pub result: Option<GatewayResult>,
        #[prost(message, optional, tag = "2")]
        pub error: Option<bollard_buildkit_proto::google::rpc::Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ReturnResponse {}
}

/// The gRPC metadata that names the build a gateway call belongs to.
const BUILD_ID_KEY: &str = "buildkit-controlapi-buildid";

/// Runs a subrequest: `req` (frontend attributes with `requestid`, the session, no exporters)
/// goes to `Control/Solve` with no frontend, and the Dockerfile frontend is run through the
/// gateway of that build. The answer's metadata comes back as the solve's exporter response,
/// as buildx merges it.
pub(crate) async fn solve(
    driver: Arc<dyn kiln_drivers::Driver>,
    mut control: control::control_client::ControlClient<tonic::transport::Channel>,
    mut req: control::SolveRequest,
) -> std::result::Result<tonic::Response<control::SolveResponse>, tonic::Status> {
    let frontend_req = gateway::SolveRequest {
        frontend: std::mem::take(&mut req.frontend),
        frontend_opt: req.frontend_attrs.clone(),
        allow_result_return: true,
        allow_result_array_ref: true,
    };
    req.internal = true;
    let build_id = req.r#ref.clone();
    let solving = tokio::spawn(async move { control.solve(req).await });

    let channel = match connect(driver).await {
        Ok(c) => c,
        Err(status) => {
            solving.abort();
            return Err(status);
        }
    };
    let answer = gateway_unary::<_, gateway::SolveResponse>(
        &build_id,
        channel.clone(),
        "Solve",
        frontend_req,
    )
    .await
    .map(|r| r.result.unwrap_or_default());
    let returned = match &answer {
        Ok(result) => gateway::ReturnRequest {
            result: Some(result.clone()),
            error: None,
        },
        Err(status) => gateway::ReturnRequest {
            result: None,
            error: Some(bollard_buildkit_proto::google::rpc::Status {
                code: status.code() as i32,
                message: status.message().to_string(),
                details: vec![],
            }),
        },
    };
    // Returning ends the build on the daemon; if that call fails, the solve fails on its own.
    if let Err(e) =
        gateway_unary::<_, gateway::ReturnResponse>(&build_id, channel, "Return", returned).await
    {
        tracing::debug!("gateway Return: {e}");
    }
    let solved = solving
        .await
        .map_err(|e| tonic::Status::internal(format!("solve task: {e}")))?;
    match (solved, answer) {
        (Ok(mut resp), Ok(result)) => {
            let r = resp.get_mut();
            for (k, v) in result.metadata {
                r.exporter_response
                    .insert(k, String::from_utf8_lossy(&v).into_owned());
            }
            Ok(resp)
        }
        (Ok(_), Err(status)) => Err(status),
        (Err(status), _) => Err(status),
    }
}

pub(crate) async fn connect(
    driver: Arc<dyn kiln_drivers::Driver>,
) -> std::result::Result<tonic::transport::Channel, tonic::Status> {
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let driver = driver.clone();
        async move { driver.dial().await.map(hyper_util::rt::TokioIo::new) }
    });
    tonic::transport::Endpoint::from_static("http://buildkit.invalid")
        .connect_with_connector(connector)
        .await
        .map_err(|e| tonic::Status::unavailable(crate::buildkit::client::flatten_error(&e)))
}

pub(crate) async fn gateway_unary<Req, Resp>(
    build_id: &str,
    channel: tonic::transport::Channel,
    method: &'static str,
    msg: Req,
) -> std::result::Result<Resp, tonic::Status>
where
    Req: prost::Message + Send + Sync + 'static,
    Resp: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("gateway not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_maybe_shared(format!(
        "/moby.buildkit.v1.frontend.LLBBridge/{method}"
    ))
    .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        BUILD_ID_KEY,
        build_id
            .parse()
            .map_err(|_| tonic::Status::internal("build id is not ASCII"))?,
    );
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    Ok(grpc.unary(req, path, codec).await?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(v: &str) -> Option<CallFunc> {
        CallFunc::parse(v).unwrap()
    }

    #[test]
    fn call_values_parse_as_in_buildx() {
        assert_eq!(call(""), None);
        assert_eq!(call("build"), None);
        let c = call("check").unwrap();
        assert_eq!(
            (c.name.as_str(), c.request_id()),
            ("lint", "frontend.lint".into())
        );
        assert_eq!(c.display_name(), "check");
        let c = call("targets,format=json,ignorestatus=1").unwrap();
        assert_eq!(c.name, "targets");
        assert_eq!(c.format, "json");
        assert!(c.ignore_status);
        let err = |v: &str| CallFunc::parse(v).unwrap_err().to_string();
        assert_eq!(err("check,error=true"), "invalid print field: error=true");
        assert_eq!(err("check,outline"), "invalid print value: check,outline");
        assert!(
            err("check,ignorestatus=maybe").starts_with("invalid ignorestatus print value: maybe")
        );
    }

    fn response(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// `FROM busybox as base\nRUN true\nCMD echo hi\n`, as the frontend reports it.
    const LINT_JSON: &str = r#"{
  "warnings": [
    {"ruleName": "JSONArgsRecommended", "url": "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/",
     "detail": "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
     "location": {"ranges": [{"start": {"line": 3}, "end": {"line": 3}}]}},
    {"ruleName": "FromAsCasing", "url": "https://docs.docker.com/go/dockerfile/rule/from-as-casing/",
     "detail": "'as' and 'FROM' keywords' casing do not match",
     "location": {"ranges": [{"start": {"line": 1}, "end": {"line": 1}}]}}
  ],
  "sources": [{"filename": "Dockerfile", "data": "RlJPTSBidXN5Ym94IGFzIGJhc2UKUlVOIHRydWUKQ01EIGVjaG8gaGkK", "language": "Dockerfile"}]
}"#;

    #[test]
    fn lint_report_is_buildxs() {
        let f = call("check").unwrap();
        let res = response(&[
            ("result.json", LINT_JSON),
            ("result.statuscode", "1"),
            ("version", "1.0.0"),
        ]);
        let r = render_result(&f, &res, Some("app/Dockerfile")).unwrap();
        assert_eq!(r.exit_code, 1);
        assert_eq!(
            r.stdout,
            "Check complete, 2 warnings have been found!\n\
             \nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n\
             'as' and 'FROM' keywords' casing do not match\n\
             app/Dockerfile:1\n--------------------\n   1 | >>> FROM busybox as base\n   2 |     RUN true\n   3 |     CMD echo hi\n--------------------\n\
             \nWARNING: JSONArgsRecommended - https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n\
             JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n\
             app/Dockerfile:3\n--------------------\n   1 |     FROM busybox as base\n   2 |     RUN true\n   3 | >>> CMD echo hi\n   4 |     \n--------------------\n"
        );
        let quiet = call("check,ignorestatus=true").unwrap();
        assert_eq!(render_result(&quiet, &res, None).unwrap().exit_code, 0);
        let json = call("check,format=json").unwrap();
        let r = render_result(&json, &res, None).unwrap();
        assert_eq!(r.stdout, format!("{LINT_JSON}\n"));
        assert_eq!(r.exit_code, 1);

        let clean = response(&[
            ("result.json", r#"{"warnings": null, "sources": null}"#),
            ("result.statuscode", "0"),
        ]);
        let r = render_result(&f, &clean, None).unwrap();
        assert_eq!(r.stdout, "Check complete, no warnings found.\n");
        assert_eq!(r.exit_code, 0);
    }

    #[test]
    fn targets_and_outline_are_tabulated_like_go() {
        let targets = call("targets").unwrap();
        let res = response(&[(
            "result.json",
            r#"{"targets": [{"name": "base", "description": "is the common stage"},
                {"name": "release", "description": "builds the final image"},
                {"default": true}], "sources": null}"#,
        )]);
        assert_eq!(
            render_result(&targets, &res, None).unwrap().stdout,
            "TARGET    DESCRIPTION\nbase      is the common stage\nrelease   builds the final image\n(default) \n"
        );
        let outline = call("outline").unwrap();
        let res = response(&[(
            "result.json",
            r#"{"name": "release", "description": "builds it",
                "args": [{"name": "GREETING", "value": "hello", "description": "says hello"},
                         {"name": "LONGER_NAME_ARG"}],
                "secrets": [{"name": "token", "required": true}, {"name": "other"}],
                "ssh": [{"name": "default"}]}"#,
        )]);
        assert_eq!(
            render_result(&outline, &res, None).unwrap().stdout,
            "TARGET:      release\nDESCRIPTION: builds it\n\n\
             BUILD ARG         VALUE   DESCRIPTION\nGREETING          hello   says hello\nLONGER_NAME_ARG           \n\n\
             SECRET   REQUIRED\ntoken    true\nother    \n\n\
             SSH       REQUIRED\ndefault   \n\n"
        );
        // A newer structure than kiln knows prints the frontend's own text.
        let newer = response(&[
            ("result.json", "{}"),
            ("result.txt", "theirs\n"),
            ("version", "2.0.0"),
        ]);
        assert_eq!(
            render_result(&targets, &newer, None).unwrap().stdout,
            "theirs\n"
        );
    }

    #[test]
    fn dockerfile_names_follow_buildx() {
        assert_eq!(dockerfile_mapping_src(".", None).unwrap(), "Dockerfile");
        assert_eq!(
            dockerfile_mapping_src("app/", None).unwrap(),
            "app/Dockerfile"
        );
        assert_eq!(
            dockerfile_mapping_src("./a/../b", None).unwrap(),
            "b/Dockerfile"
        );
        assert_eq!(
            dockerfile_mapping_src("/abs", None).unwrap(),
            "/abs/Dockerfile"
        );
        assert_eq!(dockerfile_mapping_src(".", Some("-")).unwrap(), "stdin");
        assert_eq!(
            dockerfile_mapping_src(".", Some("x/Dockerfile")).unwrap(),
            "x/Dockerfile"
        );
        assert_eq!(dockerfile_mapping_src("-", None), None);
        assert!(version_less("1.0.0", "1.1"));
        assert!(!version_less("1.0.0", "1.0.0"));
    }

    #[test]
    fn unsupported_subrequests_get_a_clear_error() {
        let c = call("check").unwrap();
        let status = tonic::Status::unknown(
            "failed to solve with frontend dockerfile.v0: unsupported request frontend.lint",
        );
        let e = c.unsupported_error(&status, "default", "default").unwrap();
        assert_eq!(
            e.to_string(),
            "--call check: the Dockerfile frontend of node \"default\" (builder \"default\") does not support this subrequest (unsupported request frontend.lint)"
        );
        assert!(c
            .unsupported_error(&tonic::Status::unknown("other"), "b", "n")
            .is_none());
    }
}
