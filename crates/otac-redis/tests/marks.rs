//! Marks on a real `redis-server`: run revocation and live-code guards, checked in the same atomic call that
//! records the use.

use std::time::{SystemTime, UNIX_EPOCH};

use otac::ReplayStore;
use otac::store::{Guard, Outcome, Spend, StoreKey};
use otac_redis::RedisStore;
use otac_redis::testing::TestRedis;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

#[tokio::test]
async fn guards_on_marks_decide_the_use_in_one_call() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let prefix = format!("otac-test:marks:{}:{}:", std::process::id(), now_ms());
    let store = RedisStore::connect(redis.url())
        .await
        .expect("connect")
        .prefix(prefix);
    let t = now_ms();
    let jti = |j: &str| StoreKey::new("iss", "wf", j);
    let run = StoreKey::for_run("iss", "wf", "r1");
    let live = StoreKey::for_live_code("iss", "wf", "r1");
    let spend = Spend::Consume {
        expires_at_ms: t + 60_000,
    };

    let revoked = [Guard::Revoked { key: run, at: 100 }];
    assert_eq!(
        store.use_guarded(&jti("a"), spend, &revoked).await,
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        store.use_guarded(&jti("a"), spend, &revoked).await,
        Ok(Outcome::AlreadyPresent)
    );
    store.mark(&run, 100, t + 60_000).await.expect("mark");
    assert_eq!(
        store.use_guarded(&jti("b"), spend, &revoked).await,
        Ok(Outcome::Revoked)
    );
    assert_eq!(
        store.consume(&jti("b"), t + 60_000).await,
        Ok(Outcome::Inserted),
        "a refused use records nothing"
    );
    let later = [Guard::Revoked { key: run, at: 101 }];
    assert_eq!(
        store.use_guarded(&jti("c"), spend, &later).await,
        Ok(Outcome::Inserted)
    );

    // Live-code tags are compared exactly, also above 2^53.
    let tag = u64::MAX - 1;
    let guard = [Guard::Live { key: live, tag }];
    assert_eq!(
        store.use_guarded(&jti("d"), spend, &guard).await,
        Ok(Outcome::Superseded)
    );
    store.mark(&live, tag, t + 60_000).await.expect("mark");
    assert_eq!(
        store.use_guarded(&jti("d"), Spend::Nothing, &guard).await,
        Ok(Outcome::Inserted)
    );
    store.mark(&live, tag - 1, t + 60_000).await.expect("mark");
    assert_eq!(
        store.use_guarded(&jti("d"), spend, &guard).await,
        Ok(Outcome::Superseded)
    );

    // Reservations through the guarded path.
    let reserve = Spend::Reserve {
        token: 9,
        lease_until_ms: t + 60_000,
    };
    assert_eq!(
        store.use_guarded(&jti("e"), reserve, &later).await,
        Ok(Outcome::Inserted)
    );
    assert_eq!(
        store.use_guarded(&jti("e"), reserve, &later).await,
        Ok(Outcome::AlreadyPresent)
    );
    store.release(&jti("e"), 9).await.expect("release");
    assert_eq!(
        store.use_guarded(&jti("e"), reserve, &later).await,
        Ok(Outcome::Inserted)
    );
}
