use std::future::Future;
use std::time::Duration;

use tracing::{debug, warn};

use crate::port::outbound::WaitingRoom;

/// Runs the waiting room's admitter: one [`WaitingRoom::admit`] round every
/// `every`, until `shutdown` completes.
///
/// The room keeps its rate (a token bucket) in its own store, so every
/// process may run an admitter at once without a leader: together they
/// admit no faster than the rate, and a process that stops leaves the
/// others admitting.
pub async fn run_admitter(
    room: std::sync::Arc<dyn WaitingRoom>,
    every: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(5)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return,
            _ = tick.tick() => match room.admit().await {
                Ok(0) => {}
                Ok(n) => debug!(admitted = n, "waiting room moved"),
                Err(e) => warn!(error = %e, "waiting room admission round failed; trying again"),
            },
        }
    }
}
