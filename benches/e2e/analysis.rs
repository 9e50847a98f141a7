//! From what the pass-through recorded and the subscriber saw to the figures: the polls the
//! bridge made, what the map stage offered for each (replayed with the library's own map
//! stage), the baselines computed from the same answers, and the checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsmr_bridge::model::{Message, Object, Snapshot};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::common::{BASE_TOPIC, Mapper, message_bytes};
use crate::infra::{Endpoint, Exchange, Seen};

/// One poll cycle of the bridge, rebuilt from its requests.
pub struct Poll {
    /// The first request of the cycle (meter statistics when due, else the newest reading)
    /// reached the API.
    pub t_start: Instant,
    /// The API answered the request for the newest reading.
    pub t_reading: Option<Instant>,
    /// The API answered the last request of the cycle.
    pub t_done: Instant,
    /// Time the requests after the reading's spent in the API (request in → answer out at the
    /// pass-through): DSMR-reader's time, not the bridge's.
    pub api_after_reading: Duration,
    pub snapshot: Snapshot,
    pub failed: bool,
}

fn object(value: Value) -> Option<Object> {
    match value {
        Value::Object(o) => Some(o),
        _ => None,
    }
}

fn first_result(value: Value) -> Option<Object> {
    match object(value)?.remove("results")? {
        Value::Array(results) => results.into_iter().next().and_then(object),
        _ => None,
    }
}

/// Groups the recorded requests into poll cycles. The source asks in `Endpoint` order and meter
/// statistics only when due, so a cycle starts with meter statistics, or with the newest
/// reading when no meter statistics came just before it.
pub fn polls(exchanges: &[Exchange]) -> Vec<Poll> {
    let mut sorted: Vec<&Exchange> = exchanges.iter().collect();
    sorted.sort_by_key(|e| e.t_in);
    let mut out: Vec<Poll> = Vec::new();
    let mut previous: Option<Endpoint> = None;
    for e in sorted {
        let starts = match e.endpoint {
            Endpoint::MeterStats => true,
            Endpoint::Reading => previous != Some(Endpoint::MeterStats),
            _ => false,
        };
        previous = Some(e.endpoint);
        if starts || out.is_empty() {
            out.push(Poll {
                t_start: e.t_in,
                t_reading: None,
                t_done: e.t_out,
                api_after_reading: Duration::ZERO,
                snapshot: Snapshot::default(),
                failed: false,
            });
        }
        let Some(poll) = out.last_mut() else { continue };
        poll.t_done = poll.t_done.max(e.t_out);
        if poll.t_reading.is_some() {
            poll.api_after_reading += e.t_out.duration_since(e.t_in);
        }
        let Some(value) = (e.status == 200)
            .then(|| serde_json::from_slice::<Value>(&e.body).ok())
            .flatten()
        else {
            poll.failed = true;
            continue;
        };
        let s = &mut poll.snapshot;
        match e.endpoint {
            Endpoint::MeterStats => s.meter_stats = object(value),
            Endpoint::Reading => {
                s.reading = first_result(value);
                poll.t_reading = Some(e.t_out);
            }
            Endpoint::Today => s.today = object(value),
            Endpoint::Peak => s.peak = first_result(value),
            Endpoint::Monitoring => s.monitoring = object(value),
            Endpoint::Version => s.version = object(value),
            Endpoint::Other => {}
        }
    }
    out
}

/// What the map stage offered dedup for each poll, replayed with the library's map stage.
pub fn offers(polls: &[Poll]) -> (Vec<Vec<Message>>, Mapper) {
    let now = OffsetDateTime::now_utc();
    let mut mapper = Mapper::new(BASE_TOPIC);
    let offered = polls
        .iter()
        .map(|p| {
            if p.snapshot.meter_stats.is_some() || p.snapshot.reading.is_some() {
                mapper.poll(&p.snapshot, now)
            } else {
                Vec::new()
            }
        })
        .collect();
    (offered, mapper)
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Volume {
    pub messages: u64,
    pub bytes: u64,
}

impl Volume {
    pub fn add(&mut self, topic: &str, payload: &str) {
        self.messages += 1;
        self.bytes += message_bytes(topic, payload);
    }

    pub fn plus(self, other: Volume) -> Volume {
        Volume {
            messages: self.messages + other.messages,
            bytes: self.bytes + other.bytes,
        }
    }

    pub fn per_hour(self, hours: f64) -> (f64, f64) {
        (self.messages as f64 / hours, self.bytes as f64 / hours)
    }
}

/// The naive republisher: every value of every poll.
pub fn naive(offered: &[Vec<Message>]) -> Volume {
    let mut v = Volume::default();
    for m in offered.iter().flatten() {
        v.add(&m.topic, &m.payload);
    }
    v
}

/// The physical limit: a message for every (topic, value) change in the polled values, plus a
/// refresh of an unchanged topic once the TTL has passed since its last message (on the
/// bridge's clock: the time the poll's answers arrived).
pub fn physical_limit(offered: &[Vec<Message>], polls: &[Poll], ttl: Duration) -> (Volume, Volume) {
    let mut last: HashMap<&str, (&str, Instant)> = HashMap::new();
    let (mut changes, mut refreshes) = (Volume::default(), Volume::default());
    for (poll, messages) in polls.iter().zip(offered) {
        let t = poll.t_done;
        for m in messages {
            match last.get_mut(m.topic.as_ref()) {
                None => {
                    changes.add(&m.topic, &m.payload);
                    last.insert(&m.topic, (&m.payload, t));
                }
                Some((value, at)) if *value != &*m.payload => {
                    changes.add(&m.topic, &m.payload);
                    *value = &m.payload;
                    *at = t;
                }
                Some((_, at)) if !ttl.is_zero() && t.duration_since(*at) >= ttl => {
                    refreshes.add(&m.topic, &m.payload);
                    *at = t;
                }
                Some(_) => {}
            }
        }
    }
    (changes, refreshes)
}

/// DSMR-reader 5.11's split-topic telegram publisher: every field of every reading (22).
const TELEGRAM_FIELDS: [&str; 22] = dsmr_sim::READING_FIELDS;

/// Its split meter-statistics publisher (11 fields per reading).
const METER_STATS_FIELDS: [&str; 11] = [
    "dsmr_version",
    "electricity_tariff",
    "power_failure_count",
    "long_power_failure_count",
    "voltage_sag_count_l1",
    "voltage_sag_count_l2",
    "voltage_sag_count_l3",
    "voltage_swell_count_l1",
    "voltage_swell_count_l2",
    "voltage_swell_count_l3",
    "rejected_telegrams",
];

/// Its split day-consumption publisher (18 fields, once a minute).
const DAY_FIELDS: [&str; 18] = [
    "electricity1",
    "electricity2",
    "electricity1_returned",
    "electricity2_returned",
    "electricity_merged",
    "electricity_returned_merged",
    "electricity1_cost",
    "electricity2_cost",
    "electricity_cost_merged",
    "gas",
    "gas_cost",
    "total_cost",
    "fixed_cost",
    "energy_supplier_price_electricity_delivered_1",
    "energy_supplier_price_electricity_delivered_2",
    "energy_supplier_price_electricity_returned_1",
    "energy_supplier_price_electricity_returned_2",
    "energy_supplier_price_gas",
];

/// A field as DSMR-reader's split topics carry it: decimals as text at model scale, `None` as
/// an empty payload, telegram timestamps in UTC with `Z` (its default).
fn dsmr_payload(field: &str, value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if field.ends_with("timestamp") => {
            OffsetDateTime::parse(s, &Rfc3339)
                .ok()
                .and_then(|t| {
                    t.to_offset(time::UtcOffset::UTC)
                        .format(format_description!(
                            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
                        ))
                        .ok()
                })
                .unwrap_or_else(|| s.clone())
        }
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "True" } else { "False" }.to_owned(),
        Some(other) => other.to_string(),
    }
}

/// What DSMR-reader's own MQTT would send for the same readings with its split telegram,
/// split meter-statistics and split day-consumption publishers on: every field of every new
/// reading, meter statistics with each reading, day totals once a minute (each day-totals
/// answer the bridge fetched stands for one minute). Returns (telegram, meter-stats, day).
pub fn dsmr_reader(polls: &[Poll]) -> (Volume, Volume, Volume) {
    let (mut telegram, mut stats, mut day) = Default::default();
    let mut last_id: Option<&Value> = None;
    // DSMR-reader publishes meter statistics with every telegram; the bridge asks for them once
    // a minute, so each new reading counts the newest it has.
    let mut last_stats: Option<&Object> = None;
    for poll in polls {
        last_stats = poll.snapshot.meter_stats.as_ref().or(last_stats);
        if let Some(reading) = &poll.snapshot.reading {
            let id = reading.get("id");
            if id.is_some() && id != last_id {
                last_id = id;
                count_fields(
                    &mut telegram,
                    "dsmr/reading",
                    &TELEGRAM_FIELDS,
                    reading,
                    None,
                );
                if let Some(s) = last_stats {
                    count_fields(&mut stats, "dsmr/meter-stats", &METER_STATS_FIELDS, s, None);
                }
            }
        }
        if let Some(today) = &poll.snapshot.today {
            let merged = ["electricity1_cost", "electricity2_cost"]
                .iter()
                .filter_map(|f| today.get(*f).and_then(Value::as_f64))
                .sum::<f64>();
            count_fields(
                &mut day,
                "dsmr/day-consumption",
                &DAY_FIELDS,
                today,
                Some(format!("{merged:.2}")),
            );
        }
    }
    (telegram, stats, day)
}

fn count_fields(
    v: &mut Volume,
    prefix: &str,
    fields: &[&str],
    object: &Object,
    cost_merged: Option<String>,
) {
    for field in fields {
        let topic_len = prefix.len() + 1 + field.len();
        let payload = match (&cost_merged, *field) {
            (Some(merged), "electricity_cost_merged") => merged.clone(),
            // Absent without gas today: not published at all.
            (Some(_), "gas" | "gas_cost") if !object.contains_key(*field) => continue,
            _ => dsmr_payload(field, object.get(*field)),
        };
        v.messages += 1;
        v.bytes += (topic_len + payload.len()) as u64;
    }
}

/// Whether every change of every state topic reached the broker, in order.
#[derive(Debug, Default, Clone)]
pub struct Fidelity {
    pub topics: usize,
    /// (topic, value) changes in the polled values.
    pub changes: u64,
    /// Changes never seen on the broker (superseded by a newer value before they were sent, or
    /// lost), not counting those below.
    pub lost: u64,
    /// Changes polled before the bridge's first connection to the broker and replaced by a
    /// newer value before it connected (nothing could have been sent yet).
    pub before_connect: u64,
    /// Changes polled before the topic's first value reached the broker and replaced by a newer
    /// one: a meter register's first value after a start waits for the broker's retained
    /// registers (a 2 s scan, minutes of simulated time at 1000×) and a second reading that
    /// agrees with it.
    pub held_at_start: u64,
    /// Values seen on the broker that were never polled, or out of order.
    pub unexpected: u64,
    /// Topics whose last value on the broker is not the last polled one.
    pub final_wrong: u64,
    /// Poll (index) and topic of the first lost changes, for diagnosis.
    pub lost_at: Vec<(usize, String)>,
}

/// Compares, per topic, the sequence of distinct polled values with the sequence of distinct
/// values the subscriber received. `connected` is when the bridge's first message arrived.
pub fn fidelity(
    polls: &[Poll],
    offered: &[Vec<Message>],
    seen: &[Seen],
    connected: Instant,
) -> Fidelity {
    let first_connected_poll = polls
        .iter()
        .position(|p| p.t_done >= connected)
        .unwrap_or(polls.len());
    let mut polled: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
    for (poll, messages) in offered.iter().enumerate() {
        for m in messages {
            let seq = polled.entry(m.topic.as_ref()).or_default();
            if seq.last().map(|(v, _)| *v) != Some(m.payload.as_ref()) {
                seq.push((&m.payload, poll));
            }
        }
    }
    let mut received: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in seen {
        if let Some(seq) = polled
            .contains_key(s.topic.as_str())
            .then(|| received.entry(s.topic.as_str()).or_default())
            && seq.last() != Some(&s.payload.as_str())
        {
            seq.push(&s.payload);
        }
    }
    let mut f = Fidelity {
        topics: polled.len(),
        ..Fidelity::default()
    };
    for (topic, want) in &polled {
        f.changes += want.len() as u64;
        let got = received.get(topic).map(Vec::as_slice).unwrap_or(&[]);
        let mut missed = Vec::new();
        let mut i = 0;
        // What the broker holds for the topic so far. A polled value equal to it is no change
        // to send: in A, B, A with B replaced in the queue before it could be sent, one value
        // (B) was coalesced, not two.
        let mut held: Option<&str> = None;
        for value in got {
            // Greedy in-order match, looking a bounded way ahead.
            match want[i..].iter().take(4096).position(|(w, _)| w == value) {
                Some(k) if held.is_none() => {
                    f.held_at_start += k as u64;
                    i += k + 1;
                    held = Some(value);
                }
                Some(k) => {
                    missed.extend(want[i..i + k].iter().filter(|(w, _)| Some(*w) != held));
                    i += k + 1;
                    held = Some(value);
                }
                None => f.unexpected += 1,
            }
        }
        missed.extend(want[i..].iter().filter(|(w, _)| Some(*w) != held));
        for (_, poll) in missed {
            // Replaced before the first connection: the next value of the topic was polled
            // before the bridge could send anything.
            if poll + 1 < first_connected_poll {
                f.before_connect += 1;
            } else {
                f.lost += 1;
                if f.lost_at.len() < 20 {
                    f.lost_at.push((poll, (*topic).to_owned()));
                }
            }
        }
        if got.last() != want.last().map(|(v, _)| v) {
            f.final_wrong += 1;
        }
    }
    f.lost_at.sort_unstable();
    f
}

/// Latency of one poll's changed values.
#[derive(Debug, Clone, Copy)]
pub struct PollLatency {
    /// From the API answering the request for the newest reading until the last of the poll's
    /// changed values reached the subscriber.
    pub total: Duration,
    /// The same without the time the poll's later requests spent in the API.
    pub own: Duration,
}

/// The latency of every poll with changed values. Polls that started before `from` are skipped
/// (start-up). Returns them and the number of changed values never seen.
pub fn latencies(
    polls: &[Poll],
    offered: &[Vec<Message>],
    seen: &[Seen],
    from: Instant,
) -> (Vec<PollLatency>, u64) {
    let mut received: HashMap<&str, Vec<(Instant, &str)>> = HashMap::new();
    for s in seen {
        received
            .entry(s.topic.as_str())
            .or_default()
            .push((s.at, s.payload.as_str()));
    }
    let mut cursor: HashMap<&str, usize> = HashMap::new();
    let mut last: HashMap<&str, &str> = HashMap::new();
    let (mut out, mut missing) = (Vec::new(), 0);
    for (poll, messages) in polls.iter().zip(offered) {
        let mut worst: Option<Duration> = None;
        for m in messages {
            let changed = last.insert(&m.topic, &m.payload) != Some(m.payload.as_ref());
            let Some(t0) = poll.t_reading else { continue };
            if !changed || poll.t_start < from {
                continue;
            }
            let list = received
                .get(m.topic.as_ref())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let at = cursor.entry(&m.topic).or_insert(0);
            while *at < list.len() && list[*at].0 < t0 {
                *at += 1;
            }
            match list[*at..]
                .iter()
                .take(16)
                .find(|(_, payload)| **payload == *m.payload)
            {
                Some((t, _)) => {
                    let d = t.duration_since(t0);
                    worst = Some(worst.map_or(d, |w| w.max(d)));
                }
                None => missing += 1,
            }
        }
        if let Some(total) = worst {
            out.push(PollLatency {
                total,
                own: total.saturating_sub(poll.api_after_reading),
            });
        }
    }
    (out, missing)
}

/// The state values the bridge holds now, by topic.
pub fn current_values(mapper: &Mapper) -> HashMap<Arc<str>, String> {
    mapper
        .state
        .current()
        .filter_map(|i| {
            mapper
                .state
                .value(i)
                .map(|v| (mapper.topics.state(i).clone(), v.to_owned()))
        })
        .collect()
}

/// min, median, max.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Spread {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let median = if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        };
        Spread {
            min: v[0],
            median,
            max: v[v.len() - 1],
        }
    }
}

/// The `q` quantile (0..=1, nearest rank) of durations, in milliseconds.
pub fn quantile_ms(values: &[Duration], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<Duration> = values.to_vec();
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1000.0
}
