//! `kiln imagetools create|inspect` against the test registries, with the reference buildx and
//! skopeo as oracles: merging two single-platform images into one index, byte-identical
//! `--dry-run` documents and `inspect` output, cross-repository merges that upload no blob bytes
//! (counted by a proxy in front of the registry), the htpasswd registry with and without
//! credentials, the Bearer token flow, and bad input.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use common::*;

/// What a pushed test image is made of.
#[derive(Clone, Copy)]
enum Kind {
    /// An OCI index of the image and its provenance attestation manifest.
    Attested,
    /// A lone image manifest with Docker media types (what a push without attestations gives).
    Docker,
    /// A lone image manifest with OCI media types.
    Oci,
}

/// A one-file image for `platform`, built `FROM scratch` (no emulation needed) and pushed.
fn push_image(user: &User, reference: &str, platform: &str, kind: Kind) {
    let ctx = tempfile::tempdir().unwrap();
    let content = format!("{reference} {platform}\n");
    write_tree(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY file /file\n"),
            ("file", content.as_str()),
        ],
    );
    let (provenance, output) = match kind {
        Kind::Attested => (
            "--provenance=mode=min",
            format!("type=image,name={reference},push=true"),
        ),
        Kind::Docker => (
            "--provenance=false",
            format!("type=image,name={reference},push=true"),
        ),
        Kind::Oci => (
            "--provenance=false",
            format!("type=image,name={reference},push=true,oci-mediatypes=true"),
        ),
    };
    ok(user.kiln(&[
        "build",
        "--progress=quiet",
        provenance,
        "--output",
        &output,
        "--platform",
        platform,
        ctx.path().to_str().unwrap(),
    ]));
}

/// A new repository `NAME-…` in the test registry holding `:amd64` and `:arm64`, one image of
/// `kind` for each platform.
fn two_platform_repo(user: &User, name: &str, kind: Kind) -> String {
    let repo = format!("{}/{}", env("KILN_TEST_REGISTRY"), unique(name));
    for arch in ["amd64", "arm64"] {
        push_image(
            user,
            &format!("{repo}:{arch}"),
            &format!("linux/{arch}"),
            kind,
        );
    }
    repo
}

/// A repository with attested `:amd64` and `:arm64` images, a Docker-media-type `:plain`, and
/// `:merged`, kiln's index of the first two. Returns the repository and the merged reference.
fn merged_repo(user: &User, name: &str) -> (String, String) {
    let repo = two_platform_repo(user, name, Kind::Attested);
    push_image(user, &format!("{repo}:plain"), "linux/arm64", Kind::Docker);
    let merged = format!("{repo}:merged");
    ok(user.kiln(&[
        "imagetools",
        "create",
        "-t",
        &merged,
        &format!("{repo}:amd64"),
        &format!("{repo}:arm64"),
    ]));
    (repo, merged)
}

fn raw_with_buildx(user: &User, reference: &str) -> serde_json::Value {
    let out = ok(user.buildx(&["imagetools", "inspect", "--raw", reference]));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn skopeo_raw(reference: &str) -> Vec<u8> {
    ok(std::process::Command::new(env("KILN_TEST_SKOPEO")).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .stdout
}

fn platforms_of(index: &serde_json::Value) -> BTreeSet<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| {
            let p = &m["platform"];
            let (os, arch) = (p["os"].as_str()?, p["architecture"].as_str()?);
            (os != "unknown").then(|| format!("{os}/{arch}"))
        })
        .collect()
}

/// buildx prints descriptor annotations in Go's random map order; kiln sorts them.
fn sorted_annotation_runs(text: &str) -> String {
    let mut out = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with("    ") && !line.trim().is_empty() {
            run.push(line);
            continue;
        }
        run.sort();
        out.append(&mut run);
        out.push(line);
    }
    run.sort();
    out.append(&mut run);
    out.join("\n")
}

/// Asserts kiln and buildx print the same for `imagetools inspect ARGS`.
fn same_inspect(user: &User, args: &[&str]) {
    let mut full = vec!["imagetools", "inspect"];
    full.extend_from_slice(args);
    let kiln = stdout(&ok(user.kiln(&full)));
    let buildx = stdout(&ok(user.buildx(&full)));
    assert_eq!(
        sorted_annotation_runs(&kiln),
        sorted_annotation_runs(&buildx),
        "kiln and buildx differ for {args:?}"
    );
}

/// A loopback HTTP proxy in front of the plain test registry that counts the request body bytes
/// sent to blob upload endpoints, optionally guarding the registry with a Bearer token flow.
///
/// The test registries only do Basic auth, so the Bearer flow (401 challenge, token endpoint,
/// retry with the token) is served here, in front of the real registry, which stores everything.
struct Proxy {
    port: u16,
    uploaded: Arc<AtomicU64>,
    mounts: Arc<AtomicU64>,
    token_requests: Arc<Mutex<Vec<TokenRequest>>>,
}

#[derive(Debug, Clone)]
struct TokenRequest {
    basic_user: Option<String>,
    scopes: Vec<String>,
}

#[derive(Clone)]
struct BearerGuard {
    /// When set, the token endpoint wants these Basic credentials (else anonymous is fine).
    login: Option<(String, String)>,
}

const TOKEN: &str = "kiln-test-token";

impl Proxy {
    fn start(bearer: Option<BearerGuard>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let uploaded = Arc::new(AtomicU64::new(0));
        let mounts = Arc::new(AtomicU64::new(0));
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let (u, m, t) = (uploaded.clone(), mounts.clone(), token_requests.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (u, m, t, b) = (u.clone(), m.clone(), t.clone(), bearer.clone());
                std::thread::spawn(move || {
                    let _ = serve(client, port, (u, m), t, b);
                });
            }
        });
        Proxy {
            port,
            uploaded,
            mounts,
            token_requests,
        }
    }

    fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::SeqCst)
    }
}

/// One client connection: frames each request, answers the Bearer flow itself, forwards the
/// rest to the registry; responses are copied back untouched by a second thread.
fn serve(
    client: TcpStream,
    port: u16,
    (uploaded, mounts): (Arc<AtomicU64>, Arc<AtomicU64>),
    tokens: Arc<Mutex<Vec<TokenRequest>>>,
    bearer: Option<BearerGuard>,
) -> std::io::Result<()> {
    let mut upstream = TcpStream::connect(env("KILN_TEST_REGISTRY"))?;
    let mut back = upstream.try_clone()?;
    let to_client = client.try_clone()?;
    let responder = Arc::new(Mutex::new(client.try_clone()?));
    let r2 = responder.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            match back.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if r2.lock().unwrap().write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    let mut reader = BufReader::new(client);
    loop {
        let Some(head) = RequestHead::read(&mut reader)? else {
            return Ok(());
        };
        let (method, path) = (head.method.clone(), head.path.clone());
        let header = |name: &str| head.header(name);
        let chunked = head.chunked();
        let length = head.content_length() as usize;
        let body = if chunked {
            read_chunked(&mut reader)?
        } else {
            let mut b = vec![0; length];
            reader.read_exact(&mut b)?;
            b
        };
        if let Some(guard) = &bearer {
            if path.starts_with("/token") {
                let basic_user = header("authorization").and_then(|a| {
                    let enc = a.strip_prefix("Basic ")?;
                    let dec = base64::engine::general_purpose::STANDARD.decode(enc).ok()?;
                    String::from_utf8(dec).ok()
                });
                let scopes = url_query_values(&path, "scope");
                tokens.lock().unwrap().push(TokenRequest {
                    basic_user: basic_user
                        .as_ref()
                        .map(|u| u.split(':').next().unwrap().to_string()),
                    scopes,
                });
                let allowed = match &guard.login {
                    None => true,
                    Some((u, p)) => basic_user.as_deref() == Some(&format!("{u}:{p}")),
                };
                let resp = if allowed {
                    let body = format!(r#"{{"access_token":"{TOKEN}","expires_in":300}}"#);
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string()
                };
                responder.lock().unwrap().write_all(resp.as_bytes())?;
                continue;
            }
            if header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
                let resp = format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"kiln-test\"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
                );
                responder.lock().unwrap().write_all(resp.as_bytes())?;
                continue;
            }
        }
        if path.contains("/blobs/uploads/") && matches!(method.as_str(), "PATCH" | "PUT" | "POST") {
            uploaded.fetch_add(body.len() as u64, Ordering::SeqCst);
            if path.contains("mount=") {
                mounts.fetch_add(1, Ordering::SeqCst);
            }
        }
        // Forward with a plain Content-Length body.
        let length = if !body.is_empty() || matches!(method.as_str(), "PUT" | "POST" | "PATCH") {
            format!("Content-Length: {}\r\n", body.len())
        } else {
            String::new()
        };
        let out = head.forwarded(&["transfer-encoding", "content-length"], &length);
        upstream.write_all(out.as_bytes())?;
        upstream.write_all(&body)?;
    }
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let n =
            usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk)?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

fn url_query_values(path: &str, key: &str) -> Vec<String> {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

#[test]
fn merge_two_platforms_across_repositories_without_uploading_blobs() {
    let user = User::new(Engine::Modern);
    let proxy = Proxy::start(None);
    let reg = proxy.registry();
    // The sources are pushed straight to the registry, and read back through the proxy.
    let direct = two_platform_repo(&user, "kiln/itools-src", Kind::Attested);
    let src_path = direct.split_once('/').unwrap().1;
    let src = format!("{reg}/{src_path}");
    let dst_path = unique("kiln/itools-dst");
    let dst = format!("{reg}/{dst_path}");
    // skopeo tries TLS first on a port it does not know; it reads the registry directly.
    let dst_direct = format!("{}/{dst_path}", env("KILN_TEST_REGISTRY"));
    let sources = [format!("{src}:amd64"), format!("{src}:arm64")];

    // The document is the one buildx would write, byte for byte.
    let mut dry = vec!["imagetools", "create", "--dry-run"];
    dry.extend(sources.iter().map(String::as_str));
    assert_eq!(stdout(&ok(user.kiln(&dry))), stdout(&ok(user.buildx(&dry))));

    let before = proxy.uploaded();
    let merged = format!("{dst}:merged");
    let mut create = vec!["imagetools", "create", "-t", &merged];
    create.extend(sources.iter().map(String::as_str));
    let out = ok(user.kiln(&create));
    let progress = stderr(&out);
    assert!(
        progress.contains(&format!("[internal] pushing {merged}")),
        "{progress}"
    );
    assert_eq!(
        proxy.uploaded() - before,
        0,
        "a merge in one registry mounts blobs; it must not upload any"
    );
    // Two images and two attestations, a config and a layer each, all new to the target.
    assert_eq!(proxy.mounts.load(Ordering::SeqCst), 8);

    let index = raw_with_buildx(&user, &merged);
    assert_eq!(
        platforms_of(&index),
        BTreeSet::from(["linux/amd64".to_string(), "linux/arm64".to_string()])
    );
    // Two images and their two attestation manifests.
    assert_eq!(index["manifests"].as_array().unwrap().len(), 4);
    let raw = ok(user.kiln(&["imagetools", "inspect", "--raw", &merged])).stdout;
    assert_eq!(raw, skopeo_raw(&format!("{dst_direct}:merged")));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap(),
        index
    );
    // Every image in the target repository is complete: skopeo can read its config.
    for m in index["manifests"].as_array().unwrap() {
        let by_digest = format!("{dst_direct}@{}", m["digest"].as_str().unwrap());
        let manifest: serde_json::Value = serde_json::from_slice(&skopeo_raw(&by_digest)).unwrap();
        assert!(manifest["config"]["digest"].is_string());
    }

    // Pushing the same merge again finds everything in place.
    ok(user.kiln(&create));
    assert_eq!(proxy.uploaded() - before, 0);
}

#[test]
fn inspect_prints_what_buildx_prints() {
    let user = User::new(Engine::Modern);
    let (repo, merged) = merged_repo(&user, "kiln/itools-inspect");
    push_image(&user, &format!("{repo}:oci"), "linux/amd64", Kind::Oci);
    let formats = [
        "{{json .Manifest}}",
        "{{json .Image}}",
        "{{json .Provenance}}",
        "{{json .SBOM}}",
        "{{.Name}}",
        "{{.Manifest.Digest}}",
        "name={{.Name}} {{json .Image}}\n",
    ];
    for image in [
        merged.as_str(),
        &format!("{repo}:amd64"),
        &format!("{repo}:plain"),
        &format!("{repo}:oci"),
    ] {
        same_inspect(&user, &[image]);
        same_inspect(&user, &["--raw", image]);
        for f in formats {
            same_inspect(&user, &["--format", f, image]);
        }
    }
    // --platform keeps the matching images and their attestations, as buildx does.
    let filtered = [
        "imagetools",
        "create",
        "--dry-run",
        "--platform",
        "linux/arm64",
        &merged,
    ];
    let kiln = stdout(&ok(user.kiln(&filtered)));
    assert_eq!(kiln, stdout(&ok(user.buildx(&filtered))));
    let index: serde_json::Value = serde_json::from_str(&kiln).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2, "{kiln}");
    let none = [
        "imagetools",
        "create",
        "--dry-run",
        "-p",
        "linux/s390x",
        &merged,
    ];
    let err = fails(user.kiln(&none));
    assert_eq!(err, stderr(&run(user.buildx(&none))));
    assert!(err.contains("none of the manifests match"), "{err}");

    // The provenance of a merged index is keyed by platform and names the build's frontend.
    let prov = stdout(&ok(user.kiln(&[
        "imagetools",
        "inspect",
        "--format",
        "{{json .Provenance}}",
        &merged,
    ])));
    let prov: serde_json::Value = serde_json::from_str(&prov).unwrap();
    assert!(
        prov["linux/arm64"]["SLSA"]["buildType"].is_string(),
        "{prov}"
    );
}

#[test]
fn single_sources_append_and_annotations_follow_buildx() {
    let user = User::new(Engine::Modern);
    let repo = two_platform_repo(&user, "kiln/itools-append", Kind::Docker);
    let amd64 = format!("{repo}:amd64");
    let arm64 = format!("{repo}:arm64");

    // One image: wrapped in an index by default, copied as it is with --prefer-index=false.
    for extra in [None, Some("--prefer-index=false")] {
        let mut args = vec!["imagetools", "create", "--dry-run"];
        args.extend(extra);
        args.push(&amd64);
        assert_eq!(
            stdout(&ok(user.kiln(&args))),
            stdout(&ok(user.buildx(&args)))
        );
    }
    let copy = format!("{repo}:copy");
    ok(user.kiln(&[
        "imagetools",
        "create",
        "--prefer-index=false",
        "-t",
        &copy,
        &amd64,
    ]));
    assert_eq!(skopeo_raw(&copy), skopeo_raw(&amd64));

    // Annotations on the index and on one platform's descriptor (OCI indexes only: buildx drops
    // them from a Docker manifest list, and so does kiln).
    let oci_amd64 = format!("{repo}:oci-amd64");
    let oci_arm64 = format!("{repo}:oci-arm64");
    push_image(&user, &oci_amd64, "linux/amd64", Kind::Oci);
    push_image(&user, &oci_arm64, "linux/arm64", Kind::Oci);
    let annotated = [
        "imagetools",
        "create",
        "--dry-run",
        "--annotation",
        "index:org.opencontainers.image.title=kiln <merged> & co",
        "--annotation",
        "manifest-descriptor[linux/arm64]:com.example.arch=arm",
        &oci_amd64,
        &oci_arm64,
    ];
    let kiln = stdout(&ok(user.kiln(&annotated)));
    assert_eq!(kiln, stdout(&ok(user.buildx(&annotated))));
    assert!(kiln.contains("\\u003cmerged\\u003e \\u0026 co"), "{kiln}");
    assert!(kiln.contains("com.example.arch"), "{kiln}");
    let mut docker = annotated;
    docker[7] = &amd64;
    docker[8] = &arm64;
    let kiln = stdout(&ok(user.kiln(&docker)));
    assert_eq!(kiln, stdout(&ok(user.buildx(&docker))));
    assert!(!kiln.contains("annotations"), "{kiln}");

    // --append: the tag's manifests come first, then the new source.
    let tag = format!("{repo}:multi");
    ok(user.kiln(&["imagetools", "create", "-t", &tag, &amd64]));
    ok(user.kiln(&["imagetools", "create", "--append", "-t", &tag, &arm64]));
    let index: serde_json::Value = serde_json::from_slice(&skopeo_raw(&tag)).unwrap();
    assert_eq!(
        platforms_of(&index),
        BTreeSet::from(["linux/amd64".to_string(), "linux/arm64".to_string()])
    );

    // Sources by digest and as a descriptor file live in the tag's repository.
    let arm_digest = stdout(&ok(user.kiln(&[
        "imagetools",
        "inspect",
        "--format",
        "{{json .Manifest}}",
        &arm64,
    ])));
    let arm_desc: serde_json::Value = serde_json::from_str(&arm_digest).unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut desc = arm_desc.clone();
    desc["annotations"] = serde_json::json!({"com.example.from": "file"});
    // Without a media type: buildx resolves a descriptor that has one as `REPO:latest` when
    // other sources are references (kiln fetches it by its digest either way).
    desc.as_object_mut().unwrap().remove("mediaType");
    std::fs::write(file.path(), desc.to_string()).unwrap();
    let amd_digest = serde_json::from_str::<serde_json::Value>(&stdout(&ok(user.kiln(&[
        "imagetools",
        "inspect",
        "--format",
        "{{json .Manifest}}",
        &amd64,
    ]))))
    .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let by_digest = [
        "imagetools",
        "create",
        "--dry-run",
        "-t",
        &tag,
        "-f",
        file.path().to_str().unwrap(),
        &amd_digest,
    ];
    let kiln = stdout(&ok(user.kiln(&by_digest)));
    assert_eq!(kiln, stdout(&ok(user.buildx(&by_digest))));
    assert!(kiln.contains("com.example.from"), "{kiln}");
}

#[test]
fn the_auth_registry_needs_credentials_from_docker_config() {
    let user = User::new(Engine::Modern);
    let plain = two_platform_repo(&user, "kiln/itools-authsrc", Kind::Docker);
    let auth_reg = env("KILN_TEST_AUTH_REGISTRY");
    let target = format!("{auth_reg}/{}:merged", unique("kiln/itools-auth"));
    let create = [
        "imagetools",
        "create",
        "-t",
        &target,
        &format!("{plain}:amd64"),
        &format!("{plain}:arm64"),
    ];

    let err = fails(user.kiln(&create));
    assert!(
        err.contains(&format!("{auth_reg} requires authentication")),
        "{err}"
    );
    assert!(err.contains("docker login"), "{err}");
    // The push step shows the failure (as buildx's does); the last line is the error.
    let last = err.trim().lines().last().unwrap_or("");
    assert!(
        last.starts_with("ERROR: pushing ") && last.contains("docker login"),
        "{err}"
    );

    user.log_in(&auth_reg, &auth_registry_login());
    // Another registry: the blobs are copied (a mount cannot cross registries).
    let out = ok(user.kiln(&create));
    let inspected = ok(user.kiln(&["imagetools", "inspect", "--raw", &target]));
    let index: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let password = env("KILN_TEST_AUTH_PASSWORD");
    for text in [stdout(&out), stderr(&out), err] {
        assert!(!text.contains(&password), "the password leaked");
    }
    // Wrong credentials are refused, and still without echoing them.
    user.log_in(&auth_reg, "kiln:not-the-password");
    let err = fails(user.kiln(&["imagetools", "inspect", &target]));
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

#[test]
fn bearer_token_flow_with_and_without_a_login() {
    let user = User::new(Engine::Modern);
    let plain = two_platform_repo(&user, "kiln/itools-bearer", Kind::Docker);
    let path = plain.split_once('/').unwrap().1.to_string();

    // Anonymous: the token endpoint is asked without credentials.
    let open = Proxy::start(Some(BearerGuard { login: None }));
    let repo = format!("{}/{path}", open.registry());
    let target = format!("{}/{path}-merged:v1", open.registry());
    ok(user.kiln(&[
        "imagetools",
        "create",
        "-t",
        &target,
        &format!("{repo}:amd64"),
        &format!("{repo}:arm64"),
    ]));
    let requests = open.token_requests.lock().unwrap().clone();
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|r| r.basic_user.is_none()),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r
            .scopes
            .contains(&format!("repository:{path}-merged:pull,push"))),
        "{requests:?}"
    );
    // Tokens are cached per scope: far fewer token requests than registry requests.
    assert!(requests.len() <= 6, "{requests:?}");
    same_inspect(&user, &[&target]);

    // With a login: the token endpoint gets Basic credentials, and refuses without them.
    let guarded = Proxy::start(Some(BearerGuard {
        login: Some((env("KILN_TEST_AUTH_USER"), env("KILN_TEST_AUTH_PASSWORD"))),
    }));
    let target = format!("{}/{path}-merged:v1", guarded.registry());
    let err = fails(user.kiln(&["imagetools", "inspect", &target]));
    assert!(
        err.contains("authentication failed") && err.contains("token"),
        "{err}"
    );
    user.log_in(&guarded.registry(), &auth_registry_login());
    let out = stdout(&ok(user.kiln(&["imagetools", "inspect", &target])));
    assert!(out.contains("linux/arm64"), "{out}");
    let requests = guarded.token_requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.basic_user.as_deref() == Some(&env("KILN_TEST_AUTH_USER"))),
        "{requests:?}"
    );
}

#[test]
fn bad_input_is_one_line_naming_it() {
    let user = User::new(Engine::Modern);
    let reg = env("KILN_TEST_REGISTRY");
    let cases: [(&[&str], &str); 8] = [
        (
            &["imagetools", "create", "-t", "x/y:z"],
            "no sources specified",
        ),
        (
            &["imagetools", "create", "busybox"],
            "can't push with no tags specified",
        ),
        (
            &["imagetools", "create", "--dry-run", "Not/A:Ref:"],
            "failed to parse source",
        ),
        (
            &[
                "imagetools",
                "create",
                "--dry-run",
                "-f",
                "/nonexistent/desc.json",
            ],
            "/nonexistent/desc.json",
        ),
        (
            &["imagetools", "create", "-t", "BAD:tag", "busybox"],
            "invalid tag",
        ),
        (
            &["imagetools", "inspect", "--format", "{{.Nope}}", "busybox"],
            "can't evaluate field Nope",
        ),
        (
            &[
                "imagetools",
                "inspect",
                "--raw",
                "--format",
                "{{.Name}}",
                "busybox",
            ],
            "format and raw cannot be used together",
        ),
        (
            &[
                "imagetools",
                "create",
                "--dry-run",
                "--annotation",
                "nokey",
                "busybox",
            ],
            "invalid annotation",
        ),
    ];
    for (args, wanted) in cases {
        let err = fails(user.kiln(args));
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let missing = format!("{reg}/{}:nothing", unique("kiln/itools-missing"));
    let err = fails(user.kiln(&["imagetools", "inspect", &missing]));
    assert!(err.contains(&missing) && err.contains("not found"), "{err}");
    let err = fails(user.kiln(&["imagetools", "create", "--dry-run", &missing]));
    assert!(err.contains(&format!("source {missing}")), "{err}");
}

/// How a hostile or broken loopback registry answers every request.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// `200` with a manifest media type and a chunked body that never ends.
    EndlessBody,
    /// `404` with an error body that never ends.
    EndlessError,
    /// `200` headers and a few bytes, then silence.
    StalledBody,
    /// Accepts the connection, reads the request, never answers.
    NoHeaders,
}

/// A loopback server that misbehaves as told; its address as a registry host.
fn misbehaving_registry(how: Misbehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let mut out = client;
                let head = match how {
                    Misbehaviour::EndlessBody | Misbehaviour::StalledBody => {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    }
                    Misbehaviour::EndlessError => {
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    }
                    Misbehaviour::NoHeaders => {
                        std::thread::sleep(std::time::Duration::from_secs(120));
                        return;
                    }
                };
                if out.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 65536, " ".repeat(65536));
                match how {
                    Misbehaviour::StalledBody => {
                        let _ = out.write_all(b"1\r\n{\r\n");
                        std::thread::sleep(std::time::Duration::from_secs(120));
                    }
                    _ => while out.write_all(chunk.as_bytes()).is_ok() {},
                }
            });
        }
    });
    addr.to_string()
}

#[test]
fn hostile_registries_neither_exhaust_memory_nor_hang() {
    let user = User::new(Engine::Modern);
    let cases = [
        (Misbehaviour::EndlessBody, "is larger than 4 MiB"),
        (Misbehaviour::EndlessError, "not found"),
        (Misbehaviour::StalledBody, "timed out: reading manifest"),
        (
            Misbehaviour::NoHeaders,
            "timed out: GET /v2/app/manifests/latest",
        ),
    ];
    for (how, wanted) in cases {
        let registry = misbehaving_registry(how);
        let reference = format!("{registry}/app:latest");
        let started = std::time::Instant::now();
        let err = fails(
            user.kiln(&["imagetools", "inspect", &reference])
                .env("KILN_REGISTRY_TIMEOUT_SECS", "2"),
        );
        assert!(err.contains(wanted) && err.contains(&registry), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
    }

    // Ctrl-C still ends a wait on a silent registry at once, with 130.
    let registry = misbehaving_registry(Misbehaviour::NoHeaders);
    let mut child = user
        .kiln(&["imagetools", "inspect", &format!("{registry}/app:latest")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// `--format` templates beyond plain fields (`range`, `if`, `with`, variables, `index`, `len`,
/// `printf`, pipelines, literals, comments, `{{json .}}`) print what buildx prints, and fail
/// where it fails with its message, on an attested index, one of its images and a lone manifest.
#[test]
fn inspect_templates_follow_go_text_template() {
    let user = User::new(Engine::Modern);
    let (repo, merged) = merged_repo(&user, "kiln/itools-template");
    let formats = [
        "{{json .}}",
        r#"{{json (index .Image "linux/arm64")}}"#,
        "{{range .Manifest.Manifests}}{{.Digest}} {{end}}",
        "{{range $i, $m := .Manifest.Manifests}}{{$i}}={{$m.Digest}};{{else}}none{{end}}",
        r#"{{range .Manifest.Manifests}}{{if eq .Platform.OS "linux"}}{{.Platform.Architecture}} {{end}}{{end}}"#,
        r#"{{if .Name}}yes{{else}}no{{end}}"#,
        "{{with .Manifest}}{{.MediaType}}{{end}}",
        "{{len .Image}}",
        "{{len .Manifest.Manifests}}",
        r#"{{printf "%s" .Name}}"#,
        r#"{{.Name | printf "%q"}}"#,
        r#"{{/* a comment */}}x{{"lit"}} {{`raw`}}"#,
        "a  {{- .Name -}}  b",
        "{{.Image.Config.Env}}",
        "{{.Image.Architecture}}",
        "{{json .Manifest.Manifests}}",
        "x{{.Manifest.Digest}}",
        "{{$n := .Name}}{{$n}} {{$.Manifest.Size}}",
        "{{.Image.Created}} {{range .Image.History}}{{.CreatedBy}}|{{end}}",
        "{{.Provenance}}",
        "{{.SBOM}}",
        "{{.Provenance.SLSA.invocation.parameters.locals}}",
        "{{range $p, $v := .Provenance}}{{$p}}={{$v.SLSA.buildType}};{{end}}",
        r#"{{(index .Provenance "linux/arm64").SLSA.builder}}"#,
        r#"{{if and .Name (gt .Manifest.Size 100)}}big{{end}}"#,
        "{{eq .Name 1}}",
        "{{.Name.Foo}}",
        "{{nope .Name}}",
        "{{.Image.Nope}}",
        "{{range .Manifest.Manifests}}{{.Nope}}{{end}}",
        "{{index .Manifest.Manifests 0 | len}}",
    ];
    for image in [
        merged.as_str(),
        &format!("{repo}:amd64"),
        &format!("{repo}:plain"),
    ] {
        for f in formats {
            let args = ["imagetools", "inspect", "--format", f, image];
            let (kiln, buildx) = (run(user.kiln(&args)), run(user.buildx(&args)));
            assert_eq!(
                (kiln.status.code(), stdout(&kiln), stderr(&kiln)),
                (buildx.status.code(), stdout(&buildx), stderr(&buildx)),
                "kiln and buildx differ for --format {f:?} on {image}"
            );
        }
    }
    let by_platform = "{{range $p, $img := .Image}}{{$p}}: {{$img.Architecture}}\n{{end}}";
    same_inspect(&user, &["--format", by_platform, &merged]);
    // buildx prints typed structs with `%v` (pointer addresses included); kiln asks for json.
    let single = format!("{repo}:amd64");
    let err = fails(user.kiln(&["imagetools", "inspect", "--format", by_platform, &single]));
    assert!(
        err.contains(":1:20: executing \"\" at <.Image>: range can't iterate over"),
        "{err}"
    );
    let err = fails(user.kiln(&["imagetools", "inspect", "--format", "{{.Image}}", &single]));
    assert!(err.contains("json"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_tag_with_a_digest_pushes_by_digest_only() {
    let user = User::new(Engine::Modern);
    let repo = two_platform_repo(&user, "kiln/itools-bydigest", Kind::Docker);
    let sources = [format!("{repo}:amd64"), format!("{repo}:arm64")];
    let mut dry = vec!["imagetools", "create", "--dry-run"];
    dry.extend(sources.iter().map(String::as_str));
    let index = ok(user.kiln(&dry)).stdout;
    let digest = format!("sha256:{}", sha256_hex(index.trim_ascii_end()));
    let target = format!(
        "{}/{}",
        env("KILN_TEST_REGISTRY"),
        unique("kiln/itools-bydigest-t")
    );

    // The wrong digest is refused and pushes nothing.
    let wrong = format!("{target}@sha256:{}", "0".repeat(64));
    let mut args = vec!["imagetools", "create", "-t", &wrong];
    args.extend(sources.iter().map(String::as_str));
    let err = fails(user.kiln(&args));
    assert!(
        err.contains(&format!("the merged image's digest is {digest}")),
        "{err}"
    );

    let pinned = format!("{target}@{digest}");
    let mut args = vec!["imagetools", "create", "-t", &pinned];
    args.extend(sources.iter().map(String::as_str));
    ok(user.kiln(&args));
    assert_eq!(skopeo_raw(&pinned), index.trim_ascii_end());
    // No tag was created (buildx pushes by digest too; kiln once pushed `latest`).
    let latest = run(std::process::Command::new(env("KILN_TEST_SKOPEO")).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{target}:latest"),
    ]));
    assert!(!latest.status.success());
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}
