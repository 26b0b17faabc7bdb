//! `RedisStore` passes the public store conformance suite against a real `redis-server`, and fails closed when
//! the server is gone.

use std::time::Duration;

use otac::testing::conformance;
use otac_redis::RedisStore;
use otac_redis::testing::{PrivateRedis, TestRedis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let Some(redis) = TestRedis::get() else {
        return;
    };
    let store = RedisStore::connect(redis.url())
        .await
        .expect("connect")
        .prefix(format!("otac-conformance:{}:", std::process::id()));
    conformance::run(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_fails_closed_when_the_server_is_gone() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let store = RedisStore::connect(redis.url())
        .await
        .expect("connect")
        .timeout(Duration::from_millis(200));
    redis.kill();
    conformance::fails_closed(&store).await;
}
