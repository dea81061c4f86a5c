//! Building many targets at once (`kiln bake`): every target is solved concurrently on the
//! builder's node, in one progress display, with three things a single build does not need.
//!
//! - **Shared local directories.** Targets that send the same local directory under the same
//!   name (`context`, `dockerfile`, a named context) share one session that serves it, and every
//!   target's frontend is pointed at that session with `local-sessionid:NAME` (the Dockerfile
//!   frontend's attribute, as buildx sets it). The frontend then emits identical `llb.Local`
//!   vertices for all of them, and BuildKit's solver merges identical vertices of concurrent
//!   jobs: the directory is pulled once per node instead of once per target. Each target keeps
//!   its own session for everything else (exports, secrets, ssh, uploads), and that session
//!   serves the directories too, so a frontend that does not know `local-sessionid` still works
//!   (it just does not share).
//! - **`target:` contexts.** As buildx: a target used as another's context is solved through the
//!   gateway (`LLBBridge.Solve` with the Dockerfile frontend); its result's definition is handed
//!   to the dependent target's frontend as a frontend input (`context:NAME=input:KEY`), and the
//!   dependency keeps its build open until every dependent has loaded that definition, so the
//!   shared vertices are built once.
//! - **Failure.** The first target that fails cancels the others' solves; the error names it.
//!
//! On a builder with several nodes, targets are placed on nodes platform by platform and run
//! through the build fan-out instead (see [`build_on_nodes`]).
//!
//! Which options a target has is decided before this module (commands parse bake targets into
//! [`BuildOptions`]); this module never reads bake files.

pub mod entitlements;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use bollard_buildkit_proto::pb;
use tokio::sync::watch;

use super::named_contexts::NamedContext;
use super::{call, BuildOptions, BuildResult};
use crate::builder::Builder;
use crate::buildkit::session::{Session, SessionContent};
use crate::progress::{self, ProgressMode};

/// One target to build: its name and its options.
#[derive(Debug, Clone)]
pub struct TargetBuild {
    pub name: String,
    pub opts: BuildOptions,
}

/// What a bake produced, by target name.
pub type BakeResults = BTreeMap<String, BuildResult>;

/// The frontend attribute that points a local name at another session.
const LOCAL_SESSION_ID: &str = "local-sessionid:";

/// The `target:` contexts of a target: (context name, target it names).
fn target_links(opts: &BuildOptions, targets: &[TargetBuild]) -> Vec<(String, String)> {
    opts.named_contexts
        .iter()
        .filter_map(|(name, c)| match c {
            NamedContext::Frontend(v) => v
                .strip_prefix("target:")
                .filter(|t| targets.iter().any(|x| x.name == *t))
                .map(|t| (name.clone(), t.to_string())),
            _ => None,
        })
        .collect()
}

/// Directories sent by more than one target under the same name, each assigned to a shared
/// session (one session per name clash, as buildx's `detectSharedMounts`).
#[derive(Debug, Default)]
struct SharedDirs {
    /// One entry per shared session: its directories by name.
    sessions: Vec<HashMap<String, PathBuf>>,
    /// Per target index: `local-sessionid:NAME` → index into `sessions`.
    per_target: Vec<BTreeMap<String, usize>>,
}

fn share_dirs(dirs: &[HashMap<String, PathBuf>]) -> SharedDirs {
    let key = |p: &PathBuf| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
    // (name, dir) -> the targets sending it, in target order.
    let mut users: Vec<((String, PathBuf), Vec<usize>)> = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let mut names: Vec<_> = d.iter().collect();
        names.sort();
        for (name, path) in names {
            let k = (name.clone(), key(path));
            match users.iter_mut().find(|(uk, _)| *uk == k) {
                Some((_, v)) => v.push(i),
                None => users.push((k, vec![i])),
            }
        }
    }
    let mut out = SharedDirs {
        sessions: Vec::new(),
        per_target: vec![BTreeMap::new(); dirs.len()],
    };
    for ((name, path), targets) in users {
        if targets.len() < 2 {
            continue;
        }
        let idx = match out.sessions.iter().position(|s| !s.contains_key(&name)) {
            Some(i) => i,
            None => {
                out.sessions.push(HashMap::new());
                out.sessions.len() - 1
            }
        };
        out.sessions[idx].insert(name.clone(), path);
        for t in targets {
            out.per_target[t].insert(name.clone(), idx);
        }
    }
    out
}

/// A frontend result as a dependent target needs it: the definition of each ref and the image
/// config, under the key the dependent's frontend inputs use.
#[derive(Debug, Clone, Default)]
struct LinkedResult {
    /// `None` key: the single ref; otherwise by platform.
    refs: Vec<(Option<String>, pb::Definition)>,
    metadata: HashMap<String, Vec<u8>>,
}

/// The state of a target's frontend solve that other targets wait on.
#[derive(Debug, Clone)]
enum Stage {
    Pending,
    /// The frontend returned (its vertices are loaded in the build).
    Solved(Arc<LinkedResult>),
    Failed,
}

/// Runs every target concurrently on the builder's first node.
pub async fn build_many(
    builder: &Builder,
    targets: Vec<TargetBuild>,
    mode: ProgressMode,
    debug: bool,
) -> Result<BakeResults> {
    if targets.is_empty() {
        bail!("no targets to build");
    }
    if builder.nodes.len() > 1
        && targets
            .iter()
            .all(|t| target_links(&t.opts, &targets).is_empty())
    {
        return build_on_nodes(builder, targets, mode, debug).await;
    }
    // Targets that feed each other share one daemon: the node that serves all their platforms.
    let all_platforms = crate::platform::dedupe(
        targets
            .iter()
            .flat_map(|t| t.opts.platforms.iter().cloned()),
    );
    let (conn, skipped) = super::placement::place_together(builder, &all_platforms).await?;
    super::fanout::warn_skipped(&builder.name, &skipped);
    let mut plans = Vec::new();
    let docker_engine = super::load::DockerEngine::default();
    for t in &targets {
        let in_target = || format!("target {}", t.name);
        let mut plan = super::plan_solve(&t.opts, &conn.features, conn.driver_name())
            .with_context(in_target)?;
        plan.fit_docker_loads(conn.node.driver.as_ref(), &t.opts, &docker_engine)
            .await
            .with_context(in_target)?;
        plans.push(plan);
    }

    // Shared directories: one session per name clash, and every target told to use it.
    let shared = share_dirs(
        &plans
            .iter()
            .map(|p| p.inputs.dirs.clone())
            .collect::<Vec<_>>(),
    );
    let shared_sessions: Vec<Session> = shared
        .sessions
        .iter()
        .enumerate()
        .map(|(i, dirs)| {
            let first = shared
                .per_target
                .iter()
                .position(|m| m.values().any(|s| *s == i))
                .unwrap_or(0);
            Session::new(
                "kiln",
                &plans[first].shared_key(&conn.node.name),
                SessionContent {
                    dirs: dirs.clone(),
                    ..Default::default()
                },
            )
        })
        .collect();
    for (i, plan) in plans.iter_mut().enumerate() {
        for (name, s) in &shared.per_target[i] {
            plan.attrs.insert(
                format!("{LOCAL_SESSION_ID}{name}"),
                shared_sessions[*s].id.clone(),
            );
        }
    }
    let own_sessions: Vec<Session> = targets
        .iter()
        .zip(&plans)
        .map(|(t, p)| {
            Session::new(
                "kiln",
                &p.shared_key(&conn.node.name),
                p.session_content(&t.opts),
            )
        })
        .collect();
    let mut running = Vec::new();
    for s in shared_sessions.iter().chain(&own_sessions) {
        running.push(s.attach(conn.node.driver.as_ref()).await?);
    }

    // Who feeds whom through `target:` contexts.
    let links: Vec<Vec<(String, String)>> = targets
        .iter()
        .map(|t| target_links(&t.opts, &targets))
        .collect();
    let index_of = |name: &str| targets.iter().position(|t| t.name == name);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    for (i, l) in links.iter().enumerate() {
        for (_, dep) in l {
            if let Some(d) = index_of(dep) {
                if !children[d].contains(&i) {
                    children[d].push(i);
                }
            }
        }
    }
    let stages: Vec<(watch::Sender<Stage>, watch::Receiver<Stage>)> = targets
        .iter()
        .map(|_| watch::channel(Stage::Pending))
        .collect();

    let printer = conn.printer(mode, debug);
    let (status_tx, status_rx) = tokio::sync::mpsc::channel(128);
    let own_steps = status_tx.clone();
    let display = tokio::spawn(progress::run(printer, status_rx));
    let label = targets.len() > 1;

    let refs: Vec<String> = targets.iter().map(|_| crate::buildkit::new_id()).collect();
    let mut status_tasks = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        status_tasks.push(tokio::spawn(super::stream_status(
            conn.client.control(),
            refs[i].clone(),
            status_tx.clone(),
            label.then(|| t.name.clone()),
        )));
    }
    drop(status_tx);

    let mut solves = super::Solves::new();
    for (i, t) in targets.iter().enumerate() {
        let job = SolveJob {
            driver: conn.node.driver.clone(),
            control: conn.client.control(),
            req: plans[i].request(&refs[i], &own_sessions[i].id),
            call: t.opts.call.is_some(),
            gateway: !links[i].is_empty() || !children[i].is_empty(),
            deps: links[i]
                .iter()
                .filter_map(|(ctx, dep)| {
                    index_of(dep).map(|d| (ctx.clone(), dep.clone(), stages[d].1.clone()))
                })
                .collect(),
            children: children[i].iter().map(|c| stages[*c].1.clone()).collect(),
            stage: stages[i].0.clone(),
        };
        solves.spawn(async move { (i, job.run().await) });
    }
    drop(stages);

    let (responses, failure) = super::join_solves(solves, targets.len()).await;
    for task in status_tasks {
        super::end_status(task).await;
    }
    drop(running);

    let mut finished: Vec<Result<BTreeMap<String, String>>> = Vec::new();
    if failure.is_none() {
        for (i, resp) in responses.into_iter().enumerate() {
            let resp = resp.unwrap_or_default();
            finished.push(plans[i].finish(&conn, resp, &own_steps).await);
        }
    }
    drop(own_steps);
    drop(plans);
    log_diffcopy_counts();

    let (mut printer, summary) = display.await.context("progress display")?;
    printer.print_warnings(&summary);
    if let Some((i, status)) = failure {
        let t = &targets[i];
        if let Some(e) = t
            .opts
            .call
            .as_ref()
            .and_then(|c| c.unsupported_error(&status, &builder.name, &conn.node.name))
        {
            return Err(e.context(format!("target {}", t.name)));
        }
        let err = progress::error::SolveError::from_status(&status);
        let target_label = format!("target {}", t.name);
        eprint!(
            "{}",
            err.render(&[target_label.as_str(), "failed to solve"])
        );
        return Err(anyhow::Error::new(crate::AlreadyReported(
            u8::try_from(err.exit_code()).unwrap_or(1),
        )));
    }
    let mut out = BakeResults::new();
    for ((t, r), solve_ref) in targets.iter().zip(finished).zip(&refs) {
        let mut exporter_response = r.with_context(|| format!("target {}", t.name))?;
        if t.opts.call.is_none() {
            exporter_response.insert("buildx.build.ref".into(), conn.build_ref(solve_ref));
        }
        out.insert(
            t.name.clone(),
            BuildResult {
                exporter_response,
                warnings: summary.warnings.clone(),
            },
        );
    }
    Ok(out)
}

/// A multi-node builder: each target's platforms go to the nodes that serve them, as for a
/// single build, all targets in one display. Targets that feed each other (`target:`
/// contexts) need their results on one node, so such bakes run on the one node that serves
/// all their platforms instead.
async fn build_on_nodes(
    builder: &Builder,
    targets: Vec<TargetBuild>,
    mode: ProgressMode,
    debug: bool,
) -> Result<BakeResults> {
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let jobs = targets
        .into_iter()
        .map(|t| super::fanout::Job {
            name: Some(t.name),
            opts: t.opts,
        })
        .collect();
    let results = super::fanout::run(builder, jobs, mode, debug).await?;
    Ok(names.into_iter().zip(results).collect())
}

/// `--debug`: how many times each local directory was pulled through FileSync.
fn log_diffcopy_counts() {
    for c in crate::buildkit::session::diffcopy_counts() {
        tracing::debug!(
            "filesync uploads: dir={} path={} whole={} calls={}",
            c.name,
            c.path.display(),
            c.whole,
            c.calls
        );
    }
}

/// One target's solve and what it shares with the others.
struct SolveJob {
    driver: Arc<dyn kiln_drivers::Driver>,
    control: control::control_client::ControlClient<tonic::transport::Channel>,
    req: control::SolveRequest,
    call: bool,
    /// Run through the gateway (the target feeds or is fed by another).
    gateway: bool,
    /// (context name, dependency target, its stage).
    deps: Vec<(String, String, watch::Receiver<Stage>)>,
    children: Vec<watch::Receiver<Stage>>,
    stage: watch::Sender<Stage>,
}

impl SolveJob {
    async fn run(self) -> std::result::Result<control::SolveResponse, tonic::Status> {
        let SolveJob {
            driver,
            mut control,
            mut req,
            call,
            gateway,
            deps,
            children,
            stage,
        } = self;
        // Neither fed nor feeding: nothing waits on `stage`.
        if call {
            return call::solve(driver, control, req)
                .await
                .map(|r| r.into_inner());
        }
        if !gateway {
            return control.solve(req).await.map(|r| r.into_inner());
        }

        // Wait for the targets this one uses as contexts, then point the frontend at their
        // results.
        let mut inputs = HashMap::new();
        let mut attrs: HashMap<String, String> = req.frontend_attrs.clone();
        for (ctx, dep, mut rx) in deps {
            let linked = loop {
                match &*rx.borrow_and_update() {
                    Stage::Solved(r) => break Some(r.clone()),
                    Stage::Failed => break None,
                    Stage::Pending => {}
                }
                if rx.changed().await.is_err() {
                    break None;
                }
            };
            let Some(linked) = linked else {
                let _ = stage.send(Stage::Failed);
                return Err(tonic::Status::cancelled(format!(
                    "target {dep} (context {ctx}) did not build"
                )));
            };
            link_result(&mut attrs, &mut inputs, &ctx, &dep, &linked);
        }

        let frontend_req = GatewaySolveRequest {
            frontend: std::mem::take(&mut req.frontend),
            frontend_opt: attrs.clone(),
            allow_result_return: true,
            allow_result_array_ref: true,
            frontend_inputs: inputs,
        };
        req.frontend_attrs = attrs;
        let build_id = req.r#ref.clone();
        let mut solve_control = control.clone();
        let solving = tokio::spawn(async move { solve_control.solve(req).await });
        let _abort_on_drop = AbortOnDrop(solving.abort_handle());

        let channel = match call::connect(driver).await {
            Ok(c) => c,
            Err(status) => {
                let _ = stage.send(Stage::Failed);
                return Err(status);
            }
        };
        let answer = call::gateway_unary::<_, GatewaySolveResponse>(
            &build_id,
            channel.clone(),
            "Solve",
            frontend_req,
        )
        .await;
        let returned = match &answer {
            Ok(resp) => {
                let decoded = decode_result(&resp.result);
                let _ = stage.send(Stage::Solved(Arc::new(decoded)));
                // Keep this build open until every dependent has loaded our definition, so the
                // vertices they share are solved once.
                for mut rx in children {
                    while matches!(*rx.borrow_and_update(), Stage::Pending) {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                }
                GatewayReturnRequest {
                    result: resp.result.clone(),
                    error: None,
                }
            }
            Err(status) => {
                let _ = stage.send(Stage::Failed);
                GatewayReturnRequest {
                    result: Vec::new(),
                    error: Some(bollard_buildkit_proto::google::rpc::Status {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                        details: vec![],
                    }),
                }
            }
        };
        if let Err(e) =
            call::gateway_unary::<_, GatewayReturnResponse>(&build_id, channel, "Return", returned)
                .await
        {
            tracing::debug!("gateway Return: {e}");
        }
        let solved = solving
            .await
            .map_err(|e| tonic::Status::internal(format!("solve task: {e}")))?;
        match (solved, answer) {
            (Ok(resp), Ok(_)) => Ok(resp.into_inner()),
            (_, Err(status)) => Err(status),
            (Err(status), _) => Err(status),
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// buildx's `waitContextDeps`: the dependency's refs become frontend inputs, and the context
/// attribute names them (`input:KEY`, or `input:KEY::PLATFORM` per platform), with the image
/// config as `input-metadata:KEY`.
fn link_result(
    attrs: &mut HashMap<String, String>,
    inputs: &mut HashMap<String, pb::Definition>,
    ctx: &str,
    dep: &str,
    linked: &LinkedResult,
) {
    use base64::Engine;
    let key = format!("0-{dep}");
    let attr = format!("context:{ctx}");
    let metadata_json = |suffix: Option<&str>| {
        let mut m = serde_json::Map::new();
        for name in ["containerimage.config", "containerimage.buildinfo"] {
            let k = match suffix {
                Some(p) => format!("{name}/{p}"),
                None => name.to_string(),
            };
            if let Some(v) = linked.metadata.get(&k) {
                m.insert(
                    name.to_string(),
                    base64::engine::general_purpose::STANDARD.encode(v).into(),
                );
            }
        }
        (!m.is_empty()).then(|| serde_json::Value::Object(m).to_string())
    };
    for (platform, def) in &linked.refs {
        match platform {
            Some(p) => {
                let k = format!("{key}::{p}");
                inputs.insert(k.clone(), def.clone());
                attrs.insert(format!("{attr}::{p}"), format!("input:{k}"));
                if let Some(md) = metadata_json(Some(p)) {
                    attrs.insert(format!("input-metadata:{k}"), md);
                }
                attrs.remove(&attr);
            }
            None => {
                inputs.insert(key.clone(), def.clone());
                attrs.insert(attr.clone(), format!("input:{key}"));
                if let Some(md) = metadata_json(None) {
                    attrs.insert(format!("input-metadata:{key}"), md);
                }
            }
        }
    }
}

fn decode_result(raw: &[u8]) -> LinkedResult {
    use prost::Message;
    let Ok(r) = GatewayResult::decode(raw) else {
        return LinkedResult::default();
    };
    let mut refs = Vec::new();
    if let Some(def) = r.r#ref.and_then(|r| r.def) {
        refs.push((None, def));
    }
    if let Some(map) = r.refs {
        let mut m: Vec<_> = map.refs.into_iter().collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        for (p, rf) in m {
            if let Some(def) = rf.def {
                refs.push((Some(p), def));
            }
        }
    }
    LinkedResult {
        refs,
        metadata: r.metadata,
    }
}

// The `moby.buildkit.v1.frontend` (LLBBridge) messages this module uses, by their field numbers
// in BuildKit's `frontend/gateway/pb/gateway.proto`. Results travel as raw bytes so everything
// in them (metadata, attestations) is returned to BuildKit unchanged.

#[derive(Clone, PartialEq, prost::Message)]
struct GatewaySolveRequest {
    #[prost(string, tag = "2")]
    frontend: String,
    #[prost(map = "string, string", tag = "3")]
    frontend_opt: HashMap<String, String>,
    #[prost(bool, tag = "5")]
    allow_result_return: bool,
    #[prost(bool, tag = "6")]
    allow_result_array_ref: bool,
    #[prost(map = "string, message", tag = "13")]
    frontend_inputs: HashMap<String, pb::Definition>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GatewaySolveResponse {
    /// `Result`, encoded.
    #[prost(bytes = "vec", tag = "3")]
    result: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GatewayResult {
    #[prost(message, optional, tag = "3")]
    r#ref: Option<GatewayRef>,
    #[prost(message, optional, tag = "4")]
    refs: Option<GatewayRefMap>,
    #[prost(map = "string, bytes", tag = "10")]
    metadata: HashMap<String, Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GatewayRef {
    #[prost(string, tag = "1")]
    id: String,
    #[prost(message, optional, tag = "2")]
    def: Option<pb::Definition>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GatewayRefMap {
    #[prost(map = "string, message", tag = "1")]
    refs: HashMap<String, GatewayRef>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GatewayReturnRequest {
    /// `Result`, encoded (empty with an error).
    #[prost(bytes = "vec", tag = "1")]
    result: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    error: Option<bollard_buildkit_proto::google::rpc::Status>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct GatewayReturnResponse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_dir_under_same_name_is_shared() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let dirs = |pairs: &[(&str, &std::path::Path)]| {
            pairs
                .iter()
                .map(|(n, p)| (n.to_string(), p.to_path_buf()))
                .collect::<HashMap<_, _>>()
        };
        let s = share_dirs(&[
            dirs(&[("context", a.path()), ("dockerfile", a.path())]),
            dirs(&[("context", a.path()), ("dockerfile", a.path())]),
            dirs(&[("context", b.path()), ("dockerfile", b.path())]),
            dirs(&[("context", b.path())]),
        ]);
        // `context` clashes (two dirs): two sessions; `dockerfile` of b is sent by one target.
        assert_eq!(s.sessions.len(), 2);
        assert_eq!(s.per_target[0], s.per_target[1]);
        assert_eq!(s.per_target[0].len(), 2);
        assert_eq!(s.per_target[2].len(), 1);
        assert_ne!(s.per_target[0]["context"], s.per_target[2]["context"]);
    }

    #[test]
    fn a_linked_result_becomes_frontend_inputs() {
        let mut attrs = HashMap::from([("context:base".to_string(), "target:dep".to_string())]);
        let mut inputs = HashMap::new();
        let linked = LinkedResult {
            refs: vec![(None, pb::Definition::default())],
            metadata: HashMap::from([("containerimage.config".to_string(), b"{}".to_vec())]),
        };
        link_result(&mut attrs, &mut inputs, "base", "dep", &linked);
        assert_eq!(attrs["context:base"], "input:0-dep");
        assert_eq!(
            attrs["input-metadata:0-dep"],
            r#"{"containerimage.config":"e30="}"#
        );
        assert!(inputs.contains_key("0-dep"));

        let mut attrs = HashMap::from([("context:base".to_string(), "target:dep".to_string())]);
        let linked = LinkedResult {
            refs: vec![(Some("linux/amd64".into()), pb::Definition::default())],
            metadata: HashMap::new(),
        };
        link_result(&mut attrs, &mut inputs, "base", "dep", &linked);
        assert!(!attrs.contains_key("context:base"));
        assert_eq!(
            attrs["context:base::linux/amd64"],
            "input:0-dep::linux/amd64"
        );
    }
}
