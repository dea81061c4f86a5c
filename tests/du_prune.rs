//! `kiln du` and `kiln prune` as a user runs them: a build leaves cache records, `du` lists
//! them as the reference buildx does, a prune filtered to them removes exactly them, and a prune
//! without `--force` and without an answer removes nothing.
//!
//! Other tests build on the same engines at the same time, so every prune here is filtered to
//! this test's own records (a unique marker in the step's description, or a record ID).

mod common;

use std::io::Write as _;
use std::process::Stdio;

use common::*;

/// Builds a one-step Dockerfile whose step description carries `marker`.
fn build_marked(user: &User, marker: &str) {
    let ctx = tempfile::tempdir().unwrap();
    write_tree(
        ctx.path(),
        &[(
            "Dockerfile",
            &format!("FROM busybox\nRUN echo {marker} > /m\n"),
        )],
    );
    ok(user.kiln(&["build", "-q", ctx.path().to_str().unwrap()]));
}

fn du_filtered(user: &User, marker: &str, extra: &[&str]) -> String {
    let filter = format!("description~={marker}");
    let mut args = vec!["du", "--filter", &filter];
    args.extend_from_slice(extra);
    stdout(&ok(user.kiln(&args)))
}

/// The output without the lines that change by the second (`Last used:`, `... ago`).
fn stable(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("Last used:"))
        .map(|l| match l.rfind("   ") {
            Some(i) if l.ends_with(" ago") => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn du_lists_a_builds_records_and_a_filtered_prune_removes_them() {
    let user = User::new(Engine::Modern);
    let marker = unique("du-prune");
    build_marked(&user, &marker);

    let verbose = du_filtered(&user, &marker, &["--verbose"]);
    assert!(verbose.starts_with("ID:           "), "{verbose}");
    assert!(verbose.contains(&format!("echo {marker}")), "{verbose}");
    assert!(verbose.contains("Reclaimable:  true"), "{verbose}");
    // A filtered du has no totals, as in buildx.
    assert!(!verbose.contains("Total:"), "{verbose}");

    // Byte for byte what the reference buildx prints, but for the ages.
    let filter = format!("description~={marker}");
    for extra in [&[][..], &["--verbose"][..]] {
        let mut args = vec!["du", "--filter", &filter];
        args.extend_from_slice(extra);
        let ours = stdout(&ok(user.kiln(&args)));
        let theirs = stdout(&ok(user.buildx(&args)));
        assert_eq!(stable(&ours), stable(&theirs), "du {extra:?}");
    }

    let json = du_filtered(&user, &marker, &["--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(first["Description"].as_str().unwrap().contains(&marker));
    assert_eq!(first["Reclaimable"], true);

    // The unfiltered table ends with buildx's totals.
    let all = stdout(&ok(user.kiln(&["du"])));
    let header = all.lines().next().unwrap();
    assert!(header.starts_with("ID "), "{all}");
    assert!(header.contains("   RECLAIMABLE   SIZE "), "{all}");
    assert!(all.contains("\nReclaimable:\t"), "{all}");
    assert!(all.contains("\nTotal:\t\t"), "{all}");

    let out = stdout(&ok(user.kiln(&[
        "prune",
        "-af",
        "--verbose",
        "--filter",
        &filter,
    ])));
    assert!(out.contains(&format!("echo {marker}")), "{out}");
    assert!(out.lines().last().unwrap().starts_with("Total:\t"), "{out}");

    let after = du_filtered(&user, &marker, &[]);
    assert_eq!(
        after.lines().count(),
        1,
        "only the header is left:\n{after}"
    );
}

#[test]
fn prune_without_force_asks_and_takes_no_answer_as_no() {
    let user = User::new(Engine::Modern);
    let marker = unique("prune-ask");
    build_marked(&user, &marker);
    let filter = format!("description~={marker}");

    // No terminal and nothing on stdin: buildx's question, no prune, exit 0.
    let out = ok(user.kiln(&["prune", "-a", "--filter", &filter]));
    assert_eq!(
        stdout(&out),
        "WARNING! This will remove all build cache. Are you sure you want to continue? [y/N] "
    );
    assert!(du_filtered(&user, &marker, &[]).contains(" true "));

    let out = ok(user.kiln(&["prune", "--filter", "description~=no-such-record"]));
    assert!(stdout(&out).starts_with(
        "WARNING! This will remove all dangling build cache. Are you sure you want to continue? [y/N] "
    ));

    // `y` on stdin is a yes.
    let mut cmd = user.kiln(&["prune", "-a", "--filter", &filter]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("RECLAIMABLE"), "{text}");
    assert!(text.contains("Total:\t"), "{text}");
    assert_eq!(du_filtered(&user, &marker, &[]).lines().count(), 1);
}

#[test]
fn bad_filters_and_sizes_are_one_line_errors() {
    let user = User::new(Engine::Modern);
    let err = fails(user.kiln(&["du", "--filter", "nokey"]));
    assert!(
        err.contains("bad format of filter (expected name=value)"),
        "{err}"
    );
    let err = fails(user.kiln(&["prune", "-f", "--filter", "until=soon"]));
    assert!(err.contains("\"until\" filter expects a duration"), "{err}");
    let err = fails(user.kiln(&["prune", "-f", "--reserved-space", "lots"]));
    assert!(err.contains("invalid size"), "{err}");
    let err = fails(user.kiln(&["du", "--verbose", "--format", "json"]));
    assert!(
        err.contains("--format and --verbose cannot be used together"),
        "{err}"
    );
}

#[test]
fn engine_20_10_du_and_prune_by_id() {
    let user = User::new(Engine::Old);
    let marker = unique("du-old");
    build_marked(&user, &marker);
    let json = du_filtered(&user, &marker, &["--format", "json"]);
    let rec: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    let id = rec["ID"].as_str().unwrap().to_string();

    let table = stdout(&ok(user.kiln(&["du"])));
    assert!(table.contains(&id), "{table}");
    assert!(table.contains("\nTotal:\t\t"), "{table}");

    // BuildKit 0.8 filters prunes by ID but not by description.
    let out = stdout(&ok(user.kiln(&[
        "prune",
        "-af",
        "--filter",
        &format!("id={id}"),
    ])));
    assert!(out.contains(&id), "{out}");
    assert!(!du_filtered(&user, &marker, &[]).contains(&id));

    // The space targets need BuildKit 0.17: buildx's error.
    let err = fails(user.kiln(&[
        "prune",
        "-f",
        "--max-used-space",
        "1g",
        "--filter",
        "id=none",
    ]));
    assert!(
        err.contains("buildkit v0.17.0+ is required for max-used-space and min-free-space"),
        "{err}"
    );
}
