//! Build orchestration: typed options in, one solve per node out, results exported.
//!
//! This layer decides *what* to ask BuildKit for (frontend attributes, exporters, which local
//! directories the session exposes) from the options and the node's features; it never asks
//! which driver a node uses.

pub mod attest;
pub mod bake;
pub mod cache;
pub mod call;
pub mod entitlements;
pub mod exporter;
pub(crate) mod fanout;
pub mod flags;
pub mod git_info;
mod inputs;
mod layout_index;
pub mod load;
mod local_cache;
pub mod named_contexts;
pub mod options;
pub(crate) mod placement;
pub mod secrets;

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;
use kiln_drivers::Features;

use crate::builder::Builder;
use crate::buildkit::session::{ExportTarget, SessionContent};
use crate::buildkit::BuildkitClient;
use crate::progress::{self, Printer, ProgressMode};
pub use exporter::{ClientTarget, ExportSpec, ExporterKind};
pub use fanout::build;
pub use options::{BuildOptions, NetworkMode};

/// What a finished build reports.
#[derive(Debug, Clone, Default)]
pub struct BuildResult {
    /// BuildKit's exporter response plus `buildx.build.ref`, as buildx's metadata file holds it.
    pub exporter_response: BTreeMap<String, String>,
    /// Warnings the frontend reported (lint rules and the like).
    pub warnings: Vec<control::VertexWarning>,
}

impl BuildResult {
    /// The image ID buildx prints with `-q` and writes with `--iidfile`.
    pub fn image_id(&self) -> Option<&str> {
        self.exporter_response
            .get("containerimage.config.digest")
            .or_else(|| self.exporter_response.get("containerimage.digest"))
            .map(String::as_str)
    }

    /// The metadata file's JSON: values that are base64 JSON objects are decoded in place.
    pub fn metadata_json(&self) -> serde_json::Value {
        use base64::Engine;
        let mut out = serde_json::Map::new();
        for (k, v) in &self.exporter_response {
            let decoded = if k == "result.json" {
                Some(v.as_bytes().to_vec())
            } else {
                base64::engine::general_purpose::STANDARD.decode(v).ok()
            };
            let value = decoded
                .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
                .filter(|j| match j {
                    serde_json::Value::Object(m) => !m.is_empty(),
                    serde_json::Value::Array(a) => !a.is_empty() && a.iter().all(|e| e.is_object()),
                    _ => false,
                })
                .unwrap_or_else(|| serde_json::Value::String(v.clone()));
            out.insert(k.clone(), value);
        }
        if !self.warnings.is_empty() && env_flag("BUILDX_METADATA_WARNINGS").unwrap_or(false) {
            let warnings = self
                .warnings
                .iter()
                .filter_map(|w| serde_json::from_str(&progress::warning_json(w)).ok())
                .collect();
            out.insert(
                "buildx.build.warnings".into(),
                serde_json::Value::Array(warnings),
            );
        }
        serde_json::Value::Object(out)
    }
}

/// The exporters a solve gets and where their client-side results land.
#[derive(Debug, Default, Clone)]
struct ExportPlan {
    exporters: Vec<control::Exporter>,
    targets: HashMap<u32, ExportTarget>,
    /// Results exported to client-side files, to import into an image store after the solve.
    loads: Vec<load::LoadStep>,
    /// The OCI layout directory an `oci`/`docker` export with `tar=false` writes into.
    layout: Option<std::path::PathBuf>,
}

impl ExportPlan {
    /// The load whose file exporter `i` writes.
    fn load_at(&self, i: usize) -> Option<&load::LoadStep> {
        let target = self.targets.get(&(i as u32))?;
        self.loads.iter().find(|l| l.export_target() == *target)
    }

    fn is_load(&self, i: usize) -> bool {
        self.load_at(i).is_some()
    }

    /// Moves the exporters that push after the others, their client-side targets with them.
    fn move_pushes_last(&mut self) {
        let pushes =
            |e: &control::Exporter| e.attrs.get("push").is_some_and(|v| exporter::parse_bool(v));
        let n = self.exporters.len();
        let order: Vec<usize> = (0..n)
            .filter(|i| !pushes(&self.exporters[*i]))
            .chain((0..n).filter(|i| pushes(&self.exporters[*i])))
            .collect();
        let exporters = std::mem::take(&mut self.exporters);
        let targets = std::mem::take(&mut self.targets);
        for (new, old) in order.into_iter().enumerate() {
            self.exporters.push(exporters[old].clone());
            if let Some(t) = targets.get(&(old as u32)) {
                self.targets.insert(new as u32, t.clone());
            }
        }
    }
}

/// Features names as buildx words them in its "not supported" errors.
fn not_supported(feature: &str, driver: &str, docs: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{feature} is not supported for the {driver} driver.\nSwitch to a different driver, or turn on the containerd image store, and try again.\nLearn more at {docs}"
    )
}

fn env_flag(name: &str) -> Option<bool> {
    std::env::var(name).ok().map(|v| exporter::parse_bool(&v))
}

/// Turns the user's outputs into exporters this node can run.
fn plan_exports(opts: &BuildOptions, features: &Features, driver: &str) -> Result<ExportPlan> {
    let mut specs: Vec<ExportSpec> = opts.outputs.clone();
    if opts.push {
        let mut used = false;
        for s in specs.iter_mut().filter(|s| s.kind == ExporterKind::Image) {
            s.attrs.insert("push".into(), "true".into());
            used = true;
        }
        if !used {
            specs.push(ExportSpec::parse("type=image,push=true")?);
        }
    }
    // Which spec (by index) loads into containerd, and which into the node's default store.
    let mut containerd_load = None;
    let mut default_load = None;
    match &opts.load {
        Some(kiln_drivers::ImageStore::Docker)
            if !specs
                .iter()
                .any(|s| s.kind == ExporterKind::Docker && s.dest.is_none()) =>
        {
            specs.push(ExportSpec::parse("type=docker")?);
        }
        Some(store @ kiln_drivers::ImageStore::Containerd { .. }) => {
            load::check_reachable(store).context("--load")?;
            containerd_load = Some((specs.len(), store.clone()));
            specs.push(ExportSpec::parse("type=oci")?);
        }
        _ => {}
    }
    if specs.is_empty() && !env_flag("BUILDX_NO_DEFAULT_LOAD").unwrap_or(false) {
        if features.moby_exporter {
            specs.push(ExportSpec::parse("type=image")?);
        } else if features.default_load {
            default_load = Some(0);
            specs.push(ExportSpec::parse("type=docker")?);
        }
    }
    specs.retain(|s| s.kind != ExporterKind::CacheOnly);
    if !features.multi_platform
        && features.moby_exporter
        && opts.annotations.iter().any(|a| a.targets_index())
        && specs
            .iter()
            .any(|s| matches!(s.kind, ExporterKind::Image | ExporterKind::Docker))
    {
        bail!("index annotations not supported for single platform export");
    }
    if specs.len() > 1 && !features.multi_platform {
        bail!("multiple outputs currently unsupported by the current BuildKit daemon, please upgrade to version v0.13+ or use a single output");
    }

    let mut plan = ExportPlan::default();
    for (i, spec) in specs.iter().enumerate() {
        let mut attrs = spec.attrs.clone();
        let mut type_name = spec.type_name.clone();
        // Loads the node's exporters cannot do themselves go through a client-side file.
        let load_dest = match &containerd_load {
            Some((at, store)) if *at == i => Some(load::LoadDest::Store(store.clone())),
            _ if default_load == Some(i) && !features.moby_exporter => {
                Some(load::LoadDest::NodeDefault)
            }
            _ if spec.kind == ExporterKind::Docker
                && spec.dest.is_none()
                && !features.moby_exporter =>
            {
                Some(load::LoadDest::Store(kiln_drivers::ImageStore::Docker))
            }
            _ => None,
        };
        for a in &opts.annotations {
            attrs.insert(a.exporter_key(), a.value.clone());
        }
        if !opts.tags.is_empty()
            && matches!(
                spec.kind,
                ExporterKind::Image | ExporterKind::Oci | ExporterKind::Docker
            )
        {
            attrs.insert("name".into(), opts.tags.join(","));
        }
        if spec.kind == ExporterKind::Image
            && spec.is_push()
            && attrs.get("name").map(|n| n.is_empty()).unwrap_or(true)
        {
            bail!("tag is needed when pushing to registry");
        }
        match spec.kind {
            ExporterKind::Oci if !features.oci_exporter => {
                return Err(not_supported(
                    "OCI exporter",
                    driver,
                    "https://docs.docker.com/go/build-exporters/",
                ))
            }
            ExporterKind::Docker if spec.dest.is_some() && !features.docker_exporter => {
                return Err(not_supported(
                    "Docker exporter",
                    driver,
                    "https://docs.docker.com/go/build-exporters/",
                ))
            }
            _ if load_dest.is_some() => {}
            ExporterKind::Docker if spec.dest.is_none() => {
                type_name = "moby".into();
            }
            ExporterKind::Image if features.moby_exporter => {
                if spec.is_push()
                    && attrs
                        .get("push-by-digest")
                        .map(|v| exporter::parse_bool(v))
                        .unwrap_or(false)
                {
                    bail!("push-by-digest is currently not implemented for docker driver, please create a new builder instance");
                }
                type_name = "moby".into();
            }
            _ => {}
        }
        if matches!(
            spec.kind,
            ExporterKind::Image | ExporterKind::Oci | ExporterKind::Docker
        ) {
            if let Some(v) = opts.build_args.get("BUILDKIT_INLINE_BUILDINFO_ATTRS") {
                attrs.insert("buildinfo-attrs".into(), v.clone());
            }
        }
        if let Some(dest) = load_dest {
            let step = match dest {
                load::LoadDest::Store(kiln_drivers::ImageStore::Docker) => {
                    // `-o type=docker,context=NAME` loads into that Docker context; the
                    // attribute is kiln's to use, not the exporter's.
                    let context = attrs.remove("context").filter(|c| !c.is_empty());
                    load::LoadStep::streamed_into_docker(&opts.tags, context)
                }
                dest => load::LoadStep::new(dest, &opts.tags)?,
            };
            type_name = step.exporter_type(opts.platforms.len()).into();
            plan.targets.insert(i as u32, step.export_target());
            plan.loads.push(step);
        } else if let Some(target) = spec.client_target()? {
            let target = match target {
                ClientTarget::Dir(d) => Some(ExportTarget::Dir(d)),
                ClientTarget::File(f) => Some(ExportTarget::File(f)),
                ClientTarget::Stdout => Some(ExportTarget::Stdout),
                ClientTarget::Layout(d) => {
                    // BuildKit has one such store per session, named `export`.
                    if plan.layout.is_some() {
                        bail!("oci store key \"export\" already exists");
                    }
                    // Created by the first blob BuildKit writes (or when the index is
                    // recorded), so a build refused before it starts leaves nothing behind.
                    plan.layout = Some(d);
                    None
                }
            };
            if target == Some(ExportTarget::Stdout)
                && plan.targets.values().any(|t| *t == ExportTarget::Stdout)
            {
                bail!("multiple outputs configured to write to stdout");
            }
            if let Some(target) = target {
                plan.targets.insert(i as u32, target);
            }
        }
        plan.exporters.push(control::Exporter {
            r#type: type_name,
            attrs: attrs.into_iter().collect(),
        });
    }
    Ok(plan)
}

/// The solve's cache imports and exports. Imports are also handed to the frontend (as
/// `cache-imports`) so it can resolve cached stages.
fn plan_cache(
    opts: &BuildOptions,
    features: &Features,
    driver: &str,
    attrs: &mut BTreeMap<String, String>,
) -> Result<control::CacheOptions> {
    let mut exports = opts.cache_to.clone();
    if opts
        .build_args
        .get("BUILDKIT_INLINE_CACHE")
        .is_some_and(|v| exporter::parse_bool(v))
    {
        exports.push(cache::CacheSpec {
            kind: "inline".into(),
            attrs: BTreeMap::new(),
        });
    }
    if exports.iter().any(|e| e.kind != "inline") && !features.cache_export {
        return Err(not_supported(
            "Cache export",
            driver,
            "https://docs.docker.com/go/build-cache-backends/",
        ));
    }
    local_cache::create_export_dirs(&exports)?;
    let cache_from = local_cache::resolve_imports(&opts.cache_from)?;
    let entry = |c: &cache::CacheSpec| control::CacheOptionsEntry {
        r#type: c.kind.clone(),
        attrs: c.attrs.clone().into_iter().collect(),
    };
    let imports: Vec<_> = cache_from.iter().map(entry).collect();
    if !imports.is_empty() {
        // The same JSON shape BuildKit's Go client marshals (field names `Type` and `Attrs`).
        let json: Vec<serde_json::Value> = cache_from
            .iter()
            .map(|c| serde_json::json!({"Type": c.kind, "Attrs": c.attrs}))
            .collect();
        attrs.insert(
            "cache-imports".into(),
            serde_json::to_string(&json).expect("cache imports are plain strings"),
        );
    }
    Ok(control::CacheOptions {
        exports: exports.iter().map(entry).collect(),
        imports,
        ..Default::default()
    })
}

/// Frontend attributes that follow from the options alone (inputs add theirs separately).
fn frontend_attrs(opts: &BuildOptions, features: &Features) -> Result<BTreeMap<String, String>> {
    let mut a = BTreeMap::new();
    if let Some(v) = opts.build_args.get("BUILDKIT_SYNTAX") {
        bail!("BUILDKIT_SYNTAX={v}: custom frontends are not supported by kiln yet");
    }
    if opts
        .build_args
        .get("BUILDKIT_MULTI_PLATFORM")
        .map(|v| exporter::parse_bool(v))
        .unwrap_or(false)
    {
        a.insert("multi-platform".into(), "true".into());
    }
    // Attestations need an image store that holds indexes: the same capability as multi-platform.
    let attestations_supported = features.multi_platform;
    if opts.attests.any_enabled() && !attestations_supported {
        return Err(not_supported(
            "Attestation",
            "docker",
            "https://docs.docker.com/go/attestations/",
        ));
    }
    a.extend(opts.attests.frontend_attrs());
    // buildx attaches minimal provenance by default wherever the node can hold attestations.
    if attestations_supported
        && opts.call.is_none()
        && !opts.attests.mentions("provenance")
        && !attest::default_attestations_disabled()?
    {
        a.insert(
            "attest:provenance".into(),
            "mode=min,inline-only=true".into(),
        );
    }
    for (k, v) in &opts.build_args {
        a.insert(format!("build-arg:{k}"), v.clone());
    }
    for (k, v) in &opts.labels {
        a.insert(format!("label:{k}"), v.clone());
    }
    if opts.pull {
        a.insert("image-resolve-mode".into(), "pull".into());
    } else if features.moby_exporter {
        // The Engine's BuildKit resolves images from its own store first, as `docker build` does.
        a.insert("image-resolve-mode".into(), "local".into());
    }
    if let Some(t) = &opts.target {
        a.insert("target".into(), t.clone());
    }
    if !opts.no_cache_filter.is_empty() {
        a.insert("no-cache".into(), opts.no_cache_filter.join(","));
    }
    if opts.no_cache {
        a.insert("no-cache".into(), String::new());
    }
    if !opts.platforms.is_empty() {
        if opts.platforms.len() > 1 && !features.multi_platform {
            return Err(not_supported(
                "Multi-platform build",
                "docker",
                "https://docs.docker.com/go/build-multi-platform/",
            ));
        }
        let p: Vec<String> = opts.platforms.iter().map(|p| p.to_string()).collect();
        a.insert("platform".into(), p.join(","));
    }
    match opts.network {
        NetworkMode::Host => {
            a.insert("force-network-mode".into(), "host".into());
        }
        NetworkMode::None => {
            a.insert("force-network-mode".into(), "none".into());
        }
        NetworkMode::Default => {}
    }
    if !opts.extra_hosts.is_empty() {
        a.insert(
            "add-hosts".into(),
            options::extra_hosts_attr(&opts.extra_hosts),
        );
    }
    if let Some(s) = opts.shm_size.filter(|s| *s > 0) {
        a.insert("shm-size".into(), s.to_string());
    }
    if let Some(c) = &opts.cgroup_parent {
        a.insert("cgroup-parent".into(), c.clone());
    }
    if !opts.ulimits.is_empty() {
        a.insert("ulimit".into(), opts.ulimits.join(","));
    }
    Ok(a)
}

/// A builder's node, connected, with what it can do.
pub(crate) struct NodeConn<'a> {
    pub builder: &'a Builder,
    pub node: &'a crate::builder::BuilderNode,
    pub client: BuildkitClient,
    pub features: Features,
    /// What the node's workers report, the first worker's native platform first.
    pub reported_platforms: Vec<crate::platform::Platform>,
}

impl<'a> NodeConn<'a> {
    /// The builder's first node.
    pub async fn connect(builder: &'a Builder) -> Result<NodeConn<'a>> {
        let node = builder
            .nodes
            .first()
            .with_context(|| format!("builder {:?} has no nodes", builder.name))?;
        Self::connect_node(builder, node).await
    }

    pub async fn connect_node(
        builder: &'a Builder,
        node: &'a crate::builder::BuilderNode,
    ) -> Result<NodeConn<'a>> {
        let what = if builder.nodes.len() > 1 {
            format!("node {:?} of builder {:?}", node.name, builder.name)
        } else {
            format!("builder {:?}", builder.name)
        };
        let client = BuildkitClient::connect(node.driver.clone())
            .await
            .with_context(|| format!("connecting to {what}"))?;
        let workers = client
            .list_workers()
            .await
            .with_context(|| format!("listing the workers of {what} at {}", node.endpoint))?;
        let labels: Vec<_> = workers.iter().map(|w| w.labels.clone()).collect();
        let features = node.driver.features(&labels);
        let reported_platforms = crate::platform::dedupe(
            workers
                .iter()
                .flat_map(|w| crate::platform::parse_reported(&w.platforms)),
        );
        Ok(NodeConn {
            builder,
            node,
            client,
            features,
            reported_platforms,
        })
    }

    pub fn driver_name(&self) -> &'static str {
        self.builder.driver_kind.as_str()
    }

    /// A printer for this builder's display, header written.
    pub fn printer(&self, mode: ProgressMode, debug: bool) -> Printer {
        let mut printer = Printer::new(mode);
        printer.set_debug(debug);
        printer.header(&self.builder.name, self.driver_name());
        printer
    }

    /// buildx's build reference: `builder/node/ref`.
    pub fn build_ref(&self, solve_ref: &str) -> String {
        format!("{}/{}/{}", self.builder.name, self.node.name, solve_ref)
    }
}

/// Everything one solve asks for, decided from the options and the node's features before
/// anything reaches BuildKit.
pub(crate) struct SolvePlan {
    exports: ExportPlan,
    /// Frontend attributes (inputs, cache imports and the subrequest id included).
    pub attrs: BTreeMap<String, String>,
    cache: control::CacheOptions,
    /// Local directories, uploads and OCI layouts; temporary directories live as long as this.
    pub inputs: inputs::PreparedInputs,
    entitlements: Vec<String>,
}

pub(crate) fn plan_solve(
    opts: &BuildOptions,
    features: &Features,
    driver_name: &str,
) -> Result<SolvePlan> {
    plan_solve_with(opts, features, driver_name, inputs::prepare(opts)?)
}

/// [`plan_solve`] with inputs already prepared (once for every node of a build).
pub(crate) fn plan_solve_with(
    opts: &BuildOptions,
    features: &Features,
    driver_name: &str,
    prepared: inputs::PreparedInputs,
) -> Result<SolvePlan> {
    // A subrequest exports nothing and loads nothing.
    let exports = match &opts.call {
        Some(_) => ExportPlan::default(),
        None => plan_exports(opts, features, driver_name)?,
    };
    let mut attrs = frontend_attrs(opts, features)?;
    attrs.extend(prepared.frontend_attrs.clone());
    if let Some(call) = &opts.call {
        attrs.insert("requestid".into(), call.request_id());
    }
    let cache = plan_cache(opts, features, driver_name, &mut attrs)?;
    Ok(SolvePlan {
        exports,
        attrs,
        cache,
        inputs: prepared,
        entitlements: entitlements::for_solve(&opts.allow, opts.network == NetworkMode::Host),
    })
}

impl SolvePlan {
    /// Fits loads into the user's Docker Engine to what it takes, as buildx does: an OCI layout
    /// where the Engine keeps images in containerd (indexes and attestations kept), else a
    /// Docker tarball, which holds one platform and no attestations: several platforms (`opts`
    /// are the whole build's, across nodes) or attestations are then refused before anything
    /// is built. The Engine is asked only when something loads into it.
    pub(crate) async fn fit_docker_loads(
        &mut self,
        driver: &dyn kiln_drivers::Driver,
        opts: &BuildOptions,
        engine: &load::DockerEngine,
    ) -> Result<()> {
        for i in 0..self.exports.exporters.len() {
            let Some(load) = self.exports.load_at(i) else {
                continue;
            };
            if load.store(driver) != kiln_drivers::ImageStore::Docker {
                continue;
            }
            let oci = engine.oci_importer(load.docker_context.as_deref()).await?;
            if !oci && (opts.platforms.len() > 1 || opts.attests.any_enabled()) {
                bail!("docker exporter does not currently support exporting manifest lists");
            }
            self.exports.exporters[i].r#type = if oci { "oci" } else { "docker" }.into();
        }
        Ok(())
    }

    /// For a build whose platforms are split across nodes: takes the client-side loads out of
    /// [`finish`](Self::finish) so the caller merges every node's part into one image and
    /// imports that once. Their exporters write OCI layouts (the caller has the frontend make an
    /// index, one platform or many), so the parts merge.
    pub(crate) fn take_loads_for_merge(
        &mut self,
        features: &Features,
        driver: &str,
    ) -> Result<Vec<load::LoadStep>> {
        if self.exports.loads.is_empty() {
            return Ok(Vec::new());
        }
        if !features.oci_exporter {
            bail!("loading a build that spans several nodes needs OCI layouts from every node, and the BuildKit of this {driver} node has no OCI exporter");
        }
        let load_exporters: Vec<usize> = (0..self.exports.exporters.len())
            .filter(|i| self.exports.is_load(*i))
            .collect();
        let mut loads = Vec::new();
        for i in load_exporters {
            self.exports.exporters[i].r#type = "oci".into();
            // The parts are merged from files; a streamed load becomes one through a file.
            let step = self
                .exports
                .load_at(i)
                .cloned()
                .expect("an exporter of a load")
                .through_a_file()?;
            self.exports.targets.insert(i as u32, step.export_target());
            loads.push(step);
        }
        self.exports.loads.clear();
        Ok(loads)
    }

    /// What this solve's session serves.
    pub fn session_content(&self, opts: &BuildOptions) -> SessionContent {
        let prepared = &self.inputs;
        SessionContent {
            dirs: prepared.dirs.clone(),
            exports: self.exports.targets.clone(),
            uploads: prepared.uploads.clone(),
            oci_stores: prepared.oci_stores.clone(),
            local_caches: local_cache::session_stores(&self.cache)
                .into_iter()
                .chain(self.exports.layout.iter().map(|dir| {
                    (
                        crate::buildkit::session::EXPORT_STORE.to_string(),
                        crate::buildkit::session::LayoutStore {
                            dir: dir.clone(),
                            writable: true,
                        },
                    )
                }))
                .collect(),
            secrets: secrets::session_secrets(&opts.secrets),
            ssh: secrets::session_agents(&opts.ssh),
        }
    }

    /// The session's shared key on `node`: BuildKit reuses what it has of a context sent
    /// under the same key.
    pub fn shared_key(&self, node: &str) -> String {
        format!("{}:{node}", self.inputs.shared_key)
    }

    /// The `Control/Solve` request for the Dockerfile frontend.
    pub fn request(&self, solve_ref: &str, session_id: &str) -> control::SolveRequest {
        control::SolveRequest {
            r#ref: solve_ref.to_string(),
            exporter_deprecated: self
                .exports
                .exporters
                .first()
                .map(|e| e.r#type.clone())
                .unwrap_or_default(),
            exporter_attrs_deprecated: self
                .exports
                .exporters
                .first()
                .map(|e| e.attrs.clone())
                .unwrap_or_default(),
            exporters: self.exports.exporters.clone(),
            session: session_id.to_string(),
            frontend: "dockerfile.v0".into(),
            frontend_attrs: self.attrs.clone().into_iter().collect(),
            cache: Some(self.cache.clone()),
            entitlements: self.entitlements.clone(),
            ..Default::default()
        }
    }

    /// After a successful solve: pushes what the node could not push itself and returns the
    /// exporter response as the metadata file holds it.
    pub async fn finish(
        &self,
        conn: &NodeConn<'_>,
        resp: control::SolveResponse,
        own_steps: &tokio::sync::mpsc::Sender<control::StatusResponse>,
    ) -> Result<BTreeMap<String, String>> {
        let mut exporter_response: BTreeMap<String, String> =
            resp.exporter_response.into_iter().collect();
        let pushed = push_from_store(
            conn.node.driver.as_ref(),
            &self.exports,
            &conn.features,
            own_steps,
        )
        .await;
        exporter_response_with_push(&mut exporter_response, pushed)?;
        for step in &self.exports.loads {
            step.run(conn.node.driver.as_ref(), own_steps).await?;
        }
        local_cache::update_indexes(&self.cache, &exporter_response)?;
        if let Some(dir) = &self.exports.layout {
            layout_index::record_image(dir, &exporter_response)
                .with_context(|| format!("updating {}", dir.join("index.json").display()))?;
        }
        Ok(exporter_response)
    }
}

/// Solves running at once, each tagged with its index.
pub(crate) type Solves = tokio::task::JoinSet<(
    usize,
    std::result::Result<control::SolveResponse, tonic::Status>,
)>;

/// Waits for every solve; the first failure cancels the others (dropping a `Control/Solve`
/// call cancels the build on its daemon). Returns the responses by index and that failure.
pub(crate) async fn join_solves(
    mut solves: Solves,
    n: usize,
) -> (
    Vec<Option<control::SolveResponse>>,
    Option<(usize, tonic::Status)>,
) {
    let mut responses = vec![None; n];
    let mut failure = None;
    while let Some(joined) = solves.join_next().await {
        let Ok((i, result)) = joined else { continue };
        match result {
            Ok(resp) => responses[i] = Some(resp),
            Err(status) => {
                if failure.is_none() {
                    failure = Some((i, status));
                    solves.abort_all();
                }
            }
        }
    }
    (responses, failure)
}

/// The status stream ends once the job is done; gives it a moment to deliver the last events,
/// then stops waiting so a daemon that never closes it can't hang the build.
pub(crate) async fn end_status(status_task: tokio::task::JoinHandle<()>) {
    let status_abort = status_task.abort_handle();
    let status_done = tokio::time::timeout(std::time::Duration::from_secs(3), status_task).await;
    if status_done.is_err() {
        tracing::debug!("status stream did not end after the solve; closing the display");
        // The task holds a sender of the display's channel: the display ends only once it goes.
        status_abort.abort();
    }
}

/// Names an image exporter must push from the daemon's store because the node can't push from
/// its exporter (the docker driver without the containerd image store).
fn names_to_push_from_store(plan: &ExportPlan, features: &Features) -> Vec<String> {
    if features.direct_push || !features.moby_exporter {
        return Vec::new();
    }
    plan.exporters
        .iter()
        .filter(|e| e.r#type == "moby")
        .filter(|e| e.attrs.get("push").is_some_and(|v| exporter::parse_bool(v)))
        .flat_map(|e| {
            e.attrs
                .get("name")
                .map(|n| n.split(',').map(str::to_string).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect()
}

/// Pushes what the solve stored, one display step per name, and returns the first name's
/// pushed digest.
async fn push_from_store(
    driver: &dyn kiln_drivers::Driver,
    plan: &ExportPlan,
    features: &Features,
    steps: &tokio::sync::mpsc::Sender<control::StatusResponse>,
) -> Result<Option<String>> {
    let mut first = None;
    for (i, name) in names_to_push_from_store(plan, features)
        .into_iter()
        .enumerate()
    {
        let step = progress::OwnStep::start(steps, &format!("pushing {name} with docker")).await;
        let login = crate::dockercfg::credentials_for(registry_host(&name))
            .with_context(|| format!("reading credentials for {name}"))?
            .map(|c| kiln_drivers::RegistryLogin {
                username: c.username,
                password: c.secret,
                server: registry_host(&name).to_string(),
            });
        match driver.push_from_store(&name, login).await {
            Ok(digest) => {
                step.done(steps).await;
                if i == 0 {
                    first = digest;
                }
            }
            Err(e) => {
                step.failed(steps, &e.to_string()).await;
                return Err(anyhow::Error::new(e));
            }
        }
    }
    Ok(first)
}

/// As buildx does after pushing with the Engine: the pushed manifest becomes the image digest,
/// and the previous digest is kept as the config digest where the daemon did not report one.
fn exporter_response_with_push(
    resp: &mut BTreeMap<String, String>,
    pushed: Result<Option<String>>,
) -> Result<()> {
    if let Some(remote) = pushed? {
        if !resp.contains_key("containerimage.config.digest") {
            if let Some(d) = resp.get("containerimage.digest").cloned() {
                resp.insert("containerimage.config.digest".into(), d);
            }
        }
        resp.insert("containerimage.digest".into(), remote);
    }
    Ok(())
}

/// The registry an image name lives on, as Docker reads names.
fn registry_host(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// Forwards `Control/Status` for one solve into the display, with timestamps moved onto the
/// local clock as buildx shows them.
pub(crate) async fn stream_status(
    mut control: control::control_client::ControlClient<tonic::transport::Channel>,
    solve_ref: String,
    tx: tokio::sync::mpsc::Sender<control::StatusResponse>,
    label: Option<String>,
) {
    let mut feed = progress::SolveFeed::new(label.as_deref());
    let Ok(resp) = control
        .status(control::StatusRequest { r#ref: solve_ref })
        .await
    else {
        return;
    };
    let mut stream = resp.into_inner();
    while let Ok(Some(mut status)) = stream.message().await {
        feed.adjust(&mut status);
        if tx.send(status).await.is_err() {
            break;
        }
    }
}
