//! The contract of [`MemberStore`].

use crate::domain::{Email, MemberId, NewMember, OmsError, PasswordHash, Role};
use crate::port::outbound::MemberStore;

/// A fresh email address (random, so the suite can run again and again on
/// the same database).
pub fn random_email() -> Email {
    let id = uuid::Uuid::new_v4().simple().to_string();
    Email::parse(&format!("member-{id}@example.com")).unwrap()
}

fn new_member(email: &Email) -> NewMember {
    NewMember {
        email: email.clone(),
        name: "김 Kim".into(),
        role: Role::User,
        password_hash: PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
    }
}

/// Runs every check of the member store contract.
pub async fn run(store: &dyn MemberStore) {
    create_assigns_an_id_and_round_trips(store).await;
    emails_are_unique(store).await;
    credentials_are_replaced(store).await;
    unknown_members_are_none(store).await;
    concurrent_sign_ups_with_one_email_make_one_member(store).await;
}

pub async fn create_assigns_an_id_and_round_trips(store: &dyn MemberStore) {
    let email = random_email();
    let created = store.create(&new_member(&email)).await.unwrap();
    assert!(created.id.0 > 0 && created.id.0 <= i64::MAX as u64);
    assert_eq!(created.email, email);
    assert_eq!(created.name, "김 Kim");
    assert_eq!(created.role, Role::User);
    let by_id = store.get(created.id).await.unwrap().unwrap();
    let by_email = store.find_by_email(&email).await.unwrap().unwrap();
    assert_eq!(by_id.id, created.id);
    assert_eq!(by_id.email, email);
    assert_eq!(by_id.name, created.name);
    assert_eq!(by_id.password_hash, created.password_hash);
    assert_eq!(by_email.id, created.id);
    let other = store.create(&new_member(&random_email())).await.unwrap();
    assert_ne!(other.id, created.id, "every member has its own id");
}

pub async fn emails_are_unique(store: &dyn MemberStore) {
    let email = random_email();
    store.create(&new_member(&email)).await.unwrap();
    let again = store.create(&new_member(&email)).await;
    assert!(matches!(again, Err(OmsError::EmailTaken)), "{again:?}");
}

pub async fn credentials_are_replaced(store: &dyn MemberStore) {
    let created = store.create(&new_member(&random_email())).await.unwrap();
    let hash = PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$bmV3c2FsdA$bmV3aGFzaA");
    store
        .set_credentials(created.id, Role::Admin, &hash)
        .await
        .unwrap();
    let read = store.get(created.id).await.unwrap().unwrap();
    assert_eq!(read.role, Role::Admin);
    assert_eq!(read.password_hash, hash);
    assert_eq!(read.email, created.email);
    let unknown = MemberId(i64::MAX as u64 - 3);
    assert!(matches!(
        store.set_credentials(unknown, Role::User, &hash).await,
        Err(OmsError::MemberNotFound { .. })
    ));
}

pub async fn unknown_members_are_none(store: &dyn MemberStore) {
    assert!(store
        .get(MemberId(i64::MAX as u64 - 1))
        .await
        .unwrap()
        .is_none());
    assert!(store.get(MemberId(u64::MAX)).await.unwrap().is_none());
    assert!(store
        .find_by_email(&random_email())
        .await
        .unwrap()
        .is_none());
}

pub async fn concurrent_sign_ups_with_one_email_make_one_member(store: &dyn MemberStore) {
    let email = random_email();
    let member = new_member(&email);
    let results = futures::future::join_all((0..8).map(|_| store.create(&member))).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| r.is_ok() || matches!(r, Err(OmsError::EmailTaken))));
}
