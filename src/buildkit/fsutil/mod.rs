//! tonistiigi/fsutil's DiffCopy protocol, which BuildKit's session speaks to move directory trees:
//! kiln sends build contexts with [`send_dir`] (FileSync) and receives `type=local` exports with
//! [`receive_dir`] (FileSend).
//!
//! The protocol, over a bidirectional stream of `Packet`s: the sender walks its tree and sends a
//! STAT per entry in lexical depth-first order, then an empty STAT; the receiver REQuests the
//! contents of regular files by id (the stat's index in that sequence); the sender answers each
//! with DATA chunks and an empty DATA; when the receiver has everything it sends FIN, and the
//! sender answers FIN. Either side reports failure with an ERR packet carrying the message.
//!
//! What is sent must match what buildx (through fsutil) sends byte for byte, because BuildKit
//! hashes these stats for its cache: modes are Go `os.FileMode` bits, mtimes nanoseconds,
//! hardlinks point at the first sent path of their inode. This module does not parse gRPC
//! metadata or serve gRPC; the session handlers do that and hand over the streams.

mod followlinks;
pub mod patterns;
mod receive;
mod send;
pub mod stat;
mod walk;

use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::Packet;

pub use patterns::PatternMatcher;
pub use receive::receive_dir;
pub use send::send_dir;

/// Which parts of a directory the daemon asked for, from the FileSync call's metadata
/// (`include-patterns`, `exclude-patterns`, `followpaths`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterOpts {
    /// When non-empty, only paths matching one of these (and their parent directories) are sent.
    pub include_patterns: Vec<String>,
    /// Paths matching these are not sent (`.dockerignore` semantics, `!` exceptions included).
    pub exclude_patterns: Vec<String>,
    /// Paths whose symlinks are resolved, adding the targets to the include patterns.
    pub follow_paths: Vec<String>,
}

/// The outgoing half of a DiffCopy stream, as the session handlers provide it.
type Outgoing = tokio::sync::mpsc::Sender<Result<Packet, tonic::Status>>;

/// A packet of the given type with no payload (end of listing, FIN).
fn packet(t: PacketType) -> Packet {
    Packet {
        r#type: t as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::stat::mode;
    use super::walk::walk;
    use super::*;
    use bollard_buildkit_proto::fsutil::types::Stat;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};
    use tokio::sync::mpsc;
    use tokio_stream::wrappers::ReceiverStream;

    /// Wires `send_dir` to `receive_dir` through two bounded channels, as two gRPC streams would.
    async fn copy(src: &Path, dest: &Path, filter: FilterOpts) -> anyhow::Result<()> {
        let (to_receiver, from_sender) = mpsc::channel(16);
        let (to_sender, from_receiver) = mpsc::channel(16);
        let send = send_dir(
            src.to_path_buf(),
            filter,
            ReceiverStream::new(from_receiver),
            to_receiver,
        );
        let recv = receive_dir(
            dest.to_path_buf(),
            ReceiverStream::new(from_sender),
            to_sender,
        );
        let (s, r) = tokio::join!(send, recv);
        s?;
        r
    }

    /// Path, mode, mtime, symlink target and contents of one entry.
    type Snapshot = Vec<(String, u32, i64, Option<String>, Option<Vec<u8>>)>;

    /// Every entry under `root` with what a byte-for-byte comparison needs.
    fn snapshot(root: &Path) -> Snapshot {
        let mut out = Vec::new();
        walk(
            root,
            &FilterOpts::default(),
            &Default::default(),
            &mut |e| {
                let s: Stat = e.stat;
                let content = (s.mode & mode::TYPE == 0 && !s.path.is_empty())
                    .then(|| std::fs::read(&e.host_path).unwrap());
                let link = (s.mode & mode::SYMLINK != 0).then(|| s.linkname.clone());
                let mtime = if s.mode & mode::SYMLINK != 0 {
                    0
                } else {
                    s.mod_time
                };
                out.push((s.path, s.mode, mtime, link, content));
                Ok(())
            },
        )
        .unwrap();
        out
    }

    fn build_tree(root: &Path) {
        std::fs::create_dir_all(root.join("src/nested/deeper")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(root.join("src/nested/deeper/data.txt"), "deep").unwrap();
        std::fs::write(root.join("empty.txt"), "").unwrap();
        std::fs::write(root.join("node_modules/pkg/index.js"), "x").unwrap();
        std::fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(root.join("readonly"), "ro").unwrap();
        std::fs::set_permissions(
            root.join("readonly"),
            std::fs::Permissions::from_mode(0o444),
        )
        .unwrap();
        // A few MiB with a pattern that would show reordered or dropped chunks.
        let big: Vec<u8> = (0..5 * 1024 * 1024 + 123)
            .map(|i: u32| (i % 251) as u8)
            .collect();
        std::fs::write(root.join("big.bin"), big).unwrap();
        symlink("src/main.rs", root.join("link")).unwrap();
        symlink("/absolute/dangling", root.join("dangling")).unwrap();
        std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
    }

    #[tokio::test]
    async fn loopback_reproduces_a_tree_and_honours_excludes() {
        let src = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        build_tree(src.path());
        let out = dest.path().join("out");

        copy(
            src.path(),
            &out,
            FilterOpts {
                exclude_patterns: vec!["node_modules".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();

        let mut want = snapshot(src.path());
        want.retain(|e| !e.0.starts_with("node_modules"));
        assert_eq!(snapshot(&out), want);
        assert!(!out.join("node_modules").exists());
        let uid = unsafe { libc::getuid() };
        assert_eq!(std::fs::metadata(out.join("run.sh")).unwrap().uid(), uid);
    }

    #[tokio::test]
    async fn loopback_writes_read_only_dirs_and_files() {
        let src = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let sealed = src.path().join("sealed");
        std::fs::create_dir(&sealed).unwrap();
        std::fs::write(sealed.join("ro"), "read only").unwrap();
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        chmod(&sealed.join("ro"), 0o444);
        chmod(&sealed, 0o555);

        let res = copy(src.path(), dest.path(), FilterOpts::default()).await;
        let out = dest.path().join("sealed");
        let modes = (
            std::fs::metadata(&out).map(|m| m.mode() & 0o7777).ok(),
            std::fs::read_to_string(out.join("ro")).ok(),
        );
        // Let the temporary directories clean up after themselves.
        chmod(&sealed, 0o755);
        if out.exists() {
            chmod(&out, 0o755);
        }
        res.unwrap();
        assert_eq!(modes, (Some(0o555), Some("read only".to_string())));
        assert_eq!(snapshot(dest.path()), snapshot(src.path()));
    }

    #[tokio::test]
    async fn loopback_merges_into_existing_content() {
        let src = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("dir")).unwrap();
        std::fs::write(src.path().join("dir/new"), "new").unwrap();
        std::fs::write(src.path().join("was_dir"), "file now").unwrap();
        std::fs::write(src.path().join("file"), "replaced").unwrap();

        std::fs::create_dir_all(dest.path().join("dir")).unwrap();
        std::fs::write(dest.path().join("dir/old"), "kept").unwrap();
        std::fs::create_dir_all(dest.path().join("was_dir/inner")).unwrap();
        std::fs::write(dest.path().join("file"), "previous content, longer").unwrap();
        std::fs::write(dest.path().join("unrelated"), "kept").unwrap();

        copy(src.path(), dest.path(), FilterOpts::default())
            .await
            .unwrap();

        let read = |p: &str| std::fs::read_to_string(dest.path().join(p)).unwrap();
        assert_eq!(read("dir/new"), "new");
        assert_eq!(read("dir/old"), "kept");
        assert_eq!(read("was_dir"), "file now");
        assert_eq!(read("file"), "replaced");
        assert_eq!(read("unrelated"), "kept");
        let leftovers: Vec<_> = std::fs::read_dir(dest.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn loopback_keeps_hardlinks_linked() {
        let src = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a"), "shared").unwrap();
        std::fs::hard_link(src.path().join("a"), src.path().join("b")).unwrap();
        copy(src.path(), dest.path(), FilterOpts::default())
            .await
            .unwrap();
        let a = std::fs::metadata(dest.path().join("a")).unwrap();
        let b = std::fs::metadata(dest.path().join("b")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            std::fs::read_to_string(dest.path().join("b")).unwrap(),
            "shared"
        );
    }

    /// Plays the daemon's side by hand: checks the packet sequence `send_dir` produces, requests
    /// files out of order, and completes the FIN handshake.
    #[tokio::test]
    async fn sender_speaks_fsutils_packet_sequence() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        std::fs::write(src.path().join("d/one"), "1").unwrap();
        std::fs::write(src.path().join("two"), "22").unwrap();
        std::fs::write(src.path().join("Dockerfile"), "FROM scratch").unwrap();

        let (to_daemon, mut from_kiln) = mpsc::channel(4);
        let (to_kiln, from_daemon) = mpsc::channel(4);
        let task = tokio::spawn(send_dir(
            src.path().to_path_buf(),
            FilterOpts::default(),
            ReceiverStream::new(from_daemon),
            to_daemon,
        ));

        let mut stats = Vec::new();
        loop {
            let p = from_kiln.recv().await.unwrap().unwrap();
            assert_eq!(p.r#type, PacketType::PacketStat as i32);
            match p.stat {
                Some(s) => stats.push(s),
                None => break,
            }
        }
        let names: Vec<_> = stats.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(names, ["Dockerfile", "d", "d/one", "two"]);
        assert!(stats.iter().all(|s| s.uid == 0 && s.gid == 0));

        // Ask for `two` (id 3) before `d/one` (id 2), as a concurrent receiver may.
        for id in [3, 2] {
            to_kiln
                .send(Ok(Packet {
                    r#type: PacketType::PacketReq as i32,
                    id,
                    ..Default::default()
                }))
                .await
                .unwrap();
        }
        let mut got: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        let mut done = 0;
        while done < 2 {
            let p = from_kiln.recv().await.unwrap().unwrap();
            assert_eq!(p.r#type, PacketType::PacketData as i32);
            if p.data.is_empty() {
                done += 1;
            }
            got.entry(p.id).or_default().extend(p.data);
        }
        assert_eq!(got[&2], b"1");
        assert_eq!(got[&3], b"22");

        to_kiln
            .send(Ok(packet(PacketType::PacketFin)))
            .await
            .unwrap();
        let fin = from_kiln.recv().await.unwrap().unwrap();
        assert_eq!(fin.r#type, PacketType::PacketFin as i32);
        task.await.unwrap().unwrap();
        assert!(from_kiln.recv().await.is_none(), "stream ends after FIN");
    }

    #[tokio::test]
    async fn sender_rejects_ids_it_did_not_offer() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("d")).unwrap();
        let (to_daemon, mut from_kiln) = mpsc::channel(4);
        let (to_kiln, from_daemon) = mpsc::channel(4);
        let task = tokio::spawn(send_dir(
            src.path().to_path_buf(),
            FilterOpts::default(),
            ReceiverStream::new(from_daemon),
            to_daemon,
        ));
        // The directory (id 0) has no contents to request.
        to_kiln
            .send(Ok(Packet {
                r#type: PacketType::PacketReq as i32,
                id: 0,
                ..Default::default()
            }))
            .await
            .unwrap();
        let err = task.await.unwrap().unwrap_err();
        assert!(format!("{err:#}").contains("invalid file id 0"), "{err:#}");
        while from_kiln.recv().await.is_some() {}
    }

    #[tokio::test]
    async fn unreadable_file_fails_with_its_path_and_an_err_packet() {
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("gone.txt");
        std::fs::write(&file, "x").unwrap();
        let (to_daemon, mut from_kiln) = mpsc::channel(16);
        let (to_kiln, from_daemon) = mpsc::channel(4);
        let task = tokio::spawn(send_dir(
            src.path().to_path_buf(),
            FilterOpts::default(),
            ReceiverStream::new(from_daemon),
            to_daemon,
        ));
        while from_kiln.recv().await.unwrap().unwrap().stat.is_some() {}
        std::fs::remove_file(&file).unwrap();
        to_kiln
            .send(Ok(Packet {
                r#type: PacketType::PacketReq as i32,
                id: 0,
                ..Default::default()
            }))
            .await
            .unwrap();
        let err = task.await.unwrap().unwrap_err();
        assert!(format!("{err:#}").contains("gone.txt"), "{err:#}");
        let p = from_kiln.recv().await.unwrap().unwrap();
        assert_eq!(p.r#type, PacketType::PacketErr as i32);
        assert!(String::from_utf8_lossy(&p.data).contains("gone.txt"));
    }

    #[tokio::test]
    async fn receiver_rejects_paths_outside_the_destination() {
        for bad in ["../evil", "/etc/evil", "a/../../evil"] {
            let dest = tempfile::tempdir().unwrap();
            let (to_kiln, from_daemon) = mpsc::channel(4);
            let (to_daemon, mut from_kiln) = mpsc::channel(4);
            to_kiln
                .send(Ok(Packet {
                    r#type: PacketType::PacketStat as i32,
                    stat: Some(Stat {
                        path: bad.into(),
                        mode: 0o644,
                        ..Default::default()
                    }),
                    ..Default::default()
                }))
                .await
                .unwrap();
            let err = receive_dir(
                dest.path().join("out"),
                ReceiverStream::new(from_daemon),
                to_daemon,
            )
            .await
            .unwrap_err();
            assert!(format!("{err:#}").contains(bad), "{err:#}");
            let p = from_kiln.recv().await.unwrap().unwrap();
            assert_eq!(p.r#type, PacketType::PacketErr as i32);
            drop(to_kiln);
        }
    }

    #[tokio::test]
    async fn include_and_follow_paths_fetch_just_the_dockerfile() {
        let src = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("docker")).unwrap();
        std::fs::write(src.path().join("docker/prod.Dockerfile"), "FROM scratch").unwrap();
        symlink("docker/prod.Dockerfile", src.path().join("Dockerfile")).unwrap();
        std::fs::write(src.path().join(".dockerignore"), "*.log").unwrap();
        std::fs::write(src.path().join("app.log"), "noise").unwrap();
        copy(
            src.path(),
            dest.path(),
            FilterOpts {
                include_patterns: vec!["Dockerfile".into(), ".dockerignore".into()],
                follow_paths: vec!["Dockerfile".into(), ".dockerignore".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let mut names: Vec<PathBuf> = Vec::new();
        walk(
            dest.path(),
            &FilterOpts::default(),
            &Default::default(),
            &mut |e| {
                names.push(e.stat.path.into());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "docker",
                "docker/prod.Dockerfile"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("Dockerfile")).unwrap(),
            "FROM scratch"
        );
    }
}
