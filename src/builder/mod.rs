//! Builders: a name, a driver kind and nodes, resolved from the store (or from a Docker
//! context) into live drivers, and what each node reports about itself.
//!
//! Resolution follows buildx: `--builder`/`BUILDX_BUILDER`, else the builder chosen with
//! `kiln use` for the current Docker endpoint, else the builder of the current Docker context.
//! Every Docker context is itself a builder (the `docker` driver on its endpoint); a stored
//! builder of the same name wins. This module does not print anything; `display` renders what
//! it finds.

pub mod create;
pub mod display;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use kiln_drivers::tls::TlsFiles;
use kiln_drivers::{Driver, DriverKind, NodeConfig, NodeStatus};

use crate::buildkit::BuildkitClient;
use crate::commands::Ctx;
use crate::dockercfg;
use crate::platform::{self, Platform};
use crate::store::{self, NodeGroup, Store, Timestamp, Txn};

/// How long one node may take to answer `ls`/`inspect` before it is shown as unreachable
/// (buildx allows 20s for all nodes together; nodes are asked concurrently).
const NODE_TIMEOUT: Duration = Duration::from_secs(20);

/// A builder resolved for use.
#[derive(Debug)]
pub struct Builder {
    pub name: String,
    pub driver_kind: DriverKind,
    pub nodes: Vec<BuilderNode>,
    /// The builder stands for a Docker context rather than a stored instance.
    pub docker_context: bool,
    /// When the builder was last saved or used, if known.
    pub last_activity: Option<Timestamp>,
}

/// One node of a builder with its live driver.
#[derive(Debug)]
pub struct BuilderNode {
    pub name: String,
    /// The Docker host the driver talks to (`unix://...`, `tcp://...`).
    pub endpoint: String,
    /// Platforms the node was declared for (normalised); workers may report more.
    pub platforms: Vec<Platform>,
    pub driver: Arc<dyn Driver>,
    /// The endpoint as stored, which buildx shows: a Docker context name or a host URL.
    pub stored_endpoint: String,
    pub driver_opts: BTreeMap<String, String>,
    pub buildkitd_flags: Vec<String>,
    pub files: BTreeMap<String, String>,
}

/// A builder that could not be turned into live drivers, kept so `ls` can show why.
#[derive(Debug)]
pub struct BrokenBuilder {
    pub name: String,
    pub driver: String,
    pub error: String,
}

/// The builder named by `--builder`/`BUILDX_BUILDER`, else the current one, else the builder of
/// the current Docker context (`default`).
pub async fn resolve(ctx: &Ctx) -> Result<Builder> {
    resolve_named(ctx.builder.as_deref())
}

/// The builder of that name, or the current one for `None`.
pub fn resolve_named(name: Option<&str>) -> Result<Builder> {
    let store = Store::open()?;
    let txn = store.read()?;
    let ng = match name {
        Some(n) => node_group(&txn, n)?,
        None => current_node_group(&txn)?,
    };
    let last_activity = txn.last_activity(&ng.group.name);
    drop(txn);
    from_node_group(ng, last_activity)
}

/// A stored builder, or one standing for a Docker context.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub group: NodeGroup,
    pub docker_context: bool,
}

/// The group the user means by `name`: a stored builder, else a Docker context of that name.
pub fn node_group(txn: &Txn<'_>, name: &str) -> Result<Resolved> {
    if let Some(group) = txn.get(name)? {
        return Ok(Resolved {
            group,
            docker_context: false,
        });
    }
    if let Some(c) = dockercfg::context_by_name(name)? {
        return Ok(context_group(&c.name));
    }
    Err(anyhow!("no builder {name:?} found"))
}

/// The builder chosen for the current Docker endpoint, else the current context's own.
pub fn current_node_group(txn: &Txn<'_>) -> Result<Resolved> {
    let key = dockercfg::current_endpoint_key()?;
    if let Some(group) = txn.current(&key)? {
        return Ok(Resolved {
            group,
            docker_context: false,
        });
    }
    node_group(txn, &dockercfg::current_context_name()?)
}

/// The name of the current builder (for `ls`'s `*`).
pub fn current_name(txn: &Txn<'_>) -> Result<String> {
    Ok(current_node_group(txn)?.group.name)
}

/// A Docker context as a builder: one node named after it, whose endpoint is the context.
fn context_group(name: &str) -> Resolved {
    Resolved {
        group: NodeGroup {
            name: name.to_string(),
            driver: DriverKind::Docker.as_str().to_string(),
            nodes: vec![store::Node {
                name: name.to_string(),
                endpoint: name.to_string(),
                ..Default::default()
            }],
        },
        docker_context: true,
    }
}

/// A node's stored endpoint as a Docker host and the TLS it is reached with: a URL is used as it
/// is, with the environment's TLS (`DOCKER_TLS_VERIFY`...) as `docker -H URL` does; anything
/// else names a Docker context, with that context's TLS material.
pub fn docker_target_for(endpoint: &str) -> Result<(String, Option<TlsFiles>)> {
    if endpoint.contains("://") {
        return Ok((endpoint.to_string(), dockercfg::default_tls()));
    }
    match dockercfg::context_by_name(endpoint)? {
        Some(c) => Ok((c.host, c.tls)),
        None => Err(anyhow!("Docker context {endpoint:?} not found")),
    }
}

/// Turns a stored group into live drivers.
pub fn from_node_group(resolved: Resolved, last_activity: Option<Timestamp>) -> Result<Builder> {
    let Resolved {
        group,
        docker_context,
    } = resolved;
    let driver_kind: DriverKind = group
        .driver
        .parse()
        .with_context(|| format!("builder {:?}", group.name))?;
    let mut nodes = Vec::with_capacity(group.nodes.len());
    for n in group.nodes {
        let (host, tls) = docker_target_for(&n.endpoint)?;
        let config = NodeConfig {
            name: n.name.clone(),
            endpoint: host.clone(),
            driver_opts: n.driver_opts.clone(),
        };
        let driver: Box<dyn Driver> = match driver_kind {
            // Only the docker driver's endpoint is a Docker host that TLS settings apply to.
            DriverKind::Docker => Box::new(
                kiln_drivers::docker::DockerDriver::with_tls(&config, tls.as_ref())
                    .with_context(|| format!("builder {:?}", group.name))?,
            ),
            _ => kiln_drivers::new_driver(driver_kind, &config)?,
        };
        nodes.push(BuilderNode {
            name: n.name,
            endpoint: host,
            platforms: platform::parse_reported(&n.platforms),
            driver: Arc::from(driver),
            stored_endpoint: n.endpoint,
            driver_opts: n.driver_opts,
            buildkitd_flags: n.buildkitd_flags,
            files: n.files,
        });
    }
    Ok(Builder {
        name: group.name,
        driver_kind,
        nodes,
        docker_context,
        last_activity,
    })
}

/// Every builder `ls` shows: stored ones by name, then each Docker context not shadowed by a
/// stored builder of the same name.
pub fn list_builders(txn: &Txn<'_>) -> Result<Vec<Result<Builder, BrokenBuilder>>> {
    let stored = txn.list()?;
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut out = Vec::new();
    for group in stored {
        seen.insert(group.name.clone());
        let activity = txn.last_activity(&group.name);
        let (name, driver) = (group.name.clone(), group.driver.clone());
        let resolved = Resolved {
            group,
            docker_context: false,
        };
        out.push(
            from_node_group(resolved, activity).map_err(|e| BrokenBuilder {
                name,
                driver,
                error: format!("{e:#}"),
            }),
        );
    }
    for c in dockercfg::list_contexts()? {
        if seen.contains(&c.name) {
            continue;
        }
        let activity = txn.last_activity(&c.name);
        out.push(
            from_node_group(context_group(&c.name), activity).map_err(|e| BrokenBuilder {
                name: c.name.clone(),
                driver: String::new(),
                error: format!("{e:#}"),
            }),
        );
    }
    Ok(out)
}

pub use crate::buildkit::client::GcPolicy;

/// What a node says about itself.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub status: NodeStatus,
    /// Why the node could not be asked (unreachable, timed out, refused ListWorkers, ...).
    pub error: Option<String>,
    pub version: Option<String>,
    /// Declared platforms first, then those the workers report, each once.
    pub platforms: Vec<Platform>,
    pub worker_ids: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub gc_policy: Vec<GcPolicy>,
}

impl NodeInfo {
    fn unreachable(node: &BuilderNode, status: NodeStatus, error: Option<String>) -> NodeInfo {
        NodeInfo {
            status,
            error,
            version: None,
            platforms: node.platforms.clone(),
            worker_ids: Vec::new(),
            labels: BTreeMap::new(),
            gc_policy: Vec::new(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.error.is_none() && self.status == NodeStatus::Running
    }

    /// A node that could not be asked. A BuildKit endpoint is someone else's daemon: not
    /// reaching it, or it not answering, leaves it `inactive` with the reason (as buildx shows
    /// it); for the other drivers a daemon that should answer and doesn't is an `error`.
    fn unanswered(node: &BuilderNode, reason: String) -> NodeInfo {
        if node.driver.dials_an_endpoint() {
            NodeInfo::unreachable(node, NodeStatus::Inactive(reason), None)
        } else {
            NodeInfo::unreachable(node, NodeStatus::Inactive(String::new()), Some(reason))
        }
    }
}

/// Asks one node for its status, workers and BuildKit version, within [`NODE_TIMEOUT`].
/// Never fails: what went wrong is in [`NodeInfo::error`].
pub async fn load_node_info(node: &BuilderNode) -> NodeInfo {
    match tokio::time::timeout(NODE_TIMEOUT, ask_node(node)).await {
        Ok(info) => info,
        Err(_) => NodeInfo::unanswered(
            node,
            format!(
                "no answer from {} within {}s",
                node.endpoint,
                NODE_TIMEOUT.as_secs()
            ),
        ),
    }
}

/// [`load_node_info`] for every node of a builder, concurrently, in node order.
pub async fn load_nodes(builder: &Builder) -> Vec<NodeInfo> {
    futures::future::join_all(builder.nodes.iter().map(load_node_info)).await
}

async fn ask_node(node: &BuilderNode) -> NodeInfo {
    let status = node.driver.status().await;
    match &status {
        NodeStatus::Running => {}
        // The docker driver's daemon is not kiln's to start: not reaching it is an error, as
        // buildx reports it; other drivers' inactive nodes are simply not started yet.
        // A BuildKit endpoint that cannot be reached is `inactive`, its reason in the status.
        NodeStatus::Inactive(_) if node.driver.dials_an_endpoint() => {
            return NodeInfo::unreachable(node, status, None)
        }
        NodeStatus::Inactive(reason) if !reason.is_empty() => {
            return NodeInfo::unreachable(node, status.clone(), Some(reason.clone()))
        }
        _ => return NodeInfo::unreachable(node, status, None),
    }
    match ask_buildkit(node).await {
        Ok(info) => info,
        // Connected but no usable answer (a hung daemon, a listener that isn't BuildKit).
        Err(e) if node.driver.dials_an_endpoint() => NodeInfo::unanswered(node, format!("{e:#}")),
        Err(e) => NodeInfo::unreachable(node, status, Some(format!("{e:#}"))),
    }
}

async fn ask_buildkit(node: &BuilderNode) -> Result<NodeInfo> {
    let client = BuildkitClient::connect(node.driver.clone()).await?;
    let workers = client.list_workers().await?;
    let mut ids: Vec<String> = workers.iter().map(|w| w.id.clone()).collect();
    ids.sort();
    let reported = workers
        .iter()
        .flat_map(|w| platform::parse_reported(&w.platforms));
    let platforms = platform::dedupe(node.platforms.iter().cloned().chain(reported));
    // Like buildx, the first worker speaks for the node's labels and GC policy.
    let (labels, gc_policy) = workers
        .first()
        .map(|w| (w.labels.clone(), w.gc_policy.clone()))
        .unwrap_or_default();
    let version = match client.buildkit_version().await? {
        Some(v) => Some(v),
        // Empty: the driver can't tell either (shown as no version, as buildx does).
        None => Some(node.driver.version().await?).filter(|v| !v.is_empty()),
    };
    Ok(NodeInfo {
        status: NodeStatus::Running,
        error: None,
        version,
        platforms,
        worker_ids: ids,
        labels,
        gc_policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_hosts_and_other_endpoints_name_contexts() {
        assert_eq!(
            docker_target_for("unix:///x.sock").unwrap().0,
            "unix:///x.sock"
        );
        assert_eq!(
            docker_target_for("tcp://1.2.3.4:2375").unwrap().0,
            "tcp://1.2.3.4:2375"
        );
    }

    #[test]
    fn a_context_builder_has_one_node_named_after_it() {
        let r = context_group("e28");
        assert!(r.docker_context);
        assert_eq!(r.group.driver, "docker");
        assert_eq!(r.group.nodes.len(), 1);
        assert_eq!(r.group.nodes[0].name, "e28");
        assert_eq!(r.group.nodes[0].endpoint, "e28");
    }
}
