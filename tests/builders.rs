//! End-to-end: builder instances (`create`, `ls`, `inspect`, `use`, `rm`, `stop`) against the
//! real Docker Engines of the test environment (`scripts/testenv.sh up`), compared with the
//! reference `docker buildx` on the same engines.
//!
//! Every test runs the `kiln` binary with its own temporary `KILN_CONFIG` and `DOCKER_CONFIG`.
//! A missing engine fails the suite: these tests never skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// A variable the test environment must provide; panics (never skips) when it is missing.
fn testenv(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: start the test environment with `scripts/testenv.sh up` and \
             `source /run/kiln-testenv/env` before running these tests"
        ),
    }
}

fn engine28() -> String {
    testenv("KILN_TEST_ENGINE28_HOST")
}

fn engine20() -> String {
    testenv("KILN_TEST_ENGINE20_HOST")
}

/// One user's session: a kiln config dir, a Docker config dir, and the Docker host they use.
struct Session {
    kiln_config: tempfile::TempDir,
    docker_config: tempfile::TempDir,
    buildx_config: tempfile::TempDir,
    docker_host: Option<String>,
}

impl Session {
    fn new(docker_host: Option<String>) -> Session {
        Session {
            kiln_config: tempfile::tempdir().unwrap(),
            docker_config: tempfile::tempdir().unwrap(),
            buildx_config: tempfile::tempdir().unwrap(),
            docker_host,
        }
    }

    fn on(host: String) -> Session {
        Session::new(Some(host))
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("KILN_CONFIG", self.kiln_config.path())
            .env("DOCKER_CONFIG", self.docker_config.path())
            .env("BUILDX_CONFIG", self.buildx_config.path())
            .env_remove("BUILDX_BUILDER")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("KILN_LOG");
        match &self.docker_host {
            Some(h) => cmd.env("DOCKER_HOST", h),
            None => cmd.env_remove("DOCKER_HOST"),
        };
        cmd
    }

    fn kiln(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_kiln"))
            .args(args)
            .output()
            .unwrap()
    }

    fn buildx(&self, args: &[&str]) -> Output {
        self.command(&testenv("KILN_TEST_BUILDX"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs kiln and returns stdout, failing the test with stderr if kiln failed.
    fn kiln_ok(&self, args: &[&str]) -> String {
        let out = self.kiln(args);
        assert!(
            out.status.success(),
            "kiln {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn buildx_ok(&self, args: &[&str]) -> String {
        let out = self.buildx(args);
        assert!(
            out.status.success(),
            "docker-buildx {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes a Docker context the way `docker context create` stores it.
    fn add_docker_context(&self, name: &str, host: &str) {
        let id = hex::encode(Sha256::digest(name.as_bytes()));
        let dir = self.docker_config.path().join("contexts/meta").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = serde_json::json!({
            "Name": name,
            "Metadata": {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}},
        });
        std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    }

    fn set_current_context(&self, name: &str) {
        let cfg = serde_json::json!({"currentContext": name});
        std::fs::write(
            self.docker_config.path().join("config.json"),
            cfg.to_string(),
        )
        .unwrap();
    }

    /// Every file under the kiln config dir with its contents (the lock file aside).
    fn store_snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else if p.file_name().unwrap() != ".lock" {
                    out.insert(
                        p.strip_prefix(root).unwrap().to_path_buf(),
                        std::fs::read(&p).unwrap(),
                    );
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(self.kiln_config.path(), self.kiln_config.path(), &mut out);
        out
    }

    fn ls_json(&self) -> Vec<serde_json::Value> {
        self.kiln_ok(&["ls", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The builder of that name in `ls --format json` output.
fn builder<'a>(ls: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    ls.iter().find(|b| b["Name"] == name)
}

#[test]
fn create_ls_inspect_use_rm_round_trip() {
    let s = Session::on(engine28());
    assert_eq!(
        s.kiln_ok(&["create", "--name", "old", "--driver", "docker", &engine20()]),
        "old\n"
    );
    assert_eq!(
        s.kiln_ok(&[
            "create",
            "--name",
            "new",
            "--platform",
            "linux/arm64",
            &engine28()
        ]),
        "new\n"
    );

    let table = s.kiln_ok(&["ls"]);
    assert!(table.starts_with("NAME/NODE "), "{table}");
    assert!(table.contains("\nold "), "{table}");
    assert!(
        table.contains(&format!(" \\_ old0       \\_ {}", engine20())),
        "{table}"
    );
    assert!(table.contains("default*"), "{table}");

    let ls = s.ls_json();
    let old = builder(&ls, "old").unwrap();
    assert_eq!(old["Driver"], "docker");
    assert_eq!(old["Nodes"][0]["Status"], "running");
    assert_eq!(old["Nodes"][0]["Version"], "v0.8+unknown");
    assert_ne!(old["LastActivity"], "0001-01-01T00:00:00Z");
    let new = builder(&ls, "new").unwrap();
    assert_eq!(new["Nodes"][0]["Platforms"][0], "linux/arm64");

    let inspect = s.kiln_ok(&["inspect", "new"]);
    assert!(inspect.starts_with("Name:          new\nDriver:        docker\nLast Activity: "));
    assert!(inspect.contains("Name:             new0\n"), "{inspect}");
    assert!(inspect.contains("Status:           running\n"), "{inspect}");
    assert!(
        inspect.contains("Platforms:        linux/arm64*, linux/amd64"),
        "{inspect}"
    );

    // `use` makes it current for this Docker endpoint; `inspect` without a name follows.
    s.kiln_ok(&["use", "old"]);
    assert!(s.kiln_ok(&["ls"]).contains("\nold*"));
    assert!(s.kiln_ok(&["inspect"]).starts_with("Name:          old\n"));
    assert_eq!(builder(&s.ls_json(), "old").unwrap()["Current"], true);
    // --builder wins over the current builder.
    assert!(s
        .kiln_ok(&["--builder", "new", "inspect"])
        .starts_with("Name:          new\n"));
    s.kiln_ok(&["stop", "old"]);

    let out = s.kiln(&["rm", "old"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "old removed\n");
    let ls = s.ls_json();
    assert!(builder(&ls, "old").is_none());
    // With its builder gone, the endpoint falls back to its Docker context's builder.
    assert_eq!(builder(&ls, "default").unwrap()["Current"], true);

    s.kiln_ok(&["use", "new"]);
    s.kiln_ok(&["use", "default"]);
    assert_eq!(builder(&s.ls_json(), "default").unwrap()["Current"], true);
}

#[test]
fn ls_and_inspect_match_buildx_on_both_engines() {
    for host in [engine28(), engine20()] {
        let s = Session::on(host.clone());
        for args in [&["ls"][..], &["inspect"], &["inspect", "default"]] {
            assert_eq!(
                s.kiln_ok(args),
                s.buildx_ok(args),
                "kiln {args:?} differs from docker buildx on {host}"
            );
        }
        let kiln: serde_json::Value =
            serde_json::from_str(s.kiln_ok(&["ls", "--format", "json"]).trim()).unwrap();
        let buildx: serde_json::Value =
            serde_json::from_str(s.buildx_ok(&["ls", "--format", "json"]).trim()).unwrap();
        assert_eq!(kiln, buildx, "ls --format json differs on {host}");
    }
}

#[test]
fn docker_contexts_are_builders_as_in_buildx() {
    let s = Session::new(None);
    s.add_docker_context("e28", &engine28());
    s.add_docker_context("e20", &engine20());
    s.set_current_context("e28");
    for args in [&["ls"][..], &["inspect"], &["inspect", "e20"]] {
        assert_eq!(s.kiln_ok(args), s.buildx_ok(args), "kiln {args:?} differs");
    }
    // BUILDX_BUILDER names a context: its engine answers.
    let out = s
        .command(env!("CARGO_BIN_EXE_kiln"))
        .env("BUILDX_BUILDER", "e20")
        .arg("inspect")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("BuildKit version: v0.8+unknown"), "{text}");
    // DOCKER_CONTEXT overrides config.json's currentContext.
    let out = s
        .command(env!("CARGO_BIN_EXE_kiln"))
        .env("DOCKER_CONTEXT", "e20")
        .args(["ls", "--format", "json"])
        .output()
        .unwrap();
    let ls: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(builder(&ls, "e20").unwrap()["Current"], true);

    // A context builder can be created on, but not removed.
    assert_eq!(
        s.kiln_ok(&["create", "--name", "via-ctx", "e20"]),
        "via-ctx\n"
    );
    let ls = s.ls_json();
    assert_eq!(
        builder(&ls, "via-ctx").unwrap()["Nodes"][0]["Endpoint"],
        "e20"
    );
    assert_eq!(
        builder(&ls, "via-ctx").unwrap()["Nodes"][0]["Version"],
        "v0.8+unknown"
    );
    let out = s.kiln(&["rm", "e20"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "failed to remove e20: context builder cannot be removed, run `docker context rm e20` to remove this context\n\
         ERROR: failed to remove one or more builders\n"
    );
}

#[test]
fn unreachable_context_is_reported_like_buildx() {
    let s = Session::on(engine28());
    s.add_docker_context("ghost", "unix:///nonexistent/docker.sock");
    let kiln = s.kiln(&["ls"]);
    assert!(kiln.status.success());
    let buildx = s.buildx(&["ls"]);
    assert_eq!(
        String::from_utf8_lossy(&kiln.stdout),
        String::from_utf8_lossy(&buildx.stdout)
    );
    assert!(
        stderr(&kiln).starts_with("\nCannot load builder ghost: "),
        "{}",
        stderr(&kiln)
    );
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_the_store_alone() {
    let s = Session::on(engine28());
    s.add_docker_context("ctx", &engine20());
    s.kiln_ok(&["create", "--name", "taken", &engine28()]);
    let before = s.store_snapshot();
    let cases: &[(&[&str], &str)] = &[
        (&["create", "--name", "x", "--driver", "nope"], "ERROR: failed to find driver \"nope\""),
        (
            &["create", "--name", "taken", &engine20()],
            "ERROR: existing instance for \"taken\" but no append mode, specify the node name to make changes for existing instances",
        ),
        (
            &["create", "--name", "x", "--driver-opt", "novalue"],
            "ERROR: invalid value \"novalue\", expecting k=v",
        ),
        (
            &["create", "--name", "x", "--driver-opt", "image=moby/buildkit"],
            "ERROR: invalid driver option \"image\": the docker driver takes no driver options",
        ),
        (
            &["create", "--name", "x", "--platform", "linux/amd64/v2/extra"],
            "ERROR: \"linux/amd64/v2/extra\": cannot parse platform specifier: invalid argument",
        ),
        (
            &["create", "--name", "default"],
            "ERROR: default is a reserved name and cannot be used to identify builder instance",
        ),
        (
            &["create", "--name", "1x"],
            "ERROR: invalid name 1x, name needs to start with a letter and may not contain symbols, except ._-",
        ),
        (
            &["create", "--name", "ctx"],
            "ERROR: instance name \"ctx\" already exists as context builder",
        ),
        (
            &["create", "--name", "x", "ftp://nowhere"],
            "ERROR: failed to parse endpoint ftp://nowhere",
        ),
        (&["inspect", "nope"], "ERROR: no builder \"nope\" found"),
        (&["use", "nope"], "ERROR: failed to find instance \"nope\""),
        (
            &["--builder", "nope", "stop"],
            "ERROR: no builder \"nope\" found",
        ),
    ];
    for (args, want) in cases {
        let out = s.kiln(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "kiln {args:?}: {err}");
        assert_eq!(
            err.lines().count(),
            1,
            "kiln {args:?} printed more than one line: {err}"
        );
        assert!(
            err.starts_with(want),
            "kiln {args:?}: got {err:?}, want {want:?}"
        );
        assert!(out.stdout.is_empty(), "kiln {args:?} printed to stdout");
        assert_eq!(
            s.store_snapshot(),
            before,
            "kiln {args:?} changed the store"
        );
    }

    let out = s.kiln(&["rm", "default"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "failed to remove default: context builder cannot be removed, run `docker context rm default` to remove this context\n\
         ERROR: failed to remove one or more builders\n"
    );
    assert_eq!(s.store_snapshot(), before);
}

#[test]
fn bootstrap_checks_the_daemon_before_storing() {
    let s = Session::on(engine28());
    let before = s.store_snapshot();
    let out = s.kiln(&[
        "create",
        "--name",
        "ghost",
        "--bootstrap",
        "unix:///nonexistent/docker.sock",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("ERROR: failed to initialize builder ghost (ghost0): "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(s.store_snapshot(), before);

    assert_eq!(
        s.kiln_ok(&[
            "create",
            "--name",
            "up",
            "--bootstrap",
            "--use",
            &engine20()
        ]),
        "up\n"
    );
    let ls = s.ls_json();
    assert_eq!(builder(&ls, "up").unwrap()["Current"], true);
    let inspect = s.kiln_ok(&["inspect", "--bootstrap"]);
    assert!(
        inspect.contains("BuildKit version: v0.8+unknown"),
        "{inspect}"
    );
}

#[test]
fn append_and_leave_manage_nodes() {
    let s = Session::on(engine28());
    s.kiln_ok(&[
        "create",
        "--name",
        "pair",
        "--platform",
        "linux/amd64",
        &engine28(),
    ]);
    s.kiln_ok(&[
        "create",
        "--name",
        "pair",
        "--append",
        "--platform",
        "linux/386",
        &engine20(),
    ]);
    let ls = s.ls_json();
    let pair = builder(&ls, "pair").unwrap();
    let nodes = pair["Nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["Name"], "pair0");
    assert_eq!(nodes[1]["Name"], "pair1");
    assert_eq!(nodes[1]["Platforms"][0], "linux/386");
    let table = s.kiln_ok(&["ls"]);
    assert!(table.contains(" \\_ pair1"), "{table}");
    assert!(table.contains("linux/386*"), "{table}");

    s.kiln_ok(&["create", "--name", "pair", "--leave", "--node", "pair0"]);
    let ls = s.ls_json();
    assert_eq!(
        builder(&ls, "pair").unwrap()["Nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let out = s.kiln(&["create", "--name", "pair", "--leave", "--node", "pair1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("can not leave last node"));
}

#[test]
fn generated_names_look_like_buildx() {
    let s = Session::on(engine28());
    let name = s.kiln_ok(&["create", &engine28()]);
    let name = name.trim();
    let (adjective, scientist) = name.split_once('_').expect("adjective_scientist");
    assert!(!adjective.is_empty() && !scientist.is_empty(), "{name}");
    assert!(builder(&s.ls_json(), name).is_some());
}

#[test]
fn concurrent_creates_all_survive() {
    let s = Session::on(engine28());
    let children: Vec<_> = (0..12)
        .map(|i| {
            let host = if i % 2 == 0 { engine28() } else { engine20() };
            s.command(env!("CARGO_BIN_EXE_kiln"))
                .args(["create", "--name", &format!("c{i}"), &host])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "create c{i}: {}", stderr(&out));
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("c{i}\n"));
    }
    let ls = s.ls_json();
    for i in 0..12 {
        let b = builder(&ls, &format!("c{i}")).unwrap_or_else(|| panic!("c{i} was lost"));
        assert_eq!(b["Nodes"][0]["Status"], "running");
    }

    // Concurrent creations of the same name: exactly one wins.
    let racers: Vec<_> = (0..6)
        .map(|_| {
            s.command(env!("CARGO_BIN_EXE_kiln"))
                .args(["create", "--name", "contested", &engine28()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let wins = racers
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .filter(|o| o.status.success())
        .count();
    assert_eq!(wins, 1);

    let removers: Vec<_> = (0..12)
        .map(|i| {
            s.command(env!("CARGO_BIN_EXE_kiln"))
                .args(["rm", &format!("c{i}")])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in removers {
        assert!(r.wait_with_output().unwrap().status.success());
    }
    let ls = s.ls_json();
    assert!((0..12).all(|i| builder(&ls, &format!("c{i}")).is_none()));
    assert!(builder(&ls, "contested").is_some());
}
