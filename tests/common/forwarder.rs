//! A plain BuildKit endpoint in front of Engine 28's embedded BuildKit, for the remote driver's
//! tests: it accepts on a unix socket, a TCP port or a TLS port and, per connection, upgrades
//! `POST /grpc` (h2c) on the engine and splices the bytes. TLS certificates (a CA, a server
//! certificate for 127.0.0.1/localhost and a client certificate) are made at test time.
//! Works in front of any engine of the test environment (`KILN_TEST_ENGINE28_HOST`,
//! `KILN_TEST_ENGINE28B_HOST`, `KILN_TEST_ENGINE20_HOST`).

// Each test crate that includes this uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_drivers::docker_api::DockerEndpoint;
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::rustls;

/// PEM files for one test CA and what it signed.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

// Suites that only forward over a unix socket use neither TLS nor TCP.
#[allow(dead_code)]
impl Certs {
    /// A CA, a server certificate for `127.0.0.1`/`localhost`, and a client certificate.
    pub fn generate() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kiln test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let sign = |names: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = sign(vec!["127.0.0.1".into(), "localhost".into()]);
        let (client_cert, client_key) = sign(vec!["kiln-client".into()]);
        let w = |name: &str, s: &str| std::fs::write(dir.path().join(name), s).unwrap();
        w("ca.pem", &ca_cert.pem());
        w("server-cert.pem", &server_cert);
        w("server-key.pem", &server_key);
        w("cert.pem", &client_cert);
        w("key.pem", &client_key);
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// How the forwarder listens.
#[allow(dead_code)]
pub enum Listen<'a> {
    Unix,
    Tcp,
    /// TLS with the server certificate from `certs`; `require_client_cert` asks for mTLS.
    Tls {
        certs: &'a Certs,
        require_client_cert: bool,
    },
}

/// A running forwarder; dropping it stops accepting.
pub struct Forwarder {
    /// The endpoint to hand `kiln create --driver remote`.
    pub endpoint: String,
    _dir: tempfile::TempDir,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Forwarder {
    /// Starts forwarding to the engine at `engine_host` (a `DOCKER_HOST` value).
    pub fn start(engine_host: &str, listen: Listen<'_>) -> Forwarder {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let engine = DockerEndpoint::parse(engine_host).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let endpoint = runtime.block_on(async {
            match listen {
                Listen::Unix => {
                    let path = dir.path().join("buildkitd.sock");
                    let l = UnixListener::bind(&path).unwrap();
                    tokio::spawn(async move {
                        while let Ok((s, _)) = l.accept().await {
                            tokio::spawn(splice(engine.clone(), s));
                        }
                    });
                    format!("unix://{}", path.display())
                }
                Listen::Tcp => {
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap();
                    tokio::spawn(async move {
                        while let Ok((s, _)) = l.accept().await {
                            tokio::spawn(splice(engine.clone(), s));
                        }
                    });
                    format!("tcp://{addr}")
                }
                Listen::Tls {
                    certs,
                    require_client_cert,
                } => {
                    let acceptor = tls_acceptor(certs, require_client_cert);
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap();
                    tokio::spawn(async move {
                        while let Ok((s, _)) = l.accept().await {
                            let acceptor = acceptor.clone();
                            let engine = engine.clone();
                            tokio::spawn(async move {
                                if let Ok(s) = acceptor.accept(s).await {
                                    splice(engine, s).await;
                                }
                            });
                        }
                    });
                    format!("tcp://{addr}")
                }
            }
        });
        Forwarder {
            endpoint,
            _dir: dir,
            runtime: Some(runtime),
        }
    }
}

async fn splice<S>(engine: DockerEndpoint, mut client: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Ok(mut upstream) = engine.hijack("/grpc", "h2c", &[]).await else {
        return;
    };
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

fn read_pem(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

fn tls_acceptor(certs: &Certs, require_client_cert: bool) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read_pem(&certs.path("server-cert.pem")))
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&read_pem(&certs.path("server-key.pem"))).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&read_pem(&certs.path("ca.pem"))) {
            roots.add(c.unwrap()).unwrap();
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A local listener that accepts connections and never answers (a hung daemon).
pub struct BlackHole {
    pub endpoint: String,
    _listener: std::net::TcpListener,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("tcp://{}", l.local_addr().unwrap());
        // The kernel completes handshakes into the backlog; nothing ever reads or writes.
        BlackHole {
            endpoint,
            _listener: l,
        }
    }
}

/// A two-node remote builder over two distinct BuildKit daemons: node `amd` declared for
/// linux/amd64 on Engine 28, node `arm` for linux/arm64 on the second Engine 28. The
/// forwarders serve as long as this lives.
pub struct TwoNodeBuilder {
    pub name: String,
    pub amd: Forwarder,
    pub arm: Forwarder,
}

impl TwoNodeBuilder {
    pub fn create(user: &crate::common::User) -> TwoNodeBuilder {
        use crate::common::{env, ok, unique};
        let amd = Forwarder::start(&env("KILN_TEST_ENGINE28_HOST"), Listen::Unix);
        let arm = Forwarder::start(&env("KILN_TEST_ENGINE28B_HOST"), Listen::Unix);
        let name = unique("multi");
        for (i, (node, platform, fwd)) in
            [("amd", "linux/amd64", &amd), ("arm", "linux/arm64", &arm)]
                .into_iter()
                .enumerate()
        {
            let mut args = vec!["create", "--name", &name, "--driver", "remote"];
            if i > 0 {
                args.push("--append");
            }
            args.extend(["--node", node, "--platform", platform, &fwd.endpoint]);
            ok(user.kiln(&args));
        }
        TwoNodeBuilder { name, amd, arm }
    }
}
