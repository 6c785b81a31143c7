//! The threads that serve the proxied connections (`server.workers`, one per core by
//! default): each runs its own single-threaded tokio runtime and owns every connection
//! handed to it from the first byte to the last, so the tasks one request involves (its
//! client connection, its upstream connection, see [`worker::current`]) run on one thread and
//! never wake another. The accept loops stay on the caller's runtime and hand each new
//! connection to the worker with the fewest open ones.
//!
//! This is nginx's and pingora's model rather than tokio's work-stealing scheduler: on the
//! proxy path, stealing costs cross-thread wake-ups (futex calls, context switches) on
//! every request, and a connection has nothing to gain from moving between cores.

use crate::worker;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// A connection handed to a worker: called on the worker's thread, inside its runtime
/// (where it registers the socket and spawns the connection's task).
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// The worker threads. Dropping the last handle closes their queues: each then finishes
/// the connections it still serves (the accept loops have waited for them already, up to
/// `server.shutdown_grace`), drops its runtime and exits.
pub(super) struct Workers {
    queues: Vec<Queue>,
    /// Where the next search for the least loaded worker starts (ties go round-robin).
    next: AtomicUsize,
}

struct Queue {
    jobs: mpsc::UnboundedSender<Job>,
    /// Open connections on this worker.
    open: Arc<AtomicUsize>,
}

/// Decrements its worker's count of open connections when the connection ends.
pub(super) struct Assigned(Arc<AtomicUsize>);

impl Drop for Assigned {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` worker threads. The receivers report each thread's end.
    pub(super) fn start(count: usize) -> io::Result<(Workers, Vec<oneshot::Receiver<()>>)> {
        let mut queues = Vec::with_capacity(count);
        let mut ended = Vec::with_capacity(count);
        for index in 1..=count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
            let (end, end_seen) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("oidc-gateway-worker-{index}"))
                .spawn(move || {
                    worker::set_current(index);
                    runtime.block_on(async move {
                        while let Some(job) = queue.recv().await {
                            job();
                        }
                    });
                    // Cancels what is left (connections past the shutdown grace).
                    drop(runtime);
                    let _ = end.send(());
                })?;
            queues.push(Queue {
                jobs,
                open: Arc::new(AtomicUsize::new(0)),
            });
            ended.push(end_seen);
        }
        let workers = Workers {
            queues,
            next: AtomicUsize::new(0),
        };
        Ok((workers, ended))
    }

    /// Runs `job` on the worker with the fewest open connections; the [`Assigned`] passed
    /// to it is to be kept for as long as the connection lives. `false` when the worker has
    /// ended (only on shutdown).
    pub(super) fn assign(&self, job: impl FnOnce(Assigned) + Send + 'static) -> bool {
        let n = self.queues.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        let mut least = usize::MAX;
        for i in (start..n).chain(0..start) {
            let open = self.queues[i].open.load(Ordering::Relaxed);
            if open < least {
                least = open;
                best = i;
            }
        }
        let queue = &self.queues[best];
        queue.open.fetch_add(1, Ordering::Relaxed);
        let assigned = Assigned(Arc::clone(&queue.open));
        queue.jobs.send(Box::new(move || job(assigned))).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_least_loaded_worker_thread() {
        let (workers, ended) = Workers::start(2).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut kept = Vec::new();
        // Four connections that stay open: two on each worker.
        for _ in 0..4 {
            let tx = tx.clone();
            assert!(workers.assign(move |assigned| {
                let _ = tx.send((worker::current(), assigned));
            }));
            let (worker, assigned) = rx.recv().await.unwrap();
            kept.push((worker, assigned));
        }
        let on = |w: usize| kept.iter().filter(|(k, _)| *k == w).count();
        assert_eq!((on(1), on(2)), (2, 2), "balanced by open connections");
        assert_eq!(worker::current(), 0, "the test's thread is not a worker");
        // Connections on worker 1 end: the next two go to worker 1.
        kept.retain(|(w, _)| *w != 1);
        for _ in 0..2 {
            let tx = tx.clone();
            workers.assign(move |assigned| {
                let _ = tx.send((worker::current(), assigned));
            });
            let (worker, assigned) = rx.recv().await.unwrap();
            assert_eq!(worker, 1);
            kept.push((worker, assigned));
        }
        drop(kept);
        drop(workers);
        for end in ended {
            end.await.unwrap();
        }
    }
}
