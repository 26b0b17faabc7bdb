//! Resident memory per live entry of `MemoryStore`: fills a store with 1,000,000 spent codes and compares the
//! process's resident set size (`VmRSS` in `/proc/self/status`) before and after. Linux only.
//!
//! ```text
//! cargo bench --bench footprint
//! ```

use std::future::Future;
use std::hint::black_box;

use otac::store::{Outcome, StoreFuture, StoreKey};
use otac::{MemoryStore, ReplayStore, StoreError};

const ENTRIES: u64 = 1_000_000;

fn ready<T>(mut future: StoreFuture<T>) -> Result<T, StoreError> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(&mut future).poll(&mut cx) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => panic!("memory store calls complete at once"),
    }
}

/// The resident set size in bytes, if `/proc` tells it.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names something else skips this target.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"footprint".contains(a.as_str()))
    {
        return;
    }
    let Some(before) = rss_bytes() else {
        eprintln!("footprint: /proc/self/status has no VmRSS here: skipped");
        return;
    };
    // The default capacity (1,048,576 live codes), as the examples use it.
    let store = MemoryStore::default();
    let empty = rss_bytes().unwrap_or(before);
    for i in 0..ENTRIES {
        // Keys are made one at a time and not kept, so only the store's memory grows.
        let key = StoreKey::new("bench", "onboarding", &i.to_string());
        assert_eq!(ready(store.consume(&key, u64::MAX)), Ok(Outcome::Inserted));
    }
    let after = rss_bytes().unwrap_or(empty);
    assert_eq!(black_box(&store).len(), ENTRIES as usize);
    let grown = after.saturating_sub(empty);
    println!(
        "MemoryStore footprint: {ENTRIES} live entries (capacity {}), resident set {:.1} MiB -> {:.1} MiB \
         (+{:.1} MiB; empty store +{} KiB): {:.1} bytes per live entry",
        store.capacity(),
        empty as f64 / 1048576.0,
        after as f64 / 1048576.0,
        grown as f64 / 1048576.0,
        empty.saturating_sub(before) / 1024,
        grown as f64 / ENTRIES as f64,
    );
}
