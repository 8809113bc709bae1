use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::domain::OmsResult;
use crate::observe::{record_gate_level, record_occupancy};
use crate::port::outbound::{ProductStore, StockGate, WaitingRoom};

/// Reads the levels metrics show as gauges: every product's available
/// units in the stock gate ([`names::GATE_LEVEL`](crate::observe::names::GATE_LEVEL))
/// and the waiting room's occupancy, when there are a gate and a room.
pub struct GaugeSampler {
    products: Arc<dyn ProductStore>,
    gate: Option<Arc<dyn StockGate>>,
    room: Option<Arc<dyn WaitingRoom>>,
}

impl GaugeSampler {
    /// A sampler of the gate levels of `products`' products and of `room`.
    pub fn new(
        products: Arc<dyn ProductStore>,
        gate: Option<Arc<dyn StockGate>>,
        room: Option<Arc<dyn WaitingRoom>>,
    ) -> Self {
        Self {
            products,
            gate,
            room,
        }
    }

    /// Reads every level once.
    pub async fn sample(&self) -> OmsResult<()> {
        if let Some(gate) = &self.gate {
            for product in self.products.list().await? {
                if let Some(units) = gate.available(product.id).await? {
                    record_gate_level(product.id, units);
                }
            }
        }
        if let Some(room) = &self.room {
            record_occupancy(room.occupancy().await?);
        }
        Ok(())
    }

    /// Samples every `every` until `shutdown` completes; a failed round is
    /// logged and tried again on the next tick.
    pub async fn run(self, every: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return,
                _ = tick.tick() => {
                    if let Err(e) = self.sample().await {
                        debug!(error = %e, "gauges not sampled; trying again");
                    }
                }
            }
        }
    }
}
