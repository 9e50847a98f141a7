//! The status page's JSON contract (`GET ./api/status`), as types: what `page.html` reads, field
//! by field. Times are seconds since the Unix epoch; `now` lets the page say "12 s ago" without
//! trusting the browser's clock. Every text that may carry an error passes the `Redactor`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::secrets::Redactor;
use crate::status::{Status, unix};
use crate::web::recent::Entry;

#[derive(Debug, Serialize)]
pub struct StatusJson<'s> {
    /// The bridge's version.
    pub bridge: &'static str,
    pub now: u64,
    pub dsmr_reader: DsmrReader<'s>,
    pub broker: Broker<'s>,
    /// `null` when the history import is off.
    pub history: Option<Line>,
    /// Catalog key → the value as published.
    pub meter: BTreeMap<&'static str, &'s str>,
    /// `[at, consumed W, returned W]`, oldest first.
    pub power: Vec<(u64, i32, i32)>,
    pub traffic: Traffic,
    /// Entities announced to Home Assistant.
    pub entities: usize,
    /// Warnings and errors, newest first.
    pub recent: Vec<Recent>,
}

#[derive(Debug, Serialize)]
pub struct DsmrReader<'s> {
    /// `null` until the first poll said either way.
    pub reachable: Option<bool>,
    pub version: Option<String>,
    /// The last poll whose newest reading was answered.
    pub last_poll: Option<u64>,
    pub last_error: Option<Dated>,
    /// Side endpoints failing while the reading answers.
    pub failing: Vec<Failing<'s>>,
}

#[derive(Debug, Serialize)]
pub struct Dated {
    pub at: u64,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Failing<'s> {
    pub endpoint: &'s str,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Broker<'s> {
    pub connected: bool,
    /// `host:port`.
    pub address: &'s str,
    pub since: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Line {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Traffic {
    pub offered: u64,
    pub published: u64,
    pub suppressed_by_cache: u64,
    pub discarded_in_queue: u64,
    pub replaced_in_queue: u64,
    pub dropped: u64,
}

#[derive(Debug, Serialize)]
pub struct Recent {
    pub at: u64,
    pub level: &'static str,
    pub text: String,
}

impl<'s> StatusJson<'s> {
    pub fn new(
        status: &'s Status,
        broker: &'s str,
        recent: Vec<Entry>,
        redactor: &Redactor,
        now: SystemTime,
    ) -> Self {
        let shown = |text: &str| redactor.redact(text).into_owned();
        let t = &status.traffic;
        StatusJson {
            bridge: env!("CARGO_PKG_VERSION"),
            now: unix(now),
            dsmr_reader: DsmrReader {
                reachable: status.dsmr_reachable,
                version: status.dsmr_version.as_deref().map(shown),
                last_poll: status.last_poll.map(unix),
                last_error: status.last_error.as_ref().map(|(at, text)| Dated {
                    at: unix(*at),
                    text: shown(text),
                }),
                failing: status
                    .failing
                    .iter()
                    .map(|(endpoint, text)| Failing {
                        endpoint,
                        text: shown(text),
                    })
                    .collect(),
            },
            broker: Broker {
                connected: status.broker_connected,
                address: broker,
                since: status.broker_since.map(unix),
            },
            history: status.history.as_ref().map(|h| Line {
                ok: h.ok,
                text: shown(&h.text),
            }),
            meter: status
                .meter
                .iter()
                .map(|(key, value)| (*key, value.as_str()))
                .collect(),
            power: status
                .power
                .iter()
                .map(|p| (p.at, p.delivered_w, p.returned_w))
                .collect(),
            traffic: Traffic {
                offered: t.offered,
                published: t.published,
                suppressed_by_cache: t.suppressed_by_cache,
                discarded_in_queue: t.discarded_in_queue,
                replaced_in_queue: t.replaced_in_queue,
                dropped: t.dropped,
            },
            entities: status.entities,
            // Already redacted by the log's layer.
            recent: recent
                .into_iter()
                .rev()
                .map(|e| Recent {
                    at: unix(e.at),
                    level: e.level.as_str(),
                    text: e.text,
                })
                .collect(),
        }
    }
}
