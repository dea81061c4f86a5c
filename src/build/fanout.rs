//! One build across the nodes [`placement`](super::placement) chose: a solve per node, all
//! running at once in one progress display, and, when they push, one manifest list merged from
//! their results.
//!
//! With one node this is the plain build. With several, each node's image exporter pushes by
//! digest to the tags' repositories (nothing is tagged until every platform is built), and the
//! per-node descriptors are merged into one index that is then pushed under every tag, as
//! buildx does. The first solve to fail cancels the others; its error names the node and the
//! platforms it was building.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use bollard_buildkit_proto::moby::buildkit::v1 as control;

use super::placement::{self, Skipped};
use super::{call, exporter, inputs, load, BuildOptions, BuildResult, ExportPlan, SolvePlan};
use crate::builder::Builder;
use crate::buildkit::session::Session;
use crate::imagetools;
use crate::platform::Platform;
use crate::progress::{self, ProgressMode};
use crate::registry::{self, Reference};

/// One build among those run together: a plain build has one, `kiln bake` one per target.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// The bake target's name; `None` for a plain build.
    pub name: Option<String>,
    pub opts: BuildOptions,
}

/// One node's share of one job.
struct Part {
    job: usize,
    /// Index into the placed connections.
    conn: usize,
    /// The job spans several nodes (its parts are merged).
    split: bool,
    opts: BuildOptions,
    plan: SolvePlan,
    solve_ref: String,
    /// Of a split job: the loads this part exports for, merged with the other parts' and
    /// imported once after every solve.
    loads: Vec<load::LoadStep>,
}

impl Part {
    /// The node and the platforms, as errors name them: `node arm (linux/arm64)`.
    fn node_context(&self, node: &str) -> String {
        let ps: Vec<String> = self
            .opts
            .platforms
            .iter()
            .map(Platform::to_string)
            .collect();
        if ps.is_empty() {
            format!("node {node}")
        } else {
            format!("node {node} ({})", ps.join(","))
        }
    }

    /// How the display labels this part's steps, when several solves share it: the target
    /// (with several jobs), then the node and, when the frontend will not prefix vertices with
    /// it itself (it does when a solve has several), the platform.
    fn label(&self, jobs: &[Job], node: &str) -> Option<String> {
        let mut words: Vec<String> = Vec::new();
        if jobs.len() > 1 {
            words.extend(jobs[self.job].name.clone());
        }
        if self.split {
            words.push(node.to_string());
            let frontend_prefixes = self
                .plan
                .attrs
                .get("multi-platform")
                .is_some_and(|v| exporter::parse_bool(v));
            if let [one] = self.opts.platforms.as_slice() {
                if !frontend_prefixes {
                    words.push(one.to_string());
                }
            }
        }
        (!words.is_empty()).then(|| words.join(" "))
    }
}

/// Runs one build on the nodes that serve its platforms and returns what BuildKit reported
/// (for several nodes that push, the merged manifest list's digest).
pub async fn build(
    builder: &Builder,
    opts: BuildOptions,
    mode: ProgressMode,
    debug: bool,
) -> Result<BuildResult> {
    let mut results = run(builder, vec![Job { name: None, opts }], mode, debug).await?;
    Ok(results.remove(0))
}

/// Runs every job at once, each on the nodes that serve its platforms, in one display, and
/// returns each job's result in order.
pub(crate) async fn run(
    builder: &Builder,
    jobs: Vec<Job>,
    mode: ProgressMode,
    debug: bool,
) -> Result<Vec<BuildResult>> {
    let wanted: Vec<Vec<Platform>> = jobs.iter().map(|j| j.opts.platforms.clone()).collect();
    let placed = placement::place(builder, &wanted).await?;
    warn_skipped(&builder.name, &placed.skipped);
    let conns = &placed.conns;
    let node_name = |p: &Part| conns[p.conn].node.name.as_str();
    let job_context = |j: usize| jobs[j].name.as_ref().map(|n| format!("target {n}"));

    let mut parts: Vec<Part> = Vec::new();
    let mut push_names: Vec<Option<String>> = vec![None; jobs.len()];
    let docker_engine = load::DockerEngine::default();
    // Per job, the image store each merged load goes to.
    let mut merged_stores: Vec<Vec<kiln_drivers::ImageStore>> = Vec::new();
    for (j, (job, shares)) in jobs.iter().zip(&placed.jobs).enumerate() {
        // Errors before anything starts name the target they belong to.
        let in_job = |e: anyhow::Error| match job_context(j) {
            Some(c) => e.context(c),
            None => e,
        };
        let mut shares = shares.clone();
        if job.opts.call.is_some() {
            // A subrequest answers the same for every platform: ask one node.
            shares.truncate(1);
        }
        let split = shares.len() > 1;
        let prepared = inputs::prepare(&job.opts).map_err(in_job)?;
        for (c, platforms) in shares {
            let conn = &conns[c];
            let mut opts = job.opts.clone();
            opts.platforms = platforms;
            let mut plan =
                super::plan_solve_with(&opts, &conn.features, conn.driver_name(), prepared.clone())
                    .map_err(in_job)?;
            plan.fit_docker_loads(conn.node.driver.as_ref(), &job.opts, &docker_engine)
                .await
                .map_err(in_job)?;
            let mut loads = Vec::new();
            if split {
                let (names, merged_loads) =
                    prepare_for_merge(&mut plan, &conn.features, conn.driver_name())
                        .map_err(in_job)?;
                if let Some(names) = names {
                    push_names[j].get_or_insert(names);
                }
                loads = merged_loads;
            }
            parts.push(Part {
                job: j,
                conn: c,
                split,
                opts,
                plan,
                solve_ref: crate::buildkit::new_id(),
                loads,
            });
        }
        let stores = merged_load_stores(parts.iter().filter(|p| p.job == j).map(|p| {
            let conn = &conns[p.conn];
            (
                conn.node.name.as_str(),
                conn.node.driver.as_ref(),
                &p.loads[..],
            )
        }));
        merged_stores.push(stores.map_err(in_job)?);
    }

    for p in parts.iter().filter(|p| p.opts.call.is_none()) {
        if let Some(state) = super::options::local_state(&p.opts) {
            // Only names in `history` depend on it: a build goes on without.
            if let Err(e) =
                crate::store::save_build_state(&builder.name, node_name(p), &p.solve_ref, &state)
            {
                tracing::debug!("saving the build's local state: {e:#}");
            }
        }
    }

    let sessions: Vec<Session> = parts
        .iter()
        .map(|p| {
            Session::new(
                "kiln",
                &p.plan.shared_key(node_name(p)),
                p.plan.session_content(&p.opts),
            )
        })
        .collect();
    let mut running = Vec::new();
    for (p, s) in parts.iter().zip(&sessions) {
        running.push(
            s.attach(conns[p.conn].node.driver.as_ref())
                .await
                .with_context(|| format!("starting a session on node {:?}", node_name(p)))?,
        );
    }

    let printer = conns[0].printer(mode, debug);
    let (status_tx, status_rx) = tokio::sync::mpsc::channel(128);
    // Steps kiln runs itself after the solves (pushing from a daemon's store, merging) show in
    // the same display through this sender.
    let own_steps = status_tx.clone();
    let display = tokio::spawn(progress::run(printer, status_rx));
    let status_tasks: Vec<_> = parts
        .iter()
        .map(|p| {
            tokio::spawn(super::stream_status(
                conns[p.conn].client.control(),
                p.solve_ref.clone(),
                status_tx.clone(),
                p.label(&jobs, node_name(p)),
            ))
        })
        .collect();
    drop(status_tx);

    let mut solves = super::Solves::new();
    for (i, (p, s)) in parts.iter().zip(&sessions).enumerate() {
        let req = p.plan.request(&p.solve_ref, &s.id);
        let mut control = conns[p.conn].client.control();
        let driver = conns[p.conn].node.driver.clone();
        let is_call = p.opts.call.is_some();
        solves.spawn(async move {
            let r = if is_call {
                call::solve(driver, control, req).await
            } else {
                control.solve(req).await
            };
            (i, r.map(tonic::Response::into_inner))
        });
    }
    let (responses, failure) = super::join_solves(solves, parts.len()).await;
    for task in status_tasks {
        super::end_status(task).await;
    }
    drop(running);

    let mut finished: Vec<Result<BTreeMap<String, String>>> = Vec::new();
    if failure.is_none() {
        for (p, resp) in parts.iter().zip(responses) {
            let r = p
                .plan
                .finish(&conns[p.conn], resp.unwrap_or_default(), &own_steps)
                .await;
            finished.push(match p.split {
                true => r.with_context(|| p.node_context(node_name(p))),
                false => r,
            });
        }
    }
    let mut merged: Vec<Option<Result<String>>> = Vec::new();
    for (j, names) in push_names.iter().enumerate() {
        let responses: Vec<&Result<BTreeMap<String, String>>> = parts
            .iter()
            .zip(&finished)
            .filter(|(p, _)| p.job == j)
            .map(|(_, r)| r)
            .collect();
        merged.push(match names {
            Some(names) if failure.is_none() && responses.iter().all(|r| r.is_ok()) => {
                let ok: Vec<&BTreeMap<String, String>> =
                    responses.iter().filter_map(|r| r.as_ref().ok()).collect();
                Some(merge_step(names, &ok, &jobs[j].opts, &own_steps).await)
            }
            _ => None,
        });
    }
    let mut loaded: Vec<Option<Result<String>>> = Vec::new();
    for (j, stores) in merged_stores.iter().enumerate() {
        let job_parts: Vec<(&Part, &Result<BTreeMap<String, String>>)> = parts
            .iter()
            .zip(&finished)
            .filter(|(p, _)| p.job == j)
            .collect();
        let all_ok = failure.is_none()
            && !job_parts.is_empty()
            && job_parts.iter().all(|(_, r)| r.is_ok())
            && !matches!(merged[j], Some(Err(_)));
        loaded.push(if stores.is_empty() || !all_ok {
            None
        } else {
            let nodes: Vec<(&Part, &str, &dyn kiln_drivers::Driver)> = job_parts
                .iter()
                .map(|(p, _)| (*p, node_name(p), conns[p.conn].node.driver.as_ref()))
                .collect();
            Some(load_job(&nodes, stores, &jobs[j].opts, &own_steps).await)
        });
    }
    drop(own_steps);

    let (mut printer, summary) = display.await.context("progress display")?;
    printer.print_warnings(&summary);
    if let Some((i, status)) = failure {
        let p = &parts[i];
        let node = node_name(p);
        if let Some(e) = p
            .opts
            .call
            .as_ref()
            .and_then(|c| c.unsupported_error(&status, &builder.name, node))
        {
            return Err(match job_context(p.job) {
                Some(c) => e.context(c),
                None => e,
            });
        }
        let err = progress::error::SolveError::from_status(&status);
        let mut context: Vec<String> = job_context(p.job).into_iter().collect();
        if p.split {
            context.push(p.node_context(node));
        }
        let rendered = if context.is_empty() {
            progress::error::render_solve_error(&status, &summary)
        } else {
            context.push("failed to solve".into());
            let context: Vec<&str> = context.iter().map(String::as_str).collect();
            err.render(&context)
        };
        eprint!("{rendered}");
        return Err(anyhow::Error::new(crate::AlreadyReported(
            u8::try_from(err.exit_code()).unwrap_or(1),
        )));
    }

    let mut finished: Vec<Option<BTreeMap<String, String>>> = finished
        .into_iter()
        .zip(&parts)
        .map(|(r, p)| match job_context(p.job) {
            Some(c) => r.context(c),
            None => r,
        })
        .map(|r| r.map(Some))
        .collect::<Result<_>>()?;
    let mut results = Vec::new();
    for (j, (merged, loaded)) in merged.into_iter().zip(loaded).enumerate() {
        let first = parts
            .iter()
            .position(|p| p.job == j)
            .context("a job has no node")?;
        let loaded = loaded.transpose();
        let loaded = match job_context(j) {
            Some(c) => loaded.context(c)?,
            None => loaded?,
        };
        let mut exporter_response = match merged.or(loaded.map(Ok)) {
            Some(digest) => {
                let digest = match job_context(j) {
                    Some(c) => digest.context(c)?,
                    None => digest?,
                };
                BTreeMap::from([("containerimage.digest".to_string(), digest)])
            }
            None => finished[first].take().unwrap_or_default(),
        };
        let p = &parts[first];
        if p.opts.call.is_none() {
            exporter_response.insert(
                "buildx.build.ref".into(),
                conns[p.conn].build_ref(&p.solve_ref),
            );
        }
        results.push(BuildResult {
            exporter_response,
            warnings: summary.warnings.clone(),
        });
    }
    Ok(results)
}

/// Says which nodes the build leaves out, before the display starts.
pub(super) fn warn_skipped(builder: &str, skipped: &[Skipped]) {
    for s in skipped {
        eprintln!(
            "WARNING: node {} of builder {builder} is skipped: {}",
            s.name, s.reason
        );
    }
}

/// Makes one node's share of a split build fit for merging, as buildx does for every multi-node
/// build: the frontend makes an index even of one platform; exporters are fitted
/// ([`exporters_for_merge`]); loads are taken out, to be merged from files after every solve;
/// and with both, the pushing exporter goes last, since BuildKit reports one response for all
/// exporters (the last one's keys win) and the push merge needs the pushed descriptor. Returns
/// the names to tag once merged and the loads.
fn prepare_for_merge(
    plan: &mut SolvePlan,
    features: &kiln_drivers::Features,
    driver: &str,
) -> Result<(Option<String>, Vec<load::LoadStep>)> {
    let names = exporters_for_merge(&mut plan.exports)?;
    let loads = plan.take_loads_for_merge(features, driver)?;
    plan.attrs.insert("multi-platform".into(), "true".into());
    if names.is_some() && !loads.is_empty() {
        plan.exports.move_pushes_last();
    }
    Ok((names, loads))
}

/// Makes a multi-node solve's exporters fit for merging: results that would be written by
/// every node to the same file are refused, loads are left alone, and a pushing image exporter pushes by digest to
/// the tags' repositories instead of tagging. Returns the names to tag once merged.
fn exporters_for_merge(exports: &mut ExportPlan) -> Result<Option<String>> {
    let mut names = None;
    let loads: Vec<bool> = (0..exports.exporters.len())
        .map(|i| exports.is_load(i))
        .collect();
    for (e, is_load) in exports.exporters.iter_mut().zip(loads) {
        if is_load {
            // Merged across nodes and loaded once (`load_merged`).
            continue;
        }
        let pushes = e.attrs.get("push").is_some_and(|v| exporter::parse_bool(v));
        match e.r#type.as_str() {
            t @ ("oci" | "tar" | "docker") => {
                bail!("{t} for multi-node builds currently not supported")
            }
            // Each node writes its platforms under their own directory, as one solve for all
            // of them would, instead of over each other.
            "local" => {
                e.attrs
                    .entry("platform-split".into())
                    .or_insert_with(|| "true".into());
            }
            "moby" if pushes => bail!(
                "multi-node push can't currently be performed with the docker driver, please switch to a different driver"
            ),
            "image" if pushes && names.is_none() => {
                let tagged = e.attrs.get("name").cloned().unwrap_or_default();
                if tagged.is_empty() {
                    bail!("tag is needed when pushing to registry");
                }
                let repos = repositories(&tagged)?;
                e.attrs.insert("name".into(), repos);
                e.attrs.insert("push-by-digest".into(), "true".into());
                names = Some(tagged);
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Where the merged loads of one split job go, in the order of each part's loads: every node
/// must load the same number of results into the same image stores, or the parts could not
/// be merged into one image per store.
fn merged_load_stores<'a>(
    parts: impl Iterator<Item = (&'a str, &'a dyn kiln_drivers::Driver, &'a [load::LoadStep])>,
) -> Result<Vec<kiln_drivers::ImageStore>> {
    let mut first: Option<(&str, Vec<kiln_drivers::ImageStore>)> = None;
    for (node, driver, loads) in parts {
        let stores: Vec<kiln_drivers::ImageStore> = loads.iter().map(|l| l.store(driver)).collect();
        match &first {
            None => first = Some((node, stores)),
            Some((_, want)) if *want == stores => {}
            Some((other, want)) => bail!(
                "nodes {other} and {node} would load this build into different image stores ({} and {}); choose one with --load",
                describe_stores(want),
                describe_stores(&stores)
            ),
        }
    }
    Ok(first.map(|(_, s)| s).unwrap_or_default())
}

fn describe_stores(stores: &[kiln_drivers::ImageStore]) -> String {
    if stores.is_empty() {
        return "none".into();
    }
    let words: Vec<String> = stores
        .iter()
        .map(|s| match s {
            kiln_drivers::ImageStore::Docker => "Docker".to_string(),
            kiln_drivers::ImageStore::Containerd { address, namespace } => {
                format!("containerd {} namespace {namespace}", address.display())
            }
        })
        .collect();
    words.join(", ")
}

/// Once every part of a split job is built (and its push merged): merges and imports each of
/// its loads in turn, stopping at the first failure. Returns the last merged index's digest.
async fn load_job(
    parts: &[(&Part, &str, &dyn kiln_drivers::Driver)],
    stores: &[kiln_drivers::ImageStore],
    opts: &BuildOptions,
    steps: &tokio::sync::mpsc::Sender<control::StatusResponse>,
) -> Result<String> {
    let mut digest = String::new();
    for (k, store) in stores.iter().enumerate() {
        let exported: Vec<load::LayoutPart> = parts
            .iter()
            .filter_map(|(p, node, _)| {
                Some(load::LayoutPart {
                    node: node.to_string(),
                    file: p.loads[k].file()?.to_path_buf(),
                })
            })
            .collect();
        let (first, _, driver) = parts[0];
        digest = load_merged(&exported, store, &first.loads[k], opts, driver, steps).await?;
    }
    Ok(digest)
}

/// Merges what the nodes of one build exported for a load into one image and imports it into
/// `store`, as display steps. Returns the merged index's digest.
async fn load_merged(
    exported: &[load::LayoutPart],
    store: &kiln_drivers::ImageStore,
    like: &load::LoadStep,
    opts: &BuildOptions,
    driver: &dyn kiln_drivers::Driver,
    steps: &tokio::sync::mpsc::Sender<control::StatusResponse>,
) -> Result<String> {
    let nodes: Vec<&str> = exported.iter().map(|p| p.node.as_str()).collect();
    let annotations: Vec<_> = opts
        .annotations
        .iter()
        .filter(|a| a.targets_index())
        .cloned()
        .collect();
    let parts = exported.to_vec();
    if *store == kiln_drivers::ImageStore::Docker {
        // Docker takes the merged tarball as it is written: no merged copy on disk.
        let title = format!(
            "merging the results of nodes {} and importing to docker",
            nodes.join(", ")
        );
        let step = progress::OwnStep::start(steps, &title).await;
        let loaded =
            load::merge_into_docker(parts, annotations, like.docker_context.as_deref()).await;
        match &loaded {
            Ok(_) => step.done(steps).await,
            Err(e) => step.failed(steps, &format!("{e:#}")).await,
        }
        return loaded.with_context(|| title.clone());
    }
    // containerd's importer reads the merged layout in place, from a temporary file.
    let title = format!("merging the results of nodes {}", nodes.join(", "));
    let step = progress::OwnStep::start(steps, &title).await;
    let target = load::LoadStep::new(load::LoadDest::Store(store.clone()), &like.names)?;
    let file = target
        .file()
        .context("a merged load goes through a file")?
        .to_path_buf();
    let merged = tokio::task::spawn_blocking(move || {
        let out =
            std::fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?;
        load::merge_layouts(&parts, std::io::BufWriter::new(out), &annotations)
    })
    .await
    .context("merging the nodes' results")
    .and_then(|r| r);
    let digest = match merged {
        Ok(d) => {
            step.done(steps).await;
            d
        }
        Err(e) => {
            step.failed(steps, &format!("{e:#}")).await;
            return Err(e.context(title));
        }
    };
    target.run(driver, steps).await?;
    Ok(digest)
}

/// `a/b:1,c@sha256:...,a/b:2` → the repositories of a comma-separated name list, each once.
fn repositories(names: &str) -> Result<String> {
    let mut repos: Vec<String> = Vec::new();
    for n in names.split(',') {
        let parsed: Reference = n
            .trim()
            .parse()
            .with_context(|| format!("invalid image name {n:?}"))?;
        let repo = parsed.repository.to_string();
        if !repos.contains(&repo) {
            repos.push(repo);
        }
    }
    Ok(repos.join(","))
}

/// Merges the per-node results into one manifest list under every name, as a display step.
async fn merge_step(
    names: &str,
    responses: &[&BTreeMap<String, String>],
    opts: &BuildOptions,
    steps: &tokio::sync::mpsc::Sender<control::StatusResponse>,
) -> Result<String> {
    let step = progress::OwnStep::start(steps, &format!("merging manifest list {names}")).await;
    match merge(names, responses, opts).await {
        Ok(digest) => {
            step.done(steps).await;
            Ok(digest)
        }
        Err(e) => {
            step.failed(steps, &format!("{e:#}")).await;
            Err(e.context(format!("merging manifest list {names}")))
        }
    }
}

async fn merge(
    names: &str,
    responses: &[&BTreeMap<String, String>],
    opts: &BuildOptions,
) -> Result<String> {
    let tags: Vec<Reference> = names
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .with_context(|| format!("invalid image name {n:?}"))
        })
        .collect::<Result<_>>()?;
    // Every node pushed to every tag's repository; the first one is where the sources are read.
    let repo = Reference::from_repository(tags[0].repository.clone());
    let sources = responses
        .iter()
        .map(|r| {
            let descriptor = pushed_descriptor(r)?;
            Ok(imagetools::Source {
                reference: repo.with_digest(descriptor.digest.clone()),
                descriptor: Some(descriptor),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let req = imagetools::CreateRequest {
        sources,
        tags,
        annotations: opts
            .annotations
            .iter()
            .filter(|a| a.targets_index())
            .cloned()
            .collect(),
        prefer_index: true,
        dry_run: false,
    };
    let created = imagetools::create(&registry::Client::new(), &req).await?;
    tracing::debug!(
        uploaded_blob_bytes = created.uploaded_blob_bytes,
        "merged manifest list"
    );
    Ok(created.digest.to_string())
}

/// What a node pushed by digest: BuildKit's descriptor of it, or (from daemons too old to
/// report one) its digest as a manifest list of unknown size.
fn pushed_descriptor(resp: &BTreeMap<String, String>) -> Result<registry::Descriptor> {
    if let Some(json) = exporter::reported_descriptor(resp)? {
        return serde_json::from_slice(&json).context("reading the pushed image's descriptor");
    }
    let digest = resp
        .get("containerimage.digest")
        .context("the node reported no pushed image")?;
    Ok(registry::Descriptor::new(
        registry::oci::DOCKER_MANIFEST_LIST,
        digest
            .parse()
            .context("reading the pushed image's digest")?,
        -1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exporter(t: &str, attrs: &[(&str, &str)]) -> control::Exporter {
        control::Exporter {
            r#type: t.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn plan(exporters: Vec<control::Exporter>) -> ExportPlan {
        ExportPlan {
            exporters,
            ..Default::default()
        }
    }

    #[test]
    fn a_pushing_image_exporter_pushes_by_digest_to_the_repositories() {
        let mut e = plan(vec![exporter(
            "image",
            &[
                (
                    "name",
                    "127.0.0.1:5000/a:1,127.0.0.1:5000/b:2,127.0.0.1:5000/a:3",
                ),
                ("push", "true"),
            ],
        )]);
        let names = exporters_for_merge(&mut e).unwrap();
        assert_eq!(
            names.as_deref(),
            Some("127.0.0.1:5000/a:1,127.0.0.1:5000/b:2,127.0.0.1:5000/a:3")
        );
        assert_eq!(
            e.exporters[0].attrs["name"],
            "127.0.0.1:5000/a,127.0.0.1:5000/b"
        );
        assert_eq!(e.exporters[0].attrs["push-by-digest"], "true");
    }

    #[test]
    fn file_exporters_and_docker_driver_pushes_are_refused_for_several_nodes() {
        let mut e = plan(vec![exporter("oci", &[])]);
        assert_eq!(
            exporters_for_merge(&mut e).unwrap_err().to_string(),
            "oci for multi-node builds currently not supported"
        );
        let mut e = plan(vec![exporter("moby", &[("push", "true"), ("name", "x")])]);
        assert!(exporters_for_merge(&mut e)
            .unwrap_err()
            .to_string()
            .contains("docker driver"));
        let mut e = plan(vec![exporter("image", &[("name", "x:1")])]);
        assert_eq!(exporters_for_merge(&mut e).unwrap(), None);
    }
}
