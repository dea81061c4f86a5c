//! Creating, extending and shrinking stored builders (`kiln create`, `--append`, `--leave`).
//!
//! Everything here is checked before the store is touched: a rejected `create` leaves the store
//! as it was. Unlike buildx, kiln lets users create `docker`-driver builders on any Docker
//! endpoint or context (buildx only has the implicit one per context); that is how a builder for
//! a second Docker Engine is named and selected.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context as _, Result};
use kiln_drivers::DriverKind;

use crate::dockercfg;
use crate::platform::Platform;
use crate::store::{self, NodeGroup, Txn};

/// `kiln create`'s options, parsed.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub node_name: Option<String>,
    /// Normalised platforms; empty means "not given".
    pub platforms: Vec<Platform>,
    /// `None` when no `--driver-opt` was given (an existing node keeps its options).
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// `None` when no `--buildkitd-flags` was given.
    pub buildkitd_flags: Option<Vec<String>>,
    /// Contents of `--buildkitd-config`, as `buildkitd.toml`.
    pub buildkitd_config: Option<String>,
    /// `[CONTEXT|ENDPOINT]`.
    pub endpoint: Option<String>,
    pub append: bool,
}

impl CreateOpts {
    /// The platforms as the store keeps them (`os/arch[/variant]`).
    fn stored_platforms(&self) -> Vec<String> {
        self.platforms.iter().map(Platform::to_string).collect()
    }
}

/// Parses repeated `--driver-opt` values: each a CSV list of `key=value`.
pub fn parse_driver_opts<S: AsRef<str>>(values: &[S]) -> Result<Option<BTreeMap<String, String>>> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeMap::new();
    for v in values {
        for field in csv_fields(v.as_ref())? {
            let (k, val) = field
                .split_once('=')
                .ok_or_else(|| anyhow!("invalid value {field:?}, expecting k=v"))?;
            out.insert(k.to_string(), val.to_string());
        }
    }
    Ok(Some(out))
}

/// Splits one CSV record: commas separate fields, double quotes protect commas, `""` is a quote.
fn csv_fields(line: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => bail!("invalid driver option {line:?}: unterminated quote"),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => {
                    bail!("invalid driver option {line:?}: extraneous text after a quoted field")
                }
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some('"') => bail!("invalid driver option {line:?}: bare quote in a field"),
                    Some(c) => field.push(c),
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                }
            }
        }
        fields.push(field);
    }
}

/// Splits `--buildkitd-flags` as a shell would.
pub fn parse_buildkitd_flags(flags: Option<&str>) -> Result<Option<Vec<String>>> {
    match flags {
        None => Ok(None),
        Some(f) => shell_words::split(f)
            .map(Some)
            .map_err(|e| anyhow!("failed to parse buildkit flags: {e}")),
    }
}

/// The builder `create` would store, and the stored one it replaces (if any), without touching
/// the store.
pub fn plan(txn: &Txn<'_>, opts: &CreateOpts) -> Result<(NodeGroup, Option<NodeGroup>)> {
    if opts.name.as_deref() == Some("default") {
        bail!("default is a reserved name and cannot be used to identify builder instance");
    }
    if opts.append && opts.name.is_none() {
        bail!("append requires a builder name");
    }
    let name = match &opts.name {
        Some(n) => store::validate_name(n)?,
        None => generate_name(txn)?,
    };
    if !opts.append && dockercfg::context_by_name(&name)?.is_some() {
        bail!("instance name {name:?} already exists as context builder");
    }
    let existing = txn.get(&name)?;
    if opts.append && existing.is_none() {
        bail!("failed to find instance {name:?} for append");
    }

    let driver = match (&opts.driver, &existing) {
        (Some(d), _) => d.clone(),
        (None, Some(ng)) => ng.driver.clone(),
        (None, None) => DriverKind::Docker.as_str().to_string(),
    };
    if let Some(ng) = &existing {
        if opts.node_name.is_none() && !opts.append {
            bail!("existing instance for {name:?} but no append mode, specify the node name to make changes for existing instances");
        }
        if driver != ng.driver {
            bail!(
                "existing instance for {name:?} but has mismatched driver {:?}",
                ng.driver
            );
        }
    }
    let kind: DriverKind = driver
        .parse()
        .map_err(|_| anyhow!("failed to find driver {driver:?}"))?;
    if let Some(o) = &opts.driver_opts {
        kiln_drivers::validate_driver_opts(kind, o)?;
    } else if existing.is_none() && kind == DriverKind::Containerd {
        // Its required options must be checked even when none are given.
        kiln_drivers::validate_driver_opts(kind, &BTreeMap::new())?;
    }
    if kind == DriverKind::Docker {
        // The Engine's BuildKit is configured in its daemon.json; kiln cannot pass flags to it.
        if opts.buildkitd_flags.as_ref().is_some_and(|f| !f.is_empty()) {
            bail!("the docker driver does not support --buildkitd-flags: configure BuildKit in the Docker daemon's daemon.json");
        }
        if opts.buildkitd_config.is_some() {
            bail!("the docker driver does not support --buildkitd-config: configure BuildKit in the Docker daemon's daemon.json");
        }
    }

    let (endpoint, endpoint_given) = match (&opts.endpoint, kind) {
        (Some(ep), DriverKind::Remote | DriverKind::Containerd) => {
            kiln_drivers::remote::RemoteEndpoint::parse(ep)
                .map_err(|e| anyhow!("failed to parse endpoint {ep}: {e}"))?;
            (ep.clone(), true)
        }
        (None, DriverKind::Remote | DriverKind::Containerd) => {
            bail!("the {kind} driver needs a BuildKit endpoint (unix://, tcp://)")
        }
        (Some(ep), _) => (validate_endpoint(ep)?, true),
        (None, _) => (dockercfg::current_endpoint_key()?, false),
    };

    let mut ng = existing.clone().unwrap_or_else(|| NodeGroup {
        name: name.clone(),
        driver: driver.clone(),
        nodes: Vec::new(),
    });
    update_nodes(&mut ng, opts, endpoint, endpoint_given)?;
    Ok((ng, existing))
}

/// Adds or changes one node, as buildx's `NodeGroup.Update` does.
fn update_nodes(
    ng: &mut NodeGroup,
    opts: &CreateOpts,
    endpoint: String,
    endpoint_given: bool,
) -> Result<()> {
    let wanted = opts.node_name.as_deref().unwrap_or("");
    let found = ng.nodes.iter().position(|n| n.name == wanted);
    if found.is_none() && !opts.append && !ng.nodes.is_empty() {
        bail!("node {wanted} not found, did you mean to append?");
    }
    let files = opts
        .buildkitd_config
        .as_ref()
        .map(|c| BTreeMap::from([("buildkitd.toml".to_string(), c.clone())]));
    let idx = match found {
        Some(i) => {
            let n = &mut ng.nodes[i];
            if endpoint_given {
                n.endpoint = endpoint.clone();
            }
            if !opts.platforms.is_empty() {
                n.platforms = opts.stored_platforms();
            }
            if let Some(f) = &opts.buildkitd_flags {
                n.buildkitd_flags = f.clone();
            }
            if let Some(o) = &opts.driver_opts {
                n.driver_opts = o.clone();
            }
            if let Some(f) = files {
                n.files.extend(f);
            }
            i
        }
        None => {
            let name = if wanted.is_empty() {
                next_node_name(ng)
            } else {
                store::validate_name(wanted)?
            };
            ng.nodes.push(store::Node {
                name,
                endpoint: endpoint.clone(),
                platforms: opts.stored_platforms(),
                driver_opts: opts.driver_opts.clone().unwrap_or_default(),
                buildkitd_flags: opts.buildkitd_flags.clone().unwrap_or_default(),
                files: files.unwrap_or_default(),
            });
            ng.nodes.len() - 1
        }
    };
    let endpoint = ng.nodes[idx].endpoint.clone();
    if ng.nodes.iter().filter(|n| n.endpoint == endpoint).count() > 1 {
        bail!("invalid duplicate endpoint {endpoint}");
    }
    // A platform belongs to one node: the node just declared takes it from the others.
    let taken = ng.nodes[idx].platforms.clone();
    for (i, n) in ng.nodes.iter_mut().enumerate() {
        if i != idx {
            n.platforms.retain(|p| !taken.contains(p));
        }
    }
    Ok(())
}

/// `<builder>0`, `<builder>1`, ...: the first free node name.
fn next_node_name(ng: &NodeGroup) -> String {
    (0..)
        .map(|i| format!("{}{i}", ng.name))
        .find(|n| !ng.nodes.iter().any(|node| &node.name == n))
        .expect("an unbounded range has a free name")
}

/// A free random name, as buildx's `GenerateName` picks one.
fn generate_name(txn: &Txn<'_>) -> Result<String> {
    for attempt in 0..6 {
        let name = store::random_name(attempt);
        if txn.get(&name)?.is_none() {
            return Ok(name);
        }
    }
    bail!("failed to generate random name")
}

/// A context name is kept as the name (so the builder follows the context if it moves); the
/// `default` context is pinned to its host; anything else must be a Docker host URL.
fn validate_endpoint(ep: &str) -> Result<String> {
    if let Some(c) = dockercfg::context_by_name(ep)? {
        if ep == dockercfg::DEFAULT_CONTEXT {
            return Ok(c.host);
        }
        return Ok(ep.to_string());
    }
    kiln_drivers::docker_api::DockerEndpoint::parse(ep)
        .map_err(|e| anyhow!("failed to parse endpoint {ep}: {e}"))?;
    Ok(ep.to_string())
}

/// Removes one node from a stored builder (`create --leave`).
pub fn leave(txn: &Txn<'_>, name: Option<&str>, node: Option<&str>) -> Result<()> {
    let name = name.context("leave requires instance name")?;
    let node = node.context("leave requires node name")?;
    let mut ng = txn
        .get(name)?
        .ok_or_else(|| anyhow!("failed to find instance {name:?} for leave"))?;
    let i = ng
        .nodes
        .iter()
        .position(|n| n.name == node)
        .ok_or_else(|| anyhow!("node {node:?} not found for {}", ng.name))?;
    if ng.nodes.len() == 1 {
        bail!("can not leave last node, do you want to rm instance instead?");
    }
    ng.nodes.remove(i);
    txn.save(&ng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform;

    #[test]
    fn driver_opts_are_csv_key_values() {
        let got = parse_driver_opts(&["a=1,b=2", r#""c=x,y",d="#])
            .unwrap()
            .unwrap();
        assert_eq!(got["a"], "1");
        assert_eq!(got["b"], "2");
        assert_eq!(got["c"], "x,y");
        assert_eq!(got["d"], "");
        assert!(parse_driver_opts::<&str>(&[]).unwrap().is_none());
    }

    #[test]
    fn malformed_driver_opts_are_rejected() {
        assert_eq!(
            parse_driver_opts(&["novalue"]).unwrap_err().to_string(),
            "invalid value \"novalue\", expecting k=v"
        );
        assert!(parse_driver_opts(&[r#""a=1"#]).is_err());
        assert!(parse_driver_opts(&[r#"a=1"x"#]).is_err());
    }

    #[test]
    fn buildkitd_flags_split_like_a_shell() {
        let f = parse_buildkitd_flags(Some("--debug --allow-insecure-entitlement 'network.host'"))
            .unwrap()
            .unwrap();
        assert_eq!(
            f,
            ["--debug", "--allow-insecure-entitlement", "network.host"]
        );
        assert!(parse_buildkitd_flags(Some("'unterminated")).is_err());
    }

    fn group() -> NodeGroup {
        NodeGroup {
            name: "b".into(),
            driver: "docker".into(),
            nodes: vec![],
        }
    }

    #[test]
    fn nodes_are_named_after_the_builder_and_own_their_platforms() {
        let mut ng = group();
        let mut opts = CreateOpts {
            platforms: platform::parse_list(&["linux/amd64", "linux/arm64"]).unwrap(),
            ..Default::default()
        };
        update_nodes(&mut ng, &opts, "unix:///a".into(), true).unwrap();
        opts.append = true;
        opts.platforms = platform::parse_list(&["linux/arm64"]).unwrap();
        update_nodes(&mut ng, &opts, "unix:///b".into(), true).unwrap();
        assert_eq!(ng.nodes[0].name, "b0");
        assert_eq!(ng.nodes[1].name, "b1");
        assert_eq!(ng.nodes[0].platforms, ["linux/amd64"]);
        assert_eq!(ng.nodes[1].platforms, ["linux/arm64"]);
        let err = update_nodes(&mut ng, &opts, "unix:///b".into(), true).unwrap_err();
        assert_eq!(err.to_string(), "invalid duplicate endpoint unix:///b");
    }
}
