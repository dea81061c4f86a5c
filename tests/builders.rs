//! End-to-end: builder instances (`create`, `ls`, `inspect`, `use`, `rm`, `stop`) against the
//! real Docker Engines of the test environment (`scripts/testenv.sh up`), compared with the
//! reference `docker buildx` on the same engines.
//!
//! Every test runs the `kiln` binary with its own temporary `KILN_CONFIG` and `DOCKER_CONFIG`.
//! A missing engine fails the suite: these tests never skip.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;

/// Every file under the user's kiln config dir with its contents (the lock file aside).
fn store_snapshot(user: &User) -> BTreeMap<PathBuf, Vec<u8>> {
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
    walk(&user.kiln_config(), &user.kiln_config(), &mut out);
    out
}

/// `kiln ls --format json`, one value per builder.
fn ls_json(user: &User) -> Vec<serde_json::Value> {
    json_lines(&stdout(&ok(user.kiln(&["ls", "--format", "json"]))))
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The builder of that name in `ls --format json` output.
fn builder<'a>(ls: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    ls.iter().find(|b| b["Name"] == name)
}

#[test]
fn create_ls_inspect_use_rm_round_trip() {
    let user = User::new(Engine::Modern);
    assert_eq!(
        stdout(&ok(user.kiln(&[
            "create",
            "--name",
            "old",
            "--driver",
            "docker",
            &Engine::Old.host()
        ]))),
        "old\n"
    );
    assert_eq!(
        stdout(&ok(user.kiln(&[
            "create",
            "--name",
            "new",
            "--platform",
            "linux/arm64",
            &Engine::Modern.host()
        ]))),
        "new\n"
    );

    let table = stdout(&ok(user.kiln(&["ls"])));
    assert!(table.starts_with("NAME/NODE "), "{table}");
    assert!(table.contains("\nold "), "{table}");
    assert!(
        table.contains(&format!(" \\_ old0       \\_ {}", Engine::Old.host())),
        "{table}"
    );
    assert!(table.contains("default*"), "{table}");

    let ls = ls_json(&user);
    let old = builder(&ls, "old").unwrap();
    assert_eq!(old["Driver"], "docker");
    assert_eq!(old["Nodes"][0]["Status"], "running");
    assert_eq!(old["Nodes"][0]["Version"], "v0.8+unknown");
    assert_ne!(old["LastActivity"], "0001-01-01T00:00:00Z");
    let new = builder(&ls, "new").unwrap();
    assert_eq!(new["Nodes"][0]["Platforms"][0], "linux/arm64");

    let inspect = stdout(&ok(user.kiln(&["inspect", "new"])));
    assert!(inspect.starts_with("Name:          new\nDriver:        docker\nLast Activity: "));
    assert!(inspect.contains("Name:             new0\n"), "{inspect}");
    assert!(inspect.contains("Status:           running\n"), "{inspect}");
    assert!(
        inspect.contains("Platforms:        linux/arm64*, linux/amd64"),
        "{inspect}"
    );

    // `use` makes it current for this Docker endpoint; `inspect` without a name follows.
    ok(user.kiln(&["use", "old"]));
    assert!(stdout(&ok(user.kiln(&["ls"]))).contains("\nold*"));
    assert!(stdout(&ok(user.kiln(&["inspect"]))).starts_with("Name:          old\n"));
    assert_eq!(builder(&ls_json(&user), "old").unwrap()["Current"], true);
    // --builder wins over the current builder.
    assert!(stdout(&ok(user.kiln(&["--builder", "new", "inspect"])))
        .starts_with("Name:          new\n"));
    ok(user.kiln(&["stop", "old"]));

    let out = run(user.kiln(&["rm", "old"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "old removed\n");
    let ls = ls_json(&user);
    assert!(builder(&ls, "old").is_none());
    // With its builder gone, the endpoint falls back to its Docker context's builder.
    assert_eq!(builder(&ls, "default").unwrap()["Current"], true);

    ok(user.kiln(&["use", "new"]));
    ok(user.kiln(&["use", "default"]));
    assert_eq!(
        builder(&ls_json(&user), "default").unwrap()["Current"],
        true
    );
}

#[test]
fn ls_and_inspect_match_buildx_on_both_engines() {
    for engine in [Engine::Modern, Engine::Old] {
        let host = engine.host();
        let user = User::new(engine);
        for args in [&["ls"][..], &["inspect"], &["inspect", "default"]] {
            assert_eq!(
                stdout(&ok(user.kiln(args))),
                stdout(&ok(user.buildx(args))),
                "kiln {args:?} differs from docker buildx on {host}"
            );
        }
        let kiln: serde_json::Value =
            serde_json::from_str(stdout(&ok(user.kiln(&["ls", "--format", "json"]))).trim())
                .unwrap();
        let buildx: serde_json::Value =
            serde_json::from_str(stdout(&ok(user.buildx(&["ls", "--format", "json"]))).trim())
                .unwrap();
        assert_eq!(kiln, buildx, "ls --format json differs on {host}");
    }
}

#[test]
fn docker_contexts_are_builders_as_in_buildx() {
    let user = User::without_docker_host();
    user.add_docker_context("e28", &Engine::Modern.host());
    user.add_docker_context("e20", &Engine::Old.host());
    user.use_docker_context("e28");
    for args in [&["ls"][..], &["inspect"], &["inspect", "e20"]] {
        assert_eq!(
            stdout(&ok(user.kiln(args))),
            stdout(&ok(user.buildx(args))),
            "kiln {args:?} differs"
        );
    }
    // BUILDX_BUILDER names a context: its engine answers.
    let text = stdout(&run(user.kiln(&["inspect"]).env("BUILDX_BUILDER", "e20")));
    assert!(text.contains("BuildKit version: v0.8+unknown"), "{text}");
    // DOCKER_CONTEXT overrides config.json's currentContext.
    let ls = json_lines(&stdout(&run(user
        .kiln(&["ls", "--format", "json"])
        .env("DOCKER_CONTEXT", "e20"))));
    assert_eq!(builder(&ls, "e20").unwrap()["Current"], true);

    // A context builder can be created on, but not removed.
    assert_eq!(
        stdout(&ok(user.kiln(&["create", "--name", "via-ctx", "e20"]))),
        "via-ctx\n"
    );
    let ls = ls_json(&user);
    assert_eq!(
        builder(&ls, "via-ctx").unwrap()["Nodes"][0]["Endpoint"],
        "e20"
    );
    assert_eq!(
        builder(&ls, "via-ctx").unwrap()["Nodes"][0]["Version"],
        "v0.8+unknown"
    );
    assert_eq!(
        fails(user.kiln(&["rm", "e20"])),
        "failed to remove e20: context builder cannot be removed, run `docker context rm e20` to remove this context\n\
         ERROR: failed to remove one or more builders\n"
    );
}

#[test]
fn unreachable_context_is_reported_like_buildx() {
    let user = User::new(Engine::Modern);
    user.add_docker_context("ghost", "unix:///nonexistent/docker.sock");
    let kiln = run(user.kiln(&["ls"]));
    assert!(kiln.status.success());
    let buildx = run(user.buildx(&["ls"]));
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
    let user = User::new(Engine::Modern);
    user.add_docker_context("ctx", &Engine::Old.host());
    ok(user.kiln(&["create", "--name", "taken", &Engine::Modern.host()]));
    let before = store_snapshot(&user);
    let cases: &[(&[&str], &str)] = &[
        (&["create", "--name", "x", "--driver", "nope"], "ERROR: failed to find driver \"nope\""),
        (
            &["create", "--name", "taken", &Engine::Old.host()],
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
        let out = run(user.kiln(args));
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
            store_snapshot(&user),
            before,
            "kiln {args:?} changed the store"
        );
    }

    assert_eq!(
        fails(user.kiln(&["rm", "default"])),
        "failed to remove default: context builder cannot be removed, run `docker context rm default` to remove this context\n\
         ERROR: failed to remove one or more builders\n"
    );
    assert_eq!(store_snapshot(&user), before);
}

#[test]
fn bootstrap_checks_the_daemon_before_storing() {
    let user = User::new(Engine::Modern);
    let before = store_snapshot(&user);
    let err = fails(user.kiln(&[
        "create",
        "--name",
        "ghost",
        "--bootstrap",
        "unix:///nonexistent/docker.sock",
    ]));
    assert!(
        err.starts_with("ERROR: failed to initialize builder ghost (ghost0): "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(store_snapshot(&user), before);

    assert_eq!(
        stdout(&ok(user.kiln(&[
            "create",
            "--name",
            "up",
            "--bootstrap",
            "--use",
            &Engine::Old.host()
        ]))),
        "up\n"
    );
    let ls = ls_json(&user);
    assert_eq!(builder(&ls, "up").unwrap()["Current"], true);
    let inspect = stdout(&ok(user.kiln(&["inspect", "--bootstrap"])));
    assert!(
        inspect.contains("BuildKit version: v0.8+unknown"),
        "{inspect}"
    );
}

#[test]
fn append_and_leave_manage_nodes() {
    let user = User::new(Engine::Modern);
    ok(user.kiln(&[
        "create",
        "--name",
        "pair",
        "--platform",
        "linux/amd64",
        &Engine::Modern.host(),
    ]));
    ok(user.kiln(&[
        "create",
        "--name",
        "pair",
        "--append",
        "--platform",
        "linux/386",
        &Engine::Old.host(),
    ]));
    let ls = ls_json(&user);
    let pair = builder(&ls, "pair").unwrap();
    let nodes = pair["Nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["Name"], "pair0");
    assert_eq!(nodes[1]["Name"], "pair1");
    assert_eq!(nodes[1]["Platforms"][0], "linux/386");
    let table = stdout(&ok(user.kiln(&["ls"])));
    assert!(table.contains(" \\_ pair1"), "{table}");
    assert!(table.contains("linux/386*"), "{table}");

    ok(user.kiln(&["create", "--name", "pair", "--leave", "--node", "pair0"]));
    let ls = ls_json(&user);
    assert_eq!(
        builder(&ls, "pair").unwrap()["Nodes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let err = fails(user.kiln(&["create", "--name", "pair", "--leave", "--node", "pair1"]));
    assert!(err.contains("can not leave last node"), "{err}");
}

#[test]
fn generated_names_look_like_buildx() {
    let user = User::new(Engine::Modern);
    let name = stdout(&ok(user.kiln(&["create", &Engine::Modern.host()])));
    let name = name.trim();
    let (adjective, scientist) = name.split_once('_').expect("adjective_scientist");
    assert!(!adjective.is_empty() && !scientist.is_empty(), "{name}");
    assert!(builder(&ls_json(&user), name).is_some());
}

#[test]
fn concurrent_creates_all_survive() {
    let user = User::new(Engine::Modern);
    let hosts = [Engine::Modern.host(), Engine::Old.host()];
    let children: Vec<_> = (0..12)
        .map(|i| {
            user.kiln(&["create", "--name", &format!("c{i}"), &hosts[i % 2]])
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
    let ls = ls_json(&user);
    for i in 0..12 {
        let b = builder(&ls, &format!("c{i}")).unwrap_or_else(|| panic!("c{i} was lost"));
        assert_eq!(b["Nodes"][0]["Status"], "running");
    }

    // Concurrent creations of the same name: exactly one wins.
    let racers: Vec<_> = (0..6)
        .map(|_| {
            user.kiln(&["create", "--name", "contested", &hosts[0]])
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
            user.kiln(&["rm", &format!("c{i}")])
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in removers {
        assert!(r.wait_with_output().unwrap().status.success());
    }
    let ls = ls_json(&user);
    assert!((0..12).all(|i| builder(&ls, &format!("c{i}")).is_none()));
    assert!(builder(&ls, "contested").is_some());
}
