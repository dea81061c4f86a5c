//! The HTTP side of the distribution API: one [`Client`] per process, which keeps connections,
//! answers authentication challenges (Basic, and the Bearer token flow) with credentials from
//! Docker's config, caches tokens per scope, and counts the blob bytes it uploads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use url::Url;

use super::auth::{parse_challenge, Challenge, TokenResponse};
use super::oci::{detect_media_type, MANIFEST_ACCEPT};
use super::{Digest, Error, Reference, Repository};
use crate::buildkit::client::flatten_error;
use crate::dockercfg::Credentials;

const USER_AGENT: &str = concat!("kiln/", env!("CARGO_PKG_VERSION"));
const MAX_REDIRECTS: usize = 5;

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

/// One request, kept rebuildable so it can be sent again after an authentication challenge.
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
    http: HyperClient<HttpConnector, Full<Bytes>>,
    https: OnceLock<HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    auth: Mutex<AuthState>,
    /// Held while asking a token endpoint, so concurrent requests share one token per scope.
    token_fetch: tokio::sync::Mutex<()>,
    uploaded: AtomicU64,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            http: HyperClient::builder(TokioExecutor::new()).build(HttpConnector::new()),
            https: OnceLock::new(),
            auth: Mutex::new(AuthState::default()),
            token_fetch: tokio::sync::Mutex::new(()),
            uploaded: AtomicU64::new(0),
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
        let resp = check(resp, &repo.registry, &format!("fetching {reference}")).await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let bytes = read_body(resp, &repo.registry).await?;
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
        check(
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

    /// A blob's content, verified against its digest; follows redirects to storage backends.
    pub async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<Bytes, Error> {
        let what = format!("blob {digest} in {repo}");
        let mut resp = self
            .send(Request {
                method: Method::GET,
                url: endpoint(repo, &format!("blobs/{digest}"))?,
                registry: &repo.registry,
                scopes: vec![scope(repo, "pull")],
                headers: Vec::new(),
                body: Bytes::new(),
            })
            .await?;
        let mut url = endpoint(repo, &format!("blobs/{digest}"))?;
        for _ in 0..MAX_REDIRECTS {
            if !resp.status().is_redirection() {
                break;
            }
            let location = location(&resp, &url, &repo.registry)?;
            // Storage backends get no registry credentials: the redirect URL carries its own.
            let req = http::Request::get(location.as_str())
                .header(header::USER_AGENT, USER_AGENT)
                .body(Full::new(Bytes::new()))
                .map_err(|e| Error::Invalid(e.to_string()))?;
            resp = self.execute(&location, req, &repo.registry).await?;
            url = location;
        }
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(what));
        }
        let resp = check(resp, &repo.registry, &format!("fetching {what}")).await?;
        let bytes = read_body(resp, &repo.registry).await?;
        if !digest.matches(&bytes) {
            return Err(Error::DigestMismatch { what });
        }
        Ok(bytes)
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
                check(resp, &to.registry, &format!("mounting {digest} into {to}")).await?;
                Err(Error::Protocol {
                    registry: to.registry.clone(),
                    detail: "unexpected answer to a blob mount".into(),
                })
            }
        }
    }

    /// Uploads a blob in one request, in `session` when the registry already opened one.
    pub async fn upload_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        data: Bytes,
        session: Option<Url>,
    ) -> Result<(), Error> {
        let scopes = vec![scope(repo, "pull,push")];
        let what = format!("uploading {digest} to {repo}");
        let session = match session {
            Some(s) => s,
            None => {
                let url = endpoint(repo, "blobs/uploads/")?;
                let resp = self
                    .send(Request {
                        method: Method::POST,
                        url: url.clone(),
                        registry: &repo.registry,
                        scopes: scopes.clone(),
                        headers: Vec::new(),
                        body: Bytes::new(),
                    })
                    .await?;
                let resp = check(resp, &repo.registry, &what).await?;
                location(&resp, &url, &repo.registry)?
            }
        };
        let mut put = session;
        put.query_pairs_mut().append_pair("digest", digest.as_str());
        let len = data.len() as u64;
        let resp = self
            .send(Request {
                method: Method::PUT,
                url: put,
                registry: &repo.registry,
                scopes,
                headers: vec![(header::CONTENT_TYPE, "application/octet-stream".into())],
                body: data,
            })
            .await?;
        check(resp, &repo.registry, &what).await?;
        self.uploaded.fetch_add(len, Ordering::Relaxed);
        tracing::debug!(%digest, %repo, bytes = len, "uploaded blob");
        Ok(())
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
                check(resp, &repo.registry, &format!("checking {repo}/{path}")).await?;
                Ok(false)
            }
        }
    }

    /// Sends a request, answering one authentication challenge on the way.
    async fn send(&self, req: Request<'_>) -> Result<Response<Incoming>, Error> {
        let mut answered = false;
        loop {
            let authorization = self.authorization(req.registry, &req.scopes).await?;
            let mut builder = http::Request::builder()
                .method(req.method.clone())
                .uri(req.url.as_str())
                .header(header::USER_AGENT, USER_AGENT);
            for (k, v) in &req.headers {
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
            let request = builder
                .body(Full::new(req.body.clone()))
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

    async fn execute(
        &self,
        url: &Url,
        request: http::Request<Full<Bytes>>,
        registry: &str,
    ) -> Result<Response<Incoming>, Error> {
        let result = if url.scheme() == "https" {
            self.https_client()?.request(request).await
        } else {
            self.http.request(request).await
        };
        result.map_err(|e| Error::Connect {
            registry: registry.to_string(),
            detail: flatten_error(&e),
        })
    }

    fn https_client(
        &self,
    ) -> Result<&HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>, Error> {
        if let Some(c) = self.https.get() {
            return Ok(c);
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match builder.with_provider_and_native_roots(provider.clone()) {
            Ok(b) => b.https_or_http().enable_http1().build(),
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
                    .build()
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
        let request = match &creds {
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
                http::Request::post(url.as_str())
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(header::USER_AGENT, USER_AGENT)
                    .body(Full::new(Bytes::from(form.finish())))
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
                let mut b = http::Request::get(url.as_str()).header(header::USER_AGENT, USER_AGENT);
                if let Some(c) = &creds {
                    let mut v = HeaderValue::from_str(&basic(c)).map_err(|_| {
                        Error::Invalid(
                            "credentials contain characters not allowed in an HTTP header".into(),
                        )
                    })?;
                    v.set_sensitive(true);
                    b = b.header(header::AUTHORIZATION, v);
                }
                b.body(Full::new(Bytes::new()))
            }
        }
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let what = format!(
            "getting a token for {registry} from {}",
            realm_for_display(realm)
        );
        let resp = self.execute(&url, request, registry).await?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                registry: registry.into(),
                detail: format!("{what}: {}", resp.status()),
            });
        }
        let resp = check(resp, registry, &what).await?;
        let body = read_body(resp, registry).await?;
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

/// Passes a successful response through; turns any other into an error with the registry's
/// own message (the distribution error JSON), never echoing request headers.
async fn check(
    resp: Response<Incoming>,
    registry: &str,
    what: &str,
) -> Result<Response<Incoming>, Error> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_body(resp, registry).await.unwrap_or_default();
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

async fn read_body(resp: Response<Incoming>, registry: &str) -> Result<Bytes, Error> {
    Ok(resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Connect {
            registry: registry.into(),
            detail: flatten_error(&e),
        })?
        .to_bytes())
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
}
