//! Conformance of `kiln bake --print` / `--list` with the reference buildx 0.29.1.
//!
//! Every directory under `tests/bake/` is one case: bake files (any format, Compose included),
//! and optionally
//! - `args`: the command line after `bake`, one argument per line (default: `--print`),
//! - `env`: `NAME=VALUE` lines added to both tools' environment,
//! - `stdin`: fed to both tools' standard input (for `-f -`),
//! - `expect`: `error` when both tools must refuse the input.
//!
//! Both tools run in the case directory; their JSON is compared order-insensitively (group
//! member lists are sorted: buildx orders matrix-generated names by Go map iteration).

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{env, User};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bake");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/bake exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .map(|s| {
            s.lines()
                .map(str::to_string)
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a prepared command in the case directory with the case's environment and stdin.
fn run_case(mut cmd: Command, dir: &Path) -> std::process::Output {
    cmd.current_dir(dir).stdin(Stdio::piped());
    // Variables that would change bake's results must come from the case only.
    for v in ["SOURCE_DATE_EPOCH", "BUILDX_BAKE_FILE", "SSH_AUTH_SOCK"] {
        cmd.env_remove(v);
    }
    for line in read_lines(&dir.join("env")) {
        let (k, v) = line.split_once('=').expect("env lines are NAME=VALUE");
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let input = std::fs::read(dir.join("stdin")).unwrap_or_default();
    // A tool that fails before reading its input closes the pipe; that is not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(&input);
    child.wait_with_output().unwrap()
}

/// JSON with object keys sorted and group member lists sorted.
fn canonical(v: serde_json::Value, key: Option<&str>) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let v = canonical(v, Some(&k));
                        (k, v)
                    })
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => {
            let mut items: Vec<serde_json::Value> =
                a.into_iter().map(|v| canonical(v, None)).collect();
            if key == Some("targets") {
                items.sort_by_key(|v| v.to_string());
            }
            serde_json::Value::Array(items)
        }
        other => other,
    }
}

fn compare(dir: &Path, user: &User) -> Result<(), String> {
    let mut args = read_lines(&dir.join("args"));
    if args.is_empty() {
        args.push("--print".into());
    }
    let mut full = vec!["bake".to_string()];
    full.extend(args.iter().cloned());
    let argv: Vec<&str> = full.iter().map(String::as_str).collect();
    let kiln = run_case(user.kiln(&argv), dir);
    let buildx = run_case(user.buildx(&argv), dir);
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let expect_error = std::fs::read_to_string(dir.join("expect"))
        .map(|s| s.trim() == "error")
        .unwrap_or(false);
    if expect_error {
        if buildx.status.success() {
            return Err(format!("buildx accepted an error case:\n{}", text(&buildx)));
        }
        if kiln.status.code() != Some(1) {
            return Err(format!(
                "kiln should fail with exit 1 as buildx does ({}), got {:?}\n{}",
                err(&buildx).lines().last().unwrap_or(""),
                kiln.status.code(),
                text(&kiln)
            ));
        }
        return Ok(());
    }
    if !buildx.status.success() {
        return Err(format!("buildx failed: {}", err(&buildx)));
    }
    if !kiln.status.success() {
        return Err(format!(
            "kiln failed where buildx succeeded: {}\nbuildx printed:\n{}",
            err(&kiln),
            text(&buildx)
        ));
    }
    let table =
        args.iter().any(|a| a.starts_with("--list")) && !args.iter().any(|a| a.contains("json"));
    if table {
        if text(&kiln) != text(&buildx) {
            return Err(format!(
                "--list output differs\n--- kiln\n{}--- buildx\n{}",
                text(&kiln),
                text(&buildx)
            ));
        }
        return Ok(());
    }
    let parse = |s: &str, who: &str| -> Result<serde_json::Value, String> {
        serde_json::from_str(s).map_err(|e| format!("{who} printed no JSON ({e}):\n{s}"))
    };
    let k = canonical(parse(&text(&kiln), "kiln")?, None);
    let b = canonical(parse(&text(&buildx), "buildx")?, None);
    if k != b {
        return Err(format!(
            "JSON differs\n--- kiln\n{}\n--- buildx\n{}",
            serde_json::to_string_pretty(&k).unwrap(),
            serde_json::to_string_pretty(&b).unwrap()
        ));
    }
    Ok(())
}

#[test]
fn bake_print_matches_buildx() {
    // The reference must be there: this suite never skips.
    let _ = env("KILN_TEST_BUILDX");
    let user = User::without_docker_host();
    let cases = cases();
    assert!(
        cases.len() >= 60,
        "expected at least 60 cases, found {}",
        cases.len()
    );
    let only = std::env::var("KILN_BAKE_CASE").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        ran += 1;
        if let Err(e) = compare(dir, &user) {
            failures.push(format!("=== {name}\n{e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} bake cases differ from buildx:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn bake_without_print_builds_on_the_builder() {
    let user = User::without_docker_host();
    let dir = tempfile::tempdir().unwrap();
    common::write_tree(
        dir.path(),
        &[("docker-bake.hcl", "target \"default\" {}\n")],
    );
    let mut cmd = user.kiln(&["bake"]);
    cmd.current_dir(dir.path());
    // No daemon for this user: the targets went to the builder (tests/bake_build.rs builds them).
    let stderr = common::fails(cmd);
    assert!(stderr.contains("connecting to builder"), "{stderr}");
}

#[test]
fn errors_point_at_the_file_line_and_column() {
    let user = User::without_docker_host();
    let dir = tempfile::tempdir().unwrap();
    common::write_tree(
        dir.path(),
        &[("docker-bake.hcl", "target \"a\" {\n  tags = [FOO]\n}\n")],
    );
    let mut cmd = user.kiln(&["bake", "--print", "a"]);
    cmd.current_dir(dir.path());
    let stderr = common::fails(cmd);
    assert!(stderr.contains(">>>   tags = [FOO]"), "{stderr}");
    assert!(
        stderr.contains("docker-bake.hcl:2,11-14: Unknown variable"),
        "{stderr}"
    );
}
