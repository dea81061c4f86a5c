//! The `remote` driver: a BuildKit daemon someone else runs, reached at `unix://`, `tcp://`
//! (plain or TLS) or, on Windows, `npipe://`.
//!
//! `dial` hands back a stream speaking BuildKit's gRPC directly (HTTP/2, prior knowledge); the
//! session has no side door here, so `dial_session` answers `None` and the session rides inside
//! `Control/Session`. This module owns connecting (with bounded timeouts) and TLS; it does not
//! start, stop or configure the daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{BoxIo, Driver, DriverError, DriverKind, Features, NodeConfig, NodeStatus};

/// How long connecting (TCP or unix) may take; a refused connection fails at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the TLS handshake may take once connected.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connected daemon may take to speak first (HTTP/2's opening SETTINGS frame) when
/// `status`/`bootstrap` check it: a listener that accepts and never answers is `inactive` then.
/// The same bound as the first calls of a build (kiln's `FIRST_CALL_TIMEOUT`).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What an HTTP/2 client sends first (RFC 9113 §3.4): the preface, then its SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const H2_EMPTY_SETTINGS: [u8; 9] = [0, 0, 0, H2_SETTINGS, 0, 0, 0, 0, 0];
/// Frame type of SETTINGS, which must be a server's first frame.
const H2_SETTINGS: u8 = 0x4;

/// Driver options the remote driver accepts, as buildx names them.
const KNOWN_OPTS: &[&str] = &["cacert", "cert", "key", "servername", "default-load"];

/// Where a remote BuildKit listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteEndpoint {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    #[cfg(windows)]
    NamedPipe(String),
}

impl RemoteEndpoint {
    pub fn parse(url: &str) -> Result<Self, DriverError> {
        let bad =
            |why: &str| DriverError::InvalidOption("endpoint".into(), format!("{url}: {why}"));
        if let Some(path) = url.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(bad("missing socket path"));
            }
            return Ok(RemoteEndpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("tcp://") {
            let hostport = rest.split('/').next().unwrap_or("");
            let (host, port) = hostport
                .rsplit_once(':')
                .ok_or_else(|| bad("expected tcp://host:port"))?;
            let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            return Ok(RemoteEndpoint::Tcp {
                host: host.to_string(),
                port,
            });
        }
        #[cfg(windows)]
        if let Some(pipe) = url.strip_prefix("npipe://") {
            return Ok(RemoteEndpoint::NamedPipe(pipe.replace('/', "\\")));
        }
        Err(bad(
            "unsupported scheme (the remote driver takes unix://, tcp:// or, on Windows, npipe://)",
        ))
    }
}

/// The TLS material named by the driver options, loaded and checked.
#[derive(Debug, Clone, Default)]
struct TlsOpts {
    cacert: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    servername: Option<String>,
}

impl TlsOpts {
    fn wanted(&self) -> bool {
        self.cacert.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.servername.is_some()
    }
}

/// Checks the remote driver's options: known names, readable files, cert and key together.
pub fn validate_opts(opts: &BTreeMap<String, String>) -> Result<(), DriverError> {
    parse_opts(opts).map(|_| ())
}

fn parse_opts(opts: &BTreeMap<String, String>) -> Result<(TlsOpts, bool), DriverError> {
    let mut tls = TlsOpts::default();
    let mut default_load = false;
    for (k, v) in opts {
        match k.as_str() {
            "cacert" | "cert" | "key" => {
                let p = PathBuf::from(v);
                if !p.is_file() {
                    return Err(DriverError::InvalidOption(
                        k.clone(),
                        format!("cannot read {}: no such file", p.display()),
                    ));
                }
                match k.as_str() {
                    "cacert" => tls.cacert = Some(p),
                    "cert" => tls.cert = Some(p),
                    _ => tls.key = Some(p),
                }
            }
            "servername" => tls.servername = Some(v.clone()),
            "default-load" => {
                default_load = parse_bool(v).ok_or_else(|| {
                    DriverError::InvalidOption(k.clone(), format!("invalid boolean {v:?}"))
                })?
            }
            other => {
                return Err(DriverError::InvalidOption(
                    other.to_string(),
                    format!(
                        "the remote driver does not know it (known: {})",
                        KNOWN_OPTS.join(", ")
                    ),
                ))
            }
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(DriverError::InvalidOption(
            if tls.cert.is_some() { "key" } else { "cert" }.into(),
            "cert and key must be given together for a client certificate".into(),
        ));
    }
    Ok((tls, default_load))
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Some(true),
        "0" | "f" | "false" => Some(false),
        _ => None,
    }
}

#[derive(Debug)]
pub struct RemoteDriver {
    endpoint: RemoteEndpoint,
    url: String,
    tls: Option<(Arc<tokio_rustls::rustls::ClientConfig>, String)>,
    default_load: bool,
}

impl RemoteDriver {
    pub fn new(node: &NodeConfig) -> Result<Self, DriverError> {
        let endpoint = RemoteEndpoint::parse(&node.endpoint)?;
        let (tls_opts, default_load) = parse_opts(&node.driver_opts)?;
        let tls = if tls_opts.wanted() {
            let servername = match (&tls_opts.servername, &endpoint) {
                (Some(s), _) => s.clone(),
                (None, RemoteEndpoint::Tcp { host, .. }) => host.clone(),
                (None, _) => "localhost".to_string(),
            };
            Some((Arc::new(client_config(&tls_opts)?), servername))
        } else {
            None
        };
        Ok(RemoteDriver {
            endpoint,
            url: node.endpoint.clone(),
            tls,
            default_load,
        })
    }

    fn unreachable(&self, reason: impl Into<String>) -> DriverError {
        DriverError::BuildKitUnreachable {
            endpoint: self.url.clone(),
            reason: reason.into(),
        }
    }

    async fn connect(&self) -> Result<BoxIo, DriverError> {
        let connect = async {
            match &self.endpoint {
                RemoteEndpoint::Unix(p) => connect_unix(p).await,
                RemoteEndpoint::Tcp { host, port } => {
                    let s = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Ok(Box::pin(s) as BoxIo)
                }
                #[cfg(windows)]
                RemoteEndpoint::NamedPipe(name) => {
                    // Untested: kiln's test environment has no Windows host.
                    let p = tokio::net::windows::named_pipe::ClientOptions::new().open(name)?;
                    Ok(Box::pin(p) as BoxIo)
                }
            }
        };
        let io: BoxIo = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                self.unreachable(format!(
                    "connection not established within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e: std::io::Error| self.unreachable(io_reason(&e)))?;
        let Some((config, servername)) = &self.tls else {
            return Ok(io);
        };
        crate::tls::handshake(config.clone(), servername, io, TLS_HANDSHAKE_TIMEOUT)
            .await
            .map_err(|reason| self.unreachable(reason))
    }

    /// Connects and waits, within [`ANSWER_TIMEOUT`], for the daemon to speak HTTP/2 (gRPC's
    /// transport) first: being able to connect is not enough, a hung daemon or a port that
    /// isn't BuildKit accepts connections too.
    async fn check_answers(&self) -> Result<(), DriverError> {
        self.check_answers_within(ANSWER_TIMEOUT).await
    }

    async fn check_answers_within(&self, limit: Duration) -> Result<(), DriverError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut io = self.connect().await?;
        let first_frame = async {
            io.write_all(H2_PREFACE).await?;
            io.write_all(&H2_EMPTY_SETTINGS).await?;
            io.flush().await?;
            let mut header = [0u8; 9];
            io.read_exact(&mut header).await?;
            Ok::<_, std::io::Error>(header)
        };
        match tokio::time::timeout(limit, first_frame).await {
            Err(_) => Err(self.unreachable(format!(
                "connected, but no answer within {}",
                seconds(limit)
            ))),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(self.unreachable("the connection was closed without an answer"))
            }
            Ok(Err(e)) => Err(self.unreachable(io_reason(&e))),
            Ok(Ok(header)) if header[3] != H2_SETTINGS => Err(self.unreachable(
                "the endpoint answered, but not with HTTP/2 (is it a BuildKit daemon?)",
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// `10s`, or `0.2s` for what isn't whole seconds.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// An I/O error worded as the reason after "cannot reach BuildKit at ENDPOINT: ", the way Go
/// tools word it ("connection refused"): Rust's capitalised text without its "(os error N)".
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(i) => &text[..i],
        None => text.as_str(),
    };
    // "Connection refused" becomes "connection refused"; an acronym ("TLS ...") stays.
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(first), Some(second)) if second.is_lowercase() => {
            first.to_lowercase().chain([second]).chain(chars).collect()
        }
        (None, _) => format!("{:?}", e.kind()),
        _ => text.to_string(),
    }
}

#[cfg(unix)]
async fn connect_unix(p: &Path) -> std::io::Result<BoxIo> {
    Ok(Box::pin(tokio::net::UnixStream::connect(p).await?))
}

#[cfg(not(unix))]
async fn connect_unix(p: &Path) -> std::io::Result<BoxIo> {
    Err(std::io::Error::other(format!(
        "unix sockets are not supported on this platform: {}",
        p.display()
    )))
}

/// The remote driver's TLS client config: ALPN `h2` (gRPC), errors named by option.
fn client_config(o: &TlsOpts) -> Result<tokio_rustls::rustls::ClientConfig, DriverError> {
    let files = crate::tls::TlsFiles {
        ca: o.cacert.clone(),
        cert: o.cert.clone(),
        key: o.key.clone(),
        skip_verify: false,
    };
    crate::tls::client_config(&files, &[b"h2"]).map_err(|e| {
        let opt = match e.file {
            crate::tls::TlsFile::Ca => "cacert",
            crate::tls::TlsFile::Cert => "cert",
            crate::tls::TlsFile::Key => "key",
        };
        DriverError::InvalidOption(opt.into(), e.message)
    })
}

#[async_trait]
impl Driver for RemoteDriver {
    fn kind(&self) -> DriverKind {
        DriverKind::Remote
    }

    async fn bootstrap(&self) -> Result<(), DriverError> {
        // The daemon is someone else's to start; bootstrapping is proving that it answers.
        self.check_answers().await
    }

    async fn status(&self) -> NodeStatus {
        match self.check_answers().await {
            Ok(_) => NodeStatus::Running,
            Err(e) => NodeStatus::Inactive(e.to_string()),
        }
    }

    async fn version(&self) -> Result<String, DriverError> {
        // Only BuildKit itself knows (`Control/Info`); one that predates that call (Engine
        // 20.10's BuildKit 0.8, for one) has no version to show, and buildx shows none either.
        Ok(String::new())
    }

    async fn stop(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn remove(&self) -> Result<(), DriverError> {
        Ok(())
    }

    async fn dial(&self) -> Result<BoxIo, DriverError> {
        self.connect().await
    }

    async fn dial_session(
        &self,
        _headers: &[(String, String)],
    ) -> Result<Option<BoxIo>, DriverError> {
        Ok(None)
    }

    fn dials_an_endpoint(&self) -> bool {
        true
    }

    fn features(&self, worker_labels: &[BTreeMap<String, String>]) -> Features {
        // A BuildKit daemon of its own exports OCI/Docker tarballs, exports caches, builds
        // multi-platform images and pushes itself; it has no Docker image store (no `moby`).
        let has_worker = !worker_labels.is_empty();
        Features {
            oci_exporter: has_worker,
            docker_exporter: has_worker,
            cache_export: has_worker,
            multi_platform: has_worker,
            direct_push: has_worker,
            default_load: self.default_load,
            moby_exporter: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opts_of as opts;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            RemoteEndpoint::parse("unix:///run/buildkit.sock").unwrap(),
            RemoteEndpoint::Unix("/run/buildkit.sock".into())
        );
        assert_eq!(
            RemoteEndpoint::parse("tcp://10.0.0.1:1234").unwrap(),
            RemoteEndpoint::Tcp {
                host: "10.0.0.1".into(),
                port: 1234
            }
        );
        assert!(RemoteEndpoint::parse("tcp://host").is_err());
        assert!(RemoteEndpoint::parse("ssh://host").is_err());
        assert!(RemoteEndpoint::parse("unix://").is_err());
    }

    #[test]
    fn io_errors_read_like_the_reason_users_know() {
        let refused = std::io::Error::from_raw_os_error(111);
        assert_eq!(io_reason(&refused), "connection refused");
        let missing = std::io::Error::from_raw_os_error(2);
        assert_eq!(io_reason(&missing), "no such file or directory");
        let custom = std::io::Error::other("TLS alert");
        assert_eq!(io_reason(&custom), "TLS alert");
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_endpoint_and_fails_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let d = driver_for(&url);
        let start = std::time::Instant::now();
        let Err(e) = d.dial().await else {
            panic!("nothing listens on {url}, yet dialing it worked")
        };
        assert!(start.elapsed() < CONNECT_TIMEOUT);
        assert_eq!(
            e.to_string(),
            format!("cannot reach BuildKit at {url}: connection refused")
        );
        assert_eq!(
            d.status().await,
            NodeStatus::Inactive(format!(
                "cannot reach BuildKit at {url}: connection refused"
            ))
        );
    }

    fn driver_for(url: &str) -> RemoteDriver {
        RemoteDriver::new(&NodeConfig {
            name: "n".into(),
            endpoint: url.into(),
            driver_opts: BTreeMap::new(),
        })
        .unwrap()
    }

    /// A listener that accepts and then does what `serve` does with each connection.
    async fn listener(
        serve: impl Fn(tokio::net::TcpStream) + Send + 'static,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("tcp://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                serve(s);
            }
        });
        (url, task)
    }

    #[tokio::test]
    async fn an_endpoint_that_speaks_http2_first_is_running() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (url, _task) = listener(|mut s| {
            tokio::spawn(async move {
                let mut preface = [0u8; 24 + 9];
                s.read_exact(&mut preface).await.unwrap();
                s.write_all(&H2_EMPTY_SETTINGS).await.unwrap();
                let _ = s.read(&mut preface).await;
            });
        })
        .await;
        assert_eq!(driver_for(&url).status().await, NodeStatus::Running);
    }

    #[tokio::test]
    async fn an_endpoint_that_is_not_http2_is_inactive_with_the_reason() {
        use tokio::io::AsyncWriteExt;
        let (url, _task) = listener(|mut s| {
            tokio::spawn(async move {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            });
        })
        .await;
        let NodeStatus::Inactive(why) = driver_for(&url).status().await else {
            panic!("an HTTP/1 server counted as BuildKit")
        };
        assert!(
            why.starts_with(&format!("cannot reach BuildKit at {url}: ")),
            "{why}"
        );
        assert!(why.contains("not with HTTP/2"), "{why}");
        let (url, _task) = listener(|mut s| {
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                // Reads what the client sent (closing on unread data would reset instead).
                let mut preface = [0u8; 24 + 9];
                let _ = s.read_exact(&mut preface).await;
            });
        })
        .await;
        let NodeStatus::Inactive(why) = driver_for(&url).status().await else {
            panic!("a closed connection counted as BuildKit")
        };
        assert!(why.contains("closed without an answer"), "{why}");
    }

    #[tokio::test]
    async fn a_listener_that_never_answers_fails_after_the_answer_timeout() {
        let (url, _task) = listener(|s| {
            tokio::spawn(async move {
                // Holds the connection open and says nothing.
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(s);
            });
        })
        .await;
        let d = driver_for(&url);
        let limit = Duration::from_millis(200);
        let start = std::time::Instant::now();
        let e = d.check_answers_within(limit).await.unwrap_err();
        assert!(start.elapsed() >= limit && start.elapsed() < CONNECT_TIMEOUT);
        assert_eq!(
            e.to_string(),
            format!("cannot reach BuildKit at {url}: connected, but no answer within 0.2s")
        );
        assert_eq!(seconds(ANSWER_TIMEOUT), "10s");
    }

    #[test]
    fn rejects_unknown_and_missing() {
        let e = validate_opts(&opts(&[("image", "x")])).unwrap_err();
        assert!(e.to_string().contains("image"), "{e}");
        let e = validate_opts(&opts(&[("cacert", "/nonexistent/ca.pem")])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        assert!(validate_opts(&opts(&[("default-load", "true")])).is_ok());
        assert!(validate_opts(&opts(&[("default-load", "maybe")])).is_err());
    }
}
