//! End-to-end benchmark of dsmr-bridge: flood reduction, broker outage, footprint, latency,
//! startup and size, each against a baseline measured in the same run, written to
//! BENCHMARKS.md. Run it through `scripts/bench`, which also runs the criterion
//! micro-benchmarks first so their figures land in the same file.
//!
//! `cargo bench --no-default-features --bench e2e -- [--out FILE] [--criterion DIR] [--runs N]
//! [--quick]`; `--quick` shortens every phase (for working on the benchmark itself).
//!
//! Everything runs on this machine: a Mosquitto of our own on a free port, the shared simulated
//! DSMR-reader (`dsmr_sim`) in accelerated time, the bridge in-process
//! (`dsmr_bridge::run_with` with the cadence scaled by the same factor) for the traffic,
//! outage and latency figures, and the release binary as a process for footprint and startup.

#[path = "../common/mod.rs"]
mod common;
#[path = "../../tests/support/mosquitto.rs"]
mod mosquitto;

mod alloc;
mod analysis;
mod infra;
mod report;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use dsmr_bridge::dedup::{Dedup, Offer, Stats};
use dsmr_sim::Simulator;
use time::OffsetDateTime;
use tokio::time::sleep;

use analysis::{Fidelity, Volume};
use common::{BASE_TOPIC, CACHE_TTL, DAY_START, POLL, SEED};
use infra::{BridgeThread, Endpoint, Mosquitto, Proxy, Subscriber};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);
const FILTERS: [&str; 2] = ["dsmr-bridge/#", "homeassistant/#"];

/// How long each phase runs; `--quick` shrinks them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub runs: usize,
    /// Simulated seconds per real second of the flood runs (one simulated day each).
    pub flood_speed: f64,
    pub flood_span: Duration,
    pub cache_off_span: Duration,
    pub outage_speed: f64,
    pub outage: Duration,
    pub latency_speed: f64,
    pub latency_real: Duration,
    pub startup_runs: usize,
    pub footprint_real: Duration,
    pub footprint_skip: Duration,
}

impl Plan {
    fn full(runs: usize) -> Self {
        Self {
            runs,
            flood_speed: 1000.0,
            flood_span: 24 * HOUR,
            cache_off_span: HOUR,
            outage_speed: 1000.0,
            outage: 10 * MINUTE,
            latency_speed: 250.0,
            latency_real: Duration::from_secs(15),
            startup_runs: 10,
            footprint_real: Duration::from_secs(65),
            footprint_skip: Duration::from_secs(10),
        }
    }

    fn quick() -> Self {
        Self {
            runs: 1,
            flood_span: 2 * HOUR,
            cache_off_span: 20 * MINUTE,
            latency_real: Duration::from_secs(5),
            startup_runs: 3,
            footprint_real: Duration::from_secs(20),
            footprint_skip: Duration::from_secs(5),
            ..Self::full(1)
        }
    }
}

struct Args {
    only: Option<Vec<String>>,
    out: PathBuf,
    criterion: PathBuf,
    plan: Plan,
    quick: bool,
    /// Development: runs the closing phase's bridges under this command (`valgrind
    /// --tool=callgrind …`), to see where their time goes.
    wrap: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut out = PathBuf::from("BENCHMARKS.md");
    let mut criterion = PathBuf::from("target/criterion");
    let mut runs = 3;
    let mut quick = false;
    let mut only = None;
    let mut wrap = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => out = it.next().context("--out FILE")?.into(),
            "--criterion" => criterion = it.next().context("--criterion DIR")?.into(),
            "--runs" => runs = it.next().context("--runs N")?.parse()?,
            "--quick" => quick = true,
            // Development: run only these phases (comma-separated).
            "--only" => {
                only = Some(
                    it.next()
                        .context("--only PHASES")?
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "--wrap-closing" => wrap = Some(it.next().context("--wrap-closing COMMAND")?),
            // cargo bench passes --bench to harness-less targets.
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    let plan = if quick {
        Plan::quick()
    } else {
        Plan::full(runs.max(1))
    };
    Ok(Args {
        only,
        out,
        criterion,
        plan,
        quick,
        wrap,
    })
}

fn say(what: &str) {
    eprintln!("[bench {:>8}] {what}", clock());
}

fn clock() -> String {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    format!(
        "{:.1}s",
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    )
}

fn main() -> anyhow::Result<()> {
    clock();
    let args = args()?;
    dsmr_bridge::tls::install_crypto_provider();
    let rt = common::runtime()?;
    let started = Instant::now();
    let mut results = report::Results {
        machine: report::Machine::probe(),
        plan: args.plan.clone(),
        quick: args.quick,
        ..report::Results::default()
    };

    let wants = |phase: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == phase))
    };
    let runs = args.plan.runs;

    if wants("alloc") {
        say("allocation profile (an hour of polls through map + dedup)");
        let noon = DAY_START + 12 * HOUR;
        let snapshots = rt.block_on(common::snapshots(
            noon,
            common::POLLS_PER_HOUR as usize,
            SEED,
        ))?;
        results.alloc = Some(alloc::profile(&snapshots));
    }
    if wants("flood") {
        for run in 0..runs {
            say(&format!(
                "flood run {}/{runs}: {:.0} simulated hours at {}x, defaults",
                run + 1,
                args.plan.flood_span.as_secs_f64() / 3600.0,
                args.plan.flood_speed
            ));
            let r = rt.block_on(flood(&args.plan, args.plan.flood_span, CACHE_TTL))?;
            say(&r.summary());
            results.flood.push(r);
        }
    }
    if wants("cacheoff") {
        say("cache off (the naive republisher, measured on the broker)");
        let r = rt.block_on(flood(&args.plan, args.plan.cache_off_span, Duration::ZERO))?;
        say(&r.summary());
        results.cache_off = Some(r);
    }
    if wants("outage") {
        for run in 0..runs {
            say(&format!("outage run {}/{runs}", run + 1));
            let r = rt.block_on(outage(&args.plan))?;
            say(&format!("{r:?}"));
            results.outage.push(r);
        }
    }
    if wants("latency") {
        for run in 0..runs {
            say(&format!("latency run {}/{runs}", run + 1));
            let r = rt.block_on(latency(&args.plan))?;
            say(&format!(
                "{} polls, own p50 {:.2} ms, p99 {:.2} ms (with API time p99 {:.2} ms), floor p99 {:.2} ms; changes {}, lost {} {:?}; steal {:.1} %",
                r.polls,
                r.p50_ms,
                r.p99_ms,
                r.total_p99_ms,
                r.floor_p99_ms,
                r.fidelity.changes,
                r.fidelity.lost,
                r.fidelity.lost_at,
                r.steal_pct
            ));
            results.latency.push(r);
        }
    }
    if wants("startup") {
        say("startup");
        let r = rt.block_on(startup(&args.plan))?;
        say(&format!("{r:?}"));
        results.startup = Some(r);
    }
    if wants("footprint") {
        for run in 0..runs {
            say(&format!("footprint run {}/{runs}", run + 1));
            let r = rt.block_on(footprint(&args.plan))?;
            say(&format!("{r:?}"));
            results.footprint.push(r);
        }
    }

    if wants("closing") {
        for run in 0..runs {
            say(&format!(
                "closing run {}/{runs}: a server that closes every connection",
                run + 1
            ));
            let r = rt.block_on(closing(&args.plan, args.wrap.as_deref()))?;
            say(&format!("{r:?}"));
            results.closing.push(r);
        }
    }

    results.size = Some(report::Size::probe());
    results.criterion = report::Criterion::load(&args.criterion);
    results.elapsed = started.elapsed();
    let text = report::render(&results);
    std::fs::write(&args.out, text).with_context(|| format!("write {}", args.out.display()))?;
    say(&format!("wrote {}", args.out.display()));
    Ok(())
}

/// One flood run: the bridge in-process over `span` of simulated time.
#[derive(Debug, Default, Clone)]
pub struct FloodRun {
    pub speed: f64,
    pub cache_ttl: Duration,
    pub sim_hours: f64,
    pub real: Duration,
    pub polls: usize,
    pub failed_polls: usize,
    pub readings: u64,
    pub requests: BTreeMap<Endpoint, u64>,
    /// What reached the broker: state topics, and discovery plus the bridge's own status.
    pub bridge_state: Volume,
    pub bridge_other: Volume,
    pub naive: Volume,
    pub changes: Volume,
    pub refreshes: Volume,
    pub dsmr_telegram: Volume,
    pub dsmr_stats: Volume,
    pub dsmr_day: Volume,
    pub fidelity: Fidelity,
    pub stats: Stats,
    pub seen_total: u64,
    pub bridge_cpu: Duration,
    pub heap: alloc::Counters,
    pub allocs_per_poll: f64,
    pub steal_pct: f64,
}

impl FloodRun {
    pub fn physical(&self) -> Volume {
        self.changes.plus(self.refreshes)
    }

    pub fn dsmr(&self) -> Volume {
        self.dsmr_telegram.plus(self.dsmr_stats).plus(self.dsmr_day)
    }

    fn summary(&self) -> String {
        let h = self.sim_hours;
        format!(
            "{:.2} sim h in {:.1} s, {} polls ({:.0}/h): bridge {:.0} msg/h, limit {:.0}, naive {:.0}, DSMR-reader {:.0}; lost {} (at polls {:?}), before connect {}, unexpected {}, final wrong {}; published {} seen {}; cpu {:.3} s/h; steal {:.1} %",
            h,
            self.real.as_secs_f64(),
            self.polls,
            self.polls as f64 / h,
            self.bridge_state.messages as f64 / h,
            self.physical().messages as f64 / h,
            self.naive.messages as f64 / h,
            self.dsmr().messages as f64 / h,
            self.fidelity.lost,
            self.fidelity.lost_at,
            self.fidelity.before_connect,
            self.fidelity.unexpected,
            self.fidelity.final_wrong,
            self.stats.published,
            self.seen_total,
            self.bridge_cpu.as_secs_f64() / h,
            self.steal_pct,
        )
    }
}

/// The simulator, the recording pass-through and the subscriber, ready for a bridge.
struct Rig {
    broker: Mosquitto,
    sim: Simulator,
    proxy: Proxy,
    sub: Subscriber,
}

async fn rig(start: OffsetDateTime, speed: f64, persistent: bool, id: &str) -> anyhow::Result<Rig> {
    let broker = infra::mosquitto(persistent)?;
    let sim = Simulator::start(common::sim_options(start, speed, SEED)).await?;
    sim.pause_clock(true);
    let proxy = Proxy::start(sim.addr()).await?;
    let sub = Subscriber::connect(broker.port, &FILTERS, id, persistent).await?;
    Ok(Rig {
        broker,
        sim,
        proxy,
        sub,
    })
}

fn spawn_bridge(rig: &Rig, speed: f64, cache_ttl: Duration) -> anyhow::Result<BridgeThread> {
    let mut config = common::config(&rig.proxy.url(), Some(rig.broker.port), BASE_TOPIC)?;
    config.dsmr.poll_interval = POLL.div_f64(speed);
    config.cache_ttl = cache_ttl.div_f64(speed);
    // The source keeps its polls on a grid (each due one interval after the last was due, not
    // after it woke), so tokio's millisecond timer makes single polls late but not the
    // interval longer; the polls per hour are reported.
    let cadence = infra::scaled_cadence(speed);
    rig.sim.pause_clock(false);
    BridgeThread::spawn(
        config,
        infra::broker_config(rig.broker.port, BASE_TOPIC),
        cadence,
    )
}

async fn stop_bridge(bridge: BridgeThread) -> anyhow::Result<infra::BridgeOutcome> {
    tokio::task::spawn_blocking(move || bridge.stop()).await?
}

async fn wait_sim(sim: &Simulator, until: OffsetDateTime) {
    while sim.now() < until {
        sleep(Duration::from_millis(5)).await;
    }
}

async fn flood(plan: &Plan, span: Duration, cache_ttl: Duration) -> anyhow::Result<FloodRun> {
    let speed = plan.flood_speed;
    let start = DAY_START;
    let rig = rig(start, speed, false, "bench-flood").await?;
    let steal = infra::Steal::now();
    let t0 = Instant::now();
    let bridge = spawn_bridge(&rig, speed, cache_ttl)?;
    wait_sim(&rig.sim, start + span).await;
    rig.sim.pause_clock(true);
    let t_pause = Instant::now();
    let sim_hours = (rig.sim.now() - start).as_seconds_f64() / 3600.0;
    let bridge_cpu = bridge.cpu();
    let steal_pct = steal.percent_since();
    // The last poll's values reach the broker; later polls repeat them.
    sleep(Duration::from_millis(200)).await;
    let outcome = stop_bridge(bridge).await?;
    rig.sub
        .settle(Duration::from_millis(100), Duration::from_secs(2))
        .await;
    let seen = rig.sub.take();
    let exchanges = rig.proxy.take();
    drop(rig);

    let polls = analysis::polls(&exchanges);
    let (offered, _) = analysis::offers(&polls);
    let window = polls.iter().take_while(|p| p.t_start < t_pause).count();
    let state_topics: std::collections::HashSet<&str> =
        offered.iter().flatten().map(|m| m.topic.as_ref()).collect();
    let mut r = FloodRun {
        speed,
        cache_ttl,
        sim_hours,
        real: t_pause - t0,
        polls: window,
        failed_polls: polls[..window].iter().filter(|p| p.failed).count(),
        seen_total: seen.len() as u64,
        stats: outcome.stats,
        heap: outcome.heap,
        allocs_per_poll: outcome.heap.allocs as f64 / polls.len().max(1) as f64,
        bridge_cpu,
        steal_pct,
        ..FloodRun::default()
    };
    for e in exchanges.iter().filter(|e| e.t_in < t_pause) {
        *r.requests.entry(e.endpoint).or_default() += 1;
    }
    // Messages of the last poll before the pause arrive before the next poll's answers; after
    // that, polls of the held clock repeat its values (and, with the cache off, re-send them).
    let cutoff = polls
        .get(window)
        .map_or(t_pause + Duration::from_millis(200), |p| p.t_done);
    for s in seen.iter().filter(|s| s.at < cutoff) {
        if state_topics.contains(s.topic.as_str()) {
            r.bridge_state.add(&s.topic, &s.payload);
        } else {
            r.bridge_other.add(&s.topic, &s.payload);
        }
    }
    r.naive = analysis::naive(&offered[..window]);
    (r.changes, r.refreshes) = analysis::physical_limit(
        &offered[..window],
        &polls[..window],
        cache_ttl.div_f64(speed),
    );
    (r.dsmr_telegram, r.dsmr_stats, r.dsmr_day) = analysis::dsmr_reader(&polls[..window]);
    r.readings = r.dsmr_telegram.messages / 22;
    let connected = seen.first().map_or(t_pause, |s| s.at);
    r.fidelity = analysis::fidelity(&polls, &offered, &seen, connected);
    Ok(r)
}

/// A ten-minute broker outage in the middle of the morning.
#[derive(Debug, Default, Clone)]
pub struct OutageRun {
    pub sim_outage: Duration,
    /// Broker stopped until it listened again (real time).
    pub real_down: Duration,
    /// Broker listening again until the bridge's first message (its reconnect backoff).
    pub reconnect_after_up: Duration,
    /// First message after reconnecting until every topic's newest value had arrived.
    pub sync: Duration,
    pub sync_missing: usize,
    pub sent_state: u64,
    pub sent_other: u64,
    pub sent_bytes: u64,
    pub topics: usize,
    pub max_per_topic: u64,
    pub retained_matching: usize,
    /// Mirror of the pending queue over the outage: peak length and topic+payload bytes.
    pub queue_peak: usize,
    pub queue_peak_bytes: u64,
    pub stats_peak_queue: u64,
    /// What the naive republisher and DSMR-reader 5.11 would hold for the same readings.
    pub naive_held: Volume,
    pub dsmr_held: Volume,
    pub subscriber_late: bool,
}

async fn outage(plan: &Plan) -> anyhow::Result<OutageRun> {
    let speed = plan.outage_speed;
    let start = DAY_START + 8 * HOUR;
    let mut rig = rig(start, speed, true, "bench-outage").await?;
    let bridge = spawn_bridge(&rig, speed, CACHE_TTL)?;
    // Past the bridge's 2 s discovery scan and well settled.
    wait_sim(&rig.sim, start + 45 * MINUTE).await;
    // Hold the clock until the subscriber has everything, so that nothing published before
    // the outage is still queued for it at the broker (it would arrive after the restart).
    rig.sim.pause_clock(true);
    rig.sub
        .settle(Duration::from_millis(100), Duration::from_secs(2))
        .await;
    let sim_kill = rig.sim.now();
    let t_kill = Instant::now();
    rig.broker.stop();
    rig.sim.pause_clock(false);
    wait_sim(&rig.sim, sim_kill + plan.outage).await;
    rig.sim.pause_clock(true);
    let t_freeze = Instant::now();
    let sim_outage = (rig.sim.now() - sim_kill).unsigned_abs();
    // The bridge polls the frozen reading, so what it holds is the newest there is.
    sleep(Duration::from_millis(50)).await;
    rig.broker.restart()?;
    let t_up = Instant::now();
    let deadline = t_up + Duration::from_secs(60);
    // Mosquitto restores the bridge's last will with its store and publishes it (`offline`) as
    // it comes back; the bridge's own traffic starts with anything else.
    let will =
        |s: &infra::Seen| s.topic == format!("{BASE_TOPIC}/status") && s.payload == "offline";
    if rig
        .sub
        .wait_for(deadline, |seen| {
            seen.iter().any(|s| s.at >= t_up && !will(s)).then_some(())
        })
        .await
        .is_none()
    {
        bail!(
            "the bridge did not reconnect within 60 s; subscriber CONNACKs {:?} after kill; broker log:\n{}",
            rig.sub
                .connacks()
                .iter()
                .filter(|&&t| t > t_kill)
                .map(|t| *t - t_kill)
                .collect::<Vec<_>>(),
            rig.broker.log()
        );
    }
    rig.sub
        .settle(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    let retained = infra::retained(rig.broker.port, "dsmr-bridge/#").await?;
    let outcome = stop_bridge(bridge).await?;
    let seen = rig.sub.take();
    let connacks = rig.sub.connacks();
    let exchanges = rig.proxy.take();
    drop(rig);

    let polls = analysis::polls(&exchanges);
    let (offered, mapper) = analysis::offers(&polls);
    let newest = analysis::current_values(&mapper);
    let after: Vec<&infra::Seen> = seen.iter().filter(|s| s.at >= t_up && !will(s)).collect();
    let t_first = after.first().map_or(t_up, |s| s.at);
    let mut r = OutageRun {
        sim_outage,
        real_down: t_up - t_kill,
        reconnect_after_up: t_first - t_up,
        topics: newest.len(),
        stats_peak_queue: outcome.stats.peak_queue,
        subscriber_late: connacks
            .iter()
            .filter(|&&t| t > t_kill)
            .min()
            .is_none_or(|&t| t > t_first),
        ..OutageRun::default()
    };
    let mut per_topic: HashMap<&str, u64> = HashMap::new();
    for s in &after {
        *per_topic.entry(&s.topic).or_default() += 1;
        r.sent_bytes += common::message_bytes(&s.topic, &s.payload);
        if newest.contains_key(s.topic.as_str()) {
            r.sent_state += 1;
        } else {
            r.sent_other += 1;
        }
    }
    r.max_per_topic = per_topic.values().copied().max().unwrap_or(0);
    let mut last_arrival = t_first;
    for (topic, value) in &newest {
        match after
            .iter()
            .find(|s| s.topic == topic.as_ref() && &s.payload == value)
        {
            Some(s) => last_arrival = last_arrival.max(s.at),
            None => r.sync_missing += 1,
        }
    }
    r.sync = last_arrival - t_first;
    r.retained_matching = retained
        .iter()
        .filter(|s| newest.get(s.topic.as_str()) == Some(&s.payload))
        .count();

    // The pending queue over the outage, replayed with the library's Dedup on the same
    // offers: everything delivered until the broker went away, nothing after.
    let mut dedup = Dedup::new(CACHE_TTL);
    let mut queue: HashMap<Arc<str>, Arc<str>> = HashMap::new();
    let mut lost = false;
    for (poll, messages) in polls.iter().zip(&offered) {
        if poll.t_done >= t_first {
            break;
        }
        let down = poll.t_done >= t_kill;
        if down && !lost {
            dedup.connection_lost();
            lost = true;
        }
        for m in messages {
            let before = dedup.queue_len();
            let (topic, payload) = (m.topic.clone(), m.payload.clone());
            match dedup.offer(m.clone()) {
                Offer::Queued => {
                    queue.insert(topic, payload);
                }
                Offer::Replaced if dedup.queue_len() < before => {
                    queue.remove(&topic);
                }
                Offer::Replaced => {
                    queue.insert(topic, payload);
                }
                Offer::Cached | Offer::Discarded => {}
            }
        }
        if down {
            r.queue_peak = r.queue_peak.max(dedup.queue_len());
            let bytes = queue.iter().map(|(t, p)| common::message_bytes(t, p)).sum();
            r.queue_peak_bytes = r.queue_peak_bytes.max(bytes);
        } else {
            while let Some(m) = dedup.next_to_send() {
                dedup.delivered(&m);
            }
            queue.clear();
        }
    }
    let outage_polls: Vec<usize> = polls
        .iter()
        .enumerate()
        .filter(|(_, p)| p.t_start >= t_kill && p.t_start < t_freeze)
        .map(|(i, _)| i)
        .collect();
    if let (Some(&a), Some(&b)) = (outage_polls.first(), outage_polls.last()) {
        r.naive_held = analysis::naive(&offered[a..=b]);
        let (t, s, d) = analysis::dsmr_reader(&polls[a..=b]);
        r.dsmr_held = t.plus(s).plus(d);
    }
    Ok(r)
}

#[derive(Debug, Default, Clone)]
pub struct LatencyRun {
    pub speed: f64,
    pub steal_pct: f64,
    pub fidelity: Fidelity,
    pub polls: usize,
    pub missing: u64,
    /// The bridge's own overhead (API time of the poll's later requests taken out).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// As measured, with that API time in.
    pub total_p50_ms: f64,
    pub total_p99_ms: f64,
    pub total_max_ms: f64,
    pub floor_p50_ms: f64,
    pub floor_p99_ms: f64,
}

async fn latency(plan: &Plan) -> anyhow::Result<LatencyRun> {
    let speed = plan.latency_speed;
    let start = DAY_START + 11 * HOUR;
    let rig = rig(start, speed, false, "bench-latency").await?;
    let steal = infra::Steal::now();
    let floor = publish_floor(rig.broker.port).await?;
    rig.sub.take();
    let t0 = Instant::now();
    let bridge = spawn_bridge(&rig, speed, CACHE_TTL)?;
    sleep(plan.latency_real).await;
    rig.sim.pause_clock(true);
    sleep(Duration::from_millis(100)).await;
    let steal_pct = steal.percent_since();
    stop_bridge(bridge).await?;
    let seen = rig.sub.take();
    let exchanges = rig.proxy.take();
    drop(rig);
    let polls = analysis::polls(&exchanges);
    let (offered, _) = analysis::offers(&polls);
    let connected = seen.first().map_or(t0, |s| s.at);
    let fidelity = analysis::fidelity(&polls, &offered, &seen, connected);
    // Skip the start: first poll, discovery scan and the configs it sends.
    let (lat, missing) = analysis::latencies(&polls, &offered, &seen, t0 + Duration::from_secs(3));
    let own: Vec<Duration> = lat.iter().map(|l| l.own).collect();
    let total: Vec<Duration> = lat.iter().map(|l| l.total).collect();
    Ok(LatencyRun {
        speed,
        steal_pct,
        fidelity,
        polls: lat.len(),
        missing,
        p50_ms: analysis::quantile_ms(&own, 0.5),
        p99_ms: analysis::quantile_ms(&own, 0.99),
        max_ms: analysis::quantile_ms(&own, 1.0),
        total_p50_ms: analysis::quantile_ms(&total, 0.5),
        total_p99_ms: analysis::quantile_ms(&total, 0.99),
        total_max_ms: analysis::quantile_ms(&total, 1.0),
        floor_p50_ms: analysis::quantile_ms(&floor, 0.5),
        floor_p99_ms: analysis::quantile_ms(&floor, 0.99),
    })
}

/// The floor: one retained QoS 1 publish from a bare client through the same broker to the
/// subscriber, 200 times, one at a time.
async fn publish_floor(port: u16) -> anyhow::Result<Vec<Duration>> {
    let sub = Subscriber::connect(port, &["bench-floor/#"], "bench-floor-sub", false).await?;
    let mut options = rumqttc::MqttOptions::new("bench-floor-pub", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 16);
    let task = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let mut out = Vec::new();
    for i in 0..200u32 {
        let payload = format!("{}.{:03}", 230 + i % 20, i);
        let t = Instant::now();
        client
            .publish(
                "bench-floor/value",
                rumqttc::QoS::AtLeastOnce,
                true,
                payload.clone(),
            )
            .await?;
        if let Some(at) = sub
            .wait_for(t + Duration::from_secs(2), |seen| {
                seen.iter()
                    .rev()
                    .find(|s| s.payload == payload)
                    .map(|s| s.at)
            })
            .await
        {
            out.push(at - t);
        }
        sleep(Duration::from_millis(2)).await;
    }
    task.abort();
    Ok(out)
}

#[derive(Debug, Default, Clone)]
pub struct StartupRuns {
    /// Process start until the bridge's first message (its `online` status), and until its
    /// first state value, per run.
    pub first_message_ms: Vec<f64>,
    pub first_state_ms: Vec<f64>,
    /// Baseline: `mosquitto_pub -r` from process start until its message arrived.
    pub floor_ms: Vec<f64>,
}

/// The release binary; development: `DSMR_BENCH_BINARY` runs another build (the `profiling`
/// profile's, for callgrind, or an older commit's) in its place.
fn binary() -> PathBuf {
    std::env::var_os("DSMR_BENCH_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_dsmr-bridge")),
        PathBuf::from,
    )
}

fn bridge_process(
    sim: &Simulator,
    port: u16,
    base: &str,
    poll_interval: u64,
    health: &std::path::Path,
) -> anyhow::Result<std::process::Child> {
    bridge_process_with(sim, port, base, poll_interval, health, &[])
}

fn bridge_process_with(
    sim: &Simulator,
    port: u16,
    base: &str,
    poll_interval: u64,
    health: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<std::process::Child> {
    bridge_process_at(
        sim.url().as_str(),
        None,
        port,
        base,
        poll_interval,
        health,
        extra,
    )
}

/// The release binary polling `url`, optionally under `wrap` (a profiler and its options).
fn bridge_process_at(
    url: &str,
    wrap: Option<&str>,
    port: u16,
    base: &str,
    poll_interval: u64,
    health: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<std::process::Child> {
    let mut command = match wrap {
        Some(wrap) => {
            let mut words = wrap.split_whitespace();
            let mut command = Command::new(words.next().context("an empty --wrap-closing")?);
            command.args(words).arg(binary());
            command
        }
        None => Command::new(binary()),
    };
    command
        .args(extra)
        .args([
            "--dsmr-reader-url",
            url,
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            &port.to_string(),
            "--poll-interval",
            &poll_interval.to_string(),
            "--base-topic",
            base,
            "--discovery-prefix",
            &format!("ha-{base}"),
        ])
        .env("DSMR_READER_API_KEY", common::API_KEY)
        .env(dsmr_bridge::health::HEALTH_FILE_ENV, health)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", binary().display()))
}

async fn startup(plan: &Plan) -> anyhow::Result<StartupRuns> {
    let broker = infra::mosquitto(false)?;
    let sim = Simulator::start(common::sim_options(DAY_START + 12 * HOUR, 1.0, SEED)).await?;
    let dir = tempfile::tempdir()?;
    let mut out = StartupRuns::default();
    for i in 0..plan.startup_runs {
        let base = format!("bench-start-{i}");
        let sub = Subscriber::connect(
            broker.port,
            &[&format!("{base}/#")],
            &format!("bench-start-sub-{i}"),
            false,
        )
        .await?;
        let t0 = Instant::now();
        let mut child = bridge_process(&sim, broker.port, &base, 5, &dir.path().join(&base))?;
        let status = format!("{base}/status");
        let deadline = t0 + Duration::from_secs(10);
        let first = sub
            .wait_for(deadline, |seen| seen.first().map(|s| s.at))
            .await;
        let state = sub
            .wait_for(deadline, |seen| {
                seen.iter().find(|s| s.topic != status).map(|s| s.at)
            })
            .await;
        infra::terminate(&mut child, Duration::from_secs(3));
        let ms = |t: Option<Instant>, t0: Instant| {
            t.map_or(f64::NAN, |t| (t - t0).as_secs_f64() * 1000.0)
        };
        out.first_message_ms.push(ms(first, t0));
        out.first_state_ms.push(ms(state, t0));

        let topic = format!("bench-floor/start-{i}");
        let floor_sub =
            Subscriber::connect(broker.port, &[&topic], &format!("bench-floor-{i}"), false).await?;
        let t0 = Instant::now();
        let mut child = Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args(["-t", &topic, "-m", "1", "-r", "-q", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("mosquitto_pub (apt-get install mosquitto-clients)")?;
        let arrived = floor_sub
            .wait_for(t0 + Duration::from_secs(5), |seen| {
                seen.first().map(|s| s.at)
            })
            .await;
        let _ = child.wait();
        out.floor_ms.push(ms(arrived, t0));
    }
    Ok(out)
}

/// The release binary as a process, three at once against their own simulators: 1 s polls of
/// a meter at 5x (each poll sees what a 5 s poll sees), 1 s polls of a meter at 1440x (a
/// simulated day per minute), and 5 s polls in real time.
#[derive(Debug, Default, Clone)]
pub struct FootprintRun {
    pub window: Duration,
    pub steal_pct: f64,
    /// CPU per poll of the 5x process, and CPU per real hour it implies at 5 s polling.
    pub cpu_per_poll_ms: f64,
    pub polls: u64,
    pub cpu_hour_from_polls: f64,
    /// CPU per real hour of the process polling every 5 s in real time.
    pub cpu_hour_realtime: f64,
    pub cpu_hour_realtime_ticks: f64,
    pub requests_per_minute_realtime: f64,
    /// VmHWM (KiB) of the three processes.
    pub hwm_kib: [u64; 3],
    pub rss_kib: [u64; 3],
    pub sim_hours_day: f64,
    pub mosquitto_hwm_kib: u64,
    pub mosquitto_cpu_hour: f64,
}

async fn footprint(plan: &Plan) -> anyhow::Result<FootprintRun> {
    let broker = infra::mosquitto(false)?;
    let dir = tempfile::tempdir()?;
    let specs = [
        (5.0, 1, "bench-fast"),
        (1440.0, 1, "bench-day"),
        (1.0, 5, "bench-real"),
    ];
    let mut sims = Vec::new();
    for (speed, _, _) in specs {
        sims.push(Simulator::start(common::sim_options(DAY_START + 6 * HOUR, speed, SEED)).await?);
    }
    let day_start = sims[1].now();
    // The 1440x process serves its status page, asked every second as an open page does; with
    // a simulated day per minute its hour of power fills at once.
    let page_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let page_listen = format!("127.0.0.1:{page_port}");
    let mut children = Vec::new();
    for (i, ((_, interval, base), sim)) in specs.iter().zip(&sims).enumerate() {
        let extra: &[&str] = if i == 1 {
            &["--status-listen", &page_listen]
        } else {
            &[]
        };
        children.push(bridge_process_with(
            sim,
            broker.port,
            base,
            *interval,
            &dir.path().join(base),
            extra,
        )?);
    }
    let page_reader = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let url = format!("http://{page_listen}/api/status");
        loop {
            if let Ok(response) = http.get(&url).send().await {
                let _ = response.bytes().await;
            }
            sleep(Duration::from_secs(1)).await;
        }
    });
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let reading = READINGS;
    let mosquitto = broker.pid().unwrap_or(0);
    sleep(plan.footprint_skip).await;
    let t0 = Instant::now();
    let cpu0: Vec<Duration> = pids.iter().map(|&p| infra::process_cpu(p)).collect();
    let ticks0 = infra::process_cpu_ticks(pids[2]);
    let polls0 = sims[0].requests(reading);
    let req0 = live_requests(&sims[2]);
    let mosq0 = infra::process_cpu(mosquitto);
    let steal = infra::Steal::now();
    sleep(plan.footprint_real - plan.footprint_skip).await;
    let window = t0.elapsed();
    let cpu1: Vec<Duration> = pids.iter().map(|&p| infra::process_cpu(p)).collect();
    let ticks1 = infra::process_cpu_ticks(pids[2]);
    let polls = sims[0].requests(reading) - polls0;
    let req1 = live_requests(&sims[2]);
    let mosq1 = infra::process_cpu(mosquitto);
    let mut r = FootprintRun {
        window,
        steal_pct: steal.percent_since(),
        polls,
        sim_hours_day: (sims[1].now() - day_start).as_seconds_f64() / 3600.0,
        mosquitto_hwm_kib: infra::status_kib(mosquitto, "VmHWM").unwrap_or(0),
        mosquitto_cpu_hour: (mosq1 - mosq0).as_secs_f64() * 3600.0 / window.as_secs_f64(),
        ..FootprintRun::default()
    };
    for (i, &pid) in pids.iter().enumerate() {
        r.hwm_kib[i] = infra::status_kib(pid, "VmHWM").unwrap_or(0);
        r.rss_kib[i] = infra::status_kib(pid, "VmRSS").unwrap_or(0);
    }
    let per_poll = (cpu1[0] - cpu0[0]).as_secs_f64() / polls.max(1) as f64;
    r.cpu_per_poll_ms = per_poll * 1000.0;
    r.cpu_hour_from_polls = per_poll * common::POLLS_PER_HOUR as f64;
    let hours = window.as_secs_f64() / 3600.0;
    r.cpu_hour_realtime = (cpu1[2] - cpu0[2]).as_secs_f64() / hours;
    r.cpu_hour_realtime_ticks = (ticks1 - ticks0).as_secs_f64() / hours;
    r.requests_per_minute_realtime = (req1 - req0) as f64 / (window.as_secs_f64() / 60.0);
    page_reader.abort();
    for mut child in children {
        infra::terminate(&mut child, Duration::from_secs(3));
    }
    Ok(r)
}

/// §7: the bridge against a server that closes every connection (DSMR-reader's gunicorn), next
/// to the same bridge against one that keeps them alive, in the same window.
#[derive(Debug, Default, Clone)]
pub struct ClosingRun {
    pub window: Duration,
    pub steal_pct: f64,
    /// Keep-alive (the baseline), then closing.
    pub polls: [u64; 2],
    pub requests: [u64; 2],
    pub cpu_per_poll_ms: [f64; 2],
    pub cpu_hour_from_polls: [f64; 2],
    pub hwm_kib: [u64; 2],
}

async fn closing(plan: &Plan, wrap: Option<&str>) -> anyhow::Result<ClosingRun> {
    let broker = infra::mosquitto(false)?;
    let dir = tempfile::tempdir()?;
    // Each bridge its own simulator at 5x (every 1 s poll sees what a 5 s poll sees), both on
    // the same readings, behind a pass-through that keeps connections or closes each one.
    let mut sims = Vec::new();
    let mut proxies = Vec::new();
    for keep_alive in [true, false] {
        let sim = Simulator::start(common::sim_options(DAY_START + 6 * HOUR, 5.0, SEED)).await?;
        proxies.push(Proxy::start_with(sim.addr(), keep_alive).await?);
        sims.push(sim);
    }
    let mut children = Vec::new();
    for (proxy, base) in proxies.iter().zip(["bench-keepalive", "bench-closing"]) {
        // A host name, as a user gives DSMR-reader's address, not an IP literal: each new
        // connection may have to look it up.
        let url = format!("http://localhost:{}/", proxy.addr.port());
        children.push(bridge_process_at(
            &url,
            wrap,
            broker.port,
            base,
            1,
            &dir.path().join(base),
            &[],
        )?);
    }
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let reading = READINGS;
    sleep(plan.footprint_skip).await;
    for proxy in &proxies {
        proxy.take();
    }
    let t0 = Instant::now();
    let cpu0: Vec<Duration> = pids.iter().map(|&p| infra::process_cpu(p)).collect();
    let polls0: Vec<u64> = sims.iter().map(|s| s.requests(reading)).collect();
    let requests0: Vec<u64> = sims.iter().map(live_requests).collect();
    let steal = infra::Steal::now();
    sleep(plan.footprint_real - plan.footprint_skip).await;
    let mut r = ClosingRun {
        window: t0.elapsed(),
        steal_pct: steal.percent_since(),
        ..ClosingRun::default()
    };
    for i in 0..2 {
        let cpu = infra::process_cpu(pids[i]) - cpu0[i];
        r.polls[i] = sims[i].requests(reading) - polls0[i];
        r.requests[i] = live_requests(&sims[i]) - requests0[i];
        let per_poll = cpu.as_secs_f64() / r.polls[i].max(1) as f64;
        r.cpu_per_poll_ms[i] = per_poll * 1000.0;
        r.cpu_hour_from_polls[i] = per_poll * common::POLLS_PER_HOUR as f64;
        r.hwm_kib[i] = infra::status_kib(pids[i], "VmHWM").unwrap_or(0);
        proxies[i].take();
    }
    for mut child in children {
        infra::terminate(&mut child, Duration::from_secs(3));
    }
    Ok(r)
}

const READINGS: &str = "/api/v2/datalogger/dsmrreading";

/// Every request the live bridge sends DSMR-reader, counted by the simulator.
fn live_requests(sim: &Simulator) -> u64 {
    [
        READINGS,
        "/api/v2/datalogger/meter-statistics",
        "/api/v2/consumption/today",
        "/api/v2/consumption/quarter-hour-peak-electricity",
        "/api/v2/application/monitoring",
        "/api/v2/application/version",
    ]
    .iter()
    .map(|p| sim.requests(p))
    .sum()
}
