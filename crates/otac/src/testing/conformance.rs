//! A conformance suite for [`ReplayStore`] implementations: run it in your store's own tests.
//!
//! ```
//! # async fn demo() {
//! use otac::MemoryStore;
//! use otac::testing::conformance;
//!
//! conformance::run(&MemoryStore::new(10_000)).await;
//! # }
//! ```
//!
//! [`run`] checks atomic insert-if-absent under concurrency, namespacing, expiry, reservations (lease expiry,
//! release of one's own reservation only, commit), and marks (revocation and live-code guards) when the store
//! supports them — and that a store without marks refuses guarded uses instead of ignoring the guards.
//! [`fails_closed`] checks that a store that cannot reach its backend answers every call with an error.
//! Every check panics with a message naming what went wrong. Keys are random, so the suite can share a store (or a
//! Redis) with other tests; it sleeps for about two seconds in all (expiry checks).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::{Guard, Outcome, ReplayStore, Spend, StoreKey};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn fresh(label: &str) -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("conformance-{label}-{hex}")
}

fn key(label: &str) -> StoreKey {
    StoreKey::new("conformance.example", "conformance", &fresh(label))
}

/// Polls all futures on the caller's task until each is done, so they are in flight together.
async fn join_all<F: Future + Unpin>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Option<F>> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        let mut pending = false;
        for (slot, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match Pin::new(future).poll(cx) {
                    Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

/// Waits without needing any particular async runtime (the store calls are not in flight meanwhile).
fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Runs every check against `store`.
pub async fn run(store: &dyn ReplayStore) {
    consume_is_insert_if_absent(store).await;
    concurrent_consumes_have_one_winner(store).await;
    keys_are_independent(store).await;
    reservations(store).await;
    entries_expire(store).await;
    marks(store).await;
}

/// Checks that every call of a store whose backend is unreachable fails (so requests fail closed).
pub async fn fails_closed(store: &dyn ReplayStore) {
    let t = now_ms() + 60_000;
    let k = key("down");
    assert!(
        store.consume(&k, t).await.is_err(),
        "consume must fail when the store cannot answer"
    );
    assert!(
        store.reserve(&k, 7, t).await.is_err(),
        "reserve must fail when the store cannot answer"
    );
    assert!(
        store.commit(&k, 7, t).await.is_err(),
        "commit must fail when the store cannot answer"
    );
    assert!(
        store.release(&k, 7).await.is_err(),
        "release must fail when the store cannot answer"
    );
    let guard = [Guard::Revoked {
        key: StoreKey::for_run("conformance.example", "conformance", "r"),
        at: 1,
    }];
    assert!(
        store
            .use_guarded(&k, Spend::Consume { expires_at_ms: t }, &guard)
            .await
            .is_err(),
        "a guarded use must fail when the store cannot answer"
    );
}

async fn consume_is_insert_if_absent(store: &dyn ReplayStore) {
    let t = now_ms() + 60_000;
    let k = key("consume");
    assert_eq!(
        store.consume(&k, t).await,
        Ok(Outcome::Inserted),
        "first consume"
    );
    assert_eq!(
        store.consume(&k, t).await,
        Ok(Outcome::AlreadyPresent),
        "second consume"
    );
    assert_eq!(
        store.reserve(&k, 5, t).await,
        Ok(Outcome::AlreadyPresent),
        "a spent code cannot be reserved"
    );
}

async fn concurrent_consumes_have_one_winner(store: &dyn ReplayStore) {
    let t = now_ms() + 60_000;
    for round in 0..3 {
        let k = key("race");
        let consumes: Vec<_> = (0..32).map(|_| store.consume(&k, t)).collect();
        let results = join_all(consumes).await;
        let winners = results
            .iter()
            .filter(|r| **r == Ok(Outcome::Inserted))
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one of 32 concurrent consumes wins: {results:?}"
        );
        assert!(
            results.iter().all(Result::is_ok),
            "no errors under concurrency: {results:?}"
        );
        let k = key("race-reserve");
        let reserves: Vec<_> = (0..32u64).map(|i| store.reserve(&k, i + 1, t)).collect();
        let results = join_all(reserves).await;
        let winners = results
            .iter()
            .filter(|r| **r == Ok(Outcome::Inserted))
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one of 32 concurrent reserves wins: {results:?}"
        );
    }
}

async fn keys_are_independent(store: &dyn ReplayStore) {
    let t = now_ms() + 60_000;
    let jti = fresh("ns");
    let a = StoreKey::new("issuer-a", "wf", &jti);
    let b = StoreKey::new("issuer-b", "wf", &jti);
    let c = StoreKey::new("issuer-a", "other-wf", &jti);
    assert_eq!(store.consume(&a, t).await, Ok(Outcome::Inserted));
    assert_eq!(
        store.consume(&b, t).await,
        Ok(Outcome::Inserted),
        "another issuer's code with the same jti is another key"
    );
    assert_eq!(
        store.consume(&c, t).await,
        Ok(Outcome::Inserted),
        "another workflow's code with the same jti is another key"
    );
}

async fn reservations(store: &dyn ReplayStore) {
    let t = now_ms() + 60_000;
    let k = key("reserve");
    assert_eq!(
        store.reserve(&k, 11, t).await,
        Ok(Outcome::Inserted),
        "first reserve"
    );
    assert_eq!(
        store.reserve(&k, 12, t).await,
        Ok(Outcome::AlreadyPresent),
        "a reserved code is taken"
    );
    assert_eq!(
        store.consume(&k, t).await,
        Ok(Outcome::AlreadyPresent),
        "a reserved code cannot be consumed"
    );
    store
        .release(&k, 12)
        .await
        .expect("release of another token");
    assert_eq!(
        store.reserve(&k, 13, t).await,
        Ok(Outcome::AlreadyPresent),
        "releasing under another token leaves the reservation"
    );
    store.release(&k, 11).await.expect("release");
    assert_eq!(
        store.reserve(&k, 14, t).await,
        Ok(Outcome::Inserted),
        "a released code can be reserved again"
    );
    store.commit(&k, 14, t).await.expect("commit");
    store.release(&k, 14).await.expect("release after commit");
    assert_eq!(
        store.consume(&k, t).await,
        Ok(Outcome::AlreadyPresent),
        "release never removes a committed (spent) entry"
    );
}

async fn entries_expire(store: &dyn ReplayStore) {
    let spent = key("ttl-spent");
    let leased = key("ttl-lease");
    let committed = key("ttl-commit");
    let soon = now_ms() + 400;
    assert_eq!(store.consume(&spent, soon).await, Ok(Outcome::Inserted));
    assert_eq!(
        store.reserve(&leased, 21, soon).await,
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        store.reserve(&committed, 22, soon).await,
        Ok(Outcome::Inserted)
    );
    // A commit after the lease may already have lapsed still spends the code for its whole life.
    store
        .commit(&committed, 22, now_ms() + 60_000)
        .await
        .expect("commit");
    pause(900);
    assert_eq!(
        store.consume(&spent, now_ms() + 60_000).await,
        Ok(Outcome::Inserted),
        "a spent entry expires at the time it was given"
    );
    assert_eq!(
        store.reserve(&leased, 23, now_ms() + 60_000).await,
        Ok(Outcome::Inserted),
        "a reservation that was never committed or released lapses with its lease"
    );
    assert_eq!(
        store.consume(&committed, now_ms() + 60_000).await,
        Ok(Outcome::AlreadyPresent),
        "a commit extends the entry to the code's own expiry"
    );
}

async fn marks(store: &dyn ReplayStore) {
    let t = now_ms() + 60_000;
    let run = StoreKey::for_run("conformance.example", "conformance", &fresh("run"));
    let live = StoreKey::for_live_code("conformance.example", "conformance", &fresh("run"));
    let revoked = [Guard::Revoked {
        key: run,
        at: 1_000,
    }];
    let spend = Spend::Consume { expires_at_ms: t };
    if store.mark(&run, 1_000, now_ms() + 1_000).await.is_err() {
        // No marks: guarded uses must be refused, never run as if the guards had passed.
        assert!(
            store
                .use_guarded(&key("no-marks"), spend, &revoked)
                .await
                .is_err(),
            "a store without marks must refuse guarded uses"
        );
        return;
    }
    assert_eq!(
        store.use_guarded(&key("g"), spend, &revoked).await,
        Ok(Outcome::Revoked),
        "revoked run"
    );
    let untouched = key("g-none");
    assert_eq!(
        store.consume(&untouched, t).await,
        Ok(Outcome::Inserted),
        "a refused guarded use records nothing"
    );
    let later = [Guard::Revoked {
        key: run,
        at: 1_001,
    }];
    let k = key("g-later");
    assert_eq!(
        store.use_guarded(&k, spend, &later).await,
        Ok(Outcome::Inserted),
        "a run started after the revocation passes"
    );
    assert_eq!(
        store.use_guarded(&k, spend, &later).await,
        Ok(Outcome::AlreadyPresent),
        "and is spent"
    );

    let tag = u64::MAX - 2;
    let guard = [Guard::Live { key: live, tag }];
    let k = key("g-live");
    assert_eq!(
        store.use_guarded(&k, spend, &guard).await,
        Ok(Outcome::Superseded),
        "no live-code mark: superseded (fail closed)"
    );
    store.mark(&live, tag, t).await.expect("mark");
    assert_eq!(
        store.use_guarded(&k, Spend::Nothing, &guard).await,
        Ok(Outcome::Inserted),
        "the live code passes (tags compared exactly)"
    );
    store.consume(&k, t).await.expect("consume");
    assert_eq!(
        store.use_guarded(&k, Spend::Nothing, &guard).await,
        Ok(Outcome::AlreadyPresent),
        "a check-only use refuses a spent code"
    );
    store.mark(&live, tag - 1, t).await.expect("mark");
    assert_eq!(
        store.use_guarded(&k, spend, &guard).await,
        Ok(Outcome::Superseded),
        "a replaced code"
    );
    let reserve = Spend::Reserve {
        token: 31,
        lease_until_ms: t,
    };
    let k = key("g-reserve");
    assert_eq!(
        store.use_guarded(&k, reserve, &later).await,
        Ok(Outcome::Inserted),
        "guarded reserve"
    );
    assert_eq!(
        store.use_guarded(&k, reserve, &later).await,
        Ok(Outcome::AlreadyPresent),
        "taken"
    );

    // Marks expire too.
    let short = StoreKey::for_run("conformance.example", "conformance", &fresh("run"));
    store
        .mark(&short, 1_000, now_ms() + 300)
        .await
        .expect("mark");
    pause(700);
    let guard = [Guard::Revoked {
        key: short,
        at: 1_000,
    }];
    assert_eq!(
        store.use_guarded(&key("g-expired"), spend, &guard).await,
        Ok(Outcome::Inserted),
        "an expired mark no longer revokes"
    );
}
