//! The session BuildKit calls back into during a solve.
//!
//! One server, two ways in: on the Docker driver the daemon dials us through a hijacked
//! `POST /session` (the daemon is the HTTP/2 client there); other drivers carry the same HTTP/2
//! connection inside `Control/Session`. Either way kiln serves plain gRPC on a byte stream, so
//! the services below never know which transport they run on.

mod auth;
mod content;
mod filesend;
mod filesync;
mod health;
mod over_control;
mod raw;
mod secrets;
mod ssh;
mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use kiln_drivers::{BoxIo, Driver};
use tokio::task::JoinHandle;

pub use content::{LayoutStore, EXPORT_STORE};
pub use filesend::{ExportReceiver, ExportStream, ExportTarget};
pub use filesync::diffcopy_counts;
pub use secrets::{SecretSource, Secrets, MAX_SECRET_SIZE};
pub use ssh::{AgentSource, Keyring, SshAgents};
pub use upload::Uploads;

/// gRPC methods kiln serves; BuildKit only calls what the session announces.
const SERVED_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/moby.filesync.v1.FileSync/DiffCopy",
    "/moby.filesync.v1.FileSend/DiffCopy",
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.filesync.v1.Auth/FetchToken",
    "/moby.filesync.v1.Auth/GetTokenAuthority",
    "/moby.filesync.v1.Auth/VerifyTokenAuthority",
    "/moby.upload.v1.Upload/Pull",
    // Always announced, as buildx always attaches both: a Dockerfile asking for a secret or an
    // ssh id the user did not give gets BuildKit's "not found" error, not a missing method.
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    "/moby.sshforward.v1.SSH/CheckAgent",
    "/moby.sshforward.v1.SSH/ForwardAgent",
];

/// What one build exposes to BuildKit.
#[derive(Debug, Clone, Default)]
pub struct SessionContent {
    /// Local directories by the names the frontend asks for (`context`, `dockerfile`, ...).
    pub dirs: HashMap<String, PathBuf>,
    /// Export destinations by exporter index.
    pub exports: HashMap<u32, ExportTarget>,
    /// Streams the frontend fetches as `http://buildkit-session/<id>` (stdin tarballs).
    pub uploads: Uploads,
    /// OCI layouts served read-only through the content store, by store id (`oci-layout://`
    /// named contexts).
    pub oci_stores: HashMap<String, PathBuf>,
    /// `type=local` cache directories served through the same content store, by store id
    /// (`local:<dir>`), writable where a cache export goes; and the layout directory an
    /// `oci`/`docker` export with `tar=false` writes (store id `export`).
    pub local_caches: HashMap<String, LayoutStore>,
    /// `--secret`: where each secret is read from when BuildKit asks, by id.
    pub secrets: Secrets,
    /// `--ssh`: the agents `RUN --mount=type=ssh` reaches, by id.
    pub ssh: SshAgents,
}

/// A session ready to be attached to a daemon.
pub struct Session {
    pub id: String,
    pub name: String,
    pub shared_key: String,
    content: Arc<SessionContent>,
}

/// A running session; dropping it stops serving.
pub struct RunningSession {
    task: JoinHandle<()>,
    /// The pump between the session and `Control/Session`, where the session rides there.
    carrier: Option<JoinHandle<()>>,
}

impl Drop for RunningSession {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(c) = &self.carrier {
            c.abort();
        }
    }
}

impl Session {
    pub fn new(name: &str, shared_key: &str, content: SessionContent) -> Self {
        Session {
            id: super::new_id(),
            name: name.to_string(),
            shared_key: shared_key.to_string(),
            content: Arc::new(content),
        }
    }

    /// The headers that announce the session and the methods it serves.
    fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("X-Docker-Expose-Session-Uuid".to_string(), self.id.clone()),
            (
                "X-Docker-Expose-Session-Name".to_string(),
                self.name.clone(),
            ),
            (
                "X-Docker-Expose-Session-Sharedkey".to_string(),
                self.shared_key.clone(),
            ),
        ];
        for m in SERVED_METHODS {
            h.push((
                "X-Docker-Expose-Session-Grpc-Method".to_string(),
                m.to_string(),
            ));
        }
        if !self.content.oci_stores.is_empty() || !self.content.local_caches.is_empty() {
            for m in content::METHODS {
                h.push((
                    "X-Docker-Expose-Session-Grpc-Method".to_string(),
                    m.to_string(),
                ));
            }
        }
        h
    }

    /// Attaches the session to the node behind `driver` and serves it in the background.
    pub async fn attach(&self, driver: &dyn Driver) -> Result<RunningSession> {
        let headers = self.headers();
        let (io, carrier) = match driver
            .dial_session(&headers)
            .await
            .context("attaching the build session")?
        {
            Some(io) => (io, None),
            None => {
                let (io, pump) = over_control::open(driver, &headers)
                    .await
                    .context("attaching the build session over Control/Session")?;
                (io, Some(pump))
            }
        };
        Ok(RunningSession {
            task: tokio::spawn(serve(io, self.content.clone())),
            carrier,
        })
    }
}

/// Serves the session's gRPC services on one HTTP/2 connection where the peer is the client.
async fn serve(io: BoxIo, content: Arc<SessionContent>) {
    let routes = tonic::service::Routes::new(health::server())
        .add_service(filesync::server(content.clone()))
        .add_service(filesend::server(content.clone()))
        .add_service(auth::server())
        .add_service(upload::server(content.uploads.clone()))
        .add_service(secrets::server(content.secrets.clone()))
        .add_service(ssh::server(content.ssh.clone()))
        .add_service(content::server(content.clone()))
        .prepare();
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // Build contexts stream through this connection: generous windows keep large files moving.
    builder
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .max_frame_size(1024 * 1024);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(routes))
        .await
    {
        tracing::debug!("session connection ended: {e}");
    }
}

/// gRPC metadata values as BuildKit sends them: repeated keys, and values URL-encoded when the
/// companion `<key>-encoded` flag is set (non-ASCII paths and patterns).
pub(crate) fn metadata_values(md: &tonic::metadata::MetadataMap, key: &str) -> Vec<String> {
    let encoded = md
        .get(format!("{key}-encoded"))
        .and_then(|v| v.to_str().ok())
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
        .unwrap_or(false);
    md.get_all(key)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            if encoded {
                url::form_urlencoded::parse(format!("x={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            } else {
                v.to_string()
            }
        })
        .collect()
}
