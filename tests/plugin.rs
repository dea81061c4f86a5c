//! kiln as a Docker CLI plugin: installed as `docker-kiln` or in place of `docker-buildx`, run
//! through the real docker CLI.

mod common;

use common::*;

fn install_plugin(user: &User, name: &str) {
    let dir = user.docker_config().join("cli-plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kiln"), dir.join(name)).unwrap();
}

#[test]
fn docker_cli_lists_and_runs_kiln_as_a_plugin() {
    let user = User::new(Engine::Modern);
    install_plugin(&user, "docker-kiln");
    let out = ok(user.docker(&["kiln", "version"]));
    assert!(stdout(&out).starts_with("kiln v"), "{}", stdout(&out));

    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY f /f\n"),
            ("f", "plugin\n"),
        ],
    );
    let dest = ctx.path().join("out");
    ok(user.docker(&[
        "kiln",
        "build",
        "--progress=plain",
        "-o",
        dest.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read_to_string(dest.join("f")).unwrap(), "plugin\n");
}

#[test]
fn kiln_installed_as_docker_buildx_answers_docker_buildx() {
    let user = User::new(Engine::Modern);
    install_plugin(&user, "docker-buildx");
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[
            ("Dockerfile", "FROM scratch\nCOPY f /f\n"),
            ("f", "as-buildx\n"),
        ],
    );
    let dest = ctx.path().join("out");
    let out = ok(user.docker(&[
        "buildx",
        "build",
        "--progress=plain",
        "-o",
        dest.to_str().unwrap(),
        ctx.path().to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(dest.join("f")).unwrap(),
        "as-buildx\n"
    );
    assert!(stderr(&out).contains("building with"), "{}", stderr(&out));
    // `docker build` is routed to the buildx plugin by the docker CLI as well.
    let out = ok(user.docker(&["buildx", "version"]));
    assert!(stdout(&out).starts_with("kiln v"));
}
