//! Cache export and import against the test registry: a second build, after the engine's own
//! build cache has been pruned, shows its steps CACHED from the imported cache. Engine 20.10 has
//! no cache export and says so as buildx does.

mod common;

use common::*;

fn cached_steps(stderr: &str, marker: &str) -> bool {
    let mut lines = stderr.lines().skip_while(|l| !l.contains(marker));
    lines.next().is_some() && lines.take(3).any(|l| l.ends_with("CACHED"))
}

fn build_prune_rebuild(cache_to: &str, cache_from: &str, extra: &[&str]) {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    let marker = unique("cache-step");
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {marker} > /m\nRUN echo second > /s\n"),
        )],
    );
    let mut first = user.kiln(&["build", "--progress=plain", "--cache-to", cache_to]);
    first.args(extra).arg(ctx.path());
    ok(first);
    // A fresh engine state for this build's steps: their local cache records are pruned, so
    // CACHED can only come from the import. Only records of this test's own steps go (by their
    // unique marker), so builds of concurrent tests keep theirs.
    // (The Engine's own prune API has no description filter; BuildKit's Control/Prune does.)
    ok(user.kiln(&[
        "prune",
        "-af",
        "--filter",
        &format!("description~={marker}"),
    ]));
    let out = ok(user.kiln(&[
        "build",
        "--progress=plain",
        "--cache-from",
        cache_from,
        ctx.path().to_str().unwrap(),
    ]));
    let err = stderr(&out);
    assert!(err.contains("importing cache manifest"), "{err}");
    assert!(cached_steps(&err, &format!("RUN echo {marker}")), "{err}");
}

#[test]
fn registry_cache_max_mode_round_trip() {
    let reference = format!(
        "{}/{}:cache",
        env("KILN_TEST_REGISTRY"),
        unique("kiln/cache")
    );
    build_prune_rebuild(
        &format!("type=registry,ref={reference},mode=max"),
        &format!("type=registry,ref={reference}"),
        &[],
    );
}

#[test]
fn inline_cache_in_a_pushed_image() {
    let image = format!("{}/{}:v1", env("KILN_TEST_REGISTRY"), unique("kiln/inline"));
    build_prune_rebuild("type=inline", &image, &["--push", "-t", &image]);
}

#[test]
fn old_engine_has_no_cache_export() {
    let user = User::new(Engine::Old);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    let err = fails(user.kiln(&[
        "build",
        "--cache-to",
        "type=registry,ref=127.0.0.1:5000/x:cache",
        ctx.path().to_str().unwrap(),
    ]));
    assert!(
        err.contains("Cache export is not supported for the docker driver"),
        "{err}"
    );
    // Inline cache needs no cache exporter and is accepted.
    ok(user.kiln(&[
        "build",
        "-q",
        "--cache-to",
        "type=inline",
        ctx.path().to_str().unwrap(),
    ]));
}

#[test]
fn malformed_cache_flags_are_one_line() {
    let user = User::new(Engine::Modern);
    let ctx = tempfile::tempdir().unwrap();
    write_tree(ctx.path(), &[("Dockerfile", "FROM busybox\n")]);
    for (flag, value, needle) in [
        ("--cache-to", "mode=max", "type required"),
        ("--cache-to", "type=registry", "requires ref"),
        ("--cache-from", "type=registry,bogus", "invalid value bogus"),
    ] {
        let err = fails(user.kiln(&["build", flag, value, ctx.path().to_str().unwrap()]));
        assert!(
            err.contains(needle) && err.contains(flag),
            "{flag} {value}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}
