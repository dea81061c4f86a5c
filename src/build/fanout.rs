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
use super::{call, exporter, inputs, BuildOptions, BuildResult, NodeConn, SolvePlan};
use crate::builder::Builder;
use crate::buildkit::session::Session;
use crate::imagetools;
use crate::platform::Platform;
use crate::progress::{self, ProgressMode};
use crate::registry::{self, Reference};

/// One node's share of the build.
struct Part<'a> {
    conn: NodeConn<'a>,
    opts: BuildOptions,
    plan: SolvePlan,
    solve_ref: String,
}

impl Part<'_> {
    /// How this part is named in the display and in errors: the node, and the platform when the
    /// frontend will not prefix vertices with it itself (it does when a solve has several).
    fn label(&self) -> String {
        match self.opts.platforms.as_slice() {
            [one] => format!("{} {one}", self.conn.node.name),
            _ => self.conn.node.name.clone(),
        }
    }

    fn platforms(&self) -> String {
        let ps: Vec<String> = self
            .opts
            .platforms
            .iter()
            .map(Platform::to_string)
            .collect();
        if ps.is_empty() {
            "its default platform".into()
        } else {
            ps.join(",")
        }
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
    let mut placed = placement::place(builder, &opts.platforms).await?;
    warn_skipped(&builder.name, &placed.skipped);
    if opts.call.is_some() {
        // A subrequest answers the same for every platform: ask one node.
        placed.parts.truncate(1);
    }
    let multi = placed.parts.len() > 1;
    if multi && opts.load.is_some() {
        bail!("--load of a build that spans several nodes is not supported: push it (--push), or build one platform per invocation");
    }

    let prepared = inputs::prepare(&opts)?;
    let mut parts = Vec::new();
    let mut push_names: Option<String> = None;
    for (conn, platforms) in placed.parts {
        let mut node_opts = opts.clone();
        node_opts.platforms = platforms;
        let mut plan = super::plan_solve_with(
            &node_opts,
            &conn.features,
            conn.driver_name(),
            prepared.clone(),
        )?;
        if multi {
            if !plan.exports.loads.is_empty() {
                // A builder whose nodes load by default (the containerd driver) would load one
                // platform per node under the same name.
                bail!("loading the result of a build that spans several nodes is not supported: push it (--push), or build one platform per invocation");
            }
            if let Some(names) = push_by_digest(&mut plan.exports.exporters)? {
                push_names.get_or_insert(names);
            }
        }
        parts.push(Part {
            conn,
            opts: node_opts,
            plan,
            solve_ref: crate::buildkit::new_id(),
        });
    }
    drop(prepared);

    let sessions: Vec<Session> = parts
        .iter()
        .map(|p| {
            Session::new(
                "kiln",
                &p.plan.shared_key(&p.conn.node.name),
                p.plan.session_content(&p.opts),
            )
        })
        .collect();
    let mut running = Vec::new();
    for (p, s) in parts.iter().zip(&sessions) {
        running.push(
            s.attach(p.conn.node.driver.as_ref())
                .await
                .with_context(|| format!("starting a session on node {:?}", p.conn.node.name))?,
        );
    }

    let printer = parts[0].conn.printer(mode, debug);
    let (status_tx, status_rx) = tokio::sync::mpsc::channel(128);
    // Steps kiln runs itself after the solves (pushing from a daemon's store, merging) show in
    // the same display through this sender.
    let own_steps = status_tx.clone();
    let display = tokio::spawn(progress::run(printer, status_rx));
    let status_tasks: Vec<_> = parts
        .iter()
        .map(|p| {
            tokio::spawn(super::stream_status(
                p.conn.client.control(),
                p.solve_ref.clone(),
                status_tx.clone(),
                multi.then(|| p.label()),
            ))
        })
        .collect();
    drop(status_tx);

    let mut solves = super::Solves::new();
    for (i, (p, s)) in parts.iter().zip(&sessions).enumerate() {
        let req = p.plan.request(&p.solve_ref, &s.id);
        let mut control = p.conn.client.control();
        let driver = p.conn.node.driver.clone();
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
                .finish(&p.conn, resp.unwrap_or_default(), &own_steps)
                .await;
            finished.push(
                r.with_context(|| format!("node {:?} ({})", p.conn.node.name, p.platforms())),
            );
        }
    }
    let merged = match (&failure, &push_names) {
        (None, Some(names)) if finished.iter().all(Result::is_ok) => {
            Some(merge_step(names, &finished, &opts, &own_steps).await)
        }
        _ => None,
    };
    drop(own_steps);

    let (mut printer, summary) = display.await.context("progress display")?;
    printer.print_warnings(&summary);
    if let Some((i, status)) = failure {
        let p = &parts[i];
        if let Some(e) = p
            .opts
            .call
            .as_ref()
            .and_then(|c| c.unsupported_error(&status, &builder.name, &p.conn.node.name))
        {
            return Err(e);
        }
        let err = progress::error::SolveError::from_status(&status);
        let rendered = if multi {
            let context = format!("node {} ({})", p.conn.node.name, p.platforms());
            err.render(&[context.as_str(), "failed to solve"])
        } else {
            progress::error::render_solve_error(&status, &summary)
        };
        eprint!("{rendered}");
        return Err(anyhow::Error::new(crate::AlreadyReported(
            u8::try_from(err.exit_code()).unwrap_or(1),
        )));
    }
    let mut results = Vec::new();
    for r in finished {
        results.push(r?);
    }
    let first = &parts[0];
    let mut exporter_response = match merged {
        Some(digest) => BTreeMap::from([("containerimage.digest".to_string(), digest?)]),
        None => results.into_iter().next().unwrap_or_default(),
    };
    if opts.call.is_none() {
        exporter_response.insert(
            "buildx.build.ref".into(),
            first.conn.build_ref(&first.solve_ref),
        );
    }
    Ok(BuildResult {
        exporter_response,
        warnings: summary.warnings.clone(),
    })
}

/// Says which nodes the build leaves out, before the display starts.
fn warn_skipped(builder: &str, skipped: &[Skipped]) {
    for s in skipped {
        eprintln!(
            "WARNING: node {} of builder {builder} is skipped: {}",
            s.name, s.reason
        );
    }
}

/// Makes a multi-node solve's exporters fit for merging: results that would be written by
/// every node to the same place are refused, and a pushing image exporter pushes by digest to
/// the tags' repositories instead of tagging. Returns the names to tag once merged.
fn push_by_digest(exporters: &mut [control::Exporter]) -> Result<Option<String>> {
    let mut names = None;
    for e in exporters.iter_mut() {
        let pushes = e.attrs.get("push").is_some_and(|v| exporter::parse_bool(v));
        match e.r#type.as_str() {
            t @ ("oci" | "tar" | "docker") => {
                bail!("{t} for multi-node builds currently not supported")
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
    finished: &[Result<BTreeMap<String, String>>],
    opts: &BuildOptions,
    steps: &tokio::sync::mpsc::Sender<control::StatusResponse>,
) -> Result<String> {
    let step = progress::OwnStep::start(steps, &format!("merging manifest list {names}")).await;
    let responses: Vec<&BTreeMap<String, String>> =
        finished.iter().filter_map(|r| r.as_ref().ok()).collect();
    match merge(names, &responses, opts).await {
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
    use base64::Engine as _;
    if let Some(encoded) = resp.get("containerimage.descriptor") {
        let json = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .context("decoding the pushed image's descriptor")?;
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

    #[test]
    fn a_pushing_image_exporter_pushes_by_digest_to_the_repositories() {
        let mut e = vec![exporter(
            "image",
            &[
                (
                    "name",
                    "127.0.0.1:5000/a:1,127.0.0.1:5000/b:2,127.0.0.1:5000/a:3",
                ),
                ("push", "true"),
            ],
        )];
        let names = push_by_digest(&mut e).unwrap();
        assert_eq!(
            names.as_deref(),
            Some("127.0.0.1:5000/a:1,127.0.0.1:5000/b:2,127.0.0.1:5000/a:3")
        );
        assert_eq!(e[0].attrs["name"], "127.0.0.1:5000/a,127.0.0.1:5000/b");
        assert_eq!(e[0].attrs["push-by-digest"], "true");
    }

    #[test]
    fn file_exporters_and_docker_driver_pushes_are_refused_for_several_nodes() {
        let mut e = vec![exporter("oci", &[])];
        assert_eq!(
            push_by_digest(&mut e).unwrap_err().to_string(),
            "oci for multi-node builds currently not supported"
        );
        let mut e = vec![exporter("moby", &[("push", "true"), ("name", "x")])];
        assert!(push_by_digest(&mut e)
            .unwrap_err()
            .to_string()
            .contains("docker driver"));
        let mut e = vec![exporter("image", &[("name", "x:1")])];
        assert_eq!(push_by_digest(&mut e).unwrap(), None);
    }
}
