//! The contract of [`WaitingRoom`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::domain::{MemberId, RoomPolicy, RoomStatus};
use crate::port::outbound::{Occupancy, WaitingRoom};

use super::random_member_id;

/// Runs every check of the waiting room contract. `room` makes an empty
/// room with the given policy (a fresh keyspace for a shared store).
pub async fn run(room: impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>) {
    first_come_first_served_and_entering_twice_keeps_the_place(&room).await;
    never_more_admitted_than_the_slots(&room).await;
    never_faster_than_the_rate(&room).await;
    a_release_gives_the_slot_to_the_next_in_line(&room).await;
    admissions_run_out_and_the_member_enters_again_at_the_back(&room).await;
    a_full_room_counts_the_first_expiry_in_the_estimate(&room).await;
    concurrent_entries_get_distinct_places(&room).await;
}

fn policy(admit_per_sec: u32, max_active: u32, ttl: Duration) -> RoomPolicy {
    RoomPolicy {
        admit_per_sec,
        max_active,
        ttl,
    }
}

fn position(status: Option<RoomStatus>) -> Option<u64> {
    match status {
        Some(RoomStatus::Waiting { position, .. }) => Some(position),
        _ => None,
    }
}

fn admitted(status: Option<RoomStatus>) -> bool {
    matches!(status, Some(RoomStatus::Admitted { .. }))
}

/// Runs admission rounds until `member` is admitted (10 s at most).
async fn admit_until(room: &dyn WaitingRoom, member: MemberId) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        room.admit().await.unwrap();
        if admitted(room.status(member).await.unwrap()) {
            return;
        }
        assert!(Instant::now() < deadline, "{member} never admitted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn first_come_first_served_and_entering_twice_keeps_the_place(
    room: &impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>,
) {
    let p = policy(10, 100, Duration::from_secs(60));
    let room = room(p);
    let members: Vec<MemberId> = (0..3).map(|_| random_member_id()).collect();
    for (i, m) in members.iter().enumerate() {
        let entered = room.enter(*m).await.unwrap();
        let expected = i as u64 + 1;
        assert_eq!(
            entered,
            RoomStatus::Waiting {
                position: expected,
                estimated_wait: p.estimated_wait(expected, None),
            }
        );
    }
    assert_eq!(
        position(Some(room.enter(members[0]).await.unwrap())),
        Some(1)
    );
    assert_eq!(position(room.status(members[2]).await.unwrap()), Some(3));
    assert_eq!(room.status(random_member_id()).await.unwrap(), None);
    assert_eq!(
        room.occupancy().await.unwrap(),
        Occupancy {
            waiting: 3,
            admitted: 0
        }
    );
    // Admitted in the order they came.
    admit_until(&*room, members[0]).await;
    for m in &members[1..] {
        let still = room.status(*m).await.unwrap();
        assert!(admitted(still) || position(still).is_some());
    }
    admit_until(&*room, members[2]).await;
    assert!(admitted(room.status(members[1]).await.unwrap()));
    // Entering again while admitted keeps the admission.
    let before = room.status(members[0]).await.unwrap();
    assert_eq!(room.enter(members[0]).await.unwrap(), before.unwrap());
}

pub async fn never_more_admitted_than_the_slots(
    room: &impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>,
) {
    let room = room(policy(1000, 2, Duration::from_secs(60)));
    let members: Vec<MemberId> = (0..5).map(|_| random_member_id()).collect();
    for m in &members {
        room.enter(*m).await.unwrap();
    }
    admit_until(&*room, members[1]).await;
    for _ in 0..5 {
        room.admit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let occupancy = room.occupancy().await.unwrap();
    assert_eq!(
        occupancy,
        Occupancy {
            waiting: 3,
            admitted: 2
        }
    );
    assert_eq!(position(room.status(members[2]).await.unwrap()), Some(1));
    assert_eq!(position(room.status(members[4]).await.unwrap()), Some(3));
}

pub async fn never_faster_than_the_rate(room: &impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>) {
    let rate = 10;
    let room = room(policy(rate, 1000, Duration::from_secs(60)));
    let members: Vec<MemberId> = (0..40).map(|_| random_member_id()).collect();
    for m in &members {
        room.enter(*m).await.unwrap();
    }
    let started = Instant::now();
    let mut total = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        total += room.admit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The bucket starts empty and holds at most one second of tokens.
    let bound = (f64::from(rate) * started.elapsed().as_secs_f64()).floor() as u64;
    assert!(
        total <= bound,
        "{total} admitted in {:?}",
        started.elapsed()
    );
    assert!(total > 0, "nobody admitted");
    assert_eq!(room.occupancy().await.unwrap().admitted, total);
    // Whoever is admitted came first.
    for (i, m) in members.iter().enumerate() {
        assert_eq!(
            admitted(room.status(*m).await.unwrap()),
            (i as u64) < total,
            "member {i}"
        );
    }
}

pub async fn a_release_gives_the_slot_to_the_next_in_line(
    room: &impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>,
) {
    let room = room(policy(100, 1, Duration::from_secs(60)));
    let (a, b) = (random_member_id(), random_member_id());
    room.enter(a).await.unwrap();
    room.enter(b).await.unwrap();
    admit_until(&*room, a).await;
    assert_eq!(position(room.status(b).await.unwrap()), Some(1));
    room.release(&[a]).await.unwrap();
    assert_eq!(room.status(a).await.unwrap(), None);
    admit_until(&*room, b).await;
    // Releasing someone who holds nothing changes nothing.
    room.release(&[random_member_id()]).await.unwrap();
    assert!(admitted(room.status(b).await.unwrap()));
}

pub async fn admissions_run_out_and_the_member_enters_again_at_the_back(
    room: &impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>,
) {
    let ttl = Duration::from_millis(400);
    let room = room(policy(100, 1, ttl));
    let (a, b) = (random_member_id(), random_member_id());
    room.enter(a).await.unwrap();
    room.enter(b).await.unwrap();
    admit_until(&*room, a).await;
    let Some(RoomStatus::Admitted { expires_at }) = room.status(a).await.unwrap() else {
        panic!("a is admitted");
    };
    let left = expires_at - chrono::Utc::now();
    assert!(left <= chrono::Duration::from_std(ttl).unwrap());
    // After the TTL the slot goes to b, and a is out of the room.
    admit_until(&*room, b).await;
    assert_eq!(room.status(a).await.unwrap(), None);
    let c = random_member_id();
    room.enter(c).await.unwrap();
    assert_eq!(position(Some(room.enter(a).await.unwrap())), Some(2));
}

pub async fn a_full_room_counts_the_first_expiry_in_the_estimate(
    room: &impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>,
) {
    let ttl = Duration::from_secs(60);
    let p = policy(10, 1, ttl);
    let room = room(p);
    let (a, b) = (random_member_id(), random_member_id());
    room.enter(a).await.unwrap();
    admit_until(&*room, a).await;
    let Some(RoomStatus::Waiting { estimated_wait, .. }) = Some(room.enter(b).await.unwrap())
    else {
        panic!("b waits");
    };
    // One admission ahead at 10/s, plus up to the full TTL of a's slot.
    assert!(
        estimated_wait > Duration::from_secs(50),
        "{estimated_wait:?}"
    );
    assert!(estimated_wait <= p.estimated_wait(1, Some(ttl)));
}

pub async fn concurrent_entries_get_distinct_places(
    room: &impl Fn(RoomPolicy) -> Arc<dyn WaitingRoom>,
) {
    let room = room(policy(10, 100, Duration::from_secs(60)));
    let members: Vec<MemberId> = (0..50).map(|_| random_member_id()).collect();
    let entered = futures::future::join_all(members.iter().map(|m| room.enter(*m))).await;
    let mut places: Vec<u64> = entered
        .into_iter()
        .map(|s| position(Some(s.unwrap())).unwrap())
        .collect();
    places.sort_unstable();
    assert_eq!(places, (1..=50).collect::<Vec<u64>>());
}
