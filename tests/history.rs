//! `kiln history` end to end: a build made with kiln on Engine 28 shows up in `history ls`,
//! `inspect` and `logs` (as the reference buildx shows it), exports as a `.dockerbuild` bundle
//! and can be removed; Engine 20.10's BuildKit has no history API and says so.

mod common;

use common::*;

/// Builds a small Dockerfile with a recognisable name and step output; returns the record's ref
/// (the last part of `buildx.build.ref` in the metadata file).
fn build_named(user: &User, name: &str) -> String {
    let dir = tempfile::Builder::new()
        .prefix("kiln-ctx-")
        .tempdir()
        .unwrap();
    write_tree(
        dir.path(),
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo history-step-output-$RANDOM\n",
        )],
    );
    let meta = dir.path().join("meta.json");
    ok(user.kiln(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "--build-arg",
        &format!("BUILDKIT_BUILD_NAME={name}"),
        "--metadata-file",
        meta.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]));
    ref_in_metadata(&meta)
}

/// The record's ref (the last part of `buildx.build.ref`) in the metadata file at `meta`.
fn ref_in_metadata(meta: &std::path::Path) -> String {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(meta).unwrap()).unwrap();
    let full = m["buildx.build.ref"].as_str().expect("buildx.build.ref");
    full.rsplit('/').next().unwrap().to_string()
}

fn ls_json(user: &User) -> Vec<serde_json::Value> {
    let out = ok(user.kiln(&["history", "ls", "--format", "json"]));
    stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn history_lists_inspects_logs_exports_and_removes_a_build_engine28() {
    let user = User::new(Engine::Modern);
    let name = unique("kiln-history");
    let r#ref = build_named(&user, &name);

    // ls --format json: the record with its name, status and full ref.
    let recs = ls_json(&user);
    let rec = recs
        .iter()
        .find(|r| r["ref"].as_str().unwrap().ends_with(&format!("/{ref}")))
        .unwrap_or_else(|| panic!("{ref} not in history: {recs:?}"));
    assert_eq!(rec["name"], name.as_str());
    assert_eq!(rec["status"], "Completed");
    assert_eq!(rec["ref"], format!("default/default/{ref}").as_str());
    assert!(rec["completed_at"].is_string());
    assert!(rec["total_steps"].as_i64().unwrap() > 0);

    // The table, with buildx's columns.
    let table = stdout(&ok(user.kiln(&["history", "ls"])));
    let header = table.lines().next().unwrap();
    for col in ["BUILD ID", "NAME", "STATUS", "CREATED AT", "DURATION"] {
        assert!(header.contains(col), "{header}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&r#ref) && l.contains("Completed")),
        "{table}"
    );

    // inspect, as text and JSON.
    let text = stdout(&ok(user.kiln(&["history", "inspect", &r#ref])));
    assert!(text.contains(&format!("Name:\t\t{name}\n")), "{text}");
    assert!(text.contains("Build Steps:\t"), "{text}");
    assert!(text.contains("No Cache:\t"), "{text}");
    assert!(
        text.contains(&format!("Print build logs: kiln history logs {ref}\n")),
        "{text}"
    );
    let j: serde_json::Value = serde_json::from_str(&stdout(&ok(
        user.kiln(&["history", "inspect", &r#ref, "--format", "json"])
    )))
    .unwrap();
    assert_eq!(j["Ref"], r#ref.as_str());
    assert_eq!(j["Status"], "completed");
    assert_eq!(j["Config"]["NoCache"], true);
    assert!(
        j["Attachments"].as_array().is_some_and(|a| !a.is_empty()),
        "attachments are read from the content store: {j}"
    );

    // ls agrees with the reference buildx. (Its `inspect REF` is not run here: buildx names the
    // ref to the daemon, and once such a record is deleted, by `rm` or by BuildKit's own
    // history GC, Engine 28's BuildKit crashes dockerd on the next limited listing, which is
    // every `buildx history ls`. kiln lists everything and chooses on its side.)
    let bx_ls = stdout(&ok(user.buildx(&["history", "ls", "--format", "json"])));
    let bx_rec: serde_json::Value = bx_ls
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["ref"] == rec["ref"])
        .expect("buildx lists the record too");
    assert_eq!(&bx_rec, rec, "kiln vs buildx ls --format json");

    // logs: the replayed build steps, in plain progress on stderr.
    let logs = ok(user.kiln(&["history", "logs", &r#ref]));
    let err = stderr(&logs);
    assert!(err.contains("RUN echo history-step-output-"), "{err}");
    assert!(err.contains("history-step-output-"), "{err}");
    assert!(err.contains(" DONE "), "{err}");

    // export: a gzipped OCI layout whose manifest has the record as its config.
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b.dockerbuild");
    ok(user.kiln(&["history", "export", &r#ref, "-o", bundle.to_str().unwrap()]));
    let out = dir.path().join("x");
    std::fs::create_dir(&out).unwrap();
    ok(std::process::Command::new("tar").args([
        "xzf",
        bundle.to_str().unwrap(),
        "-C",
        out.to_str().unwrap(),
    ]));
    let layout: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        out.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(mdigest)).unwrap()).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.buildkit.historyrecord.v0"
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(config["Ref"], r#ref.as_str());
    let layers = manifest["layers"].as_array().unwrap();
    assert!(
        layers
            .iter()
            .any(|l| l["mediaType"] == "application/vnd.buildkit.status.v0"),
        "the logs travel in the bundle: {manifest}"
    );
    for l in layers {
        assert!(blob(l["digest"].as_str().unwrap()).exists(), "{l}");
    }

    // rm: gone from the list, and the daemon keeps answering (inspect, rm, ls is the sequence
    // that crashes Engine 28 when buildx runs it).
    let gone = build_named(&user, &unique("kiln-history-rm"));
    ok(user.kiln(&["history", "inspect", &gone]));
    ok(user.kiln(&["history", "rm", &gone]));
    assert!(
        !ls_json(&user)
            .iter()
            .any(|r| r["ref"].as_str().unwrap().ends_with(&format!("/{gone}"))),
        "{gone} still listed after rm"
    );
    let err = fails(user.kiln(&["history", "inspect", &gone]));
    assert!(err.contains("no record found for ref"), "{err}");
    let err = fails(user.kiln(&["history", "rm", &gone]));
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn history_filters_by_status_engine28() {
    let user = User::new(Engine::Modern);
    build_named(&user, &unique("kiln-history-filter"));
    let out = ok(user.kiln(&[
        "history",
        "ls",
        "--format",
        "json",
        "--filter",
        "status=completed",
    ]));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines.iter().all(|r| r["status"] == "Completed"),
        "{lines:?}"
    );
    let err = fails(user.kiln(&["history", "ls", "--filter", "nope=1"]));
    assert!(err.contains("unsupported filter"), "{err}");
}

#[test]
fn history_rm_needs_refs_or_all() {
    let user = User::new(Engine::Modern);
    let err = fails(user.kiln(&["history", "rm"]));
    assert!(err.contains("rm requires at least one argument"), "{err}");
}

#[test]
fn history_is_a_clear_error_on_engine20() {
    let user = User::new(Engine::Old);
    let err = fails(user.kiln(&["history", "ls"]));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("has no build history"), "{err}");
    let err = fails(user.kiln(&["history", "inspect"]));
    assert!(err.contains("has no build history"), "{err}");
}

/// A git checkout with a remote whose URL carries credentials, one commit, the Dockerfile in
/// `app/`.
fn git_checkout() -> tempfile::TempDir {
    let repo = tempfile::Builder::new()
        .prefix("kiln-git-")
        .tempdir()
        .unwrap();
    write_tree(
        repo.path(),
        &[(
            "app/Dockerfile",
            &format!("FROM busybox\nRUN echo {}\n", unique("git-info")),
        )],
    );
    let git = |args: &[&str]| {
        ok(std::process::Command::new("git")
            .args(["-c", "user.name=kiln", "-c", "user.email=kiln@test"])
            .args(args)
            .current_dir(repo.path()));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "init"]);
    git(&[
        "remote",
        "add",
        "origin",
        "https://kiln:s3cret-token@git.example/org/app.git",
    ]);
    repo
}

/// The ref of the newest record `tool` (kiln or buildx) made, via its metadata file.
fn build_in(cmd: std::process::Command, dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let meta = dir.join(format!("meta-{}.json", unique("m")));
    let mut cmd = cmd;
    cmd.args([
        "--progress=quiet",
        "--metadata-file",
        meta.to_str().unwrap(),
        "app",
    ])
    .current_dir(dir)
    .envs(env.iter().copied());
    ok(cmd);
    ref_in_metadata(&meta)
}

/// A build from a git checkout records its repository (credentials stripped) and commit as
/// buildx records them, `history ls --local` finds it from inside the checkout, and
/// `BUILDX_GIT_INFO=false` leaves them out.
#[test]
fn git_information_reaches_the_record_as_with_buildx() {
    let user = User::new(Engine::Modern);
    let repo = git_checkout();
    let kiln_ref = build_in(user.kiln(&["build"]), repo.path(), &[]);
    let buildx_ref = build_in(user.buildx(&["build"]), repo.path(), &[]);
    let inspect = |r: &str| -> serde_json::Value {
        serde_json::from_slice(
            &ok(user.kiln(&["history", "inspect", "--format", "json", r])).stdout,
        )
        .unwrap()
    };
    let (k, b) = (inspect(&kiln_ref), inspect(&buildx_ref));
    for field in ["Name", "Dockerfile", "VCSRepository", "VCSRevision"] {
        assert_eq!(k[field], b[field], "{field}: {k:#} vs {b:#}");
    }
    assert_eq!(k["VCSRepository"], "https://git.example/org/app.git");
    assert_eq!(k["VCSRevision"].as_str().unwrap().len(), 40, "{k:#}");
    assert!(!k.to_string().contains("s3cret-token"), "{k:#}");

    let elsewhere = build_named(&user, "not-in-git");
    let mut ls = user.kiln(&["history", "ls", "--local", "--format", "json"]);
    let listed = stdout(&ok(ls.current_dir(repo.path())));
    assert!(listed.contains(&kiln_ref), "{listed}");
    assert!(listed.contains(&buildx_ref), "{listed}");
    assert!(!listed.contains(&elsewhere), "{listed}");

    // BUILDX_GIT_LABELS=1 labels the image with the same values buildx uses.
    let labels = |cmd: std::process::Command, tag: &str| -> serde_json::Value {
        let mut cmd = cmd;
        cmd.args(["-t", tag]);
        build_in(cmd, repo.path(), &[("BUILDX_GIT_LABELS", "1")]);
        let out = ok(user.docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .Config.Labels}}",
            tag,
        ]));
        let _ = run(user.docker(&["image", "rm", "-f", tag]));
        serde_json::from_str(&stdout(&out)).unwrap()
    };
    let (kt, bt) = (unique("kiln-git-labels"), unique("buildx-git-labels"));
    let (kl, bl) = (
        labels(user.kiln(&["build"]), &kt),
        labels(user.buildx(&["build"]), &bt),
    );
    assert_eq!(kl, bl);
    assert_eq!(
        kl["com.docker.image.source.entrypoint"], "app/Dockerfile",
        "{kl:#}"
    );
    assert_eq!(
        kl["org.opencontainers.image.source"],
        "https://git.example/org/app.git"
    );

    let off = build_in(
        user.kiln(&["build"]),
        repo.path(),
        &[("BUILDX_GIT_INFO", "false")],
    );
    assert!(inspect(&off).get("VCSRepository").is_none());

    // Without git the build of the checkout's root still runs, as with buildx, and says what
    // it could not record.
    let no_git = tempfile::tempdir().unwrap();
    let mut cmd = user.kiln(&["build", "--progress=plain", "-f", "app/Dockerfile", "."]);
    let out = ok(cmd.current_dir(repo.path()).env("PATH", no_git.path()));
    assert!(
        stderr(&out).contains(
            "WARNING: current commit information was not captured by the build: git was not found in the system"
        ),
        "{}",
        stderr(&out)
    );
}

/// Each tool names the builds it started from what it remembers of their paths: kiln's names
/// for its builds are buildx's names for buildx's.
#[test]
fn builds_are_named_from_their_paths_as_buildx_names_them() {
    let user = User::new(Engine::Modern);
    let dir = tempfile::tempdir().unwrap();
    let marker = unique("named");
    write_tree(
        dir.path(),
        &[
            (
                "myproj/Dockerfile",
                &format!("FROM busybox\nRUN echo {marker}\n"),
            ),
            (
                "myproj/docker/App.Dockerfile",
                &format!("FROM busybox\nRUN echo {marker} app\n"),
            ),
        ],
    );
    let names = |tool: &str| -> Vec<String> {
        let mut refs = Vec::new();
        for args in [
            &["myproj"][..],
            &["-f", "myproj/docker/App.Dockerfile", "myproj"][..],
        ] {
            let meta = dir.path().join(format!("{tool}-{}.json", unique("m")));
            let mut cmd = match tool {
                "kiln" => user.kiln(&["build"]),
                _ => user.buildx(&["build"]),
            };
            cmd.args([
                "--progress=quiet",
                "--metadata-file",
                meta.to_str().unwrap(),
            ])
            .args(args)
            .current_dir(dir.path());
            ok(cmd);
            refs.push(ref_in_metadata(&meta));
        }
        let ls = match tool {
            "kiln" => user.kiln(&["history", "ls", "--format", "json"]),
            _ => user.buildx(&["history", "ls", "--format", "json"]),
        };
        let listed: Vec<serde_json::Value> = stdout(&ok(ls))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        refs.iter()
            .map(|r| {
                let rec = listed
                    .iter()
                    .find(|l| l["ref"].as_str().unwrap().ends_with(r.as_str()))
                    .unwrap_or_else(|| panic!("{r} not listed by {tool}"));
                rec["name"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let kiln = names("kiln");
    assert_eq!(kiln, ["myproj", "myproj/docker/App.Dockerfile"]);
    assert_eq!(kiln, names("buildx"));
}
