//! Which node builds which platforms.
//!
//! A platform goes to the node that fits it best, the way buildx chooses: a node declared for
//! it (`kiln create --platform`) first, then a node whose workers run it natively (a worker's
//! first platform), then one whose workers report it (emulated), then one that runs it as an
//! older variant or 32-bit sibling; ties go to the earlier node. Platforms that land on the
//! same node build in one solve. Unlike buildx, which falls back to the first node, a platform
//! no node serves is an error before anything starts. Nodes that cannot be reached are left
//! out and named, so a builder with a dead node still builds on the live ones.

use std::fmt;
use std::time::Duration;

use anyhow::Result;

use super::NodeConn;
use crate::builder::Builder;
use crate::platform::Platform;

/// How long one node of a multi-node builder may take to connect before it is skipped
/// (matches the BuildKit client's own first-call bound, so a black hole cannot stall a build).
const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What the planner knows of one reachable node.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub name: String,
    pub declared: Vec<Platform>,
    /// What its workers report, the native platform first.
    pub reported: Vec<Platform>,
}

/// One node's share of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Index into the candidates.
    pub node: usize,
    /// Empty when the build names no platform (the node's default).
    pub platforms: Vec<Platform>,
}

/// How well a node fits a platform; lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fit {
    Declared,
    Native,
    Emulated,
    Compatible,
}

fn fit(c: &Candidate, p: &Platform) -> Option<Fit> {
    if c.declared.contains(p) {
        Some(Fit::Declared)
    } else if c.reported.first() == Some(p) {
        Some(Fit::Native)
    } else if c.reported.contains(p) {
        Some(Fit::Emulated)
    } else if c.declared.iter().chain(&c.reported).any(|q| q.runs(p)) {
        Some(Fit::Compatible)
    } else {
        None
    }
}

/// A node left out of the build, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// A platform no reachable node can build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaceable {
    pub builder: String,
    pub platform: Platform,
    pub offered: Vec<(String, Vec<Platform>)>,
    pub skipped: Vec<Skipped>,
}

impl fmt::Display for Unplaceable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no node of builder {:?} can build for {}",
            self.builder, self.platform
        )?;
        let offered: Vec<String> = self
            .offered
            .iter()
            .map(|(n, ps)| {
                let ps: Vec<String> = ps.iter().map(Platform::to_string).collect();
                format!(
                    "{n}: {}",
                    if ps.is_empty() {
                        "-".into()
                    } else {
                        ps.join(",")
                    }
                )
            })
            .collect();
        if !offered.is_empty() {
            write!(f, " (nodes offer {})", offered.join("; "))?;
        }
        for s in &self.skipped {
            write!(f, "; node {} was skipped: {}", s.name, s.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for Unplaceable {}

/// What each node offers, for error messages.
fn offered(nodes: &[Candidate]) -> Vec<(String, Vec<Platform>)> {
    nodes
        .iter()
        .map(|c| {
            let all = crate::platform::dedupe(c.declared.iter().chain(&c.reported).cloned());
            (c.name.clone(), all)
        })
        .collect()
}

/// Assigns every wanted platform to the best-fitting candidate, grouped per node in the order
/// the platforms were asked for. No platforms: the first candidate builds with its default.
pub fn assign(
    builder: &str,
    wanted: &[Platform],
    nodes: &[Candidate],
    skipped: &[Skipped],
) -> Result<Vec<Assignment>, Box<Unplaceable>> {
    let unplaceable = |p: &Platform| {
        Box::new(Unplaceable {
            builder: builder.to_string(),
            platform: p.clone(),
            offered: offered(nodes),
            skipped: skipped.to_vec(),
        })
    };
    if nodes.is_empty() {
        // Only reachable when every node was skipped; the caller reports that first.
        return Err(unplaceable(
            &wanted.first().cloned().unwrap_or_else(Platform::host),
        ));
    }
    if wanted.is_empty() {
        return Ok(vec![Assignment {
            node: 0,
            platforms: Vec::new(),
        }]);
    }
    let mut out: Vec<Assignment> = Vec::new();
    for p in wanted {
        let best = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| fit(c, p).map(|f| (f, i)))
            .min()
            .map(|(_, i)| i)
            .ok_or_else(|| unplaceable(p))?;
        match out.iter_mut().find(|a| a.node == best) {
            Some(a) => a.platforms.push(p.clone()),
            None => out.push(Assignment {
                node: best,
                platforms: vec![p.clone()],
            }),
        }
    }
    Ok(out)
}

/// The nodes a build runs on, connected, and each job's share of them.
pub(crate) struct Placed<'a> {
    pub conns: Vec<NodeConn<'a>>,
    /// Per job (in the order asked): indexes into `conns`, each with its platforms.
    pub jobs: Vec<Vec<(usize, Vec<Platform>)>>,
    pub skipped: Vec<Skipped>,
}

/// Connects to the builder's nodes and decides which builds what, for each job's platforms. A
/// one-node builder is used as it is (its daemon decides what it can build); a multi-node
/// builder connects to every node at once, leaves out the ones that fail, and places the
/// platforms on the rest.
pub(crate) async fn place<'a>(
    builder: &'a Builder,
    wanted: &[Vec<Platform>],
) -> Result<Placed<'a>> {
    if builder.nodes.len() <= 1 {
        let conn = NodeConn::connect(builder).await?;
        return Ok(Placed {
            conns: vec![conn],
            jobs: wanted.iter().map(|w| vec![(0, w.clone())]).collect(),
            skipped: Vec::new(),
        });
    }
    let (conns, skipped) = connect_all(builder).await?;
    let candidates = candidates(&conns);
    let jobs = wanted
        .iter()
        .map(|w| {
            let assigned = assign(&builder.name, w, &candidates, &skipped)?;
            Ok(assigned
                .into_iter()
                .map(|a| (a.node, a.platforms))
                .collect())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Placed {
        conns,
        jobs,
        skipped,
    })
}

/// For builds whose solves must share one daemon (bake targets that feed each other): the
/// one reachable node that serves every wanted platform best, and the nodes left out.
pub(crate) async fn place_together<'a>(
    builder: &'a Builder,
    wanted: &[Platform],
) -> Result<(NodeConn<'a>, Vec<Skipped>)> {
    if builder.nodes.len() <= 1 {
        return Ok((NodeConn::connect(builder).await?, Vec::new()));
    }
    let (mut conns, skipped) = connect_all(builder).await?;
    let i = pick_one(&builder.name, wanted, &candidates(&conns), &skipped)?;
    Ok((conns.swap_remove(i), skipped))
}

/// The candidate that fits all of `wanted`, with the best worst fit; ties to the earlier one.
pub fn pick_one(
    builder: &str,
    wanted: &[Platform],
    nodes: &[Candidate],
    skipped: &[Skipped],
) -> Result<usize, Box<Unplaceable>> {
    let worst_fit = |c: &Candidate| -> Option<Fit> {
        wanted
            .iter()
            .map(|p| fit(c, p))
            .try_fold(Fit::Declared, |worst, f| f.map(|f| worst.max(f)))
    };
    if let Some((_, i)) = nodes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| worst_fit(c).map(|f| (f, i)))
        .min()
    {
        return Ok(i);
    }
    // Name a platform that the best node for the first one cannot also build.
    let first = assign(builder, &wanted[..1], nodes, skipped)?;
    let node = &nodes[first[0].node];
    let missing = wanted
        .iter()
        .find(|p| fit(node, p).is_none())
        .unwrap_or(&wanted[0]);
    Err(Box::new(Unplaceable {
        builder: builder.to_string(),
        platform: missing.clone(),
        offered: offered(nodes),
        skipped: skipped.to_vec(),
    }))
}

/// Every node of a multi-node builder, connected at once; those that fail are left out.
async fn connect_all(builder: &Builder) -> Result<(Vec<NodeConn<'_>>, Vec<Skipped>)> {
    let attempts = futures::future::join_all(builder.nodes.iter().map(|node| async move {
        match tokio::time::timeout(NODE_CONNECT_TIMEOUT, NodeConn::connect_node(builder, node))
            .await
        {
            Ok(r) => r.map_err(|e| format!("{e:#}")),
            Err(_) => Err(format!(
                "no answer from {} within {}s",
                node.endpoint,
                NODE_CONNECT_TIMEOUT.as_secs()
            )),
        }
    }))
    .await;
    let mut conns = Vec::new();
    let mut skipped = Vec::new();
    for (node, attempt) in builder.nodes.iter().zip(attempts) {
        match attempt {
            Ok(c) => conns.push(c),
            Err(reason) => skipped.push(Skipped {
                name: node.name.clone(),
                reason,
            }),
        }
    }
    if conns.is_empty() {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|s| format!("node {}: {}", s.name, s.reason))
            .collect();
        anyhow::bail!(
            "no node of builder {:?} can be reached: {}",
            builder.name,
            reasons.join("; ")
        );
    }
    Ok((conns, skipped))
}

fn candidates(conns: &[NodeConn<'_>]) -> Vec<Candidate> {
    conns
        .iter()
        .map(|c| Candidate {
            name: c.node.name.clone(),
            declared: c.node.platforms.clone(),
            reported: c.reported_platforms.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    fn node(name: &str, declared: &[&str], reported: &[&str]) -> Candidate {
        Candidate {
            name: name.into(),
            declared: declared.iter().map(|s| p(s)).collect(),
            reported: reported.iter().map(|s| p(s)).collect(),
        }
    }

    fn ps(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|s| p(s)).collect()
    }

    #[test]
    fn declared_platforms_win_over_what_workers_report() {
        let nodes = [
            node("a", &["linux/amd64"], &["linux/amd64", "linux/arm64"]),
            node("b", &["linux/arm64"], &["linux/amd64", "linux/arm64"]),
        ];
        let got = assign("b", &ps(&["linux/amd64", "linux/arm64"]), &nodes, &[]).unwrap();
        assert_eq!(
            got,
            vec![
                Assignment {
                    node: 0,
                    platforms: ps(&["linux/amd64"])
                },
                Assignment {
                    node: 1,
                    platforms: ps(&["linux/arm64"])
                },
            ]
        );
    }

    #[test]
    fn a_native_worker_beats_an_emulating_one_and_ties_go_to_the_first_node() {
        let nodes = [
            node("amd", &[], &["linux/amd64", "linux/arm64"]),
            node("arm", &[], &["linux/arm64", "linux/amd64"]),
            node("amd2", &[], &["linux/amd64"]),
        ];
        let got = assign("b", &ps(&["linux/arm64", "linux/amd64"]), &nodes, &[]).unwrap();
        assert_eq!(
            got,
            vec![
                Assignment {
                    node: 1,
                    platforms: ps(&["linux/arm64"])
                },
                Assignment {
                    node: 0,
                    platforms: ps(&["linux/amd64"])
                },
            ]
        );
    }

    #[test]
    fn emulation_and_compatible_variants_are_last_resorts_on_one_node() {
        let nodes = [node("only", &[], &["linux/amd64", "linux/arm64"])];
        let got = assign(
            "b",
            &ps(&["linux/amd64", "linux/arm64", "linux/386", "linux/arm/v7"]),
            &nodes,
            &[],
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].platforms.len(), 4);
    }

    #[test]
    fn no_platform_means_the_first_node_with_its_default() {
        let nodes = [
            node("a", &[], &["linux/amd64"]),
            node("b", &[], &["linux/arm64"]),
        ];
        let got = assign("b", &[], &nodes, &[]).unwrap();
        assert_eq!(
            got,
            vec![Assignment {
                node: 0,
                platforms: vec![]
            }]
        );
    }

    #[test]
    fn a_platform_nobody_serves_is_an_error_naming_nodes_and_skipped_ones() {
        let nodes = [node("a", &["linux/amd64"], &["linux/amd64"])];
        let skipped = [Skipped {
            name: "dead".into(),
            reason: "connection refused".into(),
        }];
        let err = assign(
            "multi",
            &ps(&["linux/amd64", "linux/s390x"]),
            &nodes,
            &skipped,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "no node of builder \"multi\" can build for linux/s390x (nodes offer a: linux/amd64); node dead was skipped: connection refused"
        );
    }

    #[test]
    fn one_node_for_all_prefers_the_best_worst_fit() {
        let nodes = [
            node("amd", &["linux/amd64"], &["linux/amd64"]),
            node("both", &[], &["linux/amd64", "linux/arm64"]),
            node("arm", &["linux/arm64"], &["linux/arm64", "linux/amd64"]),
        ];
        let wanted = ps(&["linux/amd64", "linux/arm64"]);
        // `both` emulates arm64; `arm` is declared for arm64 and emulates amd64: the same worst
        // fit, so the earlier node wins.
        assert_eq!(pick_one("b", &wanted, &nodes, &[]).unwrap(), 1);
        assert_eq!(
            pick_one("b", &ps(&["linux/amd64"]), &nodes, &[]).unwrap(),
            0
        );
        assert_eq!(pick_one("b", &[], &nodes, &[]).unwrap(), 0);
        let err = pick_one("b", &ps(&["linux/amd64", "linux/s390x"]), &nodes[..1], &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("no node of builder \"b\" can build for linux/s390x"),
            "{err}"
        );
    }
}
