//! In-memory adapters of every outbound port: the embedded default, and the
//! reference the conformance suites hold real adapters to.

mod gate;
mod members;
mod mirror;
mod payments;
mod queue;
mod room;
mod sessions;
mod store;
mod traces;

pub use gate::InMemoryStockGate;
pub use members::InMemoryMemberStore;
pub use mirror::RevocationMirror;
pub use payments::InMemoryPaymentGateway;
pub use queue::{InMemoryOrderQueue, OrderQueueReceiver};
pub use room::{InMemoryRateLimiter, InMemoryWaitingRoom};
pub use sessions::{InMemoryAttemptCounter, InMemorySessionStore};
pub use store::InMemoryStore;
pub use traces::InMemoryTraceStore;

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, recovering the data if a holder panicked (the state of
/// these adapters is updated only after every check passes, so it stays
/// consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
