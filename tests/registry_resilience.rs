//! The registry client under trouble: `kiln imagetools create|inspect` through loopback proxies
//! that answer transient failures (503, 429 with `Retry-After`, a dropped connection) in front
//! of the real test registry succeed by retrying, and fail with one clear line when retries are
//! off; a registry that keeps failing costs a bounded number of attempts and time; a 401 or 404
//! is never repeated; and a cross-registry copy of an image with a 200 MiB layer streams it,
//! with kiln's peak memory far below the layer's size.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;

/// What the fault proxy does with one request instead of forwarding it.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answers with this raw status line and headers (an empty body follows).
    Answer(&'static str),
    /// Reads the request, then closes the connection without answering.
    Drop,
    /// Forwards the request, and changes the last byte of the registry's answer.
    Corrupt,
}

/// The token the Bearer-guarded proxy hands out and wants back.
const TOKEN: &str = "kiln-resilience-token";

const UNAVAILABLE: Fault = Fault::Answer("503 Service Unavailable");
const TOO_MANY: Fault = Fault::Answer("429 Too Many Requests\r\nRetry-After: 1");

/// Decides, from a request's kind (`GET manifests`, `PUT uploads`, …), its path and how many of
/// that kind came before it, whether to fail it.
type Plan = dyn Fn(&str, &str, usize) -> Option<Fault> + Send + Sync;

/// A loopback HTTP proxy in front of a real registry that fails requests as its plan says and
/// records the kind of every request it saw (failed ones included).
struct FaultProxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    fn start(upstream: String, plan: Box<Plan>) -> FaultProxy {
        FaultProxy::start_guarded(upstream, plan, false)
    }

    /// With `bearer`, the proxy also guards the registry with the Bearer token flow (a 401
    /// challenge naming its own `/token` endpoint, which it serves), as ghcr and Docker Hub do.
    fn start_guarded(upstream: String, plan: Box<Plan>, bearer: bool) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let plan: Arc<Plan> = Arc::from(plan);
        let s = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (s, p, u) = (s.clone(), plan.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = proxy_connection(client, &u, &s, &*p, bearer.then_some(port));
                });
            }
        });
        FaultProxy { port, seen }
    }

    fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many requests of each kind arrived.
    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for kind in self.seen.lock().unwrap().iter() {
            *counts.entry(kind.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// `METHOD CLASS` for a distribution API request.
fn kind_of(method: &str, path: &str) -> String {
    let class = if path.contains("/blobs/uploads/") && path.contains("mount=") {
        "mount"
    } else if path.contains("/blobs/uploads/") {
        "uploads"
    } else if path.contains("/blobs/") {
        "blobs"
    } else if path.contains("/manifests/") {
        "manifests"
    } else if path.starts_with("/token") {
        "token"
    } else {
        "other"
    };
    format!("{method} {class}")
}

/// One client connection: failed requests keep it open, a forwarded one is answered by a fresh
/// upstream connection and then both close (the answer is copied back byte for byte).
fn proxy_connection(
    client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<String>>,
    plan: &Plan,
    bearer_realm_port: Option<u16>,
) -> std::io::Result<()> {
    let mut writer = client.try_clone()?;
    let mut reader = BufReader::new(client);
    loop {
        let Some(head) = RequestHead::read(&mut reader)? else {
            return Ok(());
        };
        let (method, path) = (head.method.clone(), head.path.clone());
        let header = |name: &str| head.header(name);
        let chunked = head.chunked();
        let length = head.content_length();
        let kind = kind_of(&method, &path);
        let nth = {
            let mut seen = seen.lock().unwrap();
            let nth = seen.iter().filter(|k| **k == kind).count();
            seen.push(kind.clone());
            nth
        };
        match plan(&kind, &path, nth) {
            Some(fault @ (Fault::Drop | Fault::Answer(_))) => {
                copy_body(&mut reader, &mut std::io::sink(), chunked, length)?;
                match fault {
                    Fault::Drop => {
                        let _ = writer.shutdown(Shutdown::Both);
                        return Ok(());
                    }
                    Fault::Answer(status) => {
                        let resp = format!(
                            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
                        );
                        writer.write_all(resp.as_bytes())?;
                    }
                    Fault::Corrupt => unreachable!(),
                }
            }
            None if bearer_realm_port.is_some() && kind.ends_with(" token") => {
                let body = format!(r#"{{"token":"{TOKEN}"}}"#);
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                writer.write_all(resp.as_bytes())?;
            }
            None if bearer_realm_port.is_some()
                && header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) =>
            {
                copy_body(&mut reader, &mut std::io::sink(), chunked, length)?;
                let port = bearer_realm_port.unwrap_or_default();
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"kiln-test\"\r\nContent-Length: 0\r\n\r\n"
                );
                writer.write_all(resp.as_bytes())?;
            }
            forward => {
                let mut up = TcpStream::connect(upstream)?;
                let out = head.forwarded(&["connection"], "Connection: close\r\n");
                up.write_all(out.as_bytes())?;
                copy_body(&mut reader, &mut up, chunked, length)?;
                if matches!(forward, Some(Fault::Corrupt)) {
                    let mut answer = Vec::new();
                    up.read_to_end(&mut answer)?;
                    if let Some(last) = answer.last_mut() {
                        *last ^= 0xff;
                    }
                    writer.write_all(&answer)?;
                } else {
                    std::io::copy(&mut up, &mut writer)?;
                }
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
    }
}

/// Passes a request body on as it arrives (chunked framing kept), never holding it whole.
fn copy_body(
    reader: &mut BufReader<TcpStream>,
    to: &mut dyn Write,
    chunked: bool,
    length: u64,
) -> std::io::Result<()> {
    if !chunked {
        std::io::copy(&mut reader.take(length), to)?;
        return Ok(());
    }
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        to.write_all(size.as_bytes())?;
        let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        std::io::copy(&mut reader.take(n + 2), to)?;
        if n == 0 {
            return Ok(());
        }
    }
}

/// One plain HTTP/1.1 request to a test registry (answer read to the end); `body` is streamed
/// from a file when given as a path.
fn http(
    registry: &str,
    method: &str,
    path: &str,
    login: Option<&(String, String)>,
    body: Body,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(registry).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {registry}\r\nConnection: close\r\n");
    if let Some((u, p)) = login {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        head.push_str(&format!("Authorization: Basic {auth}\r\n"));
    }
    let len = match &body {
        Body::Bytes(b) => b.len() as u64,
        Body::File(p) => std::fs::metadata(p).unwrap().len(),
    };
    let content_type = if path.contains("/manifests/") {
        "application/vnd.oci.image.manifest.v1+json"
    } else {
        "application/octet-stream"
    };
    head.push_str(&format!(
        "Content-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    ));
    s.write_all(head.as_bytes()).unwrap();
    match body {
        Body::Bytes(b) => s.write_all(&b).unwrap(),
        Body::File(p) => {
            std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut s).unwrap();
        }
    }
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let text = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut lines = text.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (
        status.parse().unwrap(),
        headers,
        answer[split + 4..].to_vec(),
    )
}

enum Body<'a> {
    Bytes(Vec<u8>),
    File(&'a Path),
}

/// Uploads a blob in one PUT, as a registry client would, and returns its digest.
fn push_blob(registry: &str, repo: &str, body: Body, digest: &str) {
    let (status, headers, _) = http(
        registry,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        None,
        Body::Bytes(Vec::new()),
    );
    assert_eq!(status, 202, "starting an upload to {registry}/{repo}");
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .unwrap();
    let path = location
        .strip_prefix(&format!("http://{registry}"))
        .unwrap_or(&location)
        .to_string();
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, _, answer) = http(
        registry,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        None,
        body,
    );
    assert_eq!(
        status,
        201,
        "uploading {digest}: {}",
        String::from_utf8_lossy(&answer)
    );
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// Pushes an OCI image (one config, one layer from `layer`, which is `size` bytes with digest
/// `layer_digest`) to `registry/repo:tag` straight over HTTP; returns the manifest's digest.
fn push_image(
    registry: &str,
    repo: &str,
    tag: &str,
    layer: Body,
    layer_digest: &str,
    size: u64,
) -> String {
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {},
    })
    .to_string()
    .into_bytes();
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    push_blob(registry, repo, Body::Bytes(config.clone()), &config_digest);
    push_blob(registry, repo, layer, layer_digest);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": size,
        }],
    })
    .to_string()
    .into_bytes();
    let (status, _, answer) = http(
        registry,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        None,
        Body::Bytes(manifest.clone()),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&answer));
    format!("sha256:{}", sha256_hex(&manifest))
}

/// A small one-layer image in the plain test registry; returns its repository path.
fn small_image(name: &str) -> String {
    let repo = unique(name);
    let layer = format!("layer of {repo}\n").into_bytes();
    let digest = format!("sha256:{}", sha256_hex(&layer));
    let size = layer.len() as u64;
    push_image(
        &env("KILN_TEST_REGISTRY"),
        &repo,
        "v1",
        Body::Bytes(layer),
        &digest,
        size,
    );
    repo
}

/// Fails the first request of every kind with a 503, the second manifest GET with a 429 that
/// asks to wait a second, and drops the connection of the first blob HEAD.
fn flaky(kind: &str, _: &str, nth: usize) -> Option<Fault> {
    match (kind, nth) {
        ("HEAD blobs", 0) => Some(Fault::Drop),
        (_, 0) => Some(UNAVAILABLE),
        ("GET manifests", 1) => Some(TOO_MANY),
        _ => None,
    }
}

fn raw(user: &User, reference: &str) -> Vec<u8> {
    ok(user.kiln(&["imagetools", "inspect", "--raw", reference])).stdout
}

#[test]
fn transient_failures_are_retried_and_fail_clearly_without_retries() {
    let user = User::new(Engine::Modern);
    let plain = env("KILN_TEST_REGISTRY");
    let repo = small_image("kiln/resilience-src");
    let direct = format!("{plain}/{repo}:v1");

    // Within one registry (sources resolved, blobs mounted, manifests put), through failures.
    let proxy = FaultProxy::start(plain.clone(), Box::new(flaky));
    let merged = format!("{}/{repo}-merged:v1", proxy.registry());
    let started = Instant::now();
    let out = ok(user
        .kiln(&[
            "imagetools",
            "create",
            "--progress=plain",
            "-t",
            &merged,
            &format!("{}/{repo}:v1", proxy.registry()),
        ])
        .env("KILN_LOG", "kiln=debug"));
    let counts = proxy.counts();
    for kind in [
        "GET manifests",
        "HEAD manifests",
        "HEAD blobs",
        "POST mount",
        "PUT manifests",
    ] {
        assert!(
            counts.get(kind).copied().unwrap_or(0) >= 2,
            "{kind} not retried: {counts:?}"
        );
    }
    // The 503, then the 429 that asked for a second, then success.
    assert!(counts["GET manifests"] >= 3, "{counts:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        stderr(&out).contains("retrying registry request"),
        "{}",
        stderr(&out)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&raw(&user, &format!("{plain}/{repo}-merged:v1"))).unwrap();
    let source_digest = format!("sha256:{}", sha256_hex(&raw(&user, &direct)));
    assert_eq!(index["manifests"][0]["digest"], source_digest.as_str());

    // Across registries: blobs are uploaded, and a failed upload starts a new session.
    let proxy = FaultProxy::start(plain.clone(), Box::new(flaky));
    let copy = format!("{}/{repo}-copy:v1", proxy.registry());
    ok(user.kiln(&[
        "imagetools",
        "create",
        "--prefer-index=false",
        "-t",
        &copy,
        &direct,
    ]));
    let counts = proxy.counts();
    assert!(counts["PUT uploads"] >= 2, "{counts:?}");
    // Every PUT, the retried one too, went to a session of its own; the one extra POST is the
    // session request the first 503 refused.
    assert_eq!(
        counts["POST uploads"],
        counts["PUT uploads"] + 1,
        "{counts:?}"
    );
    assert_eq!(
        raw(&user, &format!("{plain}/{repo}-copy:v1")),
        raw(&user, &direct)
    );

    // Inspect through failures prints what it prints without them.
    let proxy = FaultProxy::start(plain.clone(), Box::new(flaky));
    let through = raw(&user, &format!("{}/{repo}:v1", proxy.registry()));
    assert_eq!(through, raw(&user, &direct));
    assert!(proxy.counts()["GET manifests"] >= 3, "{:?}", proxy.counts());

    // With retries off, the first 503 is the answer: one line naming the registry.
    let proxy = FaultProxy::start(plain.clone(), Box::new(flaky));
    let reference = format!("{}/{repo}:v1", proxy.registry());
    let err = fails(
        user.kiln(&["imagetools", "inspect", &reference])
            .env("KILN_REGISTRY_RETRIES", "0"),
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("503 Service Unavailable") && err.contains(&reference),
        "{err}"
    );
    assert_eq!(proxy.total(), 1);
    let proxy = FaultProxy::start(plain.clone(), Box::new(flaky));
    let reference = format!("{}/{repo}:v1", proxy.registry());
    let err = fails(
        user.kiln(&[
            "imagetools",
            "create",
            "-t",
            &format!("{}/{repo}-none:v1", proxy.registry()),
            &reference,
        ])
        .env("KILN_REGISTRY_RETRIES", "0"),
    );
    assert!(err.contains("503 Service Unavailable"), "{err}");

    // A value that is not a number of retries is refused, naming the variable.
    let err = fails(
        user.kiln(&["imagetools", "inspect", &direct])
            .env("KILN_REGISTRY_RETRIES", "lots"),
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("KILN_REGISTRY_RETRIES") && err.contains("\"lots\""),
        "{err}"
    );
}

#[test]
fn token_fetches_are_retried() {
    let user = User::new(Engine::Modern);
    let plain = env("KILN_TEST_REGISTRY");
    let repo = small_image("kiln/resilience-token");
    let direct = format!("{plain}/{repo}:v1");
    // Only the token endpoint fails: a 503, then a 429 asking for a second.
    let token_faults = |kind: &str, _: &str, nth: usize| match (kind, nth) {
        ("GET token", 0) => Some(UNAVAILABLE),
        ("GET token", 1) => Some(TOO_MANY),
        _ => None,
    };
    let proxy = FaultProxy::start_guarded(plain.clone(), Box::new(token_faults), true);
    let through = raw(&user, &format!("{}/{repo}:v1", proxy.registry()));
    assert_eq!(through, raw(&user, &direct));
    assert_eq!(proxy.counts()["GET token"], 3, "{:?}", proxy.counts());

    let proxy = FaultProxy::start_guarded(plain, Box::new(token_faults), true);
    let err = fails(
        user.kiln(&[
            "imagetools",
            "inspect",
            &format!("{}/{repo}:v1", proxy.registry()),
        ])
        .env("KILN_REGISTRY_RETRIES", "1"),
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("giving up after 2 attempts: getting a token for")
            && err.contains("429 Too Many Requests"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "{err}");
}

#[test]
fn a_registry_that_keeps_failing_costs_bounded_attempts_and_time() {
    let user = User::new(Engine::Modern);
    let proxy = FaultProxy::start(
        env("KILN_TEST_REGISTRY"),
        Box::new(|_: &str, _: &str, _: usize| Some(UNAVAILABLE)),
    );
    let reference = format!("{}/kiln/down:v1", proxy.registry());
    let started = Instant::now();
    let err = fails(user.kiln(&["imagetools", "inspect", &reference]));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&proxy.registry()) && err.contains("giving up after 3 attempts"),
        "{err}"
    );
    assert!(err.contains("503 Service Unavailable"), "{err}");
    assert_eq!(proxy.total(), 3);
    // 0.5 s and 1 s of backoff.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );

    let err = fails(
        user.kiln(&["imagetools", "inspect", &reference])
            .env("KILN_REGISTRY_RETRIES", "1"),
    );
    assert!(err.contains("giving up after 2 attempts"), "{err}");
    assert_eq!(proxy.total(), 5);

    // Nothing listening: refused connections are retried as well, then reported.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let err = fails(user.kiln(&["imagetools", "inspect", &format!("{address}/kiln/x:v1")]));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&address) && err.contains("giving up after 3 attempts"),
        "{err}"
    );
}

#[test]
fn unauthorized_and_not_found_are_not_retried() {
    let user = User::new(Engine::Modern);
    for (status, wanted) in [
        ("401 Unauthorized", "authentication failed"),
        ("404 Not Found", "not found"),
        ("403 Forbidden", "authentication failed"),
    ] {
        let proxy = FaultProxy::start(
            env("KILN_TEST_REGISTRY"),
            Box::new(move |_: &str, _: &str, _: usize| Some(Fault::Answer(status))),
        );
        let reference = format!("{}/kiln/guarded:v1", proxy.registry());
        let err = fails(user.kiln(&["imagetools", "inspect", &reference]));
        assert!(err.contains(wanted), "{status}: {err}");
        assert!(!err.contains("attempts"), "{status}: {err}");
        assert_eq!(proxy.total(), 1, "{status} was repeated");
    }
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_not_copied() {
    let user = User::new(Engine::Modern);
    let plain = env("KILN_TEST_REGISTRY");
    let repo = small_image("kiln/resilience-corrupt");
    let manifest: serde_json::Value =
        serde_json::from_slice(&raw(&user, &format!("{plain}/{repo}:v1"))).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let wanted = layer.clone();
    let layer_gets = Arc::new(AtomicUsize::new(0));
    let gets = layer_gets.clone();
    // The source answers the layer with one byte changed (same size); the target is the real
    // registry, so the blob is streamed across.
    let source = FaultProxy::start(
        plain.clone(),
        Box::new(move |kind: &str, path: &str, _: usize| {
            let hit = kind == "GET blobs" && path.ends_with(&wanted);
            if hit {
                gets.fetch_add(1, Ordering::SeqCst);
            }
            hit.then_some(Fault::Corrupt)
        }),
    );
    let target = format!("{plain}/{repo}-copy:v1");
    let err = fails(user.kiln(&[
        "imagetools",
        "create",
        "--prefer-index=false",
        "-t",
        &target,
        &format!("{}/{repo}:v1", source.registry()),
    ]));
    assert!(
        err.contains(&format!("blob {layer} in {}/{repo}", source.registry()))
            && err.contains("content does not match its digest"),
        "{err}"
    );
    // A mismatch is not transient: asked once, and nothing was stored.
    assert_eq!(layer_gets.load(Ordering::SeqCst), 1);
    let (status, _, _) = http(
        &plain,
        "HEAD",
        &format!("/v2/{repo}-copy/blobs/{layer}"),
        None,
        Body::Bytes(Vec::new()),
    );
    assert_eq!(status, 404);
}

/// Writes `size` bytes of incompressible data to `path` and returns their sha256 digest.
fn random_file(path: &Path, size: usize) -> String {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() {
        for word in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        file.write_all(&block).unwrap();
    }
    file.flush().unwrap();
    let out = ok(std::process::Command::new("sha256sum").arg(path));
    let hex = stdout(&out).split_whitespace().next().unwrap().to_string();
    format!("sha256:{hex}")
}

/// kiln's peak resident memory in KiB (`VmHWM`), read until it exits.
fn run_watching_memory(mut cmd: std::process::Command) -> (std::process::Output, u64) {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let peak = Arc::new(Mutex::new(0u64));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p, d) = (peak.clone(), done.clone());
    let watcher = std::thread::spawn(move || {
        while !d.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(text) = std::fs::read_to_string(&status_file) {
                let kib = text
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
                if let Some(kib) = kib {
                    let mut peak = p.lock().unwrap();
                    *peak = (*peak).max(kib);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watcher.join().unwrap();
    let peak = *peak.lock().unwrap();
    (out, peak)
}

#[test]
fn a_large_layer_is_streamed_between_registries() {
    const LAYER: usize = 200 << 20;
    let user = User::new(Engine::Modern);
    let plain = env("KILN_TEST_REGISTRY");
    let auth = env("KILN_TEST_AUTH_REGISTRY");
    let login = auth_registry_login();
    user.log_in(&auth, &login);

    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    let digest = random_file(&layer, LAYER);
    let repo = unique("kiln/resilience-big");
    push_image(
        &plain,
        &repo,
        "v1",
        Body::File(&layer),
        &digest,
        LAYER as u64,
    );
    drop(dir);

    let source = format!("{plain}/{repo}:v1");
    let target = format!("{auth}/{repo}:v1");
    let mut create = user.kiln(&[
        "imagetools",
        "create",
        "--progress=plain",
        "--prefer-index=false",
        "-t",
        &target,
        &source,
    ]);
    create.env("KILN_LOG", "kiln::registry=debug");
    let started = Instant::now();
    let (out, peak_kib) = run_watching_memory(create);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("copied blob"), "{log}");
    assert!(
        !log.contains(&env("KILN_TEST_AUTH_PASSWORD")),
        "the password leaked"
    );
    // Well below the layer: the copy goes through a few buffers, not the whole blob.
    assert!(
        peak_kib > 0 && peak_kib < 64 << 10,
        "peak RSS {peak_kib} KiB while copying a {} MiB layer",
        LAYER >> 20
    );
    eprintln!(
        "copied a {} MiB layer in {:?}, peak RSS {} MiB",
        LAYER >> 20,
        started.elapsed(),
        peak_kib >> 10
    );

    // The copy is the source: same manifest, so the same config and layer digests.
    assert_eq!(raw(&user, &target), raw(&user, &source));
    let manifest: serde_json::Value = serde_json::from_slice(&raw(&user, &target)).unwrap();
    assert_eq!(manifest["layers"][0]["digest"], digest.as_str());
    let login = (env("KILN_TEST_AUTH_USER"), env("KILN_TEST_AUTH_PASSWORD"));
    let (status, headers, _) = http(
        &auth,
        "HEAD",
        &format!("/v2/{repo}/blobs/{digest}"),
        Some(&login),
        Body::Bytes(Vec::new()),
    );
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-length" && *v == LAYER.to_string()),
        "{headers:?}"
    );
}
