//! Members and sessions on the real stack: a real `api` process (and a
//! second replica) and two `consumer` processes against Redis, MariaDB and
//! the Kafka broker of `scripts/services.sh up`. An operator bootstrapped
//! from `OMS_ADMIN_EMAIL` adds a product; 100 buyers sign up, log in and
//! order with the tokens they were issued; they refresh; a replayed refresh
//! token revokes its login; a logout revokes its tokens, on every replica.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::stack::Stack;
use futures::{stream, StreamExt};
use serde_json::{json, Value};

const ADMIN_PASSWORD: &str = "operator password of the e2e run";
const PASSWORD: &str = "correct horse battery staple";
const MEMBERS: usize = 100;
const STOCK: i64 = 60;

struct Buyer {
    member_id: u64,
    email: String,
    access: String,
    refresh: String,
}

async fn pair(r: reqwest::Response) -> (String, String) {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tokenType"], "Bearer");
    assert!(v["expiresIn"].as_u64().unwrap() > 0);
    (
        v["accessToken"].as_str().unwrap().to_owned(),
        v["refreshToken"].as_str().unwrap().to_owned(),
    )
}

/// How long an `api` process may still accept an access token revoked
/// through another: one copy of the revocations (`OMS_REVOCATION_SYNC_MS`,
/// 250 ms) plus a margin of 4.75 s for a busy 2-core machine.
const REVOKED_WITHIN: Duration = Duration::from_secs(5);

/// Polls `GET /members/me` at `base` until the token is refused (401);
/// panics after `within`. Returns how long it took.
async fn refused_within(stack: &Stack, base: &str, access: &str, within: Duration) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let status = stack.me_at(base, access).await.status();
        if status == 401 {
            return started.elapsed();
        }
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < within,
            "still accepted after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn buyers_sign_up_log_in_order_refresh_and_log_out_on_the_real_stack() {
    if !common::real_stack() {
        return;
    }
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let admin_email = format!("ops-{tag}@example.com");
    let mut stack = Stack::start_api_with(&[
        ("OMS_ADMIN_EMAIL", admin_email.as_str()),
        ("OMS_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ])
    .await;
    stack.start_consumer();
    stack.start_consumer();
    let base = stack.base.clone();

    // The operator of OMS_ADMIN_EMAIL logs in and adds the product.
    let (admin, _) = pair(stack.login_at(&base, &admin_email, ADMIN_PASSWORD).await).await;
    let me: Value = stack.me_at(&base, &admin).await.json().await.unwrap();
    assert_eq!(me["role"], "ADMIN");
    assert_eq!(me["email"], admin_email);
    let product = oms_core::testkit::random_id();
    let r = stack
        .client
        .post(format!("{base}/api/v1/products"))
        .bearer_auth(&admin)
        .json(&json!({"productId": product, "name": "deal", "price": 12900, "stock": STOCK}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // 100 buyers sign up and log in (16 at a time).
    let emails: Vec<String> = (0..MEMBERS)
        .map(|i| format!("Buyer-{i}-{tag}@Example.com"))
        .collect();
    let stack_ref = &stack;
    let base_ref = base.as_str();
    let mut buyers: Vec<Buyer> = stream::iter(emails.iter())
        .map(|email| async move {
            let r = stack_ref
                .signup_at(base_ref, email, PASSWORD, "구매자")
                .await;
            assert_eq!(r.status(), 201);
            let created: Value = r.json().await.unwrap();
            assert_eq!(created["role"], "USER");
            assert_eq!(created["email"], email.to_lowercase());
            let (access, refresh) = pair(stack_ref.login_at(base_ref, email, PASSWORD).await).await;
            Buyer {
                member_id: created["memberId"].as_u64().unwrap(),
                email: email.to_lowercase(),
                access,
                refresh,
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    buyers.sort_by_key(|b| b.member_id);
    let ids: HashSet<u64> = buyers.iter().map(|b| b.member_id).collect();
    assert_eq!(ids.len(), MEMBERS, "one member id each");

    // A taken email, a wrong password and an unknown email.
    let r = stack
        .signup_at(&base, &buyers[0].email.to_uppercase(), PASSWORD, "again")
        .await;
    assert_eq!(r.status(), 409);
    let wrong: Value = {
        let r = stack
            .login_at(&base, &buyers[0].email, "not the password")
            .await;
        assert_eq!(r.status(), 401);
        r.json().await.unwrap()
    };
    let unknown: Value = {
        let r = stack
            .login_at(&base, &format!("nobody-{tag}@example.com"), PASSWORD)
            .await;
        assert_eq!(r.status(), 401);
        r.json().await.unwrap()
    };
    assert_eq!(wrong["code"], "BAD_CREDENTIALS");
    assert_eq!(wrong, unknown, "the same answer");

    // Every buyer orders one unit with its issued access token.
    let traces: Vec<(u64, String)> = stream::iter(buyers.iter())
        .map(|b| async move {
            let r = stack_ref
                .order_as(base_ref, &b.access, &[(product, 1)])
                .await;
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            (b.member_id, v["traceId"].as_str().unwrap().to_owned())
        })
        .buffer_unordered(32)
        .collect()
        .await;

    // Each refreshes: a new pair; the new access token reads the trace.
    let mut rotated = Vec::with_capacity(MEMBERS);
    for b in &mut buyers {
        let (access, refresh) = pair(stack.refresh_at(&base, &b.refresh).await).await;
        assert_ne!(refresh, b.refresh);
        rotated.push(std::mem::replace(&mut b.refresh, refresh));
        b.access = access;
    }
    let finals = stream::iter(traces.iter())
        .map(|(member, trace)| {
            let access = buyers
                .iter()
                .find(|b| b.member_id == *member)
                .map(|b| b.access.clone())
                .unwrap();
            async move {
                let v = stack_ref
                    .final_trace_as(&access, trace, Duration::from_secs(60))
                    .await;
                (trace.clone(), v)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    // Stock for 60: 60 orders, 40 refused; each order is its buyer's alone.
    let finals: std::collections::HashMap<String, Value> = finals;
    let completed: Vec<(u64, u64)> = traces
        .iter()
        .filter(|(_, t)| finals[t]["status"] == "COMPLETED")
        .map(|(m, t)| (*m, finals[t]["orderId"].as_u64().unwrap()))
        .collect();
    let refused = traces
        .iter()
        .filter(|(_, t)| finals[t]["status"] == "FAILED" && finals[t]["reason"] == "OUT_OF_STOCK")
        .count();
    assert_eq!(
        (completed.len(), refused),
        (STOCK as usize, MEMBERS - STOCK as usize)
    );
    assert_eq!(stack.stock(product).await, 0);
    let access_of = |member: u64| {
        buyers
            .iter()
            .find(|b| b.member_id == member)
            .map(|b| b.access.clone())
            .unwrap()
    };
    for (i, (member, order)) in completed.iter().enumerate() {
        let own = stack
            .client
            .get(format!("{base}/api/v1/orders/{order}"))
            .bearer_auth(access_of(*member))
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200);
        let body: Value = own.json().await.unwrap();
        assert_eq!(body["memberId"], *member);
        let (other, _) = completed[(i + 1) % completed.len()];
        let foreign = stack
            .client
            .get(format!("{base}/api/v1/orders/{order}"))
            .bearer_auth(access_of(other))
            .send()
            .await
            .unwrap();
        assert_eq!(foreign.status(), 404, "another buyer's order");
    }

    // Buyers 0..10 replay their rotated refresh token: 401, and the whole
    // login is revoked — the new refresh token and the new access token.
    for (b, old) in buyers.iter().zip(&rotated).take(10) {
        assert_eq!(stack.refresh_at(&base, old).await.status(), 401);
        assert_eq!(stack.refresh_at(&base, &b.refresh).await.status(), 401);
        assert_eq!(stack.me_at(&base, &b.access).await.status(), 401);
        let r = stack.order_as(&base, &b.access, &[(product, 1)]).await;
        assert_eq!(r.status(), 401);
        // Logging in again starts a new login.
        let (access, _) = pair(stack.login_at(&base, &b.email, PASSWORD).await).await;
        assert_eq!(stack.me_at(&base, &access).await.status(), 200);
    }

    // Buyers 10..20 log out: their tokens are refused from then on.
    for b in &buyers[10..20] {
        let r = stack.logout_at(&base, &b.access, Some(&b.refresh)).await;
        assert_eq!(r.status(), 204);
        assert_eq!(stack.me_at(&base, &b.access).await.status(), 401);
        let r = stack.order_as(&base, &b.access, &[(product, 1)]).await;
        assert_eq!(r.status(), 401);
        assert_eq!(stack.refresh_at(&base, &b.refresh).await.status(), 401);
    }

    // A refresh token is never an access token, nor the reverse.
    let b = &buyers[20];
    assert_eq!(stack.me_at(&base, &b.refresh).await.status(), 401);
    assert_eq!(stack.refresh_at(&base, &b.access).await.status(), 401);

    // Another replica: refresh tokens die at once everywhere (Redis decides
    // each refresh); access tokens within a sync of the revocation copy
    // (OMS_REVOCATION_SYNC_MS, 250 ms).
    let (replica, replica_base) = stack.start_replica().await;
    let b = &buyers[21];
    assert_eq!(stack.me_at(&replica_base, &b.access).await.status(), 200);
    assert_eq!(stack.me_at(&base, &b.access).await.status(), 200);
    assert_eq!(
        stack
            .logout_at(&replica_base, &b.access, None)
            .await
            .status(),
        204
    );
    assert_eq!(stack.me_at(&replica_base, &b.access).await.status(), 401);
    assert_eq!(stack.refresh_at(&base, &b.refresh).await.status(), 401);
    let took = refused_within(&stack, &base, &b.access, REVOKED_WITHIN).await;
    eprintln!("a logout on one replica was refused by the other after {took:?}");
    let b = &buyers[22];
    let (_, newer) = pair(stack.refresh_at(&base, &b.refresh).await).await;
    assert_eq!(
        stack.refresh_at(&replica_base, &b.refresh).await.status(),
        401
    );
    assert_eq!(stack.refresh_at(&base, &newer).await.status(), 401);
    refused_within(&stack, &base, &b.access, REVOKED_WITHIN).await;
    refused_within(&stack, &replica_base, &b.access, REVOKED_WITHIN).await;

    // Everyone else is still logged in, as themselves.
    for b in &buyers[23..] {
        let r = stack.me_at(&base, &b.access).await;
        assert_eq!(r.status(), 200);
        let me: Value = r.json().await.unwrap();
        assert_eq!(me["memberId"], b.member_id);
        assert_eq!(me["email"], b.email);
        assert_eq!(me["name"], "구매자");
    }

    replica.stop();
    stack.stop();
}
