//! `--push` with registry credentials served to BuildKit from Docker's config (`auths`, and a
//! `credsStore` helper), against the test environment's registry that requires basic auth.
//! Engine 28 pushes from its exporter; Engine 20.10 stores the image and kiln has the Engine
//! push it, as buildx does.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[("Dockerfile", "FROM busybox\nRUN echo pushed > /pushed\n")],
    );
    ctx
}

fn tags_in_registry(repo: &str) -> String {
    let url = format!(
        "http://{}/v2/{repo}/tags/list",
        env("KILN_TEST_AUTH_REGISTRY")
    );
    let creds = auth_registry_login();
    stdout(&ok(
        std::process::Command::new("curl").args(["-sf", "-u", &creds, &url])
    ))
}

fn push_with_and_without_credentials(engine: Engine) {
    let user = User::new(engine);
    let ctx = context();
    let repo = unique("kiln/push");
    let tag = format!("{}/{repo}:v1", env("KILN_TEST_AUTH_REGISTRY"));

    let push = || {
        user.kiln(&[
            "build",
            "--progress=plain",
            "--push",
            "-t",
            &tag,
            ctx.path().to_str().unwrap(),
        ])
    };
    let err = fails(push());
    assert!(
        err.contains("401 Unauthorized") || err.contains("no basic auth credentials"),
        "{err}"
    );

    user.log_in(&env("KILN_TEST_AUTH_REGISTRY"), &auth_registry_login());
    let out = ok(push());
    assert!(tags_in_registry(&repo).contains("\"v1\""));
    let password = env("KILN_TEST_AUTH_PASSWORD");
    assert!(
        !stderr(&out).contains(&password),
        "the password leaked into the output"
    );
    assert!(
        !stdout(&out).contains(&password),
        "the password leaked into the output"
    );
}

#[test]
fn push_with_and_without_credentials_engine28() {
    push_with_and_without_credentials(Engine::Modern);
}

#[test]
fn push_with_and_without_credentials_engine20() {
    push_with_and_without_credentials(Engine::Old);
}

#[test]
fn credentials_come_from_a_credential_helper() {
    let user = User::new(Engine::Modern);
    let bin = user.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{}\"}}' \"$host\"\n",
            env("KILN_TEST_AUTH_USER"),
            env("KILN_TEST_AUTH_PASSWORD")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        user.docker_config().join("config.json"),
        r#"{"credsStore":"kilntest"}"#,
    )
    .unwrap();
    let ctx = context();
    let repo = unique("kiln/helper");
    let tag = format!("{}/{repo}:v1", env("KILN_TEST_AUTH_REGISTRY"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    ok(user
        .kiln(&[
            "build",
            "--progress=plain",
            "--push",
            "-t",
            &tag,
            ctx.path().to_str().unwrap(),
        ])
        .env("PATH", path));
    assert!(tags_in_registry(&repo).contains("\"v1\""));
}
