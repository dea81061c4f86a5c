//! Reaching a Docker Engine: its endpoint, the plain API through `bollard`, and the connection
//! hijacks (`POST /grpc`, `POST /session`) that bollard keeps private to itself.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::{BoxIo, DriverError};

/// How long to wait for a Docker daemon to accept a connection before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a Docker Engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl DockerEndpoint {
    /// Parses `unix:///path` or `tcp://host:port` (as `DOCKER_HOST` spells them).
    pub fn parse(s: &str) -> Result<Self, DriverError> {
        if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(DriverError::InvalidOption(
                    s.to_string(),
                    "a unix endpoint needs a socket path".into(),
                ));
            }
            return Ok(DockerEndpoint::Unix(path.into()));
        }
        if let Some(rest) = s.strip_prefix("tcp://") {
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() {
                return Err(DriverError::InvalidOption(
                    s.to_string(),
                    "a tcp endpoint needs host:port".into(),
                ));
            }
            let hostport = if hostport.contains(':') {
                hostport.to_string()
            } else {
                format!("{hostport}:2375")
            };
            return Ok(DockerEndpoint::Tcp(hostport));
        }
        Err(DriverError::InvalidOption(
            s.to_string(),
            "a Docker endpoint must start with unix:// or tcp://".into(),
        ))
    }

    pub fn as_url(&self) -> String {
        match self {
            DockerEndpoint::Unix(p) => format!("unix://{}", p.display()),
            DockerEndpoint::Tcp(h) => format!("tcp://{h}"),
        }
    }

    fn unreachable(&self, reason: impl ToString) -> DriverError {
        DriverError::Unreachable {
            endpoint: self.as_url(),
            reason: reason.to_string(),
        }
    }

    /// A bollard client for the plain Docker API.
    pub fn api(&self) -> Result<bollard::Docker, DriverError> {
        let timeout = 120;
        let docker = match self {
            DockerEndpoint::Unix(p) => bollard::Docker::connect_with_unix(
                &p.to_string_lossy(),
                timeout,
                bollard::API_DEFAULT_VERSION,
            ),
            DockerEndpoint::Tcp(h) => bollard::Docker::connect_with_http(
                &format!("http://{h}"),
                timeout,
                bollard::API_DEFAULT_VERSION,
            ),
        };
        docker.map_err(|e| self.unreachable(e))
    }

    async fn connect(&self) -> Result<BoxIo, DriverError> {
        let fut = async {
            match self {
                DockerEndpoint::Unix(p) => {
                    UnixStream::connect(p).await.map(|s| Box::pin(s) as BoxIo)
                }
                DockerEndpoint::Tcp(h) => TcpStream::connect(h).await.map(|s| {
                    let _ = s.set_nodelay(true);
                    Box::pin(s) as BoxIo
                }),
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
            Ok(Ok(io)) => Ok(io),
            Ok(Err(e)) => Err(self.unreachable(e)),
            Err(_) => {
                Err(self.unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))
            }
        }
    }

    /// Upgrades `POST path` to `proto` and returns the raw connection, as the Docker CLI's
    /// `DialHijack` does. `headers` are sent as-is (repeated names allowed).
    pub async fn hijack(
        &self,
        path: &str,
        proto: &str,
        headers: &[(String, String)],
    ) -> Result<BoxIo, DriverError> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(e))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = http::Request::post(path)
            .header(http::header::HOST, "docker")
            .header(http::header::CONNECTION, "Upgrade")
            .header(http::header::UPGRADE, proto);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| DriverError::Other(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let msg = String::from_utf8_lossy(&body);
            let msg = serde_json::from_str::<serde_json::Value>(&msg)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_else(|| msg.trim().to_string());
            return Err(DriverError::NoBuildKit {
                endpoint: self.as_url(),
                reason: format!("POST {path} answered {status}: {msg}"),
            });
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(Box::pin(TokioIo::new(upgraded)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            DockerEndpoint::parse("unix:///var/run/docker.sock").unwrap(),
            DockerEndpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            DockerEndpoint::parse("tcp://127.0.0.1").unwrap(),
            DockerEndpoint::Tcp("127.0.0.1:2375".into())
        );
        assert!(DockerEndpoint::parse("ftp://x").is_err());
        assert!(DockerEndpoint::parse("unix://").is_err());
    }
}
