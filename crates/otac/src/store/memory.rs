//! A bounded, sharded in-memory replay store for one process.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Guard, Outcome, ReplayStore, Spend, StoreFuture, StoreKey};
use crate::error::StoreError;

/// How often a shard looks for expired entries at most, when it is not full.
const SWEEP_EVERY_MS: u64 = 5_000;

/// An in-memory [`ReplayStore`] for a single process.
///
/// Bounded: when its capacity is reached and nothing has expired, it refuses new codes
/// (`otac_store_unavailable`) instead of evicting live entries, which would reopen replay. Expired entries are
/// reclaimed on the insert path (a shard sweeps when it is full and something in it has expired, or every few
/// seconds), with no background thread. Sharded by key so that cores rarely contend.
#[derive(Debug)]
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    shard_capacity: usize,
    now: fn() -> u64,
}

/// Store keys are SHA-256 outputs: their first 8 bytes are already a good hash.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When the entry may be forgotten (ms since the epoch).
    until_ms: u64,
    /// The reservation token; 0 for a spent entry.
    token: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<u128, Entry, BuildHasherDefault<PrefixHasher>>,
    /// The earliest `until_ms` in the shard (a lower bound), to skip sweeps that would find nothing.
    earliest_ms: u64,
    next_sweep_ms: u64,
}

impl Shard {
    fn sweep(&mut self, now: u64) {
        let mut earliest = u64::MAX;
        self.map.retain(|_, e| {
            let keep = e.until_ms > now;
            if keep {
                earliest = earliest.min(e.until_ms);
            }
            keep
        });
        self.earliest_ms = earliest;
        self.next_sweep_ms = now + SWEEP_EVERY_MS;
    }

    /// Makes room for one more entry if it can; `false` when full of live entries.
    fn room(&mut self, now: u64, capacity: usize) -> bool {
        if self.map.len() >= capacity {
            if now >= self.earliest_ms {
                self.sweep(now);
            }
        } else if now >= self.next_sweep_ms && now >= self.earliest_ms && !self.map.is_empty() {
            self.sweep(now);
        }
        self.map.len() < capacity
    }

    fn insert_if_absent(
        &mut self,
        key: u128,
        entry: Entry,
        now: u64,
        capacity: usize,
    ) -> Result<Outcome, StoreError> {
        if let Some(existing) = self.map.get_mut(&key) {
            if existing.until_ms > now {
                return Ok(Outcome::AlreadyPresent);
            }
            // Expired (a lapsed lease or a code past its life): the slot can be reused.
            *existing = entry;
            self.earliest_ms = self.earliest_ms.min(entry.until_ms);
            return Ok(Outcome::Inserted);
        }
        if !self.room(now, capacity) {
            return Err(StoreError::new("memory store is full"));
        }
        self.map.insert(key, entry);
        self.earliest_ms = self.earliest_ms.min(entry.until_ms);
        Ok(Outcome::Inserted)
    }
}

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

impl Default for MemoryStore {
    /// A store for 1 048 576 live codes.
    fn default() -> Self {
        Self::new(1 << 20)
    }
}

impl MemoryStore {
    /// A store that holds at most `capacity` live entries (rounded up to a multiple of the shard count).
    pub fn new(capacity: usize) -> Self {
        let shards = std::thread::available_parallelism()
            .map(|n| n.get() * 4)
            .unwrap_or(8)
            .next_power_of_two()
            .clamp(4, 64)
            .min(capacity.max(1).next_power_of_two());
        Self::with_shards(capacity, shards)
    }

    /// A store with an explicit number of shards (rounded up to a power of two).
    pub fn with_shards(capacity: usize, shards: usize) -> Self {
        let shards = shards.max(1).next_power_of_two();
        let shard_capacity = capacity.max(1).div_ceil(shards);
        Self {
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            shard_capacity,
            now: system_now_ms,
        }
    }

    /// Uses another clock (milliseconds since the epoch), for tests of expiry.
    pub fn with_clock(mut self, now: fn() -> u64) -> Self {
        self.now = now;
        self
    }

    /// The most live entries the store holds.
    pub fn capacity(&self) -> usize {
        self.shard_capacity * self.shards.len()
    }

    /// The number of entries held now, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether the store holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reclaims every expired entry now.
    pub fn purge_expired(&self) {
        let now = (self.now)();
        for shard in self.shards.iter() {
            lock(shard).sweep(now);
        }
    }

    fn shard(&self, key: &StoreKey) -> (u128, MutexGuard<'_, Shard>) {
        let bytes = key.as_bytes();
        let mut k = [0u8; 16];
        k.copy_from_slice(&bytes[..16]);
        let k = u128::from_be_bytes(k);
        let index = (bytes[16] as usize | (bytes[17] as usize) << 8) & (self.shards.len() - 1);
        (k, lock(&self.shards[index]))
    }

    /// The live value of the mark at `key`.
    fn read_mark(&self, key: &StoreKey) -> Option<u64> {
        let now = (self.now)();
        let (k, shard) = self.shard(key);
        shard
            .map
            .get(&k)
            .filter(|e| e.until_ms > now)
            .map(|e| e.token)
    }

    fn insert(&self, key: &StoreKey, entry: Entry) -> Result<Outcome, StoreError> {
        let now = (self.now)();
        let (k, mut shard) = self.shard(key);
        shard.insert_if_absent(k, entry, now, self.shard_capacity)
    }
}

/// A poisoned shard only means another thread panicked while holding it; the map itself is always consistent
/// (every mutation is a single insert or retain), so keep serving.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ReplayStore for MemoryStore {
    fn consume(&self, key: &StoreKey, expires_at_ms: u64) -> StoreFuture<Outcome> {
        StoreFuture::ready(self.insert(
            key,
            Entry {
                until_ms: expires_at_ms,
                token: 0,
            },
        ))
    }

    fn reserve(&self, key: &StoreKey, token: u64, lease_until_ms: u64) -> StoreFuture<Outcome> {
        StoreFuture::ready(self.insert(
            key,
            Entry {
                until_ms: lease_until_ms,
                token: token.max(1),
            },
        ))
    }

    fn commit(&self, key: &StoreKey, _token: u64, expires_at_ms: u64) -> StoreFuture<()> {
        let (k, mut shard) = self.shard(key);
        // Spent whatever became of the lease: the handler succeeded, so the code must stay used. An entry that
        // is already there for this key is reused, so commit never needs room.
        let entry = Entry {
            until_ms: expires_at_ms,
            token: 0,
        };
        let result = match shard.map.get_mut(&k) {
            Some(existing) => {
                existing.until_ms = existing.until_ms.max(expires_at_ms);
                existing.token = 0;
                Ok(())
            }
            None => {
                shard.map.insert(k, entry);
                Ok(())
            }
        };
        shard.earliest_ms = shard.earliest_ms.min(expires_at_ms);
        StoreFuture::ready(result)
    }

    fn mark(&self, key: &StoreKey, value: u64, until_ms: u64) -> StoreFuture<()> {
        let now = (self.now)();
        let (k, mut shard) = self.shard(key);
        let entry = Entry {
            until_ms,
            token: value,
        };
        let result = if let Some(existing) = shard.map.get_mut(&k) {
            *existing = entry;
            Ok(())
        } else if shard.room(now, self.shard_capacity) {
            shard.map.insert(k, entry);
            Ok(())
        } else {
            Err(StoreError::new("memory store is full"))
        };
        shard.earliest_ms = shard.earliest_ms.min(until_ms);
        StoreFuture::ready(result)
    }

    fn use_guarded(&self, key: &StoreKey, spend: Spend, guards: &[Guard]) -> StoreFuture<Outcome> {
        for guard in guards {
            if let Some(outcome) = guard.judge(self.read_mark(guard.key())) {
                return StoreFuture::ready(Ok(outcome));
            }
        }
        if spend == Spend::Nothing {
            let now = (self.now)();
            let (k, shard) = self.shard(key);
            let present = shard.map.get(&k).is_some_and(|e| e.until_ms > now);
            return StoreFuture::ready(Ok(if present {
                Outcome::AlreadyPresent
            } else {
                Outcome::Inserted
            }));
        }
        super::spend_unguarded(self, key, spend)
    }

    fn release(&self, key: &StoreKey, token: u64) -> StoreFuture<()> {
        let (k, mut shard) = self.shard(key);
        if shard.map.get(&k).is_some_and(|e| e.token == token.max(1)) {
            shard.map.remove(&k);
        }
        StoreFuture::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn key(i: u32) -> StoreKey {
        StoreKey::new("iss", "wf", &i.to_string())
    }

    fn now_sync<T>(f: StoreFuture<T>) -> Result<T, StoreError> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = f;
        match std::pin::Pin::new(&mut f).poll(&mut cx) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => panic!("memory store futures are ready"),
        }
    }
    use std::future::Future as _;

    static CLOCK: AtomicU64 = AtomicU64::new(1_000_000);
    fn clock() -> u64 {
        CLOCK.load(Ordering::SeqCst)
    }

    #[test]
    fn second_consume_sees_the_first() {
        let store = MemoryStore::new(16);
        assert_eq!(
            now_sync(store.consume(&key(1), u64::MAX)),
            Ok(Outcome::Inserted)
        );
        assert_eq!(
            now_sync(store.consume(&key(1), u64::MAX)),
            Ok(Outcome::AlreadyPresent)
        );
        assert_eq!(
            now_sync(store.consume(&key(2), u64::MAX)),
            Ok(Outcome::Inserted)
        );
    }

    #[test]
    fn full_store_refuses_instead_of_evicting_then_reclaims_expired() {
        // One shard, so the capacity is exact; a private clock.
        static NOW: AtomicU64 = AtomicU64::new(10_000);
        fn now() -> u64 {
            NOW.load(Ordering::SeqCst)
        }
        let store = MemoryStore::with_shards(4, 1).with_clock(now);
        for i in 0..4 {
            assert_eq!(
                now_sync(store.consume(&key(i), 20_000)),
                Ok(Outcome::Inserted)
            );
        }
        assert!(
            now_sync(store.consume(&key(9), 20_000)).is_err(),
            "full of live entries"
        );
        // The live entries were not evicted.
        for i in 0..4 {
            assert_eq!(
                now_sync(store.consume(&key(i), 20_000)),
                Ok(Outcome::AlreadyPresent)
            );
        }
        NOW.store(20_001, Ordering::SeqCst);
        assert_eq!(
            now_sync(store.consume(&key(9), 30_000)),
            Ok(Outcome::Inserted)
        );
        assert_eq!(store.len(), 1, "expired entries were reclaimed");
    }

    #[test]
    fn reservation_lapses_and_release_only_removes_own_reservation() {
        let store = MemoryStore::with_shards(16, 1).with_clock(clock);
        let t = clock();
        assert_eq!(
            now_sync(store.reserve(&key(1), 7, t + 100)),
            Ok(Outcome::Inserted)
        );
        assert_eq!(
            now_sync(store.reserve(&key(1), 8, t + 100)),
            Ok(Outcome::AlreadyPresent)
        );
        now_sync(store.release(&key(1), 8)).unwrap();
        assert_eq!(
            now_sync(store.consume(&key(1), t + 100)),
            Ok(Outcome::AlreadyPresent)
        );
        now_sync(store.release(&key(1), 7)).unwrap();
        assert_eq!(
            now_sync(store.reserve(&key(1), 9, t + 100)),
            Ok(Outcome::Inserted)
        );
        now_sync(store.commit(&key(1), 9, t + 10_000)).unwrap();
        now_sync(store.release(&key(1), 9)).unwrap();
        assert_eq!(
            now_sync(store.consume(&key(1), t + 100)),
            Ok(Outcome::AlreadyPresent),
            "release never removes a spent entry"
        );
    }

    #[test]
    fn marks_guard_uses() {
        let store = MemoryStore::with_shards(64, 4).with_clock(clock);
        let t = clock();
        let run = StoreKey::for_run("iss", "wf", "r1");
        let live = StoreKey::for_live_code("iss", "wf", "r1");
        let spend = Spend::Consume {
            expires_at_ms: t + 1000,
        };
        let revoked = [Guard::Revoked { key: run, at: 100 }];
        assert_eq!(
            now_sync(store.use_guarded(&key(1), spend, &revoked)),
            Ok(Outcome::Inserted)
        );
        now_sync(store.mark(&run, 100, t + 1000)).unwrap();
        assert_eq!(
            now_sync(store.use_guarded(&key(2), spend, &revoked)),
            Ok(Outcome::Revoked)
        );
        // A run started after the revocation is not affected.
        let later = [Guard::Revoked { key: run, at: 101 }];
        assert_eq!(
            now_sync(store.use_guarded(&key(2), spend, &later)),
            Ok(Outcome::Inserted)
        );
        // Live-code marks: only the tag that was marked last passes; an absent mark fails closed.
        let first = [Guard::Live { key: live, tag: 7 }];
        assert_eq!(
            now_sync(store.use_guarded(&key(3), spend, &first)),
            Ok(Outcome::Superseded)
        );
        now_sync(store.mark(&live, 7, t + 1000)).unwrap();
        assert_eq!(
            now_sync(store.use_guarded(&key(3), Spend::Nothing, &first)),
            Ok(Outcome::Inserted)
        );
        now_sync(store.mark(&live, 8, t + 1000)).unwrap();
        assert_eq!(
            now_sync(store.use_guarded(&key(3), spend, &first)),
            Ok(Outcome::Superseded)
        );
        assert_eq!(
            now_sync(store.consume(&key(3), t + 1000)),
            Ok(Outcome::Inserted),
            "nothing was recorded"
        );
    }

    #[test]
    fn concurrent_consumes_have_one_winner() {
        let store = std::sync::Arc::new(MemoryStore::new(1024));
        let winners = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..200 {
                        if now_sync(store.consume(&key(i), u64::MAX)) == Ok(Outcome::Inserted) {
                            winners.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        assert_eq!(winners.load(Ordering::SeqCst), 200);
    }
}
