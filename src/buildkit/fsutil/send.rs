//! The sending end of fsutil's DiffCopy: kiln answering BuildKit's FileSync for a build context.
//!
//! The walk runs on a blocking thread and streams one STAT per entry, then an empty STAT. Meanwhile
//! the daemon REQuests ids (a stat's index in that sequence) in any order; four workers answer
//! them concurrently, each reading its file in 32 KiB chunks straight onto the bounded outgoing
//! channel, so memory stays flat however large the file. A FIN from the daemon is answered with
//! FIN once every requested file has been sent.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context as _};
use bollard_buildkit_proto::fsutil::types::packet::PacketType;
use bollard_buildkit_proto::fsutil::types::Packet;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::stat::carries_data;
use super::walk::{walk, Entry};
use super::{packet, FilterOpts, Outgoing};

/// fsutil copies files through a 32 KiB buffer; DATA packets are at most that large.
const CHUNK: usize = 32 * 1024;
/// Files sent at the same time.
const WORKERS: usize = 4;
/// REQs accepted ahead of the workers before the request reader waits for them.
const QUEUE: usize = 128;

/// Sets the flag when dropped, so blocking threads stop once the transfer is abandoned.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Files that may still be requested: id -> path on this host. An id is taken out when
/// requested, so each file is sent at most once.
type Requestable = Arc<Mutex<HashMap<u32, PathBuf>>>;

/// Sends the tree at `root`, filtered by `filter`, to the daemon at the other end of
/// `incoming`/`tx`. Owners are sent as 0:0, as buildx does for build contexts.
pub async fn send_dir<S>(
    root: PathBuf,
    filter: FilterOpts,
    mut incoming: S,
    tx: mpsc::Sender<Result<Packet, tonic::Status>>,
) -> anyhow::Result<()>
where
    S: Stream<Item = Result<Packet, tonic::Status>> + Unpin + Send,
{
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let files: Requestable = Arc::default();

    let walk_task = {
        let (files, tx, cancel) = (files.clone(), tx.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || send_stats(&root, &filter, &files, &tx, &cancel))
    };
    let walking = async {
        walk_task
            .await
            .map_err(|e| anyhow!("walking the directory panicked or was cancelled: {e}"))?
    };

    let (queue_tx, queue_rx) = mpsc::channel::<(u32, PathBuf)>(QUEUE);
    let queue_rx = Arc::new(tokio::sync::Mutex::new(queue_rx));
    let workers = futures::future::try_join_all((0..WORKERS).map(|_| {
        let (queue_rx, tx, cancel) = (queue_rx.clone(), tx.clone(), cancel.clone());
        async move {
            loop {
                let next = queue_rx.lock().await.recv().await;
                let Some((id, path)) = next else {
                    return Ok::<(), anyhow::Error>(());
                };
                let (tx, cancel) = (tx.clone(), cancel.clone());
                tokio::task::spawn_blocking(move || send_file(id, &path, &tx, &cancel))
                    .await
                    .map_err(|e| anyhow!("sending a file panicked or was cancelled: {e}"))??;
            }
        }
    }));

    let requests = async {
        // Owning the queue here means the workers see it close when the daemon says FIN.
        let queue_tx = queue_tx;
        loop {
            let p = match incoming.next().await {
                Some(Ok(p)) => p,
                Some(Err(status)) => {
                    bail!("receiving from the daemon: {}", status.message())
                }
                None => bail!("the daemon closed the file transfer before it finished"),
            };
            match PacketType::try_from(p.r#type) {
                Ok(PacketType::PacketErr) => {
                    bail!("error from receiver: {}", String::from_utf8_lossy(&p.data))
                }
                Ok(PacketType::PacketReq) => {
                    let path = files
                        .lock()
                        .map_err(|_| anyhow!("file table poisoned"))?
                        .remove(&p.id)
                        .ok_or_else(|| anyhow!("invalid file id {}", p.id))?;
                    if queue_tx.send((p.id, path)).await.is_err() {
                        bail!("file senders stopped");
                    }
                }
                Ok(PacketType::PacketFin) => return Ok(()),
                // Nothing else is meaningful from a receiver; fsutil ignores it too.
                _ => {}
            }
        }
    };

    tokio::try_join!(walking, workers, requests)?;
    tx.send(Ok(packet(PacketType::PacketFin)))
        .await
        .map_err(|_| anyhow!("the daemon closed the file transfer before FIN"))?;
    Ok(())
}

/// Walks and streams the STAT packets (blocking). On failure the daemon also gets the error as
/// an ERR packet, as fsutil sends it.
fn send_stats(
    root: &std::path::Path,
    filter: &FilterOpts,
    files: &Requestable,
    tx: &Outgoing,
    cancel: &AtomicBool,
) -> anyhow::Result<()> {
    let mut next_id: u32 = 0;
    let res = walk(
        root,
        filter,
        cancel,
        &mut |Entry {
                  mut stat,
                  host_path,
              }| {
            let id = next_id;
            next_id += 1;
            if carries_data(stat.mode) {
                // Registered before the STAT goes out, so a REQ can never beat it.
                files
                    .lock()
                    .map_err(|_| anyhow!("file table poisoned"))?
                    .insert(id, host_path);
            }
            stat.uid = 0;
            stat.gid = 0;
            let path = stat.path.clone();
            let p = Packet {
                r#type: PacketType::PacketStat as i32,
                stat: Some(stat),
                ..Default::default()
            };
            tx.blocking_send(Ok(p))
                .map_err(|_| anyhow!("failed to send stat {path}: the daemon went away"))
        },
    );
    match res {
        Ok(()) => tx
            .blocking_send(Ok(packet(PacketType::PacketStat)))
            .map_err(|_| anyhow!("failed to send last stat: the daemon went away")),
        Err(e) => {
            let _ = tx.blocking_send(Ok(err_packet(&e)));
            Err(e)
        }
    }
}

fn err_packet(e: &anyhow::Error) -> Packet {
    Packet {
        r#type: PacketType::PacketErr as i32,
        data: format!("{e:#}").into_bytes(),
        ..Default::default()
    }
}

/// Streams one file as DATA packets followed by an empty DATA (blocking).
fn send_file(
    id: u32,
    path: &std::path::Path,
    tx: &Outgoing,
    cancel: &AtomicBool,
) -> anyhow::Result<()> {
    let res = (|| -> anyhow::Result<()> {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => Some(f),
            // A unix socket is listed as a plain file (fsutil drops the socket bit) but cannot
            // be opened; fsutil sends it empty, and so do we.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => None,
            Err(e) => return Err(e).with_context(|| format!("failed to open {}", path.display())),
        };
        if let Some(file) = file.as_mut() {
            loop {
                if cancel.load(Ordering::Relaxed) {
                    bail!("sending {} cancelled", path.display());
                }
                let mut buf = vec![0u8; CHUNK];
                let n = match file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(e).with_context(|| format!("failed to read {}", path.display()))
                    }
                };
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                let p = Packet {
                    r#type: PacketType::PacketData as i32,
                    id,
                    data: buf,
                    ..Default::default()
                };
                tx.blocking_send(Ok(p))
                    .map_err(|_| anyhow!("sending {}: the daemon went away", path.display()))?;
            }
        }
        let end = Packet {
            r#type: PacketType::PacketData as i32,
            id,
            ..Default::default()
        };
        tx.blocking_send(Ok(end))
            .map_err(|_| anyhow!("sending {}: the daemon went away", path.display()))
    })();
    if let Err(e) = &res {
        let _ = tx.blocking_send(Ok(err_packet(e)));
    }
    res
}
