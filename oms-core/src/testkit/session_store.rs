//! The contracts of [`SessionStore`] and [`AttemptCounter`].

use std::time::{Duration, Instant};

use crate::domain::{Rotation, SessionId, TokenId};
use crate::port::outbound::{AttemptCounter, RevocationFeed, Revoked, SessionStore};

const TTL: Duration = Duration::from_secs(3600);

/// Runs every check of the session store contract.
pub async fn run(store: &dyn SessionStore) {
    only_the_live_token_rotates(store).await;
    a_replayed_token_revokes_the_family(store).await;
    unknown_families_do_not_rotate(store).await;
    revocations_cover_tokens_and_families(store).await;
    concurrent_refreshes_rotate_once(store).await;
    the_feed_lists_the_revocations_in_force(store).await;
    revocations_expire_with_their_ttl(store).await;
}

pub async fn the_feed_lists_the_revocations_in_force(store: &dyn SessionStore) {
    let before = store.revocations(None).await.unwrap();
    assert!(before.complete, "no cursor: everything in force");
    let (jti, sid, replayed) = (TokenId::random(), SessionId::random(), SessionId::random());
    store
        .revoke(Some((jti, TTL)), Some((sid, TTL)))
        .await
        .unwrap();
    let live = TokenId::random();
    store.start(replayed, live, TTL).await.unwrap();
    store
        .rotate(replayed, live, TokenId::random(), TTL)
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate(replayed, live, TokenId::random(), TTL)
            .await
            .unwrap(),
        Rotation::Reused
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let holds = |feed: &RevocationFeed, what: Revoked| {
        feed.revocations
            .iter()
            .any(|r| r.revoked == what && r.until_ms > now_ms)
    };
    let since = store.revocations(before.cursor.clone()).await.unwrap();
    let all = store.revocations(None).await.unwrap();
    assert!(all.complete);
    for feed in [&since, &all] {
        assert!(holds(feed, Revoked::Token(jti)), "{feed:?}");
        assert!(holds(feed, Revoked::Session(sid)), "{feed:?}");
        assert!(holds(feed, Revoked::Session(replayed)), "a replay revokes");
    }
    // A later cursor goes on from there.
    let later = TokenId::random();
    store.revoke(Some((later, TTL)), None).await.unwrap();
    let next = store.revocations(since.cursor.clone()).await.unwrap();
    assert!(holds(&next, Revoked::Token(later)), "{next:?}");
    // A cursor the store cannot read starts over.
    let garbage = store
        .revocations(Some("not a cursor".into()))
        .await
        .unwrap_or_else(|e| panic!("a bad cursor is no error: {e}"));
    assert!(garbage.complete || holds(&garbage, Revoked::Token(later)));
}

pub async fn only_the_live_token_rotates(store: &dyn SessionStore) {
    let sid = SessionId::random();
    let first = TokenId::random();
    let second = TokenId::random();
    let third = TokenId::random();
    store.start(sid, first, TTL).await.unwrap();
    assert_eq!(
        store.rotate(sid, first, second, TTL).await.unwrap(),
        Rotation::Rotated
    );
    assert_eq!(
        store.rotate(sid, second, third, TTL).await.unwrap(),
        Rotation::Rotated
    );
    assert!(!store
        .is_revoked(TokenId::random(), Some(sid))
        .await
        .unwrap());
}

pub async fn a_replayed_token_revokes_the_family(store: &dyn SessionStore) {
    let sid = SessionId::random();
    let first = TokenId::random();
    let second = TokenId::random();
    store.start(sid, first, TTL).await.unwrap();
    store.rotate(sid, first, second, TTL).await.unwrap();
    assert_eq!(
        store
            .rotate(sid, first, TokenId::random(), TTL)
            .await
            .unwrap(),
        Rotation::Reused,
        "the first token is dead"
    );
    assert!(
        store
            .is_revoked(TokenId::random(), Some(sid))
            .await
            .unwrap(),
        "every token of the family is revoked"
    );
    assert_eq!(
        store
            .rotate(sid, second, TokenId::random(), TTL)
            .await
            .unwrap(),
        Rotation::Dead,
        "not even the last live token rotates"
    );
    // Other families are not touched.
    let other = SessionId::random();
    let live = TokenId::random();
    store.start(other, live, TTL).await.unwrap();
    assert!(!store
        .is_revoked(TokenId::random(), Some(other))
        .await
        .unwrap());
    assert_eq!(
        store
            .rotate(other, live, TokenId::random(), TTL)
            .await
            .unwrap(),
        Rotation::Rotated
    );
}

pub async fn unknown_families_do_not_rotate(store: &dyn SessionStore) {
    let sid = SessionId::random();
    assert_eq!(
        store
            .rotate(sid, TokenId::random(), TokenId::random(), TTL)
            .await
            .unwrap(),
        Rotation::Dead
    );
    assert!(
        !store
            .is_revoked(TokenId::random(), Some(sid))
            .await
            .unwrap(),
        "unknown is not revoked (tokens minted outside a login)"
    );
    // Dead rotations do not start the family.
    let token = TokenId::random();
    assert_eq!(
        store
            .rotate(sid, token, TokenId::random(), TTL)
            .await
            .unwrap(),
        Rotation::Dead
    );
}

pub async fn revocations_cover_tokens_and_families(store: &dyn SessionStore) {
    let jti = TokenId::random();
    let sid = SessionId::random();
    let refresh = TokenId::random();
    store.start(sid, refresh, TTL).await.unwrap();
    assert!(!store.is_revoked(jti, None).await.unwrap());
    assert!(!store.is_revoked(jti, Some(sid)).await.unwrap());
    store
        .revoke(Some((jti, TTL)), Some((sid, TTL)))
        .await
        .unwrap();
    assert!(store.is_revoked(jti, None).await.unwrap());
    assert!(store
        .is_revoked(TokenId::random(), Some(sid))
        .await
        .unwrap());
    assert!(!store.is_revoked(TokenId::random(), None).await.unwrap());
    assert_eq!(
        store
            .rotate(sid, refresh, TokenId::random(), TTL)
            .await
            .unwrap(),
        Rotation::Dead,
        "a revoked family does not rotate"
    );
    // Each part alone.
    let only_token = TokenId::random();
    store.revoke(Some((only_token, TTL)), None).await.unwrap();
    assert!(store.is_revoked(only_token, None).await.unwrap());
    let only_family = SessionId::random();
    store.revoke(None, Some((only_family, TTL))).await.unwrap();
    assert!(store
        .is_revoked(TokenId::random(), Some(only_family))
        .await
        .unwrap());
    store.revoke(None, None).await.unwrap();
}

pub async fn concurrent_refreshes_rotate_once(store: &dyn SessionStore) {
    let sid = SessionId::random();
    let live = TokenId::random();
    store.start(sid, live, TTL).await.unwrap();
    let results =
        futures::future::join_all((0..8).map(|_| store.rotate(sid, live, TokenId::random(), TTL)))
            .await;
    let rotated = results
        .iter()
        .filter(|r| matches!(r, Ok(Rotation::Rotated)))
        .count();
    assert_eq!(rotated, 1, "{results:?}");
    assert!(
        store
            .is_revoked(TokenId::random(), Some(sid))
            .await
            .unwrap(),
        "the others were replays"
    );
}

/// Waits until `check` holds (a TTL ran out), for at most 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn revocations_expire_with_their_ttl(store: &dyn SessionStore) {
    let jti = TokenId::random();
    let sid = SessionId::random();
    let short = Duration::from_secs(1);
    store
        .revoke(Some((jti, short)), Some((sid, short)))
        .await
        .unwrap();
    assert!(store.is_revoked(jti, Some(sid)).await.unwrap());
    eventually("a revocation outlived its TTL", || async {
        !store.is_revoked(jti, Some(sid)).await.unwrap()
    })
    .await;
}

/// Runs every check of the attempt counter contract.
pub async fn run_attempts(counter: &dyn AttemptCounter) {
    counts_per_key_in_a_window(counter).await;
    peek_and_clear(counter).await;
    concurrent_attempts_are_all_counted(counter).await;
    windows_end(counter).await;
}

fn key(what: &str) -> String {
    format!("test:{what}:{}", uuid::Uuid::new_v4().simple())
}

pub async fn counts_per_key_in_a_window(counter: &dyn AttemptCounter) {
    let a = key("a");
    let b = key("b");
    let window = Duration::from_secs(600);
    for n in 1..=3u64 {
        let counts = counter.hit(std::slice::from_ref(&a), window).await.unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[0].count, n);
        assert!(counts[0].resets_in <= window);
        assert!(counts[0].resets_in > Duration::from_secs(590));
    }
    let both = counter.hit(&[b.clone(), a.clone()], window).await.unwrap();
    assert_eq!(
        both.iter().map(|c| c.count).collect::<Vec<_>>(),
        vec![1, 4],
        "in key order"
    );
    assert!(counter.hit(&[], window).await.unwrap().is_empty());
}

pub async fn peek_and_clear(counter: &dyn AttemptCounter) {
    let a = key("a");
    let b = key("b");
    let window = Duration::from_secs(600);
    let none = counter.peek(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(none.len(), 1);
    assert_eq!(none[0].count, 0, "no attempt yet");
    counter.hit(std::slice::from_ref(&a), window).await.unwrap();
    counter.hit(std::slice::from_ref(&a), window).await.unwrap();
    let seen = counter.peek(&[b.clone(), a.clone()]).await.unwrap();
    assert_eq!(
        seen.iter().map(|c| c.count).collect::<Vec<_>>(),
        vec![0, 2],
        "in key order"
    );
    assert!(seen[1].resets_in > Duration::from_secs(590) && seen[1].resets_in <= window);
    assert_eq!(
        counter.peek(std::slice::from_ref(&a)).await.unwrap()[0].count,
        2,
        "peeking does not count"
    );
    counter.clear(std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(
        counter.peek(std::slice::from_ref(&a)).await.unwrap()[0].count,
        0
    );
    assert_eq!(
        counter.hit(std::slice::from_ref(&a), window).await.unwrap()[0].count,
        1
    );
    // Unknown keys and no keys are no error.
    counter.clear(&[key("none")]).await.unwrap();
    assert!(counter.peek(&[]).await.unwrap().is_empty());
}

pub async fn concurrent_attempts_are_all_counted(counter: &dyn AttemptCounter) {
    let a = key("a");
    let window = Duration::from_secs(600);
    let keys = [a];
    let results = futures::future::join_all((0..20).map(|_| counter.hit(&keys, window))).await;
    let mut seen: Vec<u64> = results.into_iter().map(|r| r.unwrap()[0].count).collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=20).collect::<Vec<_>>(),
        "each attempt its own count"
    );
}

pub async fn windows_end(counter: &dyn AttemptCounter) {
    let a = key("a");
    let window = Duration::from_secs(1);
    counter.hit(std::slice::from_ref(&a), window).await.unwrap();
    counter.hit(std::slice::from_ref(&a), window).await.unwrap();
    // The count starts again once the window is over.
    eventually("the window never ended", || async {
        counter.hit(std::slice::from_ref(&a), window).await.unwrap()[0].count == 1
    })
    .await;
}
