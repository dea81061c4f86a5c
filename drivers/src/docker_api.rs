//! Reaching a Docker Engine: its endpoint, the plain API through `bollard`, and the connection
//! hijacks (`POST /grpc`, `POST /session`) that bollard keeps private to itself.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpStream, UnixStream};

use crate::tls::{TlsFile, TlsFiles};
use crate::{BoxIo, DriverError};

/// How long to wait for a Docker daemon to accept a connection before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS handshake may take once connected.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a Docker Engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerEndpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
}

/// A Docker endpoint with the TLS it is reached with (TCP only: as the docker CLI, TLS
/// material is ignored for a socket).
#[derive(Debug, Clone)]
pub struct DockerConnection {
    endpoint: DockerEndpoint,
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
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

    /// A bollard client for this endpoint as it is, a socket or plain TCP; an Engine behind TLS
    /// needs a [`DockerConnection`] with its material.
    pub fn api(&self) -> Result<bollard::Docker, DriverError> {
        DockerConnection::plain(self.clone()).api()
    }

    /// [`DockerConnection::hijack`] on this endpoint as it is, without TLS.
    pub async fn hijack(
        &self,
        path: &str,
        proto: &str,
        headers: &[(String, String)],
    ) -> Result<BoxIo, DriverError> {
        DockerConnection::plain(self.clone())
            .hijack(path, proto, headers)
            .await
    }
}

impl DockerConnection {
    /// A socket or plain TCP.
    pub fn plain(endpoint: DockerEndpoint) -> Self {
        DockerConnection {
            endpoint,
            tls: None,
        }
    }

    /// `endpoint` reached with `tls` (when given and the endpoint is TCP); an unreadable or
    /// invalid file is an error naming the file and the endpoint.
    pub fn new(endpoint: DockerEndpoint, tls: Option<&TlsFiles>) -> Result<Self, DriverError> {
        let tls = match (tls, &endpoint) {
            (Some(files), DockerEndpoint::Tcp(_)) => {
                // No ALPN: the Engine's Go server would pick h2, and the API and the hijacks
                // speak HTTP/1.1.
                let config = crate::tls::client_config(files, &[]).map_err(|e| {
                    let what = match e.file {
                        TlsFile::Ca => "CA certificate",
                        TlsFile::Cert => "client certificate",
                        TlsFile::Key => "client key",
                    };
                    DriverError::Other(format!(
                        "TLS for the Docker daemon at {}: {what}: {}",
                        endpoint.as_url(),
                        e.message
                    ))
                })?;
                Some(Arc::new(config))
            }
            _ => None,
        };
        Ok(DockerConnection { endpoint, tls })
    }

    pub fn endpoint(&self) -> &DockerEndpoint {
        &self.endpoint
    }

    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn unreachable(&self, reason: impl ToString) -> DriverError {
        self.endpoint.unreachable(reason)
    }

    fn as_url(&self) -> String {
        self.endpoint.as_url()
    }

    /// A bollard client for the plain Docker API. Over TLS, each request rides on a connection
    /// of our own (the same TLS as the hijacks), so one config serves both.
    pub fn api(&self) -> Result<bollard::Docker, DriverError> {
        let timeout = 120;
        if self.tls.is_some() {
            let conn = self.clone();
            let transport = move |req: bollard::BollardRequest| {
                let conn = conn.clone();
                async move { conn.send(req).await }
            };
            let DockerEndpoint::Tcp(h) = &self.endpoint else {
                unreachable!("TLS is only kept for TCP endpoints")
            };
            return bollard::Docker::connect_with_custom_transport(
                transport,
                Some(format!("https://{h}")),
                timeout,
                bollard::API_DEFAULT_VERSION,
            )
            .map_err(|e| self.unreachable(e));
        }
        let docker = match &self.endpoint {
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

    /// One API request on a fresh connection (bollard keeps no idle connections either).
    async fn send(
        &self,
        req: bollard::BollardRequest,
    ) -> Result<http::Response<hyper::body::Incoming>, bollard::errors::Error> {
        let io_err = |e: DriverError| bollard::errors::Error::IOError {
            err: std::io::Error::other(e.to_string()),
        };
        let io = self.connect().await.map_err(io_err)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let (mut parts, body) = req.into_parts();
        // bollard builds an absolute URI; on a connection of our own the request line wants
        // the path, the authority goes to Host.
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        if let Some(authority) = parts.uri.authority() {
            if let Ok(v) = http::HeaderValue::from_str(authority.as_str()) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        parts.uri =
            path.parse()
                .map_err(|e: http::uri::InvalidUri| bollard::errors::Error::IOError {
                    err: std::io::Error::other(e.to_string()),
                })?;
        Ok(sender
            .send_request(http::Request::from_parts(parts, body))
            .await?)
    }

    async fn connect(&self) -> Result<BoxIo, DriverError> {
        let fut = async {
            match &self.endpoint {
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
            Ok(Ok(io)) => match (&self.tls, &self.endpoint) {
                (Some(config), DockerEndpoint::Tcp(h)) => {
                    crate::tls::handshake(config.clone(), host_of(h), io, TLS_HANDSHAKE_TIMEOUT)
                        .await
                        .map_err(|reason| self.unreachable(reason))
                }
                _ => Ok(io),
            },
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
            let hinted = plain_to_tls_hint(&msg);
            if hinted != msg {
                return Err(self.unreachable(hinted));
            }
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

/// The Engine's answer to plain HTTP on its TLS port, with what the user has to set.
pub(crate) fn plain_to_tls_hint(message: &str) -> String {
    if message.contains("HTTP request to an HTTPS server") {
        format!(
            "{}: the daemon expects TLS (set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, or use a \
             Docker context with TLS)",
            message.trim()
        )
    } else {
        message.to_string()
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed), the TLS server name.
fn host_of(hostport: &str) -> &str {
    let host = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => &hostport[..i],
        _ => hostport,
    };
    host.trim_start_matches('[').trim_end_matches(']')
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

    #[test]
    fn the_tls_server_name_is_the_host() {
        assert_eq!(host_of("127.0.0.1:2376"), "127.0.0.1");
        assert_eq!(host_of("docker:2376"), "docker");
        assert_eq!(host_of("[::1]:2376"), "::1");
    }

    #[test]
    fn tls_is_for_tcp_only_and_a_missing_file_names_it() {
        let files = TlsFiles {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let unix = DockerEndpoint::parse("unix:///x.sock").unwrap();
        assert!(!DockerConnection::new(unix, Some(&files))
            .unwrap()
            .uses_tls());
        let tcp = DockerEndpoint::parse("tcp://127.0.0.1:2376").unwrap();
        let e = DockerConnection::new(tcp, Some(&files)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "TLS for the Docker daemon at tcp://127.0.0.1:2376: CA certificate: \
             cannot read /nonexistent/ca.pem: No such file or directory"
        );
    }
}
