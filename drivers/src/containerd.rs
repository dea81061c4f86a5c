//! The `containerd` driver: a BuildKit daemon reached like a `remote` one, paired with a
//! containerd whose image store receives the node's results.
//!
//! Reaching BuildKit (endpoint syntax, TLS options, timeouts) is the remote driver's code; this
//! module adds the two options that name the image store, `containerd-address` (the socket
//! path) and `containerd-namespace` (default `default`, the namespace `ctr` uses), and answers
//! [`Driver::default_image_store`] with them. It does not talk containerd's API itself: loading
//! is the build's business (kiln's `containerd` module).

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;

use crate::remote::RemoteDriver;
use crate::{
    BoxIo, Driver, DriverError, DriverKind, Features, ImageStore, NodeConfig, NodeStatus,
    RegistryLogin,
};

/// The namespace results land in when `containerd-namespace` is not given.
pub const DEFAULT_NAMESPACE: &str = "default";

const ADDRESS_OPT: &str = "containerd-address";
const NAMESPACE_OPT: &str = "containerd-namespace";
/// Options that reach BuildKit, handled by the remote driver's code.
const REMOTE_OPTS: &[&str] = &["cacert", "cert", "key", "servername", "default-load"];

/// The containerd half of the options, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoreOpts {
    address: PathBuf,
    namespace: String,
}

/// Checks the options: known names, a containerd socket that exists, a valid namespace, and
/// the remote driver's own checks for the rest.
pub fn validate_opts(opts: &BTreeMap<String, String>) -> Result<(), DriverError> {
    let (store, remote) = split_opts(opts)?;
    if !store.address.exists() {
        return Err(DriverError::InvalidOption(
            ADDRESS_OPT.into(),
            format!("no containerd socket at {}", store.address.display()),
        ));
    }
    crate::remote::validate_opts(&remote)
}

fn split_opts(
    opts: &BTreeMap<String, String>,
) -> Result<(StoreOpts, BTreeMap<String, String>), DriverError> {
    let mut address = None;
    let mut namespace = DEFAULT_NAMESPACE.to_string();
    let mut remote = BTreeMap::new();
    for (k, v) in opts {
        match k.as_str() {
            ADDRESS_OPT => {
                let p = PathBuf::from(v.strip_prefix("unix://").unwrap_or(v));
                if !p.is_absolute() {
                    return Err(DriverError::InvalidOption(
                        k.clone(),
                        format!("{v:?} is not an absolute socket path"),
                    ));
                }
                address = Some(p);
            }
            NAMESPACE_OPT => {
                validate_namespace(v).map_err(|why| DriverError::InvalidOption(k.clone(), why))?;
                namespace = v.clone();
            }
            other if REMOTE_OPTS.contains(&other) => {
                remote.insert(k.clone(), v.clone());
            }
            other => {
                return Err(DriverError::InvalidOption(
                    other.to_string(),
                    format!(
                        "the containerd driver does not know it (known: {ADDRESS_OPT}, {NAMESPACE_OPT}, {})",
                        REMOTE_OPTS.join(", ")
                    ),
                ))
            }
        }
    }
    let address = address.ok_or_else(|| {
        DriverError::InvalidOption(
            ADDRESS_OPT.into(),
            "the containerd driver needs the path of containerd's socket (--driver-opt containerd-address=/run/containerd/containerd.sock)".into(),
        )
    })?;
    Ok((StoreOpts { address, namespace }, remote))
}

/// containerd's rule for namespace names: dot-separated labels of letters and digits, with `_`
/// and `-` inside a label, at most 76 characters.
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && l.as_bytes()[0].is_ascii_alphanumeric()
            && l.as_bytes()[l.len() - 1].is_ascii_alphanumeric()
    };
    if ns.is_empty() || ns.len() > 76 || !ns.split('.').all(label_ok) {
        return Err(format!(
            "invalid containerd namespace {ns:?} (letters, digits, and . _ - between them)"
        ));
    }
    Ok(())
}

#[derive(Debug)]
pub struct ContainerdDriver {
    buildkit: RemoteDriver,
    store: StoreOpts,
    default_load: bool,
}

impl ContainerdDriver {
    pub fn new(node: &NodeConfig) -> Result<Self, DriverError> {
        let (store, mut remote_opts) = split_opts(&node.driver_opts)?;
        // Loading into containerd is what this driver is for: on unless switched off.
        let default_load = match remote_opts.remove("default-load") {
            Some(v) => crate::remote::parse_bool(&v).ok_or_else(|| {
                DriverError::InvalidOption("default-load".into(), format!("invalid boolean {v:?}"))
            })?,
            None => true,
        };
        let buildkit = RemoteDriver::new(&NodeConfig {
            driver_opts: remote_opts,
            ..node.clone()
        })?;
        Ok(ContainerdDriver {
            buildkit,
            store,
            default_load,
        })
    }

    async fn containerd_reachable(&self) -> Result<(), String> {
        let connect = tokio::net::UnixStream::connect(&self.store.address);
        match tokio::time::timeout(crate::remote::CONNECT_TIMEOUT, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "cannot reach containerd at {}: {e}",
                self.store.address.display()
            )),
            Err(_) => Err(format!(
                "cannot reach containerd at {}: no connection within {}s",
                self.store.address.display(),
                crate::remote::CONNECT_TIMEOUT.as_secs()
            )),
        }
    }
}

#[async_trait]
impl Driver for ContainerdDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Containerd
    }

    async fn bootstrap(&self) -> Result<(), DriverError> {
        self.buildkit.bootstrap().await?;
        self.containerd_reachable()
            .await
            .map_err(DriverError::Other)
    }

    async fn status(&self) -> NodeStatus {
        match self.buildkit.status().await {
            NodeStatus::Running => match self.containerd_reachable().await {
                Ok(()) => NodeStatus::Running,
                Err(e) => NodeStatus::Inactive(e),
            },
            other => other,
        }
    }

    async fn version(&self) -> Result<String, DriverError> {
        self.buildkit.version().await
    }

    async fn stop(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn remove(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn dial(&self) -> Result<BoxIo, DriverError> {
        self.buildkit.dial().await
    }

    async fn dial_session(
        &self,
        headers: &[(String, String)],
    ) -> Result<Option<BoxIo>, DriverError> {
        self.buildkit.dial_session(headers).await
    }

    fn dials_an_endpoint(&self) -> bool {
        true
    }

    fn features(&self, worker_labels: &[BTreeMap<String, String>]) -> Features {
        Features {
            default_load: self.default_load,
            ..self.buildkit.features(worker_labels)
        }
    }

    fn default_image_store(&self) -> ImageStore {
        ImageStore::Containerd {
            address: self.store.address.clone(),
            namespace: self.store.namespace.clone(),
        }
    }

    async fn push_from_store(
        &self,
        name: &str,
        login: Option<RegistryLogin>,
    ) -> Result<Option<String>, DriverError> {
        self.buildkit.push_from_store(name, login).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opts_of as opts;

    #[test]
    fn needs_an_existing_socket() {
        let e = validate_opts(&opts(&[])).unwrap_err().to_string();
        assert!(e.contains("containerd-address"), "{e}");
        let e = validate_opts(&opts(&[(ADDRESS_OPT, "/nonexistent/containerd.sock")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no containerd socket at /nonexistent/containerd.sock"),
            "{e}"
        );
        let e = validate_opts(&opts(&[(ADDRESS_OPT, "relative.sock")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn checks_names_and_namespaces() {
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        assert!(validate_opts(&opts(&[(ADDRESS_OPT, dir)])).is_ok());
        let e = validate_opts(&opts(&[(ADDRESS_OPT, dir), ("image", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"image\"") && e.contains("containerd-namespace"),
            "{e}"
        );
        let e = validate_opts(&opts(&[(ADDRESS_OPT, dir), (NAMESPACE_OPT, "bad/ns")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad/ns"), "{e}");
        for ns in ["default", "k8s.io", "kiln-test_1"] {
            assert!(validate_namespace(ns).is_ok(), "{ns}");
        }
        for ns in ["", "-a", "a.", "a b", &"x".repeat(77)] {
            assert!(validate_namespace(ns).is_err(), "{ns}");
        }
    }

    #[test]
    fn names_its_image_store() {
        let node = NodeConfig {
            name: "n".into(),
            endpoint: "unix:///run/buildkit.sock".into(),
            driver_opts: opts(&[(ADDRESS_OPT, "/run/c.sock"), (NAMESPACE_OPT, "builds")]),
        };
        let d = ContainerdDriver::new(&node).unwrap();
        assert_eq!(
            d.default_image_store(),
            ImageStore::Containerd {
                address: "/run/c.sock".into(),
                namespace: "builds".into()
            }
        );
        assert!(d.features(&[BTreeMap::new()]).default_load);
        let mut off = node.clone();
        off.driver_opts
            .insert("default-load".into(), "false".into());
        assert!(
            !ContainerdDriver::new(&off)
                .unwrap()
                .features(&[])
                .default_load
        );
    }
}
