//! Build flags that change what a `RUN` step sees or what the image records, each checked from
//! inside the build or on the result; and the non-directory contexts (stdin tarball, an http URL
//! served on loopback, a git repository served on loopback).

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

/// Builds `dockerfile` on Engine 28 with `args` and returns the file `/out` the build wrote.
fn run_and_read(dockerfile: &str, args: &[&str]) -> String {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", dockerfile)]);
    let dest = ctx.path().join("result");
    let mut cmd = user.kiln(&["build", "--progress=plain", "--no-cache"]);
    cmd.args(args)
        .args(["-o", dest.to_str().unwrap(), ctx.path().to_str().unwrap()]);
    ok(cmd);
    std::fs::read_to_string(dest.join("out")).unwrap()
}

const RUN_TO_OUT: &str = "FROM busybox AS run\nRUN {}\nFROM scratch\nCOPY --from=run /out /out\n";

fn dockerfile_running(cmd: &str) -> String {
    RUN_TO_OUT.replace("{}", cmd)
}

#[test]
fn add_host_reaches_etc_hosts() {
    let out = run_and_read(
        &dockerfile_running("cat /etc/hosts > /out"),
        &["--add-host", "kiln-test-host:10.1.2.3"],
    );
    assert!(
        out.contains("10.1.2.3") && out.contains("kiln-test-host"),
        "{out}"
    );
}

#[test]
fn shm_size_and_ulimit_reach_run_steps() {
    let out = run_and_read(
        &dockerfile_running("(df -k /dev/shm | tail -1; ulimit -n) > /out"),
        &["--shm-size", "128m", "--ulimit", "nofile=1234:1234"],
    );
    assert!(out.contains("131072"), "shm size not applied: {out}");
    assert!(
        out.lines().any(|l| l.trim() == "1234"),
        "ulimit not applied: {out}"
    );
}

#[test]
fn cgroup_parent_places_run_steps_under_it() {
    let out = run_and_read(
        &dockerfile_running("cat /proc/self/cgroup > /out"),
        &["--cgroup-parent", "kiln-test-cgroup-parent"],
    );
    // Every hierarchy puts the step under the parent (Engine 28 uses cgroupfs here).
    for line in out.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        assert!(
            path.starts_with("/kiln-test-cgroup-parent/"),
            "{line} in:\n{out}"
        );
    }
}

#[test]
fn network_none_has_only_loopback() {
    let out = run_and_read(
        &dockerfile_running("ls /sys/class/net > /out"),
        &["--network", "none"],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        vec!["lo"],
        "{out}"
    );
}

#[test]
fn labels_land_in_the_image() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let tag = unique("kiln-e2e-label");
    ok(user.kiln(&[
        "build",
        "-q",
        "--label",
        "org.example.kiln=yes",
        "-t",
        &tag,
        ctx.path().to_str().unwrap(),
    ]));
    let out = ok(user.docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.example.kiln\"}}",
        &tag,
    ]));
    assert_eq!(stdout(&out).trim(), "yes");
    let _ = run(user.docker(&["rmi", "-f", &tag]));
}

#[test]
fn no_cache_filter_rebuilds_only_that_stage() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    let marker = unique("ncf");
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox AS a\nRUN echo {marker}-a > /a\nFROM a AS b\nRUN echo {marker}-b > /b\n"
            ),
        )],
    );
    let build = |extra: &[&str]| {
        let mut cmd = user.kiln(&["build", "--progress=plain"]);
        cmd.args(extra).arg(ctx.path());
        stderr(&ok(cmd))
    };
    build(&[]);
    let second = build(&["--no-cache-filter", "b"]);
    let cached_a = second
        .lines()
        .skip_while(|l| !l.contains(&format!("{marker}-a")))
        .take(3)
        .any(|l| l.contains("CACHED"));
    assert!(cached_a, "stage a should stay cached:\n{second}");
    assert!(
        !second
            .lines()
            .skip_while(|l| !l.contains(&format!("echo {marker}-b")))
            .take(2)
            .any(|l| l.contains("CACHED")),
        "stage b should rebuild:\n{second}"
    );
}

fn context_tarball() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_tree(
        &src,
        &[
            ("Dockerfile", "FROM scratch\nCOPY data /data\n"),
            ("data", "from a tarball\n"),
        ],
    );
    let tar = dir.path().join("ctx.tar");
    ok(std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&src)
        .arg("."));
    (dir, tar)
}

#[test]
fn tarball_context_on_stdin() {
    let user = User::new(Engine::Modern);
    let (dir, tar) = context_tarball();
    let dest = dir.path().join("out");
    let mut child = user
        .kiln(&[
            "build",
            "--progress=plain",
            "-o",
            dest.to_str().unwrap(),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&tar).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dest.join("data")).unwrap(),
        "from a tarball\n"
    );
}

#[test]
fn http_tarball_url_context() {
    let user = User::new(Engine::Modern);
    let (dir, _tar) = context_tarball();
    let server = LoopbackServer::serve(dir.path());
    let dest = dir.path().join("out");
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "-o",
        dest.to_str().unwrap(),
        &format!("http://127.0.0.1:{}/ctx.tar", server.port),
    ]));
    assert_eq!(
        std::fs::read_to_string(dest.join("data")).unwrap(),
        "from a tarball\n"
    );
}

#[test]
fn git_url_context() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    write_tree(
        &repo,
        &[
            ("Dockerfile", "FROM scratch\nCOPY data /data\n"),
            ("data", "from git\n"),
        ],
    );
    let git = |args: &[&str]| {
        ok(std::process::Command::new("git")
            .args(["-c", "user.name=kiln", "-c", "user.email=kiln@localhost"])
            .args(args)
            .current_dir(&repo));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "context"]);
    // A bare clone served over plain http by the dumb protocol.
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    ok(std::process::Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&repo)
        .arg(served.join("ctx.git")));
    ok(std::process::Command::new("git")
        .args(["update-server-info"])
        .current_dir(served.join("ctx.git")));
    let server = LoopbackServer::serve(&served);
    let dest = dir.path().join("out");
    ok(user.kiln(&[
        "build",
        "--progress=plain",
        "-o",
        dest.to_str().unwrap(),
        &format!("http://127.0.0.1:{}/ctx.git#main", server.port),
    ]));
    assert_eq!(
        std::fs::read_to_string(dest.join("data")).unwrap(),
        "from git\n"
    );
}
