//! `RedisStore` against a real `redis-server`.
//!
//! Most tests use the server at `OTAC_TEST_REDIS_URL` (`.ci/redis.sh` starts one) or, when it is unset, a private
//! `redis-server` of their own on a free loopback port; the outage tests always start private servers. Without
//! `redis-server` the tests are skipped, except under `CI=true`, where they fail.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use otac::ReplayStore;
use otac::store::{Outcome, StoreKey};
use otac_redis::RedisStore;
use otac_redis::redis::{self, AsyncCommands};
use otac_redis::testing::{PrivateRedis, TestRedis};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A prefix no other test or earlier run has used, so tests can share one server.
fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "otac-test:{test}:{}:{}:{}:",
        std::process::id(),
        now_ms(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn key(jti: &str) -> StoreKey {
    StoreKey::new("accounts.example.com", "onboarding", jti)
}

async fn store(url: &str, test: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("connect to the test redis")
        .prefix(unique_prefix(test))
}

/// A raw connection, to look at what the store wrote.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection")
}

#[tokio::test]
async fn second_consume_is_a_replay() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let url = redis.url();
    let store = store(&url, "consume").await;
    let exp = now_ms() + 60_000;
    assert_eq!(store.consume(&key("j1"), exp).await, Ok(Outcome::Inserted));
    assert_eq!(
        store.consume(&key("j1"), exp).await,
        Ok(Outcome::AlreadyPresent)
    );
    assert_eq!(store.consume(&key("j2"), exp).await, Ok(Outcome::Inserted));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumes_across_two_stores_have_one_winner() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let url = redis.url();
    let prefix = unique_prefix("race");
    // Two connection managers: as two processes would.
    let a = RedisStore::connect(url.as_str())
        .await
        .expect("connect a")
        .prefix(prefix.clone());
    let b = RedisStore::connect(url.as_str())
        .await
        .expect("connect b")
        .prefix(prefix);
    let exp = now_ms() + 60_000;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { store.consume(&key("contested"), exp).await })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(Outcome::Inserted) => inserted += 1,
            Ok(other) => assert_eq!(
                other,
                Outcome::AlreadyPresent,
                "unexpected outcome under contention"
            ),
            Err(err) => panic!("store error under contention: {err:?}"),
        }
    }
    assert_eq!(inserted, 1, "exactly one request uses the code");
}

#[tokio::test]
async fn release_only_removes_own_reservation_and_never_a_spent_entry() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let url = redis.url();
    let store = store(&url, "lease").await;
    let t = now_ms();
    let k = key("j1");
    assert_eq!(
        store.reserve(&k, 7, t + 30_000).await,
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        store.reserve(&k, 8, t + 30_000).await,
        Ok(Outcome::AlreadyPresent)
    );
    store
        .release(&k, 8)
        .await
        .expect("release of another token");
    assert_eq!(
        store.consume(&k, t + 30_000).await,
        Ok(Outcome::AlreadyPresent),
        "another request's release left the reservation"
    );
    store.release(&k, 7).await.expect("release");
    assert_eq!(
        store.reserve(&k, 9, t + 30_000).await,
        Ok(Outcome::Inserted),
        "released: the caller can retry"
    );
    store.commit(&k, 9, t + 60_000).await.expect("commit");
    store.release(&k, 9).await.expect("release after commit");
    assert_eq!(
        store.consume(&k, t + 60_000).await,
        Ok(Outcome::AlreadyPresent),
        "release never removes a spent entry"
    );
    assert_eq!(
        store.reserve(&k, 10, t + 30_000).await,
        Ok(Outcome::AlreadyPresent)
    );
}

#[tokio::test]
async fn reservation_lapses_and_commit_still_spends() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let url = redis.url();
    let store = store(&url, "lapse").await;
    let k = key("j1");
    assert_eq!(
        store.reserve(&k, 1, now_ms() + 300).await,
        Ok(Outcome::Inserted)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The holder crashed (or is slow): the lease is over and another request may take the code.
    assert_eq!(
        store.reserve(&k, 2, now_ms() + 300).await,
        Ok(Outcome::Inserted)
    );
    // The first request's handler succeeded after all: the code stays spent, whoever holds the lease.
    store
        .commit(&k, 1, now_ms() + 60_000)
        .await
        .expect("commit over another reservation");
    store.release(&k, 2).await.expect("release");
    assert_eq!(
        store.consume(&k, now_ms() + 60_000).await,
        Ok(Outcome::AlreadyPresent)
    );

    // A commit whose lease has lapsed and whose entry is gone spends the code too.
    let k2 = key("j2");
    assert_eq!(
        store.reserve(&k2, 3, now_ms() + 200).await,
        Ok(Outcome::Inserted)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    store
        .commit(&k2, 3, now_ms() + 60_000)
        .await
        .expect("commit after the lease");
    assert_eq!(
        store.consume(&k2, now_ms() + 60_000).await,
        Ok(Outcome::AlreadyPresent)
    );
}

#[tokio::test]
async fn commit_never_shortens_a_spent_entry() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let url = redis.url();
    let store = store(&url, "keep").await;
    let mut conn = raw(&url).await;
    let k = key("j1");
    let long = now_ms() + 60_000;
    assert_eq!(store.consume(&k, long).await, Ok(Outcome::Inserted));
    store.commit(&k, 1, now_ms() + 200).await.expect("commit");
    let pttl: i64 = conn.pttl(store.redis_key(&k)).await.expect("pttl");
    assert!(
        pttl > 50_000,
        "the spent entry kept its longer life, pttl {pttl}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.consume(&k, long).await, Ok(Outcome::AlreadyPresent));

    // A commit with a later expiry extends the entry.
    let k2 = key("j2");
    assert_eq!(
        store.reserve(&k2, 5, now_ms() + 30_000).await,
        Ok(Outcome::Inserted)
    );
    store
        .commit(&k2, 5, now_ms() + 120_000)
        .await
        .expect("commit");
    let pttl: i64 = conn.pttl(store.redis_key(&k2)).await.expect("pttl");
    assert!(
        pttl > 100_000,
        "committed until the code's expiry, pttl {pttl}"
    );
    let value: String = conn.get(store.redis_key(&k2)).await.expect("get");
    assert_eq!(value, "1");
}

#[tokio::test]
async fn spent_entries_expire_by_themselves() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let url = redis.url();
    let store = store(&url, "ttl").await;
    let k = key("j1");
    assert_eq!(
        store.consume(&k, now_ms() + 300).await,
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        store.consume(&k, now_ms() + 300).await,
        Ok(Outcome::AlreadyPresent)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.consume(&k, now_ms() + 300).await,
        Ok(Outcome::Inserted),
        "the entry expired"
    );
    // An expiry already past, or "forever", is still a valid command.
    assert_eq!(store.consume(&key("past"), 0).await, Ok(Outcome::Inserted));
    assert_eq!(
        store.consume(&key("forever"), u64::MAX).await,
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        store.consume(&key("forever"), u64::MAX).await,
        Ok(Outcome::AlreadyPresent)
    );
}

#[tokio::test]
async fn prefixes_keep_stores_apart() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let url = redis.url();
    let base = unique_prefix("prefix");
    let a = RedisStore::connect(url.as_str())
        .await
        .expect("connect")
        .prefix(format!("{base}a:"));
    let b = RedisStore::connect(url.as_str())
        .await
        .expect("connect")
        .prefix(format!("{base}b:"));
    let k = key("j1");
    let exp = now_ms() + 60_000;
    assert_eq!(a.consume(&k, exp).await, Ok(Outcome::Inserted));
    assert_eq!(
        b.consume(&k, exp).await,
        Ok(Outcome::Inserted),
        "another prefix is another namespace"
    );
    assert_eq!(a.consume(&k, exp).await, Ok(Outcome::AlreadyPresent));

    let name = a.redis_key(&k);
    assert_eq!(name, format!("{base}a:{}", k.to_hex()));
    let mut conn = raw(&url).await;
    let value: String = conn
        .get(&name)
        .await
        .expect("the entry is under prefix + hex key");
    assert_eq!(value, "1");
    let pttl: i64 = conn.pttl(&name).await.expect("pttl");
    assert!(pttl > 0, "every entry has an expiry, pttl {pttl}");

    let default = RedisStore::connect(url.as_str()).await.expect("connect");
    assert_eq!(default.redis_key(&k), format!("otac:{}", k.to_hex()));
    let shown = format!("{default:?}");
    assert!(
        shown.contains("otac:") && !shown.contains("redis://"),
        "{shown}"
    );
}

#[tokio::test]
async fn fails_closed_while_redis_is_down_and_recovers_by_itself() {
    let Some(mut server) = PrivateRedis::start() else {
        return;
    };
    let timeout = Duration::from_millis(250);
    let store = RedisStore::connect(server.url().as_str())
        .await
        .expect("connect")
        .timeout(timeout);
    assert_eq!(
        store.consume(&key("before"), now_ms() + 60_000).await,
        Ok(Outcome::Inserted)
    );

    server.kill();
    for i in 0..3 {
        let started = Instant::now();
        let result = store
            .consume(&key(&format!("down{i}")), now_ms() + 60_000)
            .await;
        let took = started.elapsed();
        assert!(
            result.is_err(),
            "a store that cannot answer is an error, got {result:?}"
        );
        assert!(
            took < timeout + Duration::from_millis(500),
            "answered within the timeout, took {took:?}"
        );
    }
    let started = Instant::now();
    assert!(
        store
            .reserve(&key("down-r"), 1, now_ms() + 30_000)
            .await
            .is_err()
    );
    assert!(
        store
            .commit(&key("down-r"), 1, now_ms() + 30_000)
            .await
            .is_err()
    );
    assert!(store.release(&key("down-r"), 1).await.is_err());
    assert!(started.elapsed() < 3 * timeout + Duration::from_millis(900));

    // Restarts on the same port, or panics naming the port.
    server.restart();
    // The same store, no reconnecting by hand: the connection manager finds the server again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match store.consume(&key("after"), now_ms() + 60_000).await {
            Ok(outcome) => {
                assert_eq!(outcome, Outcome::Inserted);
                break;
            }
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(err) => panic!("no recovery within 10 s ({attempts} attempts): {err:?}"),
        }
    }
    assert_eq!(
        store.consume(&key("after"), now_ms() + 60_000).await,
        Ok(Outcome::AlreadyPresent)
    );
    // The restarted server has no scripts cached: they are loaded again.
    assert_eq!(
        store.reserve(&key("after-r"), 4, now_ms() + 30_000).await,
        Ok(Outcome::Inserted)
    );
    store
        .commit(&key("after-r"), 4, now_ms() + 60_000)
        .await
        .expect("commit after restart");
    store
        .release(&key("after-r"), 4)
        .await
        .expect("release after restart");
    assert_eq!(
        store.consume(&key("after-r"), now_ms() + 60_000).await,
        Ok(Outcome::AlreadyPresent)
    );
}

#[tokio::test]
async fn a_hung_redis_times_out_then_serves_again() {
    let Some(server) = PrivateRedis::start() else {
        return;
    };
    let timeout = Duration::from_millis(200);
    let store = RedisStore::connect(server.url().as_str())
        .await
        .expect("connect")
        .timeout(timeout);
    assert_eq!(
        store.consume(&key("before"), now_ms() + 60_000).await,
        Ok(Outcome::Inserted)
    );

    server.signal("STOP");
    let started = Instant::now();
    let result = store.consume(&key("hung"), now_ms() + 60_000).await;
    let took = started.elapsed();
    server.signal("CONT");
    assert!(
        result.is_err(),
        "a silent server is an error, got {result:?}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(500),
        "bounded by the timeout: {took:?}"
    );

    assert_eq!(
        store.consume(&key("resumed"), now_ms() + 60_000).await,
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        store.consume(&key("before"), now_ms() + 60_000).await,
        Ok(Outcome::AlreadyPresent)
    );
}
