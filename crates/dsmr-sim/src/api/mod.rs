//! The simulated REST API v2, routes: authentication, the endpoint table and faults, kept
//! synchronous and socket-free so the request handling is unit-testable. The JSON of each
//! endpoint is in `endpoints`, Django's and DRF's list behaviour in `django`, the supplier's
//! prices in `crate::prices`.
//!
//! Shapes, field order, number formats and error bodies follow the captured DSMR-reader 5.11
//! responses; where the real server's behaviour comes from Django/DRF (pagination links,
//! filter parsing, ignored orderings) that behaviour is mirrored too.

mod django;
mod endpoints;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use super::Fault;
use super::history::Archive;
use super::meter::MeterModel;
use super::telegram::MeterIds;
use super::zone::TimeZone;
use django::{Obj, Query, iso};
use endpoints::*;

/// Django's plain 404 page, byte for byte.
pub(crate) const NOT_FOUND_HTML: &str = "\n<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n";

/// What the handler needs from an HTTP request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub x_authkey: Option<&'a str>,
}

/// An HTTP answer before it becomes a hyper response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
    pub allow: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, body: &impl Serialize) -> Self {
        Self {
            status,
            content_type: "application/json".to_owned(),
            // Serializing plain maps and strings cannot fail.
            body: serde_json::to_string(body).unwrap_or_default(),
            allow: None,
        }
    }

    fn detail(status: u16, detail: &str) -> Self {
        Self::json(status, &Obj::new().put("detail", detail))
    }

    fn not_found() -> Self {
        Self {
            status: 404,
            content_type: "text/html".to_owned(),
            body: NOT_FOUND_HTML.to_owned(),
            allow: None,
        }
    }

    fn with_allow(mut self, allow: &'static str) -> Self {
        self.allow = Some(allow);
        self
    }
}

/// Everything an endpoint reads; borrowed from the simulator's state for one request.
pub(crate) struct Context<'a> {
    pub model: &'a MeterModel,
    pub api_key: &'a str,
    pub version: &'a str,
    pub ids: MeterIds<'a>,
    pub register_overrides: &'a HashMap<String, Option<String>>,
    /// Added to every meter timestamp, to simulate a meter clock that runs off.
    pub shift: Duration,
    /// The server's clock, which DSMR-reader uses where the meter's clock is ahead.
    pub now: OffsetDateTime,
    /// `host[:port]` for absolute pagination links.
    pub host: &'a str,
    /// The server's time zone: timestamps are printed in it, naive filter times placed in it.
    pub zone: &'a TimeZone,
    /// The archive behind `statistics/hour` and `statistics/day`; empty lists without one.
    pub archive: Option<&'a Archive>,
}

impl Context<'_> {
    fn meter_time(&self, t: OffsetDateTime) -> OffsetDateTime {
        t.checked_add(self.shift).unwrap_or(t)
    }

    fn ts(&self, t: OffsetDateTime) -> String {
        iso(self.zone.local(self.meter_time(t)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    DsmrReading,
    MeterStatistics,
    Today,
    QuarterHourPeaks,
    ElectricityLive,
    Gas,
    GasLive,
    SupplierPrices,
    Version,
    Monitoring,
    HourStatistics,
    DayStatistics,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Self> {
        let endpoint = match path.strip_prefix("/api/v2/")? {
            "datalogger/dsmrreading" => Self::DsmrReading,
            "datalogger/meter-statistics" => Self::MeterStatistics,
            "consumption/today" => Self::Today,
            "consumption/quarter-hour-peak-electricity" => Self::QuarterHourPeaks,
            "consumption/electricity-live" => Self::ElectricityLive,
            "consumption/gas" => Self::Gas,
            "consumption/gas-live" => Self::GasLive,
            "consumption/energy-supplier-prices" => Self::SupplierPrices,
            "application/version" => Self::Version,
            "application/monitoring" => Self::Monitoring,
            "statistics/hour" => Self::HourStatistics,
            "statistics/day" => Self::DayStatistics,
            _ => return None,
        };
        Some(endpoint)
    }

    /// The `Allow` header the real views send.
    fn allow(self) -> &'static str {
        match self {
            Self::DsmrReading => "GET, POST, HEAD, OPTIONS",
            Self::MeterStatistics => "GET, PATCH, HEAD, OPTIONS",
            Self::DayStatistics => "GET, POST, HEAD, OPTIONS",
            _ => "GET, HEAD, OPTIONS",
        }
    }
}

/// Answers one request from the model; faults and verbatim overrides are applied by the caller.
pub(crate) fn respond(ctx: &Context<'_>, req: &Request<'_>) -> Reply {
    // Django resolves the URL before DRF authenticates, and DRF authenticates before it
    // checks the method: hence 404, then 403, then 405.
    let Some(endpoint) = Endpoint::from_path(req.path) else {
        return Reply::not_found();
    };
    if !authorized(req, ctx.api_key) {
        return Reply::detail(403, "Invalid auth key").with_allow(endpoint.allow());
    }
    if !matches!(req.method, "GET" | "HEAD") {
        let detail = format!("Method \"{}\" not allowed.", req.method);
        return Reply::detail(405, &detail).with_allow(endpoint.allow());
    }
    let query = Query::parse(req.query);
    let reply = match endpoint {
        Endpoint::DsmrReading => dsmr_readings(ctx, req, &query),
        Endpoint::MeterStatistics => Reply::json(200, &meter_statistics(ctx)),
        Endpoint::Today => today(ctx),
        Endpoint::QuarterHourPeaks => quarter_hour_peaks(ctx, req, &query),
        Endpoint::ElectricityLive => Reply::json(200, &electricity_live(ctx)),
        Endpoint::Gas => gas_consumption(ctx, req, &query),
        Endpoint::GasLive => Reply::json(200, &gas_live(ctx)),
        Endpoint::SupplierPrices => Reply::json(200, &supplier_prices(ctx)),
        Endpoint::HourStatistics => hour_statistics(ctx, req, &query),
        Endpoint::DayStatistics => day_statistics(ctx, req, &query),
        Endpoint::Version => Reply::json(200, &Obj::new().put("version", ctx.version)),
        Endpoint::Monitoring => Reply::json(
            200,
            &Obj::new()
                .put("problems", 0)
                .put("details", Vec::<Value>::new()),
        ),
    };
    reply.with_allow(endpoint.allow())
}

/// `X-AUTHKEY: <key>` wins over `Authorization: Token <key>`; no other scheme is accepted.
fn authorized(req: &Request<'_>, api_key: &str) -> bool {
    let offered = req.x_authkey.filter(|key| !key.is_empty()).or_else(|| {
        req.authorization
            .and_then(|value| value.strip_prefix("Token "))
    });
    offered.is_some_and(|key| key.trim() == api_key)
}

/// The reply a fault replaces every API answer with; `None` for faults that need the normal
/// answer (`Truncated`) or no answer at all (`Hang`).
pub(crate) fn fault_reply(fault: &Fault) -> Option<Reply> {
    let reply = match fault {
        Fault::Status(code) => {
            let code = valid_status(*code);
            let reason = hyper::StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            Reply::detail(code, reason)
        }
        Fault::Html => Reply {
            status: 200,
            content_type: "text/html; charset=utf-8".to_owned(),
            body: "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form method=\"post\" action=\"/login\"><input name=\"username\"><input name=\"password\" type=\"password\"><button>Sign in</button></form></body></html>\n".to_owned(),
            allow: None,
        },
        Fault::Garbage => Reply {
            status: 200,
            content_type: "application/json".to_owned(),
            body: "}{ this is not JSON at all ][".to_owned(),
            allow: None,
        },
        Fault::InvalidKey => Reply::detail(403, "Invalid auth key"),
        Fault::ApiDisabled => Reply::detail(403, "API is disabled"),
        Fault::Truncated | Fault::Hang => return None,
    };
    Some(reply)
}

/// A 200 JSON reply carrying the first half of `reply`'s body.
pub(crate) fn truncate(reply: Reply) -> Reply {
    let mut cut = reply.body.len() / 2;
    while !reply.body.is_char_boundary(cut) {
        cut -= 1;
    }
    Reply {
        status: 200,
        content_type: "application/json".to_owned(),
        body: reply.body[..cut].to_owned(),
        allow: reply.allow,
    }
}

/// Status codes hyper can send as a final response; anything else becomes 500.
pub(crate) fn valid_status(code: u16) -> u16 {
    if (200..=599).contains(&code) {
        code
    } else {
        500
    }
}
