//! A counting global allocator (per thread, off unless switched on) and the allocation profile
//! of the hot path: allocations per poll through map and dedup, stage by stage, on an hour of
//! the simulator's polls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use dsmr_bridge::dedup::{Dedup, SentCache};
use dsmr_bridge::map::state_messages;
use dsmr_bridge::model::Snapshot;
use time::OffsetDateTime;

use crate::common::{BASE_TOPIC, CACHE_TTL, Mapper};

/// Counts allocator calls of the threads that switched counting on; everything else passes
/// straight to the system allocator.
pub struct Counting;

/// What one thread allocated while counting: allocator calls (alloc + realloc), bytes
/// requested, and the live heap (bytes allocated minus freed on this thread) and its peak.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub allocs: u64,
    pub bytes: u64,
    pub live: i64,
    pub peak: i64,
}

impl Counters {
    fn since(self, before: Counters) -> Counters {
        Counters {
            allocs: self.allocs - before.allocs,
            bytes: self.bytes - before.bytes,
            live: self.live - before.live,
            peak: self.peak,
        }
    }
}

thread_local! {
    // Const-initialised Cells: no lazy initialisation and no destructor, so the allocator may
    // touch them at any time.
    static ON: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn counting() -> bool {
    ON.try_with(Cell::get).unwrap_or(false)
}

fn grow(size: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size as i64;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrink(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - size as i64));
}

fn count(size: usize) {
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + size as u64));
}

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping only touches
// const-initialised thread-locals and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            count(layout.size());
            grow(layout.size());
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counting() {
            count(layout.size());
            grow(layout.size());
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            shrink(layout.size());
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            count(new_size);
            shrink(layout.size());
            grow(new_size);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn read() -> Counters {
    Counters {
        allocs: ALLOCS.with(Cell::get),
        bytes: BYTES.with(Cell::get),
        live: LIVE.with(Cell::get),
        peak: PEAK.with(Cell::get),
    }
}

/// Counts this thread's allocations from now on (from zero).
pub fn start_counting() {
    ALLOCS.with(|c| c.set(0));
    BYTES.with(|c| c.set(0));
    LIVE.with(|c| c.set(0));
    PEAK.with(|c| c.set(0));
    ON.with(|on| on.set(true));
}

/// Stops counting on this thread and returns the totals.
pub fn stop_counting() -> Counters {
    ON.with(|on| on.set(false));
    read()
}

/// Runs `f` with counting on and returns what it allocated.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Counters) {
    let was = ON.with(Cell::get);
    let before = read();
    ON.with(|on| on.set(true));
    let result = f();
    ON.with(|on| on.set(was));
    (result, read().since(before))
}

/// Allocator calls per poll of one stage, averaged over the measured polls.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stage {
    pub allocs: f64,
    pub bytes: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub polls: usize,
    /// Per poll: values offered by the map stage, values that differ from the previous poll,
    /// messages queued by dedup, messages sent and acknowledged.
    pub offered: f64,
    pub changed: f64,
    pub queued: f64,
    pub sent: f64,
    pub parse: Stage,
    pub apply: Stage,
    /// `state_messages` offered one by one to `Dedup::offer`, as `Pipeline::on_source` does.
    pub offer: Stage,
    pub next_to_send: Stage,
    pub delivered: Stage,
    /// Allocator calls of one `SentCache::record` on a known topic (moka's insert), and of one
    /// `SentCache::holds`.
    pub cache_record: f64,
    pub cache_holds: f64,
    pub elapsed: Duration,
}

impl Profile {
    pub fn map_dedup(&self) -> Stage {
        let stages = [self.apply, self.offer, self.next_to_send, self.delivered];
        Stage {
            allocs: stages.iter().map(|s| s.allocs).sum(),
            bytes: stages.iter().map(|s| s.bytes).sum(),
        }
    }
}

const WARM_UP_POLLS: usize = 12;

/// Replays `snapshots` through the map stage and dedup as the pipeline does, with a broker that
/// acknowledges at once, counting allocations per stage after a warm-up of one minute.
pub fn profile(snapshots: &[Snapshot]) -> Profile {
    let started = std::time::Instant::now();
    let now = OffsetDateTime::now_utc();
    let mut mapper = Mapper::new(BASE_TOPIC);
    let mut dedup = Dedup::new(CACHE_TTL);
    let mut last: HashMap<Arc<str>, Arc<str>> = HashMap::new();
    let (warm, measured) = snapshots.split_at(WARM_UP_POLLS.min(snapshots.len()));
    for snapshot in warm {
        for message in mapper.poll(snapshot, now) {
            last.insert(message.topic.clone(), message.payload.clone());
            dedup.offer(message);
        }
        while let Some(message) = dedup.next_to_send() {
            dedup.delivered(&message);
        }
    }
    let mut p = Profile {
        polls: measured.len(),
        ..Profile::default()
    };
    let sum = |stage: &mut Stage, c: Counters| {
        stage.allocs += c.allocs as f64;
        stage.bytes += c.bytes as f64;
    };
    for snapshot in measured {
        let bodies: Vec<Vec<u8>> = [
            &snapshot.meter_stats,
            &snapshot.reading,
            &snapshot.today,
            &snapshot.peak,
            &snapshot.version,
            &snapshot.monitoring,
        ]
        .into_iter()
        .flatten()
        .map(|o| serde_json::to_vec(o).unwrap_or_default())
        .collect();
        let (_, c) = measure(|| {
            for body in &bodies {
                black_box(serde_json::from_slice::<serde_json::Value>(body).ok());
            }
        });
        sum(&mut p.parse, c);

        let (offered, c) = measure(|| mapper.state.apply(snapshot, now));
        sum(&mut p.apply, c);
        p.offered += offered.len() as f64;
        for message in state_messages(&mapper.state, &mapper.topics, offered.iter().copied()) {
            if last.get(&message.topic) != Some(&message.payload) {
                p.changed += 1.0;
                last.insert(message.topic, message.payload);
            }
        }

        let queued_before = dedup.stats().offered
            - dedup.stats().suppressed_by_cache
            - dedup.stats().discarded_in_queue;
        let (_, c) = measure(|| {
            for message in state_messages(&mapper.state, &mapper.topics, offered) {
                dedup.offer(message);
            }
        });
        sum(&mut p.offer, c);
        let s = dedup.stats();
        p.queued +=
            (s.offered - s.suppressed_by_cache - s.discarded_in_queue - queued_before) as f64;

        loop {
            let (message, c) = measure(|| dedup.next_to_send());
            sum(&mut p.next_to_send, c);
            let Some(message) = message else { break };
            let (_, c) = measure(|| dedup.delivered(&message));
            sum(&mut p.delivered, c);
            p.sent += 1.0;
        }
    }
    let n = p.polls.max(1) as f64;
    for stage in [
        &mut p.parse,
        &mut p.apply,
        &mut p.offer,
        &mut p.next_to_send,
        &mut p.delivered,
    ] {
        stage.allocs /= n;
        stage.bytes /= n;
    }
    p.offered /= n;
    p.changed /= n;
    p.queued /= n;
    p.sent /= n;

    // The TTL cache on its own, on topics it already knows.
    let cache = SentCache::new(CACHE_TTL);
    let topics: Vec<Arc<str>> = (0..64)
        .map(|i| Arc::from(format!("{BASE_TOPIC}/t{i}")))
        .collect();
    let payloads: Vec<Arc<str>> = (0..10)
        .map(|i| Arc::from(format!("{}.{i:03}", 230 + i)))
        .collect();
    let zero: Arc<str> = Arc::from("0");
    for topic in &topics {
        cache.record(topic, &zero);
    }
    let (_, c) = measure(|| {
        for payload in &payloads {
            for topic in &topics {
                cache.record(topic, payload);
            }
        }
    });
    p.cache_record = c.allocs as f64 / (topics.len() * payloads.len()) as f64;
    let (_, c) = measure(|| {
        for payload in &payloads {
            for topic in &topics {
                black_box(cache.holds(topic, payload));
            }
        }
    });
    p.cache_holds = c.allocs as f64 / (topics.len() * payloads.len()) as f64;
    p.elapsed = started.elapsed();
    p
}
