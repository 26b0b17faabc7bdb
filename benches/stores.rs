//! Consume throughput of the replay stores.
//!
//! ```text
//! cargo bench --bench stores                                          # full run
//! cargo bench --bench stores -- --warm-up-time 1 --measurement-time 3 # a quick one
//! ```
//!
//! - `memory_consume/capacity_{1048576,65536}/threads_{1,2}`: `MemoryStore::consume` of distinct keys from 1 or 2
//!   OS threads at once, on a store kept at its full size (entries expire at once, so it reclaims on the insert path
//!   as a long-running service does). The time per iteration is wall time over all threads, so the throughput is
//!   the aggregate.
//! - `memory_fill/threads/{1,2}`: the same on a fresh store filled with live codes, growth of its tables included.
//! - `redis_consume/{otac_redis_store,raw_set_nx_px}/{1,32}`: `RedisStore::consume` against a raw
//!   `SET key 1 NX PX 60000` on the same `ConnectionManager` (the baseline), with 1 or 32 calls in flight. The Redis
//!   server is `OTAC_TEST_REDIS_URL` or a private `redis-server`; without either, this part is skipped with a message.
//!   After the group, the same comparison in alternating batches prints the ratio RedisStore/raw.

use std::future::Future;
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use otac::store::{Outcome, StoreFuture, StoreKey};
use otac::{MemoryStore, ReplayStore, StoreError};
use otac_redis::RedisStore;
use otac_redis::redis::aio::ConnectionManager;
use otac_redis::redis::{self, Value};
use otac_redis::testing::TestRedis;

/// The answer of a memory-store call, which is always ready.
fn ready<T>(mut future: StoreFuture<T>) -> Result<T, StoreError> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(&mut future).poll(&mut cx) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => panic!("memory store calls complete at once"),
    }
}

fn keys(n: usize, salt: u64) -> Vec<StoreKey> {
    (0..n)
        .map(|i| StoreKey::new("bench", "onboarding", &format!("{salt}-{i}")))
        .collect()
}

/// Keys per thread, made beforehand: hashing them is the verifier's work, not the store's.
const POOL: usize = 1 << 20;

/// Runs one OS thread per entry of `work` (`(keys, first index, count)`), all released together, each consuming
/// `count` keys of its pool from `first` on (wrapping around); returns the wall time from the first thread's start
/// to the last one's end.
fn timed_threads(store: &MemoryStore, work: &[(&[StoreKey], usize, usize)], exp: u64) -> Duration {
    let start = Barrier::new(work.len());
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|s| {
        let workers: Vec<_> = work
            .iter()
            .map(|&(pool, first, count)| {
                let start = &start;
                s.spawn(move || {
                    let mask = pool.len() - 1;
                    start.wait();
                    let began = Instant::now();
                    for i in first..first + count {
                        let outcome = ready(store.consume(&pool[i & mask], exp));
                        assert_eq!(black_box(outcome), Ok(Outcome::Inserted));
                    }
                    (began, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect()
    });
    let began = spans.iter().map(|s| s.0).min().expect("a thread");
    let ended = spans.iter().map(|s| s.1).max().expect("a thread");
    ended.duration_since(began)
}

fn memory(c: &mut Criterion) {
    let pools: Vec<Vec<StoreKey>> = (0..2).map(|t| keys(POOL, t)).collect();

    // Steady state: one store for the whole run, every entry recorded with an expiry already past, so the store
    // stays at its full size and reclaims on the insert path (a full shard sweeps, then refills), the regime of a
    // long-running service. Two sizes: the default capacity (1,048,576; its tables do not fit in any cache) and
    // 65,536. Keys are distinct between the threads.
    let mut group = c.benchmark_group("memory_consume");
    group.throughput(Throughput::Elements(1));
    for capacity in [1usize << 20, 1 << 16] {
        for threads in [1usize, 2] {
            let store = MemoryStore::new(capacity);
            let mut cursor = 0usize;
            group.bench_with_input(
                BenchmarkId::new(format!("capacity_{capacity}"), format!("threads_{threads}")),
                &threads,
                |b, &threads| {
                    b.iter_custom(|iters| {
                        let per_thread = (iters as usize).div_ceil(threads);
                        let work: Vec<_> = pools[..threads]
                            .iter()
                            .map(|pool| (pool.as_slice(), cursor, per_thread))
                            .collect();
                        cursor = (cursor + per_thread) % POOL;
                        // Time for `per_thread * threads` consumes, scaled to `iters`.
                        timed_threads(&store, &work, 0)
                            .mul_f64(iters as f64 / (per_thread * threads) as f64)
                    });
                },
            );
        }
    }
    group.finish();

    // Filling a fresh store with live codes (no expiry): includes the growth of its tables.
    let mut group = c.benchmark_group("memory_fill");
    group.throughput(Throughput::Elements(1));
    for threads in [1usize, 2] {
        group.bench_with_input(
            BenchmarkId::new("threads", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    let per_thread = (iters as usize).div_ceil(threads);
                    // Capacity is per shard: leave room for keys that do not spread evenly.
                    let store = MemoryStore::new(per_thread * threads * 2 + 1024);
                    let extra: Vec<Vec<StoreKey>> = if per_thread > POOL {
                        (0..threads)
                            .map(|t| keys(per_thread.next_power_of_two(), 100 + t as u64))
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let sets = if extra.is_empty() { &pools } else { &extra };
                    let work: Vec<_> = sets[..threads]
                        .iter()
                        .map(|pool| (pool.as_slice(), 0, per_thread))
                        .collect();
                    timed_threads(&store, &work, u64::MAX)
                        .mul_f64(iters as f64 / (per_thread * threads) as f64)
                });
            },
        );
    }
    group.finish();
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Distinct jtis across samples, runs and processes.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_key() -> StoreKey {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    StoreKey::new(
        "bench",
        "onboarding",
        &format!("{}-{}-{n}", std::process::id(), now_ms()),
    )
}

async fn via_store(store: &RedisStore, exp: u64) {
    let outcome = store.consume(&next_key(), exp).await;
    assert_eq!(outcome, Ok(Outcome::Inserted));
}

async fn raw_set_nx_px(conn: &mut ConnectionManager) {
    // The same key shape as the store's (prefix + 64 hex digits of a store key).
    let key = format!("otac-bench:raw:{}", next_key().to_hex());
    let reply: Value = redis::cmd("SET")
        .arg(key)
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(60_000)
        .query_async(conn)
        .await
        .expect("SET NX PX");
    assert_eq!(reply, Value::Okay);
}

/// Runs `iters` calls of `op`, `in_flight` at a time, and returns the wall time.
fn run_concurrent<F, Fut>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    in_flight: u64,
    op: F,
) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    rt.block_on(async move {
        let began = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|t| {
                let op = op.clone();
                // Spread `iters` over the tasks.
                let n = iters / in_flight + u64::from(t < iters % in_flight);
                tokio::spawn(async move {
                    for _ in 0..n {
                        op().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("bench task");
        }
        began.elapsed()
    })
}

fn redis_stores(c: &mut Criterion) {
    let Some(server) = TestRedis::get() else {
        eprintln!(
            "redis_consume: no Redis server (OTAC_TEST_REDIS_URL unset, no redis-server): skipped"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let conn = rt
        .block_on(async {
            let client = redis::Client::open(server.url())?;
            ConnectionManager::new(client).await
        })
        .expect("connect to redis");
    // The store on the very same connection manager as the baseline, with a generous timeout so that the
    // measurement never includes failures.
    let store = RedisStore::new(conn.clone())
        .prefix("otac-bench:store:")
        .timeout(Duration::from_secs(5));
    let exp = now_ms() + 60_000;

    let mut group = c.benchmark_group("redis_consume");
    group.throughput(Throughput::Elements(1));
    for in_flight in [1u64, 32] {
        group.bench_with_input(
            BenchmarkId::new("otac_redis_store", in_flight),
            &in_flight,
            |b, &in_flight| {
                b.iter_custom(|iters| {
                    let store = store.clone();
                    run_concurrent(&rt, iters, in_flight, move || {
                        let store = store.clone();
                        async move { via_store(&store, exp).await }
                    })
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("raw_set_nx_px", in_flight),
            &in_flight,
            |b, &in_flight| {
                b.iter_custom(|iters| {
                    let conn = conn.clone();
                    run_concurrent(&rt, iters, in_flight, move || {
                        let mut conn = conn.clone();
                        async move { raw_set_nx_px(&mut conn).await }
                    })
                });
            },
        );
    }
    group.finish();

    // The ratio once more, measured in alternating batches: on a shared machine the load drifts between the
    // criterion runs above, and alternation makes the drift hit both sides alike. Skipped in `--test` / `--list`.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        const ROUNDS: usize = 20;
        const BATCH: u64 = 2_000;
        for in_flight in [1u64, 32] {
            let (mut via, mut raw) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..ROUNDS {
                let store = store.clone();
                via += run_concurrent(&rt, BATCH, in_flight, move || {
                    let store = store.clone();
                    async move { via_store(&store, exp).await }
                });
                let conn = conn.clone();
                raw += run_concurrent(&rt, BATCH, in_flight, move || {
                    let mut conn = conn.clone();
                    async move { raw_set_nx_px(&mut conn).await }
                });
            }
            let calls = (ROUNDS as u64 * BATCH) as f64;
            let (via_rate, raw_rate) = (calls / via.as_secs_f64(), calls / raw.as_secs_f64());
            println!(
                "redis_consume paired, {in_flight} in flight, {calls} calls each: RedisStore {via_rate:.0}/s, \
                 raw SET NX PX {raw_rate:.0}/s, RedisStore/raw = {:.3}",
                via_rate / raw_rate
            );
        }
    }
    drop(rt);
    drop(server);
}

criterion_group!(benches, memory, redis_stores);
criterion_main!(benches);
