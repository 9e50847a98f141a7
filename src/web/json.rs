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
pub(crate) struct StatusJson<'s> {
    /// The bridge's version.
    pub(crate) bridge: &'static str,
    pub(crate) now: u64,
    pub(crate) dsmr_reader: DsmrReader<'s>,
    pub(crate) broker: Broker<'s>,
    /// `null` when the history import is off.
    pub(crate) history: Option<Line>,
    /// Catalog key → the value as published.
    pub(crate) meter: BTreeMap<&'static str, &'s str>,
    /// `[at, consumed W, returned W]`, oldest first.
    pub(crate) power: Vec<(u64, i32, i32)>,
    pub(crate) traffic: Traffic,
    /// Entities announced to Home Assistant.
    pub(crate) entities: usize,
    /// Warnings and errors, newest first.
    pub(crate) recent: Vec<Recent>,
}

#[derive(Debug, Serialize)]
pub(crate) struct DsmrReader<'s> {
    /// `null` until the first poll said either way.
    pub(crate) reachable: Option<bool>,
    pub(crate) version: Option<String>,
    /// The last poll whose newest reading was answered.
    pub(crate) last_poll: Option<u64>,
    pub(crate) last_error: Option<Dated>,
    /// Side endpoints failing while the reading answers.
    pub(crate) failing: Vec<Failing<'s>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Dated {
    pub(crate) at: u64,
    pub(crate) text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Failing<'s> {
    pub(crate) endpoint: &'s str,
    pub(crate) text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Broker<'s> {
    pub(crate) connected: bool,
    /// `host:port`.
    pub(crate) address: &'s str,
    pub(crate) since: Option<u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Line {
    pub(crate) ok: bool,
    pub(crate) text: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Traffic {
    pub(crate) offered: u64,
    pub(crate) published: u64,
    pub(crate) suppressed_by_cache: u64,
    pub(crate) discarded_in_queue: u64,
    pub(crate) replaced_in_queue: u64,
    pub(crate) dropped: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Recent {
    pub(crate) at: u64,
    pub(crate) level: &'static str,
    pub(crate) text: String,
}

impl<'s> StatusJson<'s> {
    pub(crate) fn new(
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
