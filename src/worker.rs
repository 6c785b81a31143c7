//! Which worker thread the calling code runs on. The proxied connections are served by
//! `server.workers` threads (`server::workers`), each with a runtime of its own; state kept
//! per worker (the upstream pools, `proxy::Upstream`) is indexed with [`current`].

use std::cell::Cell;

thread_local! {
    /// 1-based index of the worker this thread is; 0 on any other thread.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Which worker the calling thread is: `1..=server.workers` on a worker thread, 0
/// elsewhere.
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Marks the calling thread as worker `index` (1-based), for its whole life.
pub(crate) fn set_current(index: usize) {
    WORKER.with(|w| w.set(index));
}
