//! Criterion micro-benchmarks of the pure hot path: one simulated hour of polls (720 at the
//! default 5 s interval, from the shared simulator at noon) through the map stage, through
//! dedup, and through both as the pipeline runs them, plus JSON parsing of the same answers for
//! scale. Throughput is in offered messages, so criterion prints messages per second.
//!
//! Run with `cargo bench --bench map_dedup` (scripts/bench runs it and copies the figures into
//! BENCHMARKS.md).

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dsmr_bridge::dedup::Dedup;
use dsmr_bridge::map::discovery::Discovery;
use dsmr_bridge::model::{Message, Snapshot};
use time::OffsetDateTime;

use common::{CACHE_TTL, DAY_START, Mapper, POLLS_PER_HOUR, SEED};

struct Hour {
    snapshots: Vec<Snapshot>,
    /// What the map stage offers per poll, for the dedup-only benchmark.
    offered: Vec<Vec<Message>>,
    /// The JSON bodies of the same polls, compact as DSMR-reader sends them.
    bodies: Vec<Vec<Vec<u8>>>,
    messages: u64,
}

fn hour() -> Hour {
    let noon = DAY_START + Duration::from_secs(12 * 3600);
    let snapshots = common::runtime()
        .and_then(|rt| rt.block_on(common::snapshots(noon, POLLS_PER_HOUR as usize, SEED)))
        .expect("snapshots from the simulator");
    let now = OffsetDateTime::now_utc();
    let mut mapper = Mapper::new(common::BASE_TOPIC);
    let offered: Vec<Vec<Message>> = snapshots.iter().map(|s| mapper.poll(s, now)).collect();
    let messages = offered.iter().map(|m| m.len() as u64).sum();
    let bodies = snapshots
        .iter()
        .map(|s| {
            [
                &s.meter_stats,
                &s.reading,
                &s.today,
                &s.peak,
                &s.version,
                &s.monitoring,
            ]
            .into_iter()
            .flatten()
            .map(|o| serde_json::to_vec(o).expect("JSON"))
            .collect()
        })
        .collect();
    Hour {
        snapshots,
        offered,
        bodies,
        messages,
    }
}

/// Dedup with a broker that acknowledges everything at once: what `Pipeline::pump` and the
/// sink's `Delivered` events do when the broker keeps up.
fn drain(dedup: &mut Dedup) {
    while let Some(message) = dedup.next_to_send() {
        dedup.delivered(&message);
    }
}

fn benches(c: &mut Criterion) {
    let hour = hour();
    let now = OffsetDateTime::now_utc();
    let mut group = c.benchmark_group("hour_of_polls");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .throughput(Throughput::Elements(hour.messages));

    group.bench_function("map", |b| {
        b.iter(|| {
            let mut mapper = Mapper::new(common::BASE_TOPIC);
            for snapshot in &hour.snapshots {
                black_box(mapper.poll(snapshot, now));
            }
        })
    });

    group.bench_function("dedup", |b| {
        b.iter_batched(
            || hour.offered.clone(),
            |offered| {
                let mut dedup = Dedup::new(CACHE_TTL);
                for poll in offered {
                    for message in poll {
                        dedup.offer(message);
                    }
                    drain(&mut dedup);
                }
                dedup.stats()
            },
            BatchSize::LargeInput,
        )
    });

    group.bench_function("map_dedup", |b| {
        b.iter(|| {
            let mut mapper = Mapper::new(common::BASE_TOPIC);
            let mut dedup = Dedup::new(CACHE_TTL);
            for snapshot in &hour.snapshots {
                for message in mapper.poll(snapshot, now) {
                    dedup.offer(message);
                }
                drain(&mut dedup);
            }
            dedup.stats()
        })
    });

    group.finish();

    // For scale, outside map + dedup: the source stage's JSON parsing of the same hour, and the
    // discovery configs (built once per start and per entity change, not per poll).
    let mut mapper = Mapper::new(common::BASE_TOPIC);
    for snapshot in &hour.snapshots[..12] {
        mapper.poll(snapshot, now);
    }
    let mut once = c.benchmark_group("for_scale");
    once.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    once.bench_function("parse_json_hour", |b| {
        b.iter(|| {
            for poll in &hour.bodies {
                for body in poll {
                    black_box(serde_json::from_slice::<serde_json::Value>(body).expect("JSON"));
                }
            }
        })
    });
    once.bench_function("discovery_messages", |b| {
        b.iter(|| {
            let mut discovery = Discovery::new("homeassistant", 1, None);
            discovery.messages(&mapper.state, &mapper.topics)
        })
    });
    once.finish();
}

criterion_group!(map_dedup, benches);
criterion_main!(map_dedup);
