//! Work kiln owes a daemon when a command ends before its own code could finish it: above all
//! on Ctrl-C, which drops the command's future mid-way. A containerd import registers the
//! deletion of its lease here, so an interrupted import does not leave blobs pinned until
//! containerd expires the lease an hour later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;

type Cleanup = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

static PENDING: Mutex<Vec<(u64, Cleanup)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A registered cleanup. Dropping it leaves the cleanup to [`run_pending`] (a dropped future
/// never got to do it); [`Pending::done`] says the owner did the work itself.
#[must_use = "call done() once the work is done, or the cleanup runs at exit"]
pub struct Pending(u64);

impl Pending {
    pub fn done(self) {
        PENDING
            .lock()
            .expect("not poisoned")
            .retain(|(id, _)| *id != self.0);
    }
}

/// Registers `cleanup` to run when the command ends without having called [`Pending::done`].
pub fn register(cleanup: impl FnOnce() -> BoxFuture<'static, ()> + Send + 'static) -> Pending {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    PENDING
        .lock()
        .expect("not poisoned")
        .push((id, Box::new(cleanup)));
    Pending(id)
}

/// Runs every cleanup still registered, all at once, giving them at most `limit`.
pub async fn run_pending(limit: Duration) {
    let pending: Vec<(u64, Cleanup)> = std::mem::take(&mut *PENDING.lock().expect("not poisoned"));
    if pending.is_empty() {
        return;
    }
    let all = futures::future::join_all(pending.into_iter().map(|(_, c)| c()));
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!("cleanups after the command did not finish within {limit:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    #[tokio::test]
    async fn only_cleanups_left_undone_run() {
        let ran = Arc::new(AtomicUsize::new(0));
        let counter = |n: usize| {
            let ran = ran.clone();
            move || -> BoxFuture<'static, ()> {
                Box::pin(async move {
                    ran.fetch_add(n, Ordering::SeqCst);
                })
            }
        };
        register(counter(1)).done();
        drop(register(counter(10)));
        run_pending(Duration::from_secs(1)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 10);
        // Each runs once.
        run_pending(Duration::from_secs(1)).await;
        assert_eq!(ran.load(Ordering::SeqCst), 10);
    }
}
