//! `--call` subrequests (check, outline, targets), the end-of-build warnings block and `--allow`
//! entitlements, run like a user would and compared with the reference buildx 0.29.1 where the
//! output is comparable.

mod common;

use common::{fails, ok, run, stderr, stdout, write_tree, Engine, User};

/// Two lint problems: FromAsCasing (line 1) and JSONArgsRecommended (line 3).
const LINTED: &str = "FROM busybox as base\nRUN true\nCMD echo hi\n";

/// Stages, build args, secrets and ssh for outline and targets.
const RICH: &str = "\
ARG BASE=busybox

# base is the common stage
FROM ${BASE} AS base
# GREETING says hello
ARG GREETING=hello
ARG LONGER_NAME_ARG
RUN --mount=type=secret,id=token,required=true --mount=type=ssh true

# release builds the final image
FROM base AS release
RUN --mount=type=secret,id=other true
CMD [\"echo\", \"hi\"]

FROM base
";

fn project(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path(), &[("Dockerfile", dockerfile)]);
    dir
}

/// Runs the same build arguments through kiln and buildx; returns (kiln, buildx) outputs.
fn both(user: &User, args: &[&str]) -> (std::process::Output, std::process::Output) {
    let mut full = vec!["build", "--progress=plain"];
    full.extend_from_slice(args);
    (run(user.kiln(&full)), run(user.buildx(&full)))
}

#[test]
fn check_prints_buildx_lint_report_and_exit_code() {
    let user = User::new(Engine::Modern);
    let dir = project(LINTED);
    let ctx = dir.path().to_str().unwrap();
    let (kiln, buildx) = both(&user, &["--call", "check", ctx]);
    assert_eq!(buildx.status.code(), Some(1), "{}", stderr(&buildx));
    assert_eq!(kiln.status.code(), Some(1), "{}", stderr(&kiln));
    assert_eq!(stdout(&kiln), stdout(&buildx));
    let out = stdout(&kiln);
    assert!(out.starts_with("Check complete, 2 warnings have been found!\n"));
    assert!(out.contains(
        "\nWARNING: FromAsCasing - https://docs.docker.com/go/dockerfile/rule/from-as-casing/\n'as' and 'FROM' keywords' casing do not match\n"
    ));
    assert!(out.contains(&format!("{ctx}/Dockerfile:3\n")), "{out}");
    assert!(out.contains("   3 | >>> CMD echo hi\n"));

    // --check is the shorthand; ignorestatus keeps the report and exits 0.
    let short = run(user.kiln(&["build", "--progress=plain", "--check", ctx]));
    assert_eq!(short.status.code(), Some(1));
    assert_eq!(stdout(&short), stdout(&buildx));
    let (kiln, buildx) = both(&user, &["--call", "check,ignorestatus=true", ctx]);
    assert_eq!(kiln.status.code(), Some(0), "{}", stderr(&kiln));
    assert_eq!(buildx.status.code(), Some(0));
    assert_eq!(stdout(&kiln), stdout(&buildx));
}

#[test]
fn check_without_warnings_and_as_json() {
    let user = User::new(Engine::Modern);
    let clean = project("FROM busybox AS base\nCMD [\"echo\", \"hi\"]\n");
    let ctx = clean.path().to_str().unwrap();
    let out = ok(user.kiln(&["build", "--progress=plain", "--call", "check", ctx]));
    assert_eq!(stdout(&out), "Check complete, no warnings found.\n");

    // JSON: the same report; the sources' LLB definitions name each run's session, so they
    // are left out of the comparison.
    let dir = project(LINTED);
    let ctx = dir.path().to_str().unwrap();
    let (kiln, buildx) = both(&user, &["--call", "check,format=json", ctx]);
    assert_eq!(kiln.status.code(), Some(1));
    assert_eq!(buildx.status.code(), Some(1));
    let strip = |o: &std::process::Output| {
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for s in v["sources"].as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("definition");
        }
        v
    };
    assert_eq!(strip(&kiln), strip(&buildx));
    assert_eq!(
        strip(&kiln)["warnings"][1]["ruleName"],
        "JSONArgsRecommended"
    );
}

#[test]
fn call_values_are_parsed_as_buildx_parses_them() {
    let user = User::new(Engine::Modern);
    let dir = project(LINTED);
    let ctx = dir.path().to_str().unwrap();
    // buildx has no `error=` field for --call: both refuse it with exit 1.
    let (kiln, buildx) = both(&user, &["--call", "check,error=true", ctx]);
    assert_eq!(buildx.status.code(), Some(1));
    assert!(stderr(&buildx).contains("invalid print field: error=true"));
    let err = fails(user.kiln(&["build", "--call", "check,error=true", ctx]));
    assert_eq!(err, "ERROR: invalid print field: error=true\n");
    assert_eq!(kiln.status.code(), Some(1));
    let err = fails(user.kiln(&["build", "--call", "check,ignorestatus=maybe", ctx]));
    assert!(
        err.contains("invalid ignorestatus print value: maybe"),
        "{err}"
    );
    let err = fails(user.kiln(&["build", "--call", "check,outline", ctx]));
    assert!(err.contains("invalid print value: check,outline"), "{err}");
}

#[test]
fn outline_and_targets_match_buildx() {
    let user = User::new(Engine::Modern);
    let dir = project(RICH);
    let ctx = dir.path().to_str().unwrap();
    for call in [
        vec!["--call", "outline"],
        vec!["--call", "outline", "--target", "release"],
        vec!["--call", "targets"],
        vec!["--call", "targets,format=json"],
        vec!["--call", "outline,format=json"],
    ] {
        let mut args = call.clone();
        args.push(ctx);
        let (kiln, buildx) = both(&user, &args);
        assert_eq!(
            buildx.status.code(),
            Some(0),
            "{call:?}: {}",
            stderr(&buildx)
        );
        assert_eq!(kiln.status.code(), Some(0), "{call:?}: {}", stderr(&kiln));
        assert_eq!(stdout(&kiln), stdout(&buildx), "{call:?}");
    }
    let out = ok(user.kiln(&["build", "--call", "targets", ctx]));
    assert!(
        stdout(&out).contains("release   builds the final image\n"),
        "{}",
        stdout(&out)
    );
}

/// The block after the progress display: `N warnings found ...` and one line per warning.
/// buildx orders warnings by map iteration, so lines are compared as a set, without colours.
fn warnings_block(stderr: &str) -> Vec<String> {
    let start = stderr
        .find("warnings found")
        .unwrap_or_else(|| panic!("no warnings block in:\n{stderr}"));
    let line_start = stderr[..start].rfind('\n').map_or(0, |i| i + 1);
    let mut lines: Vec<String> = stderr[line_start..]
        .lines()
        .take_while(|l| !l.is_empty())
        // The heading's colour codes end on the first warning's line, whichever it is.
        .map(|l| l.replace("\x1b[33m", "").replace("\x1b[0m", ""))
        .collect();
    lines.sort();
    lines
}

#[test]
fn build_warnings_block_matches_buildx() {
    let user = User::new(Engine::Modern);
    let dir = project(LINTED);
    let ctx = dir.path().to_str().unwrap();
    let (kiln, buildx) = both(&user, &[ctx]);
    assert!(kiln.status.success(), "{}", stderr(&kiln));
    assert!(buildx.status.success(), "{}", stderr(&buildx));
    let block = warnings_block(&stderr(&kiln));
    assert_eq!(block, warnings_block(&stderr(&buildx)));
    assert_eq!(block.len(), 3, "{block:?}");
    assert!(block.contains(
        &" - FromAsCasing: 'as' and 'FROM' keywords' casing do not match (line 1)".to_string()
    ));
    // The subrequests show the frontend's warnings in the same block.
    let (kiln, buildx) = both(&user, &["--call", "outline", ctx]);
    assert_eq!(
        warnings_block(&stderr(&kiln)),
        warnings_block(&stderr(&buildx))
    );
}

#[test]
fn engine20_frontend_says_it_has_no_subrequests() {
    let user = User::new(Engine::Old);
    let dir = project(LINTED);
    let ctx = dir.path().to_str().unwrap();
    for (call, name) in [
        ("check", "lint"),
        ("outline", "outline"),
        ("targets", "targets"),
    ] {
        let started = std::time::Instant::now();
        let err = fails(user.kiln(&["build", "--progress=plain", "--call", call, ctx]));
        assert!(
            err.contains(&format!(
                "ERROR: failed to build: --call {call}: the Dockerfile frontend of node \"default\" (builder \"default\") does not support this subrequest (unsupported request frontend.{name})"
            )),
            "{err}"
        );
        // No attempt to fetch a newer frontend image (there is no network here anyway).
        assert!(!err.contains("docker/dockerfile"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }
}

#[test]
fn allow_checks_entitlements() {
    let user = User::new(Engine::Modern);
    let dir = project("FROM busybox\nRUN --network=host true\n");
    let ctx = dir.path().to_str().unwrap();
    assert_eq!(
        fails(user.kiln(&["build", "--allow", "bogus", ctx])),
        "ERROR: unknown entitlement bogus\n"
    );
    // As in buildx, one flag is one entitlement: commas are not a list.
    assert_eq!(
        fails(user.kiln(&["build", "--allow", "network.host,security.insecure", ctx])),
        "ERROR: unknown entitlement network.host,security.insecure\n"
    );

    // Without the entitlement BuildKit refuses the host network, as it does for buildx.
    let err = fails(user.kiln(&["build", "--progress=plain", "--no-cache", ctx]));
    assert!(
        err.contains("ERROR: failed to build: failed to solve: failed to load LLB: network.host is not allowed"),
        "{err}"
    );
    let bx = run(user.buildx(&["build", "--progress=plain", "--no-cache", ctx]));
    assert!(stderr(&bx).contains("network.host is not allowed"));

    // Engine 28 grants network.host when asked (its daemon allows it by default).
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--no-cache",
        "--allow",
        "network.host",
        ctx,
    ]));
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--no-cache",
        "--network=host",
        ctx,
    ]));

    // security.insecure is not allowed by this Engine's daemon configuration.
    let err = fails(user.kiln(&[
        "build",
        "--progress=plain",
        "--allow",
        "security.insecure",
        ctx,
    ]));
    assert!(
        err.contains(
            "granting entitlement security.insecure is not allowed by build daemon configuration"
        ),
        "{err}"
    );
}
