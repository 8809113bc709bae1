use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::lock;
use crate::domain::{
    gcra, units_by_product, FailureReason, MemberId, OmsError, OmsResult, OrderCommand, OrderLine,
    OrderTrace, ProductId, Purchase, RateDecision, RoomStatus, TraceState,
};
use crate::port::outbound::{
    Admission, GateLevel, IntakeChecks, Refusal, StockGate, TraceStore, WaitingRoom,
};

#[derive(Debug, Default)]
struct State {
    /// Units and the product version they were read at.
    available: HashMap<ProductId, (i64, i64)>,
    /// Units each member bought of each product with a limit.
    bought: HashMap<(ProductId, MemberId), i64>,
    /// Each member's theoretical arrival time (µs since `epoch`) for the
    /// order rate.
    arrivals: HashMap<MemberId, u64>,
    /// Journal entries by sequence number, with when they were handed out.
    journal: BTreeMap<u64, (OrderCommand, Option<Instant>)>,
    next_entry: u64,
}

/// A [`StockGate`] in a map, writing traces to the trace store it is given.
pub struct InMemoryStockGate {
    state: Mutex<State>,
    traces: Arc<dyn TraceStore>,
    room: Option<Arc<dyn WaitingRoom>>,
    epoch: Instant,
    redeliver_after: Duration,
}

impl std::fmt::Debug for InMemoryStockGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStockGate")
            .field("state", &self.state)
            .field("redeliver_after", &self.redeliver_after)
            .finish_non_exhaustive()
    }
}

impl InMemoryStockGate {
    /// An empty gate (every product passes) on this trace store; refusals
    /// handed out are handed out again after 10 s unless settled.
    pub fn new(traces: Arc<dyn TraceStore>) -> Self {
        Self {
            state: Mutex::default(),
            traces,
            room: None,
            epoch: Instant::now(),
            redeliver_after: Duration::from_secs(10),
        }
    }

    /// Checks admissions ([`IntakeChecks::admission`]) in `room`.
    pub fn with_waiting_room(mut self, room: Arc<dyn WaitingRoom>) -> Self {
        self.room = Some(room);
        self
    }

    async fn admitted(&self, member: MemberId) -> OmsResult<bool> {
        let room = self.room.as_ref().ok_or_else(|| {
            OmsError::Internal("admission checked by a stock gate without a waiting room".into())
        })?;
        Ok(matches!(
            room.status(member).await?,
            Some(RoomStatus::Admitted { .. })
        ))
    }

    /// Replaces the redelivery time of the refusal journal.
    pub fn with_redeliver_after(mut self, after: Duration) -> Self {
        self.redeliver_after = after;
        self
    }
}

#[async_trait]
impl StockGate for InMemoryStockGate {
    async fn admit(&self, command: &OrderCommand, checks: &IntakeChecks) -> OmsResult<Admission> {
        if checks.admission && !self.admitted(command.member_id).await? {
            return Ok(Admission::NotAdmitted);
        }
        let limits = &checks.limits;
        let units = command.units_by_product();
        let wanted = |product: ProductId| {
            units
                .iter()
                .find(|(p, _)| *p == product)
                .map_or(0, |(_, u)| i64::try_from(*u).unwrap_or(i64::MAX))
        };
        let refused = {
            let mut state = lock(&self.state);
            if let Some(rate) = checks.rate {
                let now = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                let tat = state.arrivals.get(&command.member_id).copied();
                match gcra(rate, tat, now) {
                    (RateDecision::Limited { retry_after }, _) => {
                        return Ok(Admission::RateLimited { retry_after })
                    }
                    (RateDecision::Allowed, tat) => {
                        state.arrivals.insert(command.member_id, tat);
                    }
                }
                if state.arrivals.len() > 100_000 {
                    state.arrivals.retain(|_, tat| *tat > now);
                }
            }
            for limit in limits {
                let had = state
                    .bought
                    .get(&(limit.product_id, command.member_id))
                    .copied()
                    .unwrap_or(0);
                if had.saturating_add(wanted(limit.product_id)) > limit.max_per_member {
                    return Ok(Admission::OverLimit {
                        product_id: limit.product_id,
                    });
                }
            }
            let short = units.iter().find(|(product, wanted)| {
                state
                    .available
                    .get(product)
                    .is_some_and(|&(have, _)| i128::from(have) < i128::from(*wanted))
            });
            match short {
                Some(&(product_id, _)) => {
                    let entry = state.next_entry;
                    state.next_entry += 1;
                    state.journal.insert(entry, (command.clone(), None));
                    Some(product_id)
                }
                None => {
                    for (product, wanted) in &units {
                        if let Some((have, _)) = state.available.get_mut(product) {
                            *have -= i64::try_from(*wanted).unwrap_or(i64::MAX);
                        }
                    }
                    for limit in limits {
                        *state
                            .bought
                            .entry((limit.product_id, command.member_id))
                            .or_insert(0) += wanted(limit.product_id);
                    }
                    None
                }
            }
        };
        let trace = OrderTrace {
            trace_id: command.trace_id,
            member_id: command.member_id,
            state: match refused {
                Some(_) => TraceState::Failed {
                    reason: FailureReason::OutOfStock,
                },
                None => TraceState::Processing,
            },
        };
        self.traces.save(&trace).await?;
        if let (true, Some(_), Some(room)) = (checks.admission, refused, &self.room) {
            // Refused for stock: the order is final, and so is the visit.
            room.release(&[command.member_id]).await?;
        }
        Ok(match refused {
            Some(product_id) => Admission::Refused { product_id },
            None => Admission::Reserved,
        })
    }

    async fn release(&self, member_id: MemberId, lines: &[OrderLine]) -> OmsResult<()> {
        let mut state = lock(&self.state);
        for (product, units) in units_by_product(lines) {
            let units = i64::try_from(units).unwrap_or(i64::MAX);
            if let Some((have, _)) = state.available.get_mut(&product) {
                *have += units;
            }
            if let Some(bought) = state.bought.get_mut(&(product, member_id)) {
                *bought = bought.saturating_sub(units).max(0);
            }
        }
        Ok(())
    }

    async fn give_back_purchases(
        &self,
        member_id: MemberId,
        units: &[(ProductId, i64)],
    ) -> OmsResult<()> {
        let mut state = lock(&self.state);
        for (product, units) in units {
            if let Some(bought) = state.bought.get_mut(&(*product, member_id)) {
                *bought = bought.saturating_sub(*units).max(0);
            }
        }
        Ok(())
    }

    async fn set_purchases(&self, product_id: ProductId, purchases: &[Purchase]) -> OmsResult<()> {
        let mut state = lock(&self.state);
        state.bought.retain(|(p, _), _| *p != product_id);
        for p in purchases.iter().filter(|p| p.product_id == product_id) {
            state.bought.insert((product_id, p.member_id), p.units);
        }
        Ok(())
    }

    async fn set_available(&self, levels: &[GateLevel], overwrite: bool) -> OmsResult<()> {
        let mut state = lock(&self.state);
        for level in levels {
            let entry = state.available.entry(level.product_id);
            match entry {
                Entry::Vacant(v) => {
                    v.insert((level.available, level.version));
                }
                Entry::Occupied(mut o) if overwrite && o.get().1 <= level.version => {
                    o.insert((level.available, level.version));
                }
                Entry::Occupied(_) => {}
            }
        }
        Ok(())
    }

    async fn adjust(&self, level: GateLevel, delta: i64) -> OmsResult<()> {
        let mut state = lock(&self.state);
        match state.available.entry(level.product_id) {
            Entry::Vacant(v) => {
                v.insert((level.available, level.version));
            }
            Entry::Occupied(mut o) if o.get().1 < level.version => {
                let (have, _) = *o.get();
                o.insert((have.saturating_add(delta), level.version));
            }
            Entry::Occupied(_) => {}
        }
        Ok(())
    }

    async fn available(&self, product_id: ProductId) -> OmsResult<Option<i64>> {
        Ok(lock(&self.state)
            .available
            .get(&product_id)
            .map(|&(have, _)| have))
    }

    async fn refusals(&self, limit: usize) -> OmsResult<Vec<Refusal>> {
        let mut state = lock(&self.state);
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, (command, handed_out)) in state.journal.iter_mut() {
            if out.len() >= limit {
                break;
            }
            if handed_out.is_some_and(|at| now.duration_since(at) < self.redeliver_after) {
                continue;
            }
            *handed_out = Some(now);
            out.push(Refusal {
                id: id.to_string(),
                command: command.clone(),
            });
        }
        Ok(out)
    }

    async fn settled(&self, ids: &[String]) -> OmsResult<()> {
        let mut state = lock(&self.state);
        for id in ids {
            if let Ok(entry) = id.parse::<u64>() {
                state.journal.remove(&entry);
            }
        }
        Ok(())
    }

    async fn refusals_waiting(&self) -> OmsResult<u64> {
        Ok(lock(&self.state).journal.len() as u64)
    }
}
