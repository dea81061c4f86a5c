//! The HTTP side of the distribution API: one [`Client`] per process, which keeps connections,
//! answers authentication challenges (Basic, and the Bearer token flow) with credentials from
//! Docker's config, caches tokens per scope, repeats requests that failed transiently (see
//! `retry`), streams blobs copied between registries (see `stream`), and counts the blob bytes
//! it uploads.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body::Body as _;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use url::Url;

use super::auth::{parse_challenge, Challenge, TokenResponse};
use super::oci::{detect_media_type, MANIFEST_ACCEPT};
use super::retry::{retry_after, retryable_error, retryable_status, RetryPolicy, RETRIES_ENV};
use super::stream::{BoxError, DigestCheck, VerifiedBody};
use super::{Digest, Error, Reference, Repository};
use crate::buildkit::client::flatten_error;
use crate::dockercfg::Credentials;

const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));
const MAX_REDIRECTS: usize = 5;

/// Largest manifest or index read into memory; containerd refuses larger ones too.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest blob [`Client::get_small_blob`] reads into memory (image configs, attestations).
pub const MAX_SMALL_BLOB_BYTES: u64 = 16 << 20;
/// Largest token endpoint answer.
const MAX_TOKEN_BYTES: u64 = 1 << 20;
/// Largest error body read for its message; the rest is not needed.
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// How long to wait for a TCP connection, as buildx's dialer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for response headers, and for any progress while reading a body.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Overrides [`DEFAULT_IDLE_TIMEOUT`] (whole seconds); tests use it to keep stall cases fast.
pub const TIMEOUT_ENV: &str = "KILN_REGISTRY_TIMEOUT_SECS";

/// What every request carries as its body: in-memory bytes, or a blob streamed from another
/// registry.
type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

fn full(bytes: Bytes) -> ReqBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A manifest or index as the registry stored it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// What a cross-repository mount request led to.
#[derive(Debug)]
pub enum Mount {
    /// The registry linked the blob into the target repository.
    Mounted,
    /// The registry did not mount; it opened an upload session instead.
    Upload(Url),
}

/// How a registry wants to be authenticated, learnt from its first 401.
#[derive(Debug, Clone)]
enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Default)]
struct AuthState {
    schemes: HashMap<String, Scheme>,
    /// (registry, scopes) -> bearer token.
    tokens: HashMap<(String, String), String>,
    credentials: HashMap<String, Option<Credentials>>,
}

/// One request, kept rebuildable so it can be sent again after an authentication challenge or
/// a transient failure.
struct Request<'a> {
    method: Method,
    url: Url,
    registry: &'a str,
    scopes: Vec<String>,
    headers: Vec<(header::HeaderName, String)>,
    body: Bytes,
}

/// A distribution (OCI registry) client.
pub struct Client {
    http: HyperClient<HttpConnector, ReqBody>,
    https: OnceLock<HyperClient<HttpsConnector<HttpConnector>, ReqBody>>,
    auth: Mutex<AuthState>,
    /// Held while asking a token endpoint, so concurrent requests share one token per scope.
    token_fetch: tokio::sync::Mutex<()>,
    uploaded: AtomicU64,
    /// Bound on waiting for response headers and on a body read making no progress.
    idle_timeout: Duration,
    /// How often transient failures are retried; a bad [`RETRIES_ENV`] is kept to be reported
    /// by the first request, worded for the user.
    retry: Result<RetryPolicy, String>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            http: HyperClient::builder(TokioExecutor::new()).build(connector()),
            https: OnceLock::new(),
            auth: Mutex::new(AuthState::default()),
            token_fetch: tokio::sync::Mutex::new(()),
            uploaded: AtomicU64::new(0),
            idle_timeout: idle_timeout_from(std::env::var(TIMEOUT_ENV).ok().as_deref()),
            retry: RetryPolicy::from_env_value(std::env::var(RETRIES_ENV).ok().as_deref())
                .map_err(|e| e.to_string()),
        }
    }

    /// Blob bytes this client has uploaded so far (mounted and already present blobs count 0).
    pub fn uploaded_blob_bytes(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// The manifest or index `reference` names (by digest when it has one, else by tag), with
    /// its media type and digest; content fetched by digest is verified.
    pub async fn get_manifest(&self, reference: &Reference) -> Result<Fetched, Error> {
        let repo = &reference.repository;
        let url = endpoint(repo, &format!("manifests/{}", reference.manifest_key()))?;
        let resp = self
            .send(Request {
                method: Method::GET,
                url,
                registry: &repo.registry,
                scopes: vec![scope(repo, "pull")],
                headers: vec![(header::ACCEPT, MANIFEST_ACCEPT.into())],
                body: Bytes::new(),
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(reference.to_string()));
        }
        let resp = self
            .check(resp, &repo.registry, &format!("fetching {reference}"))
            .await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let bytes = self
            .read_body(
                resp,
                &repo.registry,
                &format!("manifest {reference}"),
                MAX_MANIFEST_BYTES,
            )
            .await?;
        let digest = match &reference.digest {
            Some(d) if !d.matches(&bytes) => {
                return Err(Error::DigestMismatch {
                    what: reference.to_string(),
                })
            }
            Some(d) => d.clone(),
            None => Digest::sha256_of(&bytes),
        };
        let media_type = match content_type.as_str() {
            "" | "application/json" | "text/plain" | "application/octet-stream" => {
                detect_media_type(&bytes).unwrap_or(content_type)
            }
            _ => content_type,
        };
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Whether `repo` has the manifest `digest`.
    pub async fn manifest_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, Error> {
        self.exists(repo, &format!("manifests/{digest}"), Some(MANIFEST_ACCEPT))
            .await
    }

    /// Stores a manifest under `key` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        key: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<(), Error> {
        let url = endpoint(repo, &format!("manifests/{key}"))?;
        let resp = self
            .send(Request {
                method: Method::PUT,
                url,
                registry: &repo.registry,
                scopes: vec![scope(repo, "pull,push")],
                headers: vec![(header::CONTENT_TYPE, media_type.into())],
                body: bytes,
            })
            .await?;
        self.check(
            resp,
            &repo.registry,
            &format!("pushing manifest {repo}:{key}"),
        )
        .await?;
        Ok(())
    }

    /// Whether `repo` has the blob `digest`.
    pub async fn blob_exists(&self, repo: &Repository, digest: &Digest) -> Result<bool, Error> {
        self.exists(repo, &format!("blobs/{digest}"), None).await
    }

    /// A blob that is read into memory to be parsed (an image config, an attestation), refused
    /// past [`MAX_SMALL_BLOB_BYTES`].
    pub async fn get_small_blob(&self, repo: &Repository, digest: &Digest) -> Result<Bytes, Error> {
        self.get_blob_sized(repo, digest, MAX_SMALL_BLOB_BYTES)
            .await
    }

    /// A blob's content, verified against its digest (redirects to storage backends followed),
    /// refused once more than `limit` bytes arrive (a descriptor's size, or a cap for content
    /// read to be parsed). It is read whole into memory.
    pub async fn get_blob_sized(
        &self,
        repo: &Repository,
        digest: &Digest,
        limit: u64,
    ) -> Result<Bytes, Error> {
        let what = format!("blob {digest} in {repo}");
        let resp = self.open_blob(repo, digest).await?;
        let bytes = self.read_body(resp, &repo.registry, &what, limit).await?;
        if !digest.matches(&bytes) {
            return Err(Error::DigestMismatch { what });
        }
        Ok(bytes)
    }

    /// The successful answer to GET blob `digest` (redirects followed), its body not yet read.
    async fn open_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<Response<Incoming>, Error> {
        let what = format!("blob {digest} in {repo}");
        let url = endpoint(repo, &format!("blobs/{digest}"))?;
        let label = format!("GET {}", url.path());
        let resp = self
            .with_retries(&repo.registry, &label, || {
                self.get_following_redirects(repo, &url)
            })
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(what));
        }
        self.check(resp, &repo.registry, &format!("fetching {what}"))
            .await
    }

    /// One GET of `url` in `repo`'s registry, following redirects to storage backends.
    async fn get_following_redirects(
        &self,
        repo: &Repository,
        url: &Url,
    ) -> Result<Response<Incoming>, Error> {
        let mut resp = self
            .send_once(&Request {
                method: Method::GET,
                url: url.clone(),
                registry: &repo.registry,
                scopes: vec![scope(repo, "pull")],
                headers: Vec::new(),
                body: Bytes::new(),
            })
            .await?;
        let mut url = url.clone();
        for _ in 0..MAX_REDIRECTS {
            if !resp.status().is_redirection() {
                break;
            }
            let location = location(&resp, &url, &repo.registry)?;
            // Storage backends get no registry credentials: the redirect URL carries its own.
            let req = http::Request::get(location.as_str())
                .header(header::USER_AGENT, USER_AGENT)
                .body(full(Bytes::new()))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            resp = self.execute(&location, req, &repo.registry).await?;
            url = location;
        }
        Ok(resp)
    }

    /// Asks the registry to link blob `digest` from repository `from` into `to`.
    pub async fn mount_blob(
        &self,
        to: &Repository,
        digest: &Digest,
        from: &Repository,
    ) -> Result<Mount, Error> {
        let mut url = endpoint(to, "blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", &from.path);
        let resp = self
            .send(Request {
                method: Method::POST,
                url: url.clone(),
                registry: &to.registry,
                scopes: vec![scope(to, "pull,push"), scope(from, "pull")],
                headers: Vec::new(),
                body: Bytes::new(),
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Upload(location(&resp, &url, &to.registry)?)),
            _ => {
                self.check(resp, &to.registry, &format!("mounting {digest} into {to}"))
                    .await?;
                Err(Error::Protocol {
                    registry: to.registry.clone(),
                    detail: "unexpected answer to a blob mount".into(),
                })
            }
        }
    }

    /// Copies blob `digest` from `from` into `to` (in `session` when the registry already opened
    /// one) without holding it in memory: the source's answer is the upload's body, checked
    /// against the digest and `size` as it passes. A transient failure on either side reads the
    /// source again into a new upload session.
    pub async fn copy_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
        size: Option<u64>,
        session: Option<Url>,
    ) -> Result<(), Error> {
        let what = format!("copying {digest} from {from} to {to}");
        let source_what = format!("blob {digest} in {from}");
        let label = format!("PUT {}", endpoint(to, "blobs/uploads/")?.path());
        let mut given = session;
        let copied = AtomicU64::new(0);
        let resp = self
            .with_retries(&to.registry, &label, || {
                let given = given.take();
                let (copied, source_what) = (&copied, &source_what);
                async move {
                    let source = self.open_blob(from, digest).await?;
                    let declared = source
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let (Some(declared), Some(size)) = (declared, size) {
                        if declared != size {
                            return Err(Error::Protocol {
                                registry: from.registry.clone(),
                                detail: format!(
                                    "{source_what} is {declared} bytes, its descriptor says {size}"
                                ),
                            });
                        }
                    }
                    let url = match self.open_upload(to, digest, given).await? {
                        Ok(url) => url,
                        Err(refused) => return Ok(refused),
                    };
                    let (body, failure) = VerifiedBody::new(
                        source.into_body(),
                        DigestCheck::new(digest.clone(), size.or(declared)),
                        self.idle_timeout,
                        &from.registry,
                        source_what,
                    );
                    let scopes = [scope(to, "pull,push")];
                    let put = with_digest(url, digest);
                    let request = self
                        .authorized(
                            Method::PUT,
                            &put,
                            &to.registry,
                            &scopes,
                            &[(header::CONTENT_TYPE, "application/octet-stream".into())],
                        )
                        .await?
                        .body(body.boxed_unsync())
                        .map_err(|e| Error::Invalid(e.to_string()))?;
                    tracing::debug!(%digest, %from, %to, "streaming blob");
                    let sent = self.execute(&put, request, &to.registry).await;
                    // The source's fault (a mismatch, a stall, a break) explains the failed
                    // upload better than the transport's "body aborted".
                    if let Some(e) = failure.lock().expect("copy failure").take() {
                        return Err(e);
                    }
                    copied.store(size.or(declared).unwrap_or(0), Ordering::Relaxed);
                    sent
                }
            })
            .await?;
        self.check(resp, &to.registry, &what).await?;
        let copied = copied.into_inner();
        self.uploaded.fetch_add(copied, Ordering::Relaxed);
        tracing::debug!(%digest, %from, %to, bytes = copied, "copied blob");
        Ok(())
    }

    /// An upload session in `repo` for blob `digest`: `given` when the registry already opened
    /// one, else a new one; a registry's refusal to open one is handed back as `Err` for the
    /// caller to judge.
    async fn open_upload(
        &self,
        repo: &Repository,
        digest: &Digest,
        given: Option<Url>,
    ) -> Result<Result<Url, Response<Incoming>>, Error> {
        if let Some(url) = given {
            return Ok(Ok(url));
        }
        let url = endpoint(repo, "blobs/uploads/")?;
        let resp = self
            .send_once(&Request {
                method: Method::POST,
                url: url.clone(),
                registry: &repo.registry,
                scopes: vec![scope(repo, "pull,push")],
                headers: Vec::new(),
                body: Bytes::new(),
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Ok(Err(resp));
        }
        let session = location(&resp, &url, &repo.registry)?;
        tracing::debug!(%digest, %repo, "upload session opened");
        Ok(Ok(session))
    }

    async fn exists(
        &self,
        repo: &Repository,
        path: &str,
        accept: Option<&str>,
    ) -> Result<bool, Error> {
        let resp = self
            .send(Request {
                method: Method::HEAD,
                url: endpoint(repo, path)?,
                registry: &repo.registry,
                scopes: vec![scope(repo, "pull")],
                headers: accept
                    .map(|a| vec![(header::ACCEPT, a.to_string())])
                    .unwrap_or_default(),
                body: Bytes::new(),
            })
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => {
                self.check(resp, &repo.registry, &format!("checking {repo}/{path}"))
                    .await?;
                Ok(false)
            }
        }
    }

    /// Sends a request that is safe to repeat, repeating it on transient failures.
    async fn send(&self, req: Request<'_>) -> Result<Response<Incoming>, Error> {
        let label = format!("{} {}", req.method, req.url.path());
        let req = &req;
        self.with_retries(req.registry, &label, move || self.send_once(req))
            .await
    }

    /// Sends a request once, answering one authentication challenge on the way.
    async fn send_once(&self, req: &Request<'_>) -> Result<Response<Incoming>, Error> {
        let mut answered = false;
        loop {
            let request = self
                .authorized(
                    req.method.clone(),
                    &req.url,
                    req.registry,
                    &req.scopes,
                    &req.headers,
                )
                .await?
                .body(full(req.body.clone()))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            tracing::debug!(method = %req.method, url = %req.url, "registry request");
            let resp = self.execute(&req.url, request, req.registry).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            let Some(challenge) = challenge else {
                return Ok(resp);
            };
            self.learn(req.registry, challenge, &req.scopes);
            answered = true;
        }
    }

    /// A request's method, URL and headers with the `Authorization` kiln has for `scopes`
    /// (fetching a token when the registry wants one); the body is the caller's.
    async fn authorized(
        &self,
        method: Method,
        url: &Url,
        registry: &str,
        scopes: &[String],
        headers: &[(header::HeaderName, String)],
    ) -> Result<http::request::Builder, Error> {
        let authorization = self.authorization(registry, scopes).await?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(header::USER_AGENT, USER_AGENT);
        for (k, v) in headers {
            builder = builder.header(k, v);
        }
        if let Some(a) = authorization {
            let mut value = HeaderValue::from_str(&a).map_err(|_| {
                Error::Invalid(
                    "credentials contain characters not allowed in an HTTP header".into(),
                )
            })?;
            value.set_sensitive(true);
            builder = builder.header(header::AUTHORIZATION, value);
        }
        Ok(builder)
    }

    /// Runs `attempt` until it gives an answer or error that is not transient, or the retry
    /// policy's attempts are spent; then the last outcome is returned, and when more than one
    /// attempt was made and all failed, an error saying how many and the last cause. `label`
    /// (method and path, never a query or a credential) names the request in that error.
    async fn with_retries<F, Fut>(
        &self,
        registry: &str,
        label: &str,
        mut attempt: F,
    ) -> Result<Response<Incoming>, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Response<Incoming>, Error>>,
    {
        let policy = self.retry.clone().map_err(Error::Invalid)?;
        let mut made = 0;
        loop {
            let outcome = attempt().await;
            made += 1;
            let (retry_after, cause) = match &outcome {
                Ok(resp) if retryable_status(resp.status()) => (
                    retry_after(resp.status(), resp.headers()),
                    resp.status().to_string(),
                ),
                Err(e) if retryable_error(e) => (None, e.to_string()),
                _ => return outcome,
            };
            if made >= policy.attempts() {
                if made == 1 {
                    return outcome;
                }
                let last = match outcome {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = self
                            .read_body(resp, registry, label, MAX_ERROR_BYTES)
                            .await
                            .unwrap_or_default();
                        format!("{label}: {status}{}", registry_message(&body))
                    }
                    Err(e) => e.to_string(),
                };
                return Err(Error::Retries {
                    registry: registry.into(),
                    attempts: made,
                    last,
                });
            }
            let wait = policy.wait(made, retry_after);
            tracing::debug!(
                registry,
                request = label,
                attempt = made,
                %cause,
                wait_ms = wait.as_millis() as u64,
                "retrying registry request"
            );
            drop(outcome);
            tokio::time::sleep(wait).await;
        }
    }

    async fn execute(
        &self,
        url: &Url,
        request: http::Request<ReqBody>,
        registry: &str,
    ) -> Result<Response<Incoming>, Error> {
        // The bound covers sending the body too, so an upload gets time for its size.
        let limit = self.idle_timeout + upload_allowance(request.body().size_hint().upper());
        let method = request.method().clone();
        let sent = if url.scheme() == "https" {
            tokio::time::timeout(limit, self.https_client()?.request(request)).await
        } else {
            tokio::time::timeout(limit, self.http.request(request)).await
        };
        let result = sent.map_err(|_| Error::Timeout {
            registry: registry.to_string(),
            detail: format!(
                "{method} {}: no response for {}",
                url.path(),
                seconds(limit)
            ),
        })?;
        result.map_err(|e| Error::Connect {
            registry: registry.to_string(),
            detail: flatten_error(&e),
        })
    }

    fn https_client(&self) -> Result<&HyperClient<HttpsConnector<HttpConnector>, ReqBody>, Error> {
        if let Some(c) = self.https.get() {
            return Ok(c);
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b
                .https_or_http()
                .enable_http1()
                .wrap_connector(tls_transport()),
            Err(_) => {
                // No system roots: https registries will fail verification with a clear error.
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| Error::Invalid(e.to_string()))?
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(tls_transport())
            }
        };
        Ok(self
            .https
            .get_or_init(|| HyperClient::builder(TokioExecutor::new()).build(connector)))
    }

    /// Remembers how `registry` authenticates; a stale token for these scopes is dropped.
    fn learn(&self, registry: &str, challenge: Challenge, scopes: &[String]) {
        let scheme = match challenge {
            Challenge::Basic => Scheme::Basic,
            Challenge::Bearer { realm, service, .. } => Scheme::Bearer { realm, service },
        };
        let mut state = self.auth.lock().expect("auth state");
        state.schemes.insert(registry.to_string(), scheme);
        state
            .tokens
            .remove(&(registry.to_string(), scopes.join(" ")));
    }

    /// The `Authorization` value for a request, fetching a bearer token when needed.
    async fn authorization(
        &self,
        registry: &str,
        scopes: &[String],
    ) -> Result<Option<String>, Error> {
        let key = (registry.to_string(), scopes.join(" "));
        let scheme = {
            let state = self.auth.lock().expect("auth state");
            if let Some(t) = state.tokens.get(&key) {
                return Ok(Some(format!("Bearer {t}")));
            }
            state.schemes.get(registry).cloned()
        };
        match scheme {
            None => Ok(None),
            Some(Scheme::Basic) => {
                let creds = self
                    .credentials(registry)?
                    .ok_or_else(|| Error::NoCredentials(registry.to_string()))?;
                Ok(Some(basic(&creds)))
            }
            Some(Scheme::Bearer { realm, service }) => {
                let _one_at_a_time = self.token_fetch.lock().await;
                if let Some(t) = self.auth.lock().expect("auth state").tokens.get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self
                    .fetch_token(registry, &realm, service.as_deref(), scopes)
                    .await?;
                self.auth
                    .lock()
                    .expect("auth state")
                    .tokens
                    .insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The Bearer token flow: GET the realm with service and scopes (Basic-authenticated when
    /// Docker's config has a login, anonymous otherwise), or POST a refresh token for an
    /// identity-token login.
    async fn fetch_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, Error> {
        let mut url = Url::parse(realm).map_err(|_| Error::Protocol {
            registry: registry.into(),
            detail: format!("invalid token realm {realm:?}"),
        })?;
        let creds = self.credentials(registry)?;
        // Rebuilt for each attempt: a request is consumed by sending it.
        let (method, content_type, body, authorization) = match &creds {
            Some(c) if c.username.is_empty() => {
                let mut form = url::form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token")
                    .append_pair("client_id", "kiln")
                    .append_pair("refresh_token", &c.secret);
                if let Some(s) = service {
                    form.append_pair("service", s);
                }
                if !scopes.is_empty() {
                    form.append_pair("scope", &scopes.join(" "));
                }
                (
                    Method::POST,
                    Some("application/x-www-form-urlencoded"),
                    Bytes::from(form.finish()),
                    None,
                )
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let authorization = match &creds {
                    Some(c) => {
                        let mut v = HeaderValue::from_str(&basic(c)).map_err(|_| {
                            Error::Invalid(
                                "credentials contain characters not allowed in an HTTP header"
                                    .into(),
                            )
                        })?;
                        v.set_sensitive(true);
                        Some(v)
                    }
                    None => None,
                };
                (Method::GET, None, Bytes::new(), authorization)
            }
        };
        let request = || {
            let mut b = http::Request::builder()
                .method(method.clone())
                .uri(url.as_str())
                .header(header::USER_AGENT, USER_AGENT);
            if let Some(t) = content_type {
                b = b.header(header::CONTENT_TYPE, t);
            }
            if let Some(a) = &authorization {
                b = b.header(header::AUTHORIZATION, a.clone());
            }
            b.body(full(body.clone()))
                .map_err(|e| Error::Invalid(e.to_string()))
        };
        let what = format!(
            "getting a token for {registry} from {}",
            realm_for_display(realm)
        );
        let resp = self
            .with_retries(registry, &what, || async {
                self.execute(&url, request()?, registry).await
            })
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                registry: registry.into(),
                detail: format!("{what}: {}", resp.status()),
            });
        }
        let resp = self.check(resp, registry, &what).await?;
        let body = self
            .read_body(resp, registry, &what, MAX_TOKEN_BYTES)
            .await?;
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| Error::Protocol {
                registry: registry.into(),
                detail: format!("{what}: the answer has no token"),
            })
    }

    fn credentials(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        if let Some(c) = self
            .auth
            .lock()
            .expect("auth state")
            .credentials
            .get(registry)
        {
            return Ok(c.clone());
        }
        let creds =
            crate::dockercfg::credentials_for(registry).map_err(|e| Error::Credentials {
                registry: registry.into(),
                detail: format!("{e:#}"),
            })?;
        self.auth
            .lock()
            .expect("auth state")
            .credentials
            .insert(registry.to_string(), creds.clone());
        Ok(creds)
    }
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.secret);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The realm without query or userinfo, for messages.
fn realm_for_display(realm: &str) -> String {
    match Url::parse(realm) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "the token realm".into(),
    }
}

/// An upload session URL with the digest that completes it.
fn with_digest(mut session: Url, digest: &Digest) -> Url {
    session
        .query_pairs_mut()
        .append_pair("digest", digest.as_str());
    session
}

fn scope(repo: &Repository, actions: &str) -> String {
    format!("repository:{}:{actions}", repo.path)
}

/// Registries on loopback speak plain http (Docker treats them as insecure); others https.
fn base_url(registry: &str) -> Result<Url, Error> {
    let host = if registry == super::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    };
    let scheme = if is_loopback(host) { "http" } else { "https" };
    Url::parse(&format!("{scheme}://{host}/v2/"))
        .map_err(|_| Error::Invalid(format!("invalid registry host {registry:?}")))
}

fn is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn endpoint(repo: &Repository, path: &str) -> Result<Url, Error> {
    let base = base_url(&repo.registry)?;
    base.join(&format!("{}/{path}", repo.path))
        .map_err(|_| Error::Invalid(format!("invalid repository {repo}")))
}

fn location(resp: &Response<Incoming>, base: &Url, registry: &str) -> Result<Url, Error> {
    let loc = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Protocol {
            registry: registry.into(),
            detail: format!("{} without a Location", resp.status()),
        })?;
    base.join(loc).map_err(|_| Error::Protocol {
        registry: registry.into(),
        detail: format!("invalid Location {loc:?}"),
    })
}

impl Client {
    /// Passes a successful response through; turns any other into an error with the
    /// registry's own message (the distribution error JSON), never echoing request headers.
    async fn check(
        &self,
        resp: Response<Incoming>,
        registry: &str,
        what: &str,
    ) -> Result<Response<Incoming>, Error> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = self
            .read_body(resp, registry, what, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        let detail = registry_message(&body);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                registry: registry.into(),
                detail: format!("{what}: {status}{detail}"),
            });
        }
        Err(Error::Status {
            what: what.into(),
            status,
            detail,
        })
    }

    /// A response body, refused once it passes `limit` bytes or stops making progress for the
    /// idle timeout, so a broken or hostile server can neither exhaust memory nor hang kiln.
    async fn read_body(
        &self,
        resp: Response<Incoming>,
        registry: &str,
        what: &str,
        limit: u64,
    ) -> Result<Bytes, Error> {
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || Error::TooLarge {
            registry: registry.into(),
            what: what.into(),
            limit,
        };
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = resp.into_body();
        let mut data = bytes::BytesMut::new();
        loop {
            let frame = tokio::time::timeout(self.idle_timeout, body.frame())
                .await
                .map_err(|_| Error::Timeout {
                    registry: registry.into(),
                    detail: format!("reading {what}: no data for {}", seconds(self.idle_timeout)),
                })?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| Error::Connect {
                registry: registry.into(),
                detail: format!("reading {what}: {}", flatten_error(&e)),
            })?;
            if let Ok(chunk) = frame.into_data() {
                if data.len() as u64 + chunk.len() as u64 > limit {
                    return Err(too_large());
                }
                data.extend_from_slice(&chunk);
            }
        }
        Ok(data.freeze())
    }
}

/// The TCP connector for plain-http registries, with buildx's connect timeout.
fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    c
}

/// The TCP connector under TLS: it must let https URLs through to the TLS layer.
fn tls_transport() -> HttpConnector {
    let mut c = connector();
    c.enforce_http(false);
    c
}

/// The idle timeout [`TIMEOUT_ENV`] asks for, or the default when unset or unusable.
fn idle_timeout_from(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_IDLE_TIMEOUT)
}

/// Extra time to send a request body of `len` bytes, assuming at least 256 KiB/s upstream.
fn upload_allowance(len: Option<u64>) -> Duration {
    Duration::from_secs(len.unwrap_or(0) / (256 << 10))
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// `: CODE: message` from a distribution error body, or nothing.
fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|i| format!(": {}: {}", i.code, i.message))
            .collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_plain_http() {
        assert_eq!(
            base_url("127.0.0.1:5000").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/"
        );
        assert_eq!(base_url("localhost").unwrap().scheme(), "http");
        assert_eq!(base_url("[::1]:5000").unwrap().scheme(), "http");
        assert_eq!(base_url("127.1.2.3:80").unwrap().scheme(), "http");
        assert_eq!(base_url("ghcr.io").unwrap().as_str(), "https://ghcr.io/v2/");
        assert_eq!(
            base_url("docker.io").unwrap().as_str(),
            "https://registry-1.docker.io/v2/"
        );
    }

    #[test]
    fn endpoints_keep_nested_repository_paths() {
        let repo = Repository {
            registry: "127.0.0.1:5000".into(),
            path: "team/app".into(),
        };
        assert_eq!(
            endpoint(&repo, "blobs/uploads/").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/team/app/blobs/uploads/"
        );
    }

    #[test]
    fn registry_errors_are_summarised() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            registry_message(body),
            ": MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(registry_message(b"<html>"), "");
    }

    #[test]
    fn realms_are_shown_without_secrets() {
        assert_eq!(
            realm_for_display("https://user:pw@auth.example/token?x=1"),
            "https://auth.example/token"
        );
    }

    #[test]
    fn idle_timeout_comes_from_the_environment_when_usable() {
        assert_eq!(idle_timeout_from(None), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(idle_timeout_from(Some("2")), Duration::from_secs(2));
        assert_eq!(idle_timeout_from(Some("0")), DEFAULT_IDLE_TIMEOUT);
        assert_eq!(idle_timeout_from(Some("soon")), DEFAULT_IDLE_TIMEOUT);
    }

    #[test]
    fn uploads_get_time_for_their_size() {
        assert_eq!(upload_allowance(None), Duration::ZERO);
        assert_eq!(upload_allowance(Some(1 << 30)), Duration::from_secs(4096));
    }

    #[test]
    fn size_limits_are_worded_for_people() {
        let e = Error::TooLarge {
            registry: "127.0.0.1:5000".into(),
            what: "manifest 127.0.0.1:5000/app:latest".into(),
            limit: MAX_MANIFEST_BYTES,
        };
        assert_eq!(
            e.to_string(),
            "127.0.0.1:5000: manifest 127.0.0.1:5000/app:latest is larger than 4 MiB; \
             refusing to read more"
        );
    }
}
