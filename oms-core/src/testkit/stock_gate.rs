//! The contract of [`StockGate`].

use std::time::{Duration, Instant};

use crate::domain::{
    FailureReason, MemberId, OrderLine, OrderTrace, ProductId, Purchase, PurchaseLimit, TraceState,
};
use crate::port::outbound::{
    Admission, GateLevel, IntakeChecks, Refusal, StockGate, TraceStore, WaitingRoom,
};

use super::{command, random_member_id, random_product_id};

/// Runs every check of the stock gate contract. `traces` is the trace
/// store the gate writes to; `redeliver_after` is the gate's redelivery
/// time of handed-out refusals (keep it short, e.g. 300 ms).
pub async fn run(gate: &dyn StockGate, traces: &dyn TraceStore, redeliver_after: Duration) {
    reserves_all_lines_or_none(gate, traces).await;
    products_without_a_gate_pass(gate).await;
    release_gives_back_gated_units_only(gate).await;
    set_available_overwrites_or_fills(gate).await;
    set_available_is_a_compare_and_set_on_the_version(gate).await;
    adjust_moves_by_the_delta_once(gate).await;
    refusals_are_journaled_until_settled(gate, redeliver_after).await;
    limits_count_each_members_purchases(gate, traces).await;
}

fn lv(product_id: ProductId, available: i64, version: i64) -> GateLevel {
    GateLevel {
        product_id,
        available,
        version,
    }
}

/// Settles whatever is in the journal and was never handed out.
async fn drain(gate: &dyn StockGate) {
    loop {
        let taken = gate.refusals(1000).await.unwrap();
        if taken.is_empty() {
            return;
        }
        let ids: Vec<String> = taken.into_iter().map(|r| r.id).collect();
        gate.settled(&ids).await.unwrap();
    }
}

pub async fn reserves_all_lines_or_none(gate: &dyn StockGate, traces: &dyn TraceStore) {
    drain(gate).await;
    let (a, b) = (random_product_id(), random_product_id());
    gate.set_available(&[lv(a, 3, 0), lv(b, 1, 0)], true)
        .await
        .unwrap();
    let member = random_member_id();

    // Two lines of the same product count together.
    let first = command(member, &[(a, 1), (a, 1), (b, 1)]);
    assert_eq!(
        gate.admit(&first, &IntakeChecks::default()).await.unwrap(),
        Admission::Reserved
    );
    assert_eq!(gate.available(a).await.unwrap(), Some(1));
    assert_eq!(gate.available(b).await.unwrap(), Some(0));
    assert_eq!(
        traces.get(first.trace_id).await.unwrap(),
        Some(OrderTrace::processing(first.trace_id, member))
    );

    // b is sold out: nothing of the order is reserved, a included.
    let second = command(member, &[(a, 1), (b, 1)]);
    assert_eq!(
        gate.admit(&second, &IntakeChecks::default()).await.unwrap(),
        Admission::Refused { product_id: b }
    );
    assert_eq!(gate.available(a).await.unwrap(), Some(1));
    assert_eq!(gate.available(b).await.unwrap(), Some(0));
    assert_eq!(
        traces.get(second.trace_id).await.unwrap(),
        Some(OrderTrace {
            trace_id: second.trace_id,
            member_id: member,
            state: TraceState::Failed {
                reason: FailureReason::OutOfStock
            },
        })
    );

    // More than is left of a is refused too.
    let third = command(member, &[(a, 2)]);
    assert_eq!(
        gate.admit(&third, &IntakeChecks::default()).await.unwrap(),
        Admission::Refused { product_id: a }
    );
    let refused: Vec<Refusal> = gate.refusals(1000).await.unwrap();
    let ids: Vec<_> = refused.iter().map(|r| r.command.trace_id).collect();
    assert_eq!(ids, vec![second.trace_id, third.trace_id]);
    assert_eq!(refused[0].command, second);
    let ids: Vec<String> = refused.into_iter().map(|r| r.id).collect();
    gate.settled(&ids).await.unwrap();
}

pub async fn products_without_a_gate_pass(gate: &dyn StockGate) {
    let (gated, free) = (random_product_id(), random_product_id());
    gate.set_available(&[lv(gated, 1, 0)], true).await.unwrap();
    let order = command(random_member_id(), &[(gated, 1), (free, 5)]);
    assert_eq!(
        gate.admit(&order, &IntakeChecks::default()).await.unwrap(),
        Admission::Reserved
    );
    assert_eq!(gate.available(free).await.unwrap(), None);
    assert_eq!(gate.available(gated).await.unwrap(), Some(0));
}

pub async fn release_gives_back_gated_units_only(gate: &dyn StockGate) {
    let (gated, free) = (random_product_id(), random_product_id());
    gate.set_available(&[lv(gated, 2, 0)], true).await.unwrap();
    let order = command(random_member_id(), &[(gated, 2), (free, 1)]);
    assert_eq!(
        gate.admit(&order, &IntakeChecks::default()).await.unwrap(),
        Admission::Reserved
    );
    assert_eq!(gate.available(gated).await.unwrap(), Some(0));
    gate.release(order.member_id, &order.items).await.unwrap();
    assert_eq!(gate.available(gated).await.unwrap(), Some(2));
    assert_eq!(gate.available(free).await.unwrap(), None);
    gate.release(
        MemberId(1),
        &[OrderLine {
            product_id: gated,
            quantity: 1,
        }],
    )
    .await
    .unwrap();
    assert_eq!(gate.available(gated).await.unwrap(), Some(3));
}

pub async fn set_available_overwrites_or_fills(gate: &dyn StockGate) {
    let (a, b) = (random_product_id(), random_product_id());
    gate.set_available(&[lv(a, 5, 0)], true).await.unwrap();
    gate.set_available(&[lv(a, 9, 0), lv(b, 4, 0)], false)
        .await
        .unwrap();
    assert_eq!(gate.available(a).await.unwrap(), Some(5));
    assert_eq!(gate.available(b).await.unwrap(), Some(4));
    gate.set_available(&[lv(a, 0, 0)], true).await.unwrap();
    assert_eq!(gate.available(a).await.unwrap(), Some(0));
    gate.set_available(&[], true).await.unwrap();
}

/// A level read at an older version never replaces a newer one.
pub async fn set_available_is_a_compare_and_set_on_the_version(gate: &dyn StockGate) {
    let a = random_product_id();
    gate.set_available(&[lv(a, 40, 7)], true).await.unwrap();
    gate.set_available(&[lv(a, 0, 6)], true).await.unwrap();
    assert_eq!(
        gate.available(a).await.unwrap(),
        Some(40),
        "older level ignored"
    );
    gate.set_available(&[lv(a, 35, 7)], true).await.unwrap();
    assert_eq!(
        gate.available(a).await.unwrap(),
        Some(35),
        "same version sets"
    );
    gate.set_available(&[lv(a, 30, 9)], true).await.unwrap();
    assert_eq!(
        gate.available(a).await.unwrap(),
        Some(30),
        "newer level sets"
    );
}

/// An operator's change moves a gate by its delta once, keeping the units
/// reserved for orders in flight; a product without a gate gets the level.
pub async fn adjust_moves_by_the_delta_once(gate: &dyn StockGate) {
    let (a, fresh) = (random_product_id(), random_product_id());
    gate.set_available(&[lv(a, 100, 3)], true).await.unwrap();
    let order = command(random_member_id(), &[(a, 30)]);
    assert_eq!(
        gate.admit(&order, &IntakeChecks::default()).await.unwrap(),
        Admission::Reserved
    );
    // The database went 100 → 150 (version 4): the gate keeps the 30 reserved.
    gate.adjust(lv(a, 150, 4), 50).await.unwrap();
    assert_eq!(gate.available(a).await.unwrap(), Some(120));
    // The same change again, or one a reconciliation already holds, is a no-op.
    gate.adjust(lv(a, 150, 4), 50).await.unwrap();
    assert_eq!(gate.available(a).await.unwrap(), Some(120));
    gate.set_available(&[lv(a, 140, 6)], true).await.unwrap();
    gate.adjust(lv(a, 190, 5), 50).await.unwrap();
    assert_eq!(gate.available(a).await.unwrap(), Some(140));
    gate.adjust(lv(fresh, 12, 2), 12).await.unwrap();
    assert_eq!(gate.available(fresh).await.unwrap(), Some(12));
}

pub async fn refusals_are_journaled_until_settled(gate: &dyn StockGate, redeliver_after: Duration) {
    drain(gate).await;
    let product = random_product_id();
    gate.set_available(&[lv(product, 0, 0)], true)
        .await
        .unwrap();
    let member = random_member_id();
    let orders: Vec<_> = (0..3).map(|_| command(member, &[(product, 1)])).collect();
    let before = gate.refusals_waiting().await.unwrap();
    for order in &orders {
        assert!(matches!(
            gate.admit(order, &IntakeChecks::default()).await.unwrap(),
            Admission::Refused { .. }
        ));
    }
    assert_eq!(gate.refusals_waiting().await.unwrap(), before + 3);
    let first = gate.refusals(2).await.unwrap();
    assert_eq!(first.len(), 2, "the limit holds");
    let rest = gate.refusals(10).await.unwrap();
    assert_eq!(
        rest.len(),
        1,
        "handed-out entries are not handed out at once again"
    );
    assert_eq!(rest[0].command, orders[2]);
    gate.settled(&[first[0].id.clone(), rest[0].id.clone()])
        .await
        .unwrap();
    assert_eq!(
        gate.refusals_waiting().await.unwrap(),
        before + 1,
        "one handed out and not settled still waits"
    );

    // The one handed out and never settled comes back.
    let deadline = Instant::now() + redeliver_after * 20 + Duration::from_secs(5);
    let again = loop {
        let taken = gate.refusals(10).await.unwrap();
        if !taken.is_empty() {
            break taken;
        }
        assert!(
            Instant::now() < deadline,
            "an unsettled refusal never came back"
        );
        tokio::time::sleep(redeliver_after / 4).await;
    };
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].command, orders[1]);
    gate.settled(&[again[0].id.clone()]).await.unwrap();
    assert_eq!(gate.refusals_waiting().await.unwrap(), before);

    // Settled entries never come back.
    tokio::time::sleep(redeliver_after * 2).await;
    assert!(gate.refusals(10).await.unwrap().is_empty());
}

pub async fn limits_count_each_members_purchases(gate: &dyn StockGate, traces: &dyn TraceStore) {
    let (limited, free) = (random_product_id(), random_product_id());
    gate.set_available(&[lv(limited, 100, 0), lv(free, 100, 0)], true)
        .await
        .unwrap();
    let limited_checks = IntakeChecks {
        limits: vec![PurchaseLimit {
            product_id: limited,
            max_per_member: 2,
        }],
        ..IntakeChecks::default()
    };
    let (member, other) = (random_member_id(), random_member_id());
    let one = command(member, &[(limited, 1), (free, 5)]);
    assert_eq!(
        gate.admit(&one, &limited_checks).await.unwrap(),
        Admission::Reserved
    );
    // 1 + 2 > 2: nothing reserved, no trace written.
    let over = command(member, &[(limited, 2)]);
    assert_eq!(
        gate.admit(&over, &limited_checks).await.unwrap(),
        Admission::OverLimit {
            product_id: limited
        }
    );
    assert_eq!(gate.available(limited).await.unwrap(), Some(99));
    assert_eq!(traces.get(over.trace_id).await.unwrap(), None);
    assert_eq!(
        gate.admit(&command(member, &[(limited, 1)]), &limited_checks)
            .await
            .unwrap(),
        Admission::Reserved
    );
    assert_eq!(
        gate.admit(&command(member, &[(limited, 1)]), &limited_checks)
            .await
            .unwrap(),
        Admission::OverLimit {
            product_id: limited
        }
    );
    // Each member has their own count; a product without a limit has none.
    assert_eq!(
        gate.admit(&command(other, &[(limited, 2)]), &limited_checks)
            .await
            .unwrap(),
        Admission::Reserved
    );
    assert_eq!(
        gate.admit(&command(member, &[(free, 50)]), &limited_checks)
            .await
            .unwrap(),
        Admission::Reserved
    );
    // A released order gives its units back to the member.
    gate.release(member, &one.items).await.unwrap();
    assert_eq!(gate.available(limited).await.unwrap(), Some(97));
    assert_eq!(
        gate.admit(&command(member, &[(limited, 1)]), &limited_checks)
            .await
            .unwrap(),
        Admission::Reserved
    );
    // Purchases set from the database replace the counts.
    gate.set_purchases(
        limited,
        &[Purchase {
            member_id: other,
            product_id: limited,
            units: 1,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        gate.admit(&command(member, &[(limited, 2)]), &limited_checks)
            .await
            .unwrap(),
        Admission::Reserved
    );
    assert_eq!(
        gate.admit(&command(other, &[(limited, 2)]), &limited_checks)
            .await
            .unwrap(),
        Admission::OverLimit {
            product_id: limited
        }
    );
    // Concurrent orders of one member never pass the limit together.
    let racer = random_member_id();
    let orders: Vec<_> = (0..20).map(|_| command(racer, &[(limited, 1)])).collect();
    let decisions =
        futures::future::join_all(orders.iter().map(|o| gate.admit(o, &limited_checks))).await;
    let reserved = decisions
        .into_iter()
        .filter(|d| *d.as_ref().unwrap() == Admission::Reserved)
        .count();
    assert_eq!(reserved, 2);
}

/// The front-door checks of [`IntakeChecks`], for a gate that shares its
/// store with `room` (whose admitter lets members in within a few
/// seconds).
pub async fn front_door_checks_come_first(
    gate: &dyn StockGate,
    traces: &dyn TraceStore,
    room: &dyn WaitingRoom,
) {
    let product = random_product_id();
    gate.set_available(&[lv(product, 100, 0)], true)
        .await
        .unwrap();
    let member = random_member_id();
    let checks = IntakeChecks {
        admission: true,
        rate: Some(crate::domain::Rate {
            per_sec: 1,
            burst: 2,
        }),
        limits: Vec::new(),
    };
    // Not admitted: nothing reserved, no trace, no rate token taken.
    let early = command(member, &[(product, 1)]);
    assert_eq!(
        gate.admit(&early, &checks).await.unwrap(),
        Admission::NotAdmitted
    );
    assert_eq!(traces.get(early.trace_id).await.unwrap(), None);
    assert_eq!(gate.available(product).await.unwrap(), Some(100));
    room.enter(member).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        room.status(member).await.unwrap(),
        Some(crate::domain::RoomStatus::Admitted { .. })
    ) {
        room.admit().await.unwrap();
        assert!(Instant::now() < deadline, "never admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Admitted: a burst of 2, then the rate refuses, reserving nothing.
    for _ in 0..2 {
        let order = command(member, &[(product, 1)]);
        assert_eq!(
            gate.admit(&order, &checks).await.unwrap(),
            Admission::Reserved
        );
    }
    let third = command(member, &[(product, 1)]);
    let Admission::RateLimited { retry_after } = gate.admit(&third, &checks).await.unwrap() else {
        panic!("the third order in a burst of 2 is over the rate");
    };
    assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(1));
    assert_eq!(traces.get(third.trace_id).await.unwrap(), None);
    assert_eq!(gate.available(product).await.unwrap(), Some(98));
    // Another member's rate is their own; checks off pass as before.
    let other = random_member_id();
    let relaxed = IntakeChecks {
        admission: false,
        ..checks.clone()
    };
    assert_eq!(
        gate.admit(&command(other, &[(product, 1)]), &relaxed)
            .await
            .unwrap(),
        Admission::Reserved
    );
    // An order refused for stock is final: it ends the admission.
    let sold_out = random_product_id();
    gate.set_available(&[lv(sold_out, 0, 0)], true)
        .await
        .unwrap();
    let admission_only = IntakeChecks {
        rate: None,
        ..checks.clone()
    };
    assert!(matches!(
        gate.admit(&command(member, &[(sold_out, 1)]), &admission_only)
            .await
            .unwrap(),
        Admission::Refused { .. }
    ));
    assert_eq!(room.status(member).await.unwrap(), None);
    room.enter(member).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        room.status(member).await.unwrap(),
        Some(crate::domain::RoomStatus::Admitted { .. })
    ) {
        room.admit().await.unwrap();
        assert!(Instant::now() < deadline, "never admitted again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain(gate).await;
    // Once the admission ends, the member is refused again.
    room.release(&[member]).await.unwrap();
    assert_eq!(
        gate.admit(
            &command(member, &[(product, 1)]),
            &IntakeChecks {
                rate: None,
                ..checks
            }
        )
        .await
        .unwrap(),
        Admission::NotAdmitted
    );
}
