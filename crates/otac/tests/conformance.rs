//! The memory store passes the public store conformance suite.
#![allow(clippy::unwrap_used)]

use otac::MemoryStore;
use otac::testing::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_conformance_suite() {
    conformance::run(&MemoryStore::new(100_000)).await;
    conformance::run(&MemoryStore::with_shards(100_000, 1)).await;
}
