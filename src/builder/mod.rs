//! Builders: a name, a driver kind and nodes, resolved from the store into live drivers.
//! (Minimal placeholder; the builder-store work replaces the resolution logic, keeping this API.)

use std::sync::Arc;

use anyhow::Result;
use kiln_drivers::{Driver, DriverKind, NodeConfig};

use crate::commands::Ctx;

/// A builder resolved for use.
#[derive(Debug)]
pub struct Builder {
    pub name: String,
    pub driver_kind: DriverKind,
    pub nodes: Vec<BuilderNode>,
}

/// One node of a builder with its live driver.
#[derive(Debug)]
pub struct BuilderNode {
    pub name: String,
    pub endpoint: String,
    pub platforms: Vec<String>,
    pub driver: Arc<dyn Driver>,
}

/// The builder named by `--builder`/`BUILDX_BUILDER`, else the current one, else `default`.
pub async fn resolve(_ctx: &Ctx) -> Result<Builder> {
    let endpoint =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let node = NodeConfig {
        name: "default".into(),
        endpoint: endpoint.clone(),
        ..Default::default()
    };
    let driver: Arc<dyn Driver> = Arc::from(kiln_drivers::new_driver(DriverKind::Docker, &node)?);
    Ok(Builder {
        name: "default".into(),
        driver_kind: DriverKind::Docker,
        nodes: vec![BuilderNode {
            name: "default".into(),
            endpoint,
            platforms: vec![],
            driver,
        }],
    })
}
