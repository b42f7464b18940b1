//! The live snapshot, swapped atomically on reload.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::snapshot::Snapshot;

/// Holds the live [`Snapshot`]. Readers never block and never see half a reload: a reload
/// builds a whole new snapshot aside and [`swap`](Router::swap)s it in; readers that
/// loaded the old one keep it (and the call settings it gave them) until they drop it.
pub struct Router {
    current: ArcSwap<Snapshot>,
}

impl Router {
    /// A router serving `snapshot` until the first swap.
    pub fn new(snapshot: Snapshot) -> Self {
        Router {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The live snapshot for a short lookup (cheap, lock-free; do not hold it across
    /// long waits, use [`load_full`](Router::load_full) for that).
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The live snapshot as an `Arc`, to keep for the life of a call.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `new` live; returns the previous snapshot.
    pub fn swap(&self, new: impl Into<Arc<Snapshot>>) -> Arc<Snapshot> {
        self.current.swap(new.into())
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("current", &**self.current.load())
            .finish()
    }
}
