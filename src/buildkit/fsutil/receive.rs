//! The receiving end of fsutil's DiffCopy: BuildKit pushing a `type=local` export into a
//! directory through FileSend, merged into what is already there (BuildKit's
//! `syncTargetDiffCopy`: nothing is deleted, owners become the current user).
//!
//! Three parts run together: the packet reader validates STATs (clean relative paths, walk
//! order, known hardlink targets) and forwards everything to a blocking disk writer through a
//! bounded channel, so a slow disk slows the daemon instead of filling memory; the disk writer
//! creates each entry as its STAT arrives (regular files empty), asks for contents with a REQ,
//! streams DATA into the file, and sends FIN once the listing is complete and every requested file
//! is written; REQ/FIN/ERR go out through an unbounded queue so the writer never waits on the
//! network while the daemon waits on it.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{anyhow, bail, Context as _};
use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::{Packet, Stat};
use futures::{Stream, StreamExt};
use kiln_bake::gopath::clean_path;
use tokio::sync::mpsc;

use super::packet;
use super::stat::{
    carries_data, is_dir, is_symlink, make_node, mode, set_times, unix_perm, write_xattrs,
};

/// Work for the disk writer, in stream order.
enum Op {
    Entry(u32, Stat),
    EndOfListing,
    Data(u32, Vec<u8>),
}

/// Receives a tree from the daemon into `dest` (created if missing), merging with its contents.
pub async fn receive_dir<S>(
    dest: PathBuf,
    mut incoming: S,
    tx: mpsc::Sender<Result<Packet, tonic::Status>>,
) -> anyhow::Result<()>
where
    S: Stream<Item = Result<Packet, tonic::Status>> + Unpin + Send,
{
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dest)
        .with_context(|| format!("failed to create synctarget dest dir {}", dest.display()))?;

    let (ops_tx, ops_rx) = mpsc::channel::<Op>(64);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Packet>();

    let writer_task = {
        let dest = dest.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = DiskWriter::new(dest, out_tx.clone());
            let res = w.run(ops_rx);
            if let Err(e) = &res {
                let _ = out_tx.send(err_packet(e));
            }
            res
        })
    };
    let writing = async {
        writer_task
            .await
            .map_err(|e| anyhow!("writing the export panicked or was cancelled: {e}"))?
    };

    let forwarding = {
        let tx = tx.clone();
        async move {
            while let Some(p) = out_rx.recv().await {
                if tx.send(Ok(p)).await.is_err() {
                    bail!("the daemon closed the export transfer");
                }
            }
            Ok(())
        }
    };

    let reading = async move {
        let res = read_packets(&mut incoming, &ops_tx).await;
        if let Err(e) = &res {
            // The writer is gone or the stream is bad; tell the daemon directly.
            let _ = tx.try_send(Ok(err_packet(e)));
        }
        // Dropping the op channel here lets the writer notice the end of input.
        drop(ops_tx);
        res
    };

    tokio::try_join!(reading, writing, forwarding)?;
    Ok(())
}

fn err_packet(e: &anyhow::Error) -> Packet {
    Packet {
        r#type: PacketType::PacketErr as i32,
        data: format!("{e:#}").into_bytes(),
        ..Default::default()
    }
}

/// Reads packets until the sender's FIN, validating STATs and passing work to the writer.
async fn read_packets<S>(incoming: &mut S, ops: &mpsc::Sender<Op>) -> anyhow::Result<()>
where
    S: Stream<Item = Result<Packet, tonic::Status>> + Unpin + Send,
{
    let mut order = OrderCheck::default();
    let mut regular_files: HashSet<String> = HashSet::new();
    let mut next_id: u32 = 0;
    let writer_gone = || anyhow!("the export writer stopped");
    loop {
        let p = match incoming.next().await {
            Some(Ok(p)) => p,
            Some(Err(status)) => bail!("receiving from the daemon: {}", status.message()),
            None => bail!("the daemon closed the export transfer before it finished"),
        };
        match PacketType::try_from(p.r#type) {
            Ok(PacketType::PacketErr) => {
                bail!("error from sender: {}", String::from_utf8_lossy(&p.data))
            }
            Ok(PacketType::PacketStat) => {
                let Some(stat) = p.stat else {
                    ops.send(Op::EndOfListing)
                        .await
                        .map_err(|_| writer_gone())?;
                    continue;
                };
                let id = next_id;
                next_id += 1;
                validate_path(&stat.path)?;
                order.check(&stat.path, is_dir(stat.mode))?;
                if !is_dir(stat.mode) && !is_symlink(stat.mode) {
                    if stat.linkname.is_empty() {
                        regular_files.insert(stat.path.clone());
                    } else if !regular_files.contains(&stat.linkname) {
                        bail!(
                            "invalid link {} to unknown path: {:?}",
                            stat.path,
                            stat.linkname
                        );
                    }
                }
                ops.send(Op::Entry(id, stat))
                    .await
                    .map_err(|_| writer_gone())?;
            }
            Ok(PacketType::PacketData) => {
                ops.send(Op::Data(p.id, p.data))
                    .await
                    .map_err(|_| writer_gone())?;
            }
            // The writer sends FIN only when done, and the sender answers it; the transfer is
            // complete. (The daemon may keep its half open until its export context ends, so
            // waiting for end-of-stream would only delay the build.)
            Ok(PacketType::PacketFin) => return Ok(()),
            _ => {}
        }
    }
}

/// Rejects paths that are not clean and relative, so nothing lands outside the destination.
fn validate_path(p: &str) -> anyhow::Result<()> {
    if p.is_empty() || p == "." {
        bail!("invalid path {p:?} in export: empty");
    }
    if p.starts_with('/') {
        bail!("invalid path {p:?} in export: absolute path");
    }
    if clean_path(p) != p {
        bail!("invalid path {p:?} in export: unclean path");
    }
    if p == ".." || p.starts_with("../") {
        bail!("invalid path {p:?} in export: escapes the destination");
    }
    Ok(())
}

/// Checks that paths arrive in walk order with their parent directories first, which is what
/// makes creating each entry as it arrives safe.
struct OrderCheck {
    /// Open directories from the root down, each with the last name seen in it.
    stack: Vec<(String, String)>,
}

impl Default for OrderCheck {
    fn default() -> Self {
        OrderCheck {
            stack: vec![(String::new(), String::new())],
        }
    }
}

impl OrderCheck {
    fn check(&mut self, p: &str, entry_is_dir: bool) -> anyhow::Result<()> {
        let (dir, base) = p.rsplit_once('/').unwrap_or(("", p));
        while let Some((top, _)) = self.stack.last() {
            if top.is_empty() || top == dir || dir.starts_with(&format!("{top}/")) {
                break;
            }
            self.stack.pop();
        }
        let top = self
            .stack
            .last_mut()
            .expect("the root never leaves the stack");
        if top.0 != dir || top.1.as_str() >= base {
            let prev = if top.0.is_empty() {
                top.1.clone()
            } else {
                format!("{}/{}", top.0, top.1)
            };
            bail!("changes out of order: {p:?} after {prev:?}");
        }
        top.1 = base.to_string();
        if entry_is_dir {
            self.stack.push((p.to_string(), String::new()));
        }
        Ok(())
    }
}

/// A file whose contents are on their way.
struct Pending {
    path: PathBuf,
    mod_time: i64,
    file: Option<File>,
    /// Mode to put back after writing into a file that was created read-only.
    restore_mode: Option<u32>,
}

struct DiskWriter {
    dest: PathBuf,
    uid: u32,
    gid: u32,
    out: mpsc::UnboundedSender<Packet>,
    pending: HashMap<u32, Pending>,
    /// Directory metadata applied only at the end, because writing their contents would undo
    /// it (mtimes) or be refused by it (modes without owner write, for a non-root user).
    dir_fixups: Vec<DirFixup>,
}

struct DirFixup {
    path: PathBuf,
    /// Only for directories created here, as fsutil does; merged ones keep whatever their
    /// new contents leave.
    mtime: Option<i64>,
    perm: Option<u32>,
}

impl DiskWriter {
    fn new(dest: PathBuf, out: mpsc::UnboundedSender<Packet>) -> Self {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        DiskWriter {
            dest,
            uid,
            gid,
            out,
            pending: HashMap::new(),
            dir_fixups: Vec::new(),
        }
    }

    fn run(&mut self, mut ops: mpsc::Receiver<Op>) -> anyhow::Result<()> {
        let mut listing_done = false;
        while let Some(op) = ops.blocking_recv() {
            match op {
                Op::Entry(id, stat) => self.create(id, stat)?,
                Op::EndOfListing => listing_done = true,
                Op::Data(id, data) => self.write(id, &data)?,
            }
            if listing_done && self.pending.is_empty() {
                self.finish()?;
                self.send(packet(PacketType::PacketFin))?;
                return Ok(());
            }
        }
        match self.pending.keys().next() {
            Some(id) => bail!(
                "the export ended before {} was complete",
                self.pending[id].path.display()
            ),
            None => bail!("the export ended before the file listing was complete"),
        }
    }

    fn send(&self, p: Packet) -> anyhow::Result<()> {
        self.out
            .send(p)
            .map_err(|_| anyhow!("the daemon closed the export transfer"))
    }

    /// Creates one entry, replacing whatever is at its path unless both are directories.
    fn create(&mut self, id: u32, mut stat: Stat) -> anyhow::Result<()> {
        let dest_path = self.dest.join(&stat.path);
        stat.uid = self.uid;
        stat.gid = self.gid;

        let old = match std::fs::symlink_metadata(&dest_path) {
            Ok(md) => Some(md),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("lstat {}", dest_path.display())),
        };
        let new_is_dir = is_dir(stat.mode);
        if let Some(old) = &old {
            if old.is_dir() && new_is_dir {
                let perm = self.defer_dir_perm(&mut stat);
                if perm.is_some() {
                    self.dir_fixups.push(DirFixup {
                        path: dest_path.clone(),
                        mtime: None,
                        perm,
                    });
                }
                return rewrite_metadata(&dest_path, &stat).with_context(|| {
                    format!("error setting dir metadata for {}", dest_path.display())
                });
            }
        }
        // Something is already there: build the new entry beside it and swap it in, so the old
        // one is never half-replaced.
        let new_path = match &old {
            Some(_) => dest_path
                .parent()
                .unwrap_or(&self.dest)
                .join(format!(".tmp.{}", next_suffix())),
            None => dest_path.clone(),
        };

        let mut wants_data = false;
        if new_is_dir {
            let perm = self.defer_dir_perm(&mut stat);
            std::fs::DirBuilder::new()
                .mode(unix_perm(stat.mode))
                .create(&new_path)
                .with_context(|| format!("failed to create dir {}", new_path.display()))?;
            self.dir_fixups.push(DirFixup {
                path: dest_path.clone(),
                mtime: Some(stat.mod_time),
                perm,
            });
        } else if stat.mode & (mode::DEVICE | mode::NAMED_PIPE) != 0 {
            make_node(&new_path, stat.mode, stat.devmajor, stat.devminor)
                .with_context(|| format!("failed to create device {}", new_path.display()))?;
        } else if is_symlink(stat.mode) {
            std::os::unix::fs::symlink(&stat.linkname, &new_path)
                .with_context(|| format!("failed to symlink {}", new_path.display()))?;
        } else if !stat.linkname.is_empty() {
            std::fs::hard_link(self.dest.join(&stat.linkname), &new_path).with_context(|| {
                format!("failed to link {} to {}", new_path.display(), stat.linkname)
            })?;
        } else {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(unix_perm(stat.mode))
                .open(&new_path)
                .with_context(|| format!("failed to create {}", new_path.display()))?;
            wants_data = carries_data(stat.mode);
        }

        rewrite_metadata(&new_path, &stat)
            .with_context(|| format!("error setting metadata for {}", new_path.display()))?;

        if let Some(old) = &old {
            if old.is_dir() != new_is_dir {
                let removed = if old.is_dir() {
                    std::fs::remove_dir_all(&dest_path)
                } else {
                    std::fs::remove_file(&dest_path)
                };
                removed.with_context(|| format!("failed to remove {}", dest_path.display()))?;
            }
            std::fs::rename(&new_path, &dest_path).with_context(|| {
                format!(
                    "failed to rename {} to {}",
                    new_path.display(),
                    dest_path.display()
                )
            })?;
        }

        if wants_data {
            self.pending.insert(
                id,
                Pending {
                    path: dest_path,
                    mod_time: stat.mod_time,
                    file: None,
                    restore_mode: None,
                },
            );
            self.send(Packet {
                r#type: PacketType::PacketReq as i32,
                id,
                ..Default::default()
            })?;
        }
        Ok(())
    }

    /// Appends a DATA chunk; an empty one completes the file.
    fn write(&mut self, id: u32, data: &[u8]) -> anyhow::Result<()> {
        let Some(pending) = self.pending.get_mut(&id) else {
            bail!("invalid file request {id}");
        };
        if data.is_empty() {
            let pending = self.pending.remove(&id).expect("looked up above");
            return finish_file(pending);
        }
        if pending.file.is_none() {
            let (file, restore) = open_for_write(&pending.path)?;
            pending.file = Some(file);
            pending.restore_mode = restore;
        }
        let file = pending.file.as_mut().expect("opened above");
        file.write_all(data)
            .with_context(|| format!("failed to write {}", pending.path.display()))
    }

    /// A non-root user cannot fill a directory without owner write and search permission, so
    /// such a directory is opened up (`stat` is changed) until the end; returns the final mode.
    fn defer_dir_perm(&self, stat: &mut Stat) -> Option<u32> {
        if self.uid == 0 || stat.mode & 0o700 == 0o700 {
            return None;
        }
        let final_perm = unix_perm(stat.mode);
        stat.mode |= 0o700;
        Some(final_perm)
    }

    /// Applies deferred directory modes and mtimes, innermost first so that closing a parent
    /// never locks us out of a child.
    fn finish(&mut self) -> anyhow::Result<()> {
        for fix in self.dir_fixups.drain(..).rev() {
            match std::fs::symlink_metadata(&fix.path) {
                Ok(md) if md.is_dir() => {}
                _ => continue,
            }
            if let Some(perm) = fix.perm {
                std::fs::set_permissions(&fix.path, std::fs::Permissions::from_mode(perm))
                    .with_context(|| format!("chmod {}", fix.path.display()))?;
            }
            if let Some(mtime) = fix.mtime {
                set_times(&fix.path, mtime)?;
            }
        }
        Ok(())
    }
}

/// Opens a freshly created file for its contents, making it writable for the moment if its
/// final mode is read-only.
fn open_for_write(path: &Path) -> anyhow::Result<(File, Option<u32>)> {
    match OpenOptions::new().write(true).open(path) {
        Ok(f) => Ok((f, None)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let md = std::fs::metadata(path)
                .with_context(|| format!("failed to open {}", path.display()))?;
            let perm = md.permissions().mode() & 0o7777;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(perm | 0o222))
                .with_context(|| format!("failed to open {}", path.display()))?;
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("failed to open {}", path.display()))?;
            Ok((f, Some(perm)))
        }
        Err(e) => Err(e).with_context(|| format!("failed to open {}", path.display())),
    }
}

fn finish_file(pending: Pending) -> anyhow::Result<()> {
    // Closed before the mtime is set, so no later write can touch it.
    drop(pending.file);
    if let Some(perm) = pending.restore_mode {
        std::fs::set_permissions(&pending.path, std::fs::Permissions::from_mode(perm))
            .with_context(|| format!("failed to chmod {}", pending.path.display()))?;
    }
    set_times(&pending.path, pending.mod_time)?;
    Ok(())
}

/// Applies owner, mode, xattrs and times from a stat, in fsutil's order (chown before chmod, as
/// chown may clear set-id bits).
fn rewrite_metadata(path: &Path, stat: &Stat) -> anyhow::Result<()> {
    write_xattrs(path, &stat.xattrs);
    std::os::unix::fs::lchown(path, Some(stat.uid), Some(stat.gid))
        .with_context(|| format!("lchown {}", path.display()))?;
    if !is_symlink(stat.mode) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_perm(stat.mode)))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    set_times(path, stat.mod_time)?;
    Ok(())
}

/// A short pseudo-random suffix for temporary names next to the entry being replaced.
fn next_suffix() -> String {
    static STATE: AtomicU32 = AtomicU32::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id();
    let prev = STATE.fetch_add(1, Ordering::Relaxed);
    let r = seed
        .wrapping_add(prev)
        .wrapping_mul(1_664_525)
        .wrapping_add(1_013_904_223);
    format!("{:09}", r % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escaping_the_destination_are_rejected() {
        for bad in [
            "",
            ".",
            "/etc/passwd",
            "../x",
            "..",
            "a/../../b",
            "a//b",
            "a/./b",
            "a/",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a/b", ".hidden", "a..b", "..a"] {
            assert!(validate_path(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn order_check_requires_sorted_paths_with_parents_first() {
        let mut c = OrderCheck::default();
        for (p, d) in [
            ("a", true),
            ("a/b", true),
            ("a/b/c", false),
            ("a/c", false),
            ("b", false),
        ] {
            c.check(p, d).unwrap();
        }
        assert!(c.check("a", false).is_err(), "going backwards");

        let mut c = OrderCheck::default();
        assert!(c.check("x/y", false).is_err(), "parent never sent");

        let mut c = OrderCheck::default();
        c.check("f", false).unwrap();
        assert!(c.check("f/y", false).is_err(), "a file is not a parent");

        let mut c = OrderCheck::default();
        c.check("b", false).unwrap();
        assert!(c.check("b", false).is_err(), "duplicate");
    }
}
