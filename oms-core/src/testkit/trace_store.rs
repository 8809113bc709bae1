//! The contract of [`TraceStore`].

use std::time::Duration;

use crate::domain::{FailureReason, OrderId, OrderTrace, TraceId, TraceState};
use crate::port::outbound::TraceStore;

use super::random_member_id;

/// Runs every check of the trace store contract.
pub async fn run(store: &dyn TraceStore) {
    round_trips_every_state(store).await;
    final_writes_overwrite_processing(store).await;
    save_all_and_remove(store).await;
    idempotency_keys(store).await;
    stale_processing_traces_are_listed_until_final(store).await;
}

pub async fn round_trips_every_state(store: &dyn TraceStore) {
    let member = random_member_id();
    for state in [
        TraceState::Processing,
        TraceState::Completed {
            order_id: OrderId(77),
        },
        TraceState::Failed {
            reason: FailureReason::OutOfStock,
        },
        TraceState::Failed {
            reason: FailureReason::ProductNotFound,
        },
    ] {
        let trace = OrderTrace {
            trace_id: TraceId::new(),
            member_id: member,
            state,
        };
        store.save(&trace).await.unwrap();
        assert_eq!(store.get(trace.trace_id).await.unwrap(), Some(trace));
    }
    assert_eq!(
        store.get(TraceId::new()).await.unwrap(),
        None,
        "unknown trace"
    );
}

pub async fn final_writes_overwrite_processing(store: &dyn TraceStore) {
    let trace = OrderTrace::processing(TraceId::new(), random_member_id());
    store.save(&trace).await.unwrap();
    let done = OrderTrace {
        state: TraceState::Completed {
            order_id: OrderId(5),
        },
        ..trace
    };
    store.save(&done).await.unwrap();
    assert_eq!(store.get(trace.trace_id).await.unwrap(), Some(done));
}

pub async fn save_all_and_remove(store: &dyn TraceStore) {
    let member = random_member_id();
    let traces: Vec<_> = (0..50)
        .map(|i| OrderTrace {
            trace_id: TraceId::new(),
            member_id: member,
            state: if i % 2 == 0 {
                TraceState::Completed {
                    order_id: OrderId(i),
                }
            } else {
                TraceState::Failed {
                    reason: FailureReason::OutOfStock,
                }
            },
        })
        .collect();
    store.save_all(&traces).await.unwrap();
    store.save_all(&[]).await.unwrap();
    for t in &traces {
        assert_eq!(store.get(t.trace_id).await.unwrap(), Some(*t));
    }
    store.remove(traces[0].trace_id).await.unwrap();
    assert_eq!(store.get(traces[0].trace_id).await.unwrap(), None);
    // Removing an unknown trace is not an error.
    store.remove(TraceId::new()).await.unwrap();
}

pub async fn idempotency_keys(store: &dyn TraceStore) {
    let member = random_member_id();
    let other = random_member_id();
    let first = TraceId::new();
    let key = format!("key-{}", TraceId::new());
    assert_eq!(store.claim_key(member, &key, first).await.unwrap(), None);
    assert_eq!(
        store.claim_key(member, &key, TraceId::new()).await.unwrap(),
        Some(first),
        "a held key returns its trace"
    );
    assert_eq!(
        store.claim_key(other, &key, TraceId::new()).await.unwrap(),
        None,
        "keys are per member"
    );
    store.release_key(member, &key).await.unwrap();
    let second = TraceId::new();
    assert_eq!(store.claim_key(member, &key, second).await.unwrap(), None);
    assert_eq!(
        store.claim_key(member, &key, TraceId::new()).await.unwrap(),
        Some(second)
    );
}

pub async fn stale_processing_traces_are_listed_until_final(store: &dyn TraceStore) {
    let member = random_member_id();
    let ours: Vec<_> = (0..3)
        .map(|_| OrderTrace::processing(TraceId::new(), member))
        .collect();
    for t in &ours {
        store.save(t).await.unwrap();
    }
    let listed = |all: Vec<OrderTrace>| -> Vec<OrderTrace> {
        all.into_iter()
            .filter(|t| ours.iter().any(|o| o.trace_id == t.trace_id))
            .collect()
    };
    let stale = listed(
        store
            .stale_processing(Duration::ZERO, 10_000)
            .await
            .unwrap(),
    );
    assert_eq!(stale.len(), 3, "every PROCESSING trace is older than zero");
    assert!(stale.iter().all(|t| ours.contains(t)), "listed as saved");
    assert!(
        listed(
            store
                .stale_processing(Duration::from_secs(3600), 10_000)
                .await
                .unwrap()
        )
        .is_empty(),
        "none is an hour old"
    );
    assert!(store
        .stale_processing(Duration::ZERO, 0)
        .await
        .unwrap()
        .is_empty());

    // A final write, a batch of final writes and a removal take them off.
    store
        .save(&OrderTrace {
            state: TraceState::Completed {
                order_id: OrderId(1),
            },
            ..ours[0]
        })
        .await
        .unwrap();
    store
        .save_all(&[OrderTrace {
            state: TraceState::Failed {
                reason: FailureReason::OutOfStock,
            },
            ..ours[1]
        }])
        .await
        .unwrap();
    store.remove(ours[2].trace_id).await.unwrap();
    assert!(listed(
        store
            .stale_processing(Duration::ZERO, 10_000)
            .await
            .unwrap()
    )
    .is_empty());
}
