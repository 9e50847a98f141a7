//! The simulated REST API v2: routing, authentication, query parsing and the JSON of each
//! endpoint, kept synchronous and socket-free so the request handling is unit-testable.
//!
//! Shapes, field order, number formats and error bodies follow the captured DSMR-reader 5.11
//! responses; where the real server's behaviour comes from Django/DRF (pagination links,
//! filter parsing, ignored orderings) that behaviour is mirrored too.

use std::collections::HashMap;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::Fault;
use super::history::{Archive, ArchiveReading, DayRow, HourRow};
use super::meter::{GasReading, MeterModel, PhaseReading, Reading};
use super::telegram::{self, MeterIds};
use super::zone::{TimeZone, Unplaceable};

/// DRF's `PAGE_SIZE`.
const DEFAULT_LIMIT: usize = 25;
/// Query strings with more pairs than this are cut; a real client sends a handful.
const MAX_QUERY_PAIRS: usize = 64;

/// Prices of the fixture's supplier contract in micro-euro per kWh, per m³ or per day.
const PRICE_DELIVERED: [i64; 2] = [257_310, 273_190];
const PRICE_RETURNED: [i64; 2] = [90_000, 90_000];
const PRICE_GAS: i64 = 1_384_120;
const PRICE_FIXED: i64 = 951_230;

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

// ---------------------------------------------------------------------------------------------
// Endpoints

/// The readings table: the archive's readings (one every `READING_EVERY` s of each simulated
/// hour) followed by the meter's recent ones, ordered by timestamp as the view always is, and
/// filtered, counted and paged without building the millions of rows of an archive.
fn dsmr_readings(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
    const FILTERS: [&str; 3] = ["timestamp", "timestamp__gte", "timestamp__lte"];
    let bounds = match Bounds::parse(query, FILTERS, ctx.zone) {
        Ok(bounds) => bounds,
        Err(errors) => return Reply::json(400, &errors),
    };
    let descending = ordering(query, &["timestamp"]).is_some_and(|(_, descending)| descending);
    let history = ctx.model.history();
    let mut live: Vec<usize> = (0..history.len())
        .filter(|&i| bounds.admits(ctx.meter_time(history[i].timestamp)))
        .collect();
    // Stable: a stray reading stamped ahead takes its place in time.
    live.sort_by_key(|&i| ctx.meter_time(history[i].timestamp));
    // Where the archive's readings reach the meter's, the meter's count.
    let cutoff = history.front().map(|r| ctx.meter_time(r.timestamp));
    let archived = ctx
        .archive
        .map_or(0..0, |a| archived_readings(a, &bounds, cutoff));
    // DRF counts the whole table; the model only keeps recent readings.
    let live_count = if bounds.is_empty() {
        usize::try_from(ctx.model.total_readings())
            .unwrap_or(usize::MAX)
            .max(live.len())
    } else {
        live.len()
    };
    let count = archived.len().saturating_add(live_count);
    let rows = archived.len() + live.len();
    let render = |k: usize| match (ctx.archive, k.checked_sub(archived.len())) {
        (_, Some(i)) => reading_json(ctx, &history[live[i]], true),
        (Some(archive), None) => archive
            .reading(archived.start + k)
            .map_or_else(Obj::new, |r| {
                reading_json(ctx, &archive_reading(ctx, archive, &r), false)
            }),
        (None, None) => Obj::new(),
    };
    let page = Page::from_query(query);
    let results: Vec<Obj> = (page.offset..rows.min(page.offset.saturating_add(page.limit)))
        .map(|j| render(if descending { rows - 1 - j } else { j }))
        .collect();
    page_reply(ctx, req, query, &page, count, results)
}

/// The indexes of the archive's readings within `bounds` and before `cutoff`.
fn archived_readings(
    archive: &Archive,
    bounds: &Bounds,
    cutoff: Option<OffsetDateTime>,
) -> std::ops::Range<usize> {
    let after = |t: OffsetDateTime| {
        t.checked_add(Duration::nanoseconds(1))
            .map_or(archive.reading_count(), |t| archive.reading_index(t))
    };
    let mut lo = 0;
    let mut hi = archive.reading_count();
    if let Some(cutoff) = cutoff {
        hi = hi.min(archive.reading_index(cutoff));
    }
    if let Some(gte) = bounds.gte {
        lo = lo.max(archive.reading_index(gte));
    }
    if let Some(lte) = bounds.lte {
        hi = hi.min(after(lte));
    }
    if let Some(exact) = bounds.exact {
        lo = lo.max(archive.reading_index(exact));
        hi = hi.min(after(exact));
    }
    lo..hi.max(lo)
}

/// An archive reading in the meter's form: the hour's average power spread over the phases
/// the meter has.
fn archive_reading(ctx: &Context<'_>, archive: &Archive, r: &ArchiveReading) -> Reading {
    let [e1, e2, e1r, e2r, _] = r.registers;
    let phases = ctx.model.latest().phases.iter().flatten().count().max(1) as u32;
    let phase = |i: u32| {
        (i < phases).then(|| {
            let delivered = r.delivered_w / phases;
            let returned = r.returned_w / phases;
            PhaseReading {
                delivered,
                returned,
                voltage: 2_300,
                current: u16::try_from(delivered.max(returned) / 230).unwrap_or(u16::MAX),
            }
        })
    };
    Reading {
        id: r.id,
        timestamp: r.timestamp,
        registers: [e1, e1r, e2, e2r],
        currently_delivered: r.delivered_w,
        currently_returned: r.returned_w,
        phases: [phase(0), phase(1), phase(2)],
        gas: archive.options().gas.then_some(GasReading {
            timestamp: r.gas_timestamp,
            delivered: r.gas,
        }),
        tariff: r.tariff,
    }
}

fn quarter_hour_peaks(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
    let peaks = ctx.model.quarter_peaks();
    let spec = ListSpec {
        filters: ["read_at_start", "read_at_start__gte", "read_at_start__lte"],
        orderings: &["read_at_start", "average_delivered"],
    };
    let rows = peaks
        .iter()
        .map(|p| {
            (
                ctx.meter_time(p.read_at_start),
                [i128::from(p.average_delivered)],
            )
        })
        .collect();
    list(ctx, req, query, &spec, rows, None, |i| {
        let peak = &peaks[i];
        Obj::new()
            .put("id", peak.id)
            .put("read_at_start", ctx.ts(peak.read_at_start))
            .put("read_at_end", ctx.ts(peak.read_at_end))
            .put(
                "average_delivered",
                thousandths(u64::from(peak.average_delivered)),
            )
    })
}

fn gas_consumption(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
    let readings = ctx.model.gas_consumption();
    let spec = ListSpec {
        filters: ["read_at", "read_at__gte", "read_at__lte"],
        orderings: &["read_at"],
    };
    let rows = readings
        .iter()
        .map(|g| (ctx.meter_time(g.read_at), [0]))
        .collect();
    list(ctx, req, query, &spec, rows, None, |i| {
        let gas = &readings[i];
        Obj::new()
            .put("id", gas.id)
            .put("read_at", ctx.ts(gas.read_at))
            .put("delivered", thousandths(gas.delivered))
            .put("currently_delivered", thousandths(gas.currently_delivered))
    })
}

/// The query as a hostile archive server reads it.
fn hostile_query(query: &Query, archive: Option<&Archive>, field: &str) -> Query {
    let Some(hostile) = archive.map(|a| &a.options().hostile) else {
        return query.clone();
    };
    let mut pairs: Vec<(String, String)> = query
        .pairs
        .iter()
        .filter(|(k, _)| {
            !(hostile.ignore_filters && (k == field || k.starts_with(&format!("{field}__"))))
        })
        .cloned()
        .collect();
    if hostile.descending {
        pairs.push(("ordering".to_owned(), format!("-{field}")));
    }
    Query { pairs }
}

fn hour_statistics(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
    let rows: &[HourRow] = ctx.archive.map_or(&[], Archive::hour_rows);
    let spec = ListSpec {
        filters: ["hour_start", "hour_start__gte", "hour_start__lte"],
        orderings: &["hour_start"],
    };
    let query = &hostile_query(query, ctx.archive, "hour_start");
    let replaced = ctx
        .archive
        .map_or(&[][..], |a| &a.options().hostile.hour_values[..]);
    let keys = rows.iter().map(|r| (r.hour_start, [0])).collect();
    list(ctx, req, query, &spec, keys, None, |i| {
        let row = &rows[i];
        let [e1, e2, e1r, e2r, gas] = row.values;
        let obj = Obj::new()
            .put("id", row.id)
            .put("hour_start", iso(row.hour_start))
            .put("electricity1", thousandths(e1))
            .put("electricity2", thousandths(e2))
            .put("electricity1_returned", thousandths(e1r))
            .put("electricity2_returned", thousandths(e2r))
            .put("gas", thousandths(gas));
        replaced
            .iter()
            .filter(|(at, _, _)| *at == row.hour_start)
            .fold(obj, |obj, (_, field, value)| {
                obj.replace(field, value.clone())
            })
    })
}

fn day_statistics(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
    let rows: &[DayRow] = ctx.archive.map_or(&[], Archive::published_day_rows);
    let gas_meter = ctx.archive.is_some_and(|a| a.options().gas);
    let spec = ListSpec {
        filters: ["day", "day__gte", "day__lte"],
        orderings: &["day"],
    };
    let query = &hostile_query(query, ctx.archive, "day");
    let replaced = ctx
        .archive
        .map_or(&[][..], |a| &a.options().hostile.day_values[..]);
    // A DateFilter compares dates; the server-local midnight of each day stands in for it.
    let local = ctx.model.offset();
    let keys = rows
        .iter()
        .map(|r| (r.day.midnight().assume_offset(local), [0]))
        .collect();
    list(ctx, req, query, &spec, keys, None, |i| {
        let row = &rows[i];
        let [e1, e2, e1r, e2r, gas] = row.consumption;
        let [re1, re2, re1r, re2r, rgas] = row.registers;
        let gas_or_null = |text: String| {
            if gas_meter {
                Value::from(text)
            } else {
                Value::Null
            }
        };
        let obj = Obj::new()
            .put("id", row.id)
            .put("day", iso_date(row.day))
            .put("electricity1", thousandths(e1))
            .put("electricity2", thousandths(e2))
            .put("electricity1_returned", thousandths(e1r))
            .put("electricity2_returned", thousandths(e2r))
            .put("electricity1_cost", euro_text(row.electricity1_cost))
            .put("electricity2_cost", euro_text(row.electricity2_cost))
            .put("gas", gas_or_null(thousandths(gas)))
            .put("gas_cost", gas_or_null(euro_text(row.gas_cost)))
            .put("lowest_temperature", "0.0")
            .put("highest_temperature", "0.0")
            .put("average_temperature", "0.0")
            .put("fixed_cost", euro_text(row.fixed_cost))
            .put("total_cost", euro_text(row.total_cost))
            .put("electricity_reading_timestamp", iso(row.start))
            .put("electricity1_reading", thousandths(re1))
            .put("electricity2_reading", thousandths(re2))
            .put("electricity1_returned_reading", thousandths(re1r))
            .put("electricity2_returned_reading", thousandths(re2r))
            .put("gas_reading_timestamp", gas_or_null(iso(row.start)))
            .put("gas_reading", gas_or_null(thousandths(rgas)));
        replaced
            .iter()
            .filter(|(day, _, _)| *day == row.day)
            .fold(obj, |obj, (_, field, value)| {
                obj.replace(field, value.clone())
            })
    })
}

/// `shifted`: a meter reading, whose timestamps run off with the meter's clock; the archive's
/// do not.
fn reading_json(ctx: &Context<'_>, r: &Reading, shifted: bool) -> Obj {
    let ts = |t: OffsetDateTime| {
        if shifted {
            ctx.ts(t)
        } else {
            iso(ctx.zone.local(t))
        }
    };
    let phase = |i: usize, field: fn(&PhaseReading) -> Value| {
        r.phases[i].as_ref().map_or(Value::Null, field)
    };
    let [d1, r1, d2, r2] = r.registers;
    Obj::new()
        .put("id", r.id)
        .put("timestamp", ts(r.timestamp))
        .put("electricity_delivered_1", thousandths(d1))
        .put("electricity_returned_1", thousandths(r1))
        .put("electricity_delivered_2", thousandths(d2))
        .put("electricity_returned_2", thousandths(r2))
        .put("electricity_currently_delivered", kw(r.currently_delivered))
        .put("electricity_currently_returned", kw(r.currently_returned))
        .put("phase_currently_delivered_l1", phase(0, delivered_kw))
        .put("phase_currently_delivered_l2", phase(1, delivered_kw))
        .put("phase_currently_delivered_l3", phase(2, delivered_kw))
        .put("extra_device_timestamp", r.gas.map(|g| ts(g.timestamp)))
        .put(
            "extra_device_delivered",
            r.gas.map(|g| thousandths(g.delivered)),
        )
        .put("phase_currently_returned_l1", phase(0, returned_kw))
        .put("phase_currently_returned_l2", phase(1, returned_kw))
        .put("phase_currently_returned_l3", phase(2, returned_kw))
        .put("phase_voltage_l1", phase(0, volts))
        .put("phase_voltage_l2", phase(1, volts))
        .put("phase_voltage_l3", phase(2, volts))
        .put("phase_power_current_l1", phase(0, amps))
        .put("phase_power_current_l2", phase(1, amps))
        .put("phase_power_current_l3", phase(2, amps))
        .with_overrides(ctx.register_overrides)
}

fn kw(watts: u32) -> Value {
    thousandths(u64::from(watts)).into()
}

fn delivered_kw(p: &PhaseReading) -> Value {
    kw(p.delivered)
}

fn returned_kw(p: &PhaseReading) -> Value {
    kw(p.returned)
}

fn volts(p: &PhaseReading) -> Value {
    format!("{}.{}", p.voltage / 10, p.voltage % 10).into()
}

fn amps(p: &PhaseReading) -> Value {
    p.current.into()
}

fn meter_statistics(ctx: &Context<'_>) -> Obj {
    let reading = ctx.model.latest();
    let stats = ctx.model.stats();
    let [sag1, sag2, sag3] = stats.voltage_sag_count;
    let [swell1, swell2, swell3] = stats.voltage_swell_count;
    Obj::new()
        .put("id", 1)
        .put("timestamp", ctx.ts(reading.timestamp))
        .put("dsmr_version", "50")
        .put("electricity_tariff", stats.tariff)
        .put("power_failure_count", stats.power_failure_count)
        .put("long_power_failure_count", stats.long_power_failure_count)
        .put("voltage_sag_count_l1", sag1)
        .put("voltage_sag_count_l2", sag2)
        .put("voltage_sag_count_l3", sag3)
        .put("voltage_swell_count_l1", swell1)
        .put("voltage_swell_count_l2", swell2)
        .put("voltage_swell_count_l3", swell3)
        .put("rejected_telegrams", 0)
        .put(
            "latest_telegram",
            telegram::telegram(reading, &stats, ctx.ids, ctx.shift),
        )
        .with_overrides(ctx.register_overrides)
}

fn today(ctx: &Context<'_>) -> Reply {
    let Some(totals) = ctx.model.day_totals() else {
        // DSMR-reader answers 200 with a bare string until the day's first minute is grouped.
        let day = ctx.model.now().date();
        return Reply::json(
            200,
            &format!("No electricity readings found for: {}", iso_date(day)),
        );
    };
    let [e1, e1r, e2, e2r] = totals.energy;
    let gas = totals.gas.unwrap_or(0);
    let costs = DayCosts::new(totals.energy, gas);
    let kwh = |wh: u64| wh as f64 / 1_000.0;
    let euro = |cents: i64| cents as f64 / 100.0;
    let price = |micro: i64| micro as f64 / 1_000_000.0;
    let body = Obj::new()
        .put("day", iso_date(totals.day))
        .put("electricity1", kwh(e1))
        .put("electricity2", kwh(e2))
        .put("electricity1_returned", kwh(e1r))
        .put("electricity2_returned", kwh(e2r))
        .put("electricity_merged", kwh(e1.saturating_add(e2)))
        .put("electricity_returned_merged", kwh(e1r.saturating_add(e2r)))
        .put("electricity1_cost", euro(costs.electricity1))
        .put("electricity2_cost", euro(costs.electricity2))
        .put("total_cost", euro(costs.total))
        .put("gas", kwh(gas))
        .put("gas_cost", euro(costs.gas))
        .put("fixed_cost", euro(costs.fixed))
        .put(
            "energy_supplier_price_electricity_delivered_1",
            price(PRICE_DELIVERED[0]),
        )
        .put(
            "energy_supplier_price_electricity_delivered_2",
            price(PRICE_DELIVERED[1]),
        )
        .put(
            "energy_supplier_price_electricity_returned_1",
            price(PRICE_RETURNED[0]),
        )
        .put(
            "energy_supplier_price_electricity_returned_2",
            price(PRICE_RETURNED[1]),
        )
        .put("energy_supplier_price_gas", price(PRICE_GAS))
        .put("energy_supplier_price_fixed_daily_cost", price(PRICE_FIXED));
    Reply::json(200, &body)
}

/// A day's costs in cents, rounded per item before the total as DSMR-reader does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DayCosts {
    pub electricity1: i64,
    pub electricity2: i64,
    pub gas: i64,
    pub fixed: i64,
    pub total: i64,
}

/// A day's costs in cents from its consumption (`energy` in Wh as delivered_1, returned_1,
/// delivered_2, returned_2; `gas` in litres).
pub(crate) fn day_costs(energy: [u64; 4], gas: u64) -> DayCosts {
    DayCosts::new(energy, gas)
}

impl DayCosts {
    /// `energy` in Wh (delivered_1, returned_1, delivered_2, returned_2), `gas` in litres.
    fn new(energy: [u64; 4], gas: u64) -> Self {
        let [e1, e1r, e2, e2r] = energy.map(i128::from);
        // Returned energy is credited against the same tariff's delivered energy.
        let electricity1 =
            cents(e1 * i128::from(PRICE_DELIVERED[0]) - e1r * i128::from(PRICE_RETURNED[0]));
        let electricity2 =
            cents(e2 * i128::from(PRICE_DELIVERED[1]) - e2r * i128::from(PRICE_RETURNED[1]));
        let gas = cents(i128::from(gas) * i128::from(PRICE_GAS));
        // The fixed cost is a price per day, not per unit: scale micro-euros to nano-euros.
        let fixed = cents(i128::from(PRICE_FIXED) * 1_000);
        Self {
            electricity1,
            electricity2,
            gas,
            fixed,
            total: electricity1
                .saturating_add(electricity2)
                .saturating_add(gas)
                .saturating_add(fixed),
        }
    }
}

/// DSMR-reader's live cost: delivered at the current tariff's price minus returned at its
/// return price, in cents.
fn cost_per_hour(delivered_w: u32, returned_w: u32, tariff: u8) -> i64 {
    let i = usize::from(tariff.clamp(1, 2) - 1);
    cents(
        i128::from(delivered_w) * i128::from(PRICE_DELIVERED[i])
            - i128::from(returned_w) * i128::from(PRICE_RETURNED[i]),
    )
}

fn electricity_live(ctx: &Context<'_>) -> Obj {
    let reading = ctx.model.latest();
    let reported = ctx.meter_time(reading.timestamp);
    // DSMR-reader caps a meter clock that runs ahead at its own now(), which it prints in UTC.
    let timestamp = if reported > ctx.now {
        iso(ctx.now.to_offset(UtcOffset::UTC))
    } else {
        iso(reported)
    };
    let cost = cost_per_hour(
        reading.currently_delivered,
        reading.currently_returned,
        reading.tariff,
    );
    let tariff_name = if reading.tariff == 1 {
        "Daltarief"
    } else {
        "Normaaltarief"
    };
    Obj::new()
        .put("timestamp", timestamp)
        .put("currently_delivered", reading.currently_delivered)
        .put("currently_returned", reading.currently_returned)
        .put("cost_per_hour", euro_text(cost))
        .put("tariff_name", tariff_name)
}

fn gas_live(ctx: &Context<'_>) -> Obj {
    let Some(latest) = ctx.model.gas_consumption().back() else {
        return Obj::new();
    };
    let litres = latest.currently_delivered;
    Obj::new()
        .put("timestamp", ctx.ts(latest.read_at))
        .put("currently_delivered", litres as f64 / 1_000.0)
        .put(
            "cost_per_interval",
            euro_text(cents(i128::from(litres) * i128::from(PRICE_GAS))),
        )
}

fn supplier_prices(ctx: &Context<'_>) -> Obj {
    let year = ctx.model.now().year();
    let price = |micro: i64| format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
    let contract = Obj::new()
        .put("id", 1)
        .put("start", format!("{year:04}-01-01"))
        .put("end", format!("{year:04}-12-31"))
        .put("description", "Simulated contract")
        .put("electricity_delivered_1_price", price(PRICE_DELIVERED[0]))
        .put("electricity_delivered_2_price", price(PRICE_DELIVERED[1]))
        .put("gas_price", price(PRICE_GAS))
        .put("electricity_returned_1_price", price(PRICE_RETURNED[0]))
        .put("electricity_returned_2_price", price(PRICE_RETURNED[1]))
        .put("fixed_daily_cost", price(PRICE_FIXED));
    Obj::new()
        .put("count", 1)
        .put("next", Value::Null)
        .put("previous", Value::Null)
        .put_objects("results", vec![contract])
}

// ---------------------------------------------------------------------------------------------
// Lists: filters, ordering and limit/offset pagination as django-filter and DRF do them.

struct ListSpec {
    /// Exact, `__gte` and `__lte` filter parameters on the list's timestamp.
    filters: [&'static str; 3],
    /// Orderable fields; the first is the timestamp, the others are sort values of each row.
    orderings: &'static [&'static str],
}

/// A row's filter timestamp and its other sort values, in `ListSpec::orderings[1..]` order.
type Row<const N: usize> = (OffsetDateTime, [i128; N]);

fn list<const N: usize>(
    ctx: &Context<'_>,
    req: &Request<'_>,
    query: &Query,
    spec: &ListSpec,
    rows: Vec<Row<N>>,
    unfiltered_count: Option<usize>,
    render: impl Fn(usize) -> Obj,
) -> Reply {
    let bounds = match Bounds::parse(query, spec.filters, ctx.zone) {
        Ok(bounds) => bounds,
        Err(errors) => return Reply::json(400, &errors),
    };
    let mut selected: Vec<usize> = (0..rows.len())
        .filter(|&i| bounds.admits(rows[i].0))
        .collect();
    if let Some((field, descending)) = ordering(query, spec.orderings) {
        // Rows arrive oldest first, so a stable sort keeps ties in time order.
        selected.sort_by_key(|&i| {
            if field == 0 {
                rows[i].0.unix_timestamp_nanos()
            } else {
                rows[i].1[field - 1]
            }
        });
        if descending {
            selected.reverse();
        }
    }
    let count = match unfiltered_count {
        Some(total) if bounds.is_empty() => total.max(selected.len()),
        _ => selected.len(),
    };
    let page = Page::from_query(query);
    let results: Vec<Obj> = selected
        .iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|&i| render(i))
        .collect();
    page_reply(ctx, req, query, &page, count, results)
}

/// A DRF page: count, absolute links and results.
fn page_reply(
    ctx: &Context<'_>,
    req: &Request<'_>,
    query: &Query,
    page: &Page,
    count: usize,
    results: Vec<Obj>,
) -> Reply {
    let links = Links {
        base: format!("http://{}{}", ctx.host, req.path),
        query,
    };
    let body = Obj::new()
        .put("count", count)
        .put("next", links.next(page, count))
        .put("previous", links.previous(page))
        .put_objects("results", results);
    Reply::json(200, &body)
}

/// DRF's OrderingFilter: the first valid term wins; invalid terms are silently ignored, and
/// without a valid term the default (oldest first) applies.
fn ordering(query: &Query, fields: &[&str]) -> Option<(usize, bool)> {
    let terms = query.get("ordering")?;
    terms.split(',').map(str::trim).find_map(|term| {
        let (name, descending) = match term.strip_prefix('-') {
            Some(name) => (name, true),
            None => (term, false),
        };
        fields
            .iter()
            .position(|f| *f == name)
            .map(|i| (i, descending))
    })
}

#[derive(Debug, Default)]
struct Bounds {
    exact: Option<OffsetDateTime>,
    gte: Option<OffsetDateTime>,
    lte: Option<OffsetDateTime>,
}

impl Bounds {
    fn parse(query: &Query, names: [&'static str; 3], zone: &TimeZone) -> Result<Self, Obj> {
        let mut errors = Obj::new();
        let mut parsed = [None; 3];
        for (slot, name) in parsed.iter_mut().zip(names) {
            // django-filter skips a parameter that is present but empty.
            let Some(value) = query.get(name).filter(|v| !v.is_empty()) else {
                continue;
            };
            match parse_filter_parts(value) {
                Some((at, Some(offset))) => *slot = Some(at.assume_offset(offset)),
                Some((naive, None)) => match zone.place(naive) {
                    Ok(t) => *slot = Some(t),
                    Err(Unplaceable::Ambiguous | Unplaceable::Missing) => {
                        // Django's `from_current_timezone`, word for word.
                        let message = format!(
                            "{} couldn\u{2019}t be interpreted in time zone {}; it may be ambiguous or it may not exist.",
                            python_str(naive),
                            zone.name()
                        );
                        errors = errors.put(name, vec![message]);
                    }
                },
                None => errors = errors.put(name, vec!["Enter a valid date/time."]),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let [exact, gte, lte] = parsed;
        Ok(Self { exact, gte, lte })
    }

    fn is_empty(&self) -> bool {
        self.exact.is_none() && self.gte.is_none() && self.lte.is_none()
    }

    fn admits(&self, t: OffsetDateTime) -> bool {
        self.exact.is_none_or(|e| t == e)
            && self.gte.is_none_or(|g| t >= g)
            && self.lte.is_none_or(|l| t <= l)
    }
}

/// A naive datetime as Python's `str()` prints it: microseconds only when non-zero.
fn python_str(t: PrimitiveDateTime) -> String {
    let mut out = format!(
        "{} {:02}:{:02}:{:02}",
        iso_date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.microsecond() != 0 {
        out.push_str(&format!(".{:06}", t.microsecond()));
    }
    out
}

/// A filter value read with `local` as the server's fixed offset (the unit tests' view).
#[cfg(test)]
pub(crate) fn parse_filter_datetime(value: &str, local: UtcOffset) -> Option<OffsetDateTime> {
    parse_filter_parts(value).map(|(t, offset)| t.assume_offset(offset.unwrap_or(local)))
}

/// Parses a filter value the way Django's `DateTimeField` does: `parse_datetime` (ISO 8601
/// with `T` or a space, optional seconds, fraction and `Z`/`±HH[:MM]`), then the
/// `YYYY-MM-DD` input format. Values without an offset come back without one: the server's
/// time zone places them (or refuses to).
pub(crate) fn parse_filter_parts(value: &str) -> Option<(PrimitiveDateTime, Option<UtcOffset>)> {
    let mut c = Cursor::new(value.trim());
    let year = c.digits(4, 4)?;
    c.eat(b'-').then_some(())?;
    let month = c.digits(1, 2)?;
    c.eat(b'-').then_some(())?;
    let day = c.digits(1, 2)?;
    let date = Date::from_calendar_date(
        i32::try_from(year).ok()?,
        Month::try_from(u8::try_from(month).ok()?).ok()?,
        u8::try_from(day).ok()?,
    )
    .ok()?;
    if c.done() {
        return Some((date.midnight(), None));
    }
    if !(c.eat(b'T') || c.eat(b' ')) {
        return None;
    }
    let hour = c.digits(1, 2)?;
    c.eat(b':').then_some(())?;
    let minute = c.digits(1, 2)?;
    let (mut second, mut micro) = (0, 0);
    if c.eat(b':') {
        second = c.digits(1, 2)?;
        if c.eat(b'.') || c.eat(b',') {
            let (digits, len) = c.digits_counted(1, 6)?;
            micro = digits * 10_u32.pow(6 - len);
            let _ = c.digits(0, 6);
        }
    }
    c.skip_whitespace();
    let offset = c.offset()?;
    if !c.done() {
        return None;
    }
    let time = Time::from_hms_micro(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        micro,
    )
    .ok()?;
    Some((date.with_time(time), offset))
}

/// A byte cursor for the small grammar of Django's datetime regex.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn digits(&mut self, min: u32, max: u32) -> Option<u32> {
        self.digits_counted(min, max).map(|(value, _)| value)
    }

    fn digits_counted(&mut self, min: u32, max: u32) -> Option<(u32, u32)> {
        let (mut value, mut len) = (0u32, 0u32);
        while len < max {
            let Some(d) = self.peek().filter(u8::is_ascii_digit) else {
                break;
            };
            value = value * 10 + u32::from(d - b'0');
            len += 1;
            self.at += 1;
        }
        (len >= min).then_some((value, len))
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    /// `Z` or `±HH[[:]MM]`; `Some(None)` when there is no offset, `None` when it is malformed.
    fn offset(&mut self) -> Option<Option<UtcOffset>> {
        if self.eat(b'Z') {
            return Some(Some(UtcOffset::UTC));
        }
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Some(None),
        };
        self.at += 1;
        let hours = i8::try_from(self.digits(2, 2)?).ok()?;
        let before_minutes = self.at;
        let colon = self.eat(b':');
        let minutes = match self.digits(2, 2) {
            Some(m) => i8::try_from(m).ok()?,
            None if colon => return None,
            None => {
                self.at = before_minutes;
                0
            }
        };
        UtcOffset::from_hms(sign * hours, sign * minutes, 0)
            .ok()
            .map(Some)
    }
}

/// limit/offset as DRF's `LimitOffsetPagination` reads them: anything but a positive limit
/// falls back to the page size, anything but a non-negative offset to 0.
#[derive(Debug, PartialEq, Eq)]
struct Page {
    limit: usize,
    offset: usize,
}

impl Page {
    fn from_query(query: &Query) -> Self {
        let limit = query
            .get("limit")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&l| l > 0)
            .unwrap_or(DEFAULT_LIMIT);
        let offset = query
            .get("offset")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        Self { limit, offset }
    }
}

/// Absolute `next`/`previous` links: DRF re-encodes the request's query with `limit` and
/// `offset` replaced, keys sorted.
struct Links<'a> {
    base: String,
    query: &'a Query,
}

impl Links<'_> {
    fn next(&self, page: &Page, count: usize) -> Option<String> {
        let next = page.offset.saturating_add(page.limit);
        (next < count).then(|| self.with(page.limit, Some(next)))
    }

    fn previous(&self, page: &Page) -> Option<String> {
        if page.offset == 0 {
            return None;
        }
        let previous = page.offset.checked_sub(page.limit).filter(|&o| o > 0);
        Some(self.with(page.limit, previous))
    }

    fn with(&self, limit: usize, offset: Option<usize>) -> String {
        let mut keys: Vec<&str> = Vec::new();
        for (key, _) in &self.query.pairs {
            if !keys.contains(&key.as_str()) && key != "limit" && key != "offset" {
                keys.push(key);
            }
        }
        let limit = limit.to_string();
        let offset = offset.map(|o| o.to_string());
        let mut pairs: Vec<(&str, &str)> = vec![("limit", &limit)];
        if let Some(offset) = &offset {
            pairs.push(("offset", offset));
        }
        for key in keys {
            pairs.extend(
                self.query
                    .pairs
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        pairs.sort_by_key(|(key, _)| *key);
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        format!("{}?{encoded}", self.base)
    }
}

/// Decoded query pairs in request order; like Django's `QueryDict`, the last value wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .take(MAX_QUERY_PAIRS)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// JSON helpers

/// A JSON object that keeps insertion order (serde_json's map sorts keys without the
/// `preserve_order` feature, and DSMR-reader's field order is part of what we mimic).
#[derive(Debug, Default)]
pub(crate) struct Obj(Vec<(&'static str, Field)>);

#[derive(Debug)]
enum Field {
    Value(Value),
    Objects(Vec<Obj>),
}

impl Obj {
    fn new() -> Self {
        Self::default()
    }

    fn put(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.0.push((key, Field::Value(value.into())));
        self
    }

    fn put_objects(mut self, key: &'static str, objects: Vec<Obj>) -> Self {
        self.0.push((key, Field::Objects(objects)));
        self
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `key` served as `value` instead.
    fn replace(mut self, key: &str, value: Value) -> Self {
        for (k, field) in &mut self.0 {
            if *k == key {
                *field = Field::Value(value.clone());
            }
        }
        self
    }

    /// Forces fields to test values: a JSON number where the field is an integer (if the
    /// text is one), a decimal string elsewhere, `null` for `None`.
    fn with_overrides(mut self, overrides: &HashMap<String, Option<String>>) -> Self {
        if overrides.is_empty() {
            return self;
        }
        for (key, field) in &mut self.0 {
            let Some(forced) = overrides.get(*key) else {
                continue;
            };
            let value = match forced {
                None => Value::Null,
                Some(text) if is_integer_field(key) => text
                    .trim()
                    .parse::<serde_json::Number>()
                    .map_or_else(|_| Value::from(text.as_str()), Value::Number),
                Some(text) => Value::from(text.as_str()),
            };
            *field = Field::Value(value);
        }
        self
    }
}

impl Serialize for Obj {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, field) in &self.0 {
            match field {
                Field::Value(value) => map.serialize_entry(key, value)?,
                Field::Objects(objects) => map.serialize_entry(key, objects)?,
            }
        }
        map.end()
    }
}

fn is_integer_field(key: &str) -> bool {
    key == "id"
        || key.starts_with("phase_power_current_")
        || key.ends_with("_count")
        || key.contains("_count_")
        || key == "electricity_tariff"
        || key == "rejected_telegrams"
}

/// `1234567` → `"1234.567"`: kWh from Wh, kW from W, m³ from litres.
fn thousandths(value: u64) -> String {
    format!("{}.{:03}", value / 1_000, value % 1_000)
}

/// Rounds nano-euros (Wh × µ€/kWh) to cents, half away from zero like `ROUND_HALF_UP`.
fn cents(nano_euro: i128) -> i64 {
    const NANO_PER_CENT: i128 = 10_000_000;
    let rounded = (nano_euro.abs() + NANO_PER_CENT / 2) / NANO_PER_CENT;
    let signed = if nano_euro < 0 { -rounded } else { rounded };
    i64::try_from(signed).unwrap_or(if signed < 0 { i64::MIN } else { i64::MAX })
}

/// Django's `number_format` of a two-decimal amount, as in `cost_per_hour`.
fn euro_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn iso_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Python's `isoformat()` as DRF prints it: microseconds only when non-zero, `Z` for UTC.
pub(crate) fn iso(t: OffsetDateTime) -> String {
    let mut out = format!(
        "{}T{:02}:{:02}:{:02}",
        iso_date(t.date()),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.microsecond() != 0 {
        out.push_str(&format!(".{:06}", t.microsecond()));
    }
    let offset = t.offset();
    if offset.is_utc() {
        out.push('Z');
    } else {
        let sign = if offset.is_negative() { '-' } else { '+' };
        out.push_str(&format!(
            "{sign}{:02}:{:02}",
            offset.whole_hours().abs(),
            offset.minutes_past_hour().abs()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use time::macros::{datetime, offset};

    use super::super::{READING_FIELDS, SimOptions};
    use super::*;

    const KEY: &str = "test-key";

    struct Fixture {
        model: MeterModel,
        overrides: HashMap<String, Option<String>>,
        shift: Duration,
        zone: TimeZone,
        archive: Option<Archive>,
    }

    impl Fixture {
        fn new(opts: SimOptions) -> Self {
            let mut model = MeterModel::new(&opts);
            model.advance_to(opts.start + Duration::seconds(20 * 60));
            Self {
                zone: opts
                    .zone
                    .clone()
                    .unwrap_or(TimeZone::Fixed(opts.start.offset())),
                model,
                overrides: HashMap::new(),
                shift: Duration::ZERO,
                archive: None,
            }
        }

        fn default() -> Self {
            Self::new(SimOptions {
                start: datetime!(2026-11-26 14:02:14 +1),
                ..SimOptions::default()
            })
        }

        fn get(&self, path_and_query: &str) -> Reply {
            self.request("GET", path_and_query, Some(&format!("Token {KEY}")), None)
        }

        fn request(
            &self,
            method: &str,
            path_and_query: &str,
            authorization: Option<&str>,
            x_authkey: Option<&str>,
        ) -> Reply {
            let (path, query) = match path_and_query.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (path_and_query, None),
            };
            let ctx = Context {
                model: &self.model,
                api_key: KEY,
                version: "5.11.0",
                ids: MeterIds {
                    electricity: "E1",
                    gas: "G1",
                },
                register_overrides: &self.overrides,
                shift: self.shift,
                now: self.model.now(),
                host: "127.0.0.1:8000",
                zone: &self.zone,
                archive: self.archive.as_ref(),
            };
            let req = Request {
                method,
                path,
                query,
                authorization,
                x_authkey,
            };
            respond(&ctx, &req)
        }
    }

    fn json(reply: &Reply) -> Value {
        serde_json::from_str(&reply.body).expect("JSON body")
    }

    fn keys(body: &str) -> Vec<String> {
        // Field order matters, and serde_json's Value would sort it away.
        let object = body.trim_start_matches('{');
        object
            .split("\":")
            .filter_map(|part| part.rsplit('"').next())
            .filter(|k| READING_FIELDS.contains(k))
            .map(str::to_owned)
            .collect()
    }

    /// Top-level keys and the first result's keys, sorted.
    fn shape(v: &Value) -> Vec<String> {
        let mut keys: Vec<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        keys.extend(
            v["results"][0]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| format!("results.{k}")),
        );
        keys.sort();
        keys
    }

    fn with_archive(opts: super::super::HistoryOptions) -> Fixture {
        let mut f = Fixture::default();
        f.archive = Some(Archive::new(opts));
        f
    }

    #[test]
    fn statistics_have_the_fixture_shape_and_page_like_drf() {
        let f = with_archive(super::super::HistoryOptions {
            first_day: time::macros::date!(2026 - 10 - 24),
            days: 4,
            ..Default::default()
        });
        for (path, fixture) in [
            (
                "/api/v2/statistics/hour?ordering=-hour_start&limit=1",
                include_str!("../../../tests/fixtures/v2_statistics_hour_latest.json"),
            ),
            (
                "/api/v2/statistics/day?ordering=-day&limit=1",
                include_str!("../../../tests/fixtures/v2_statistics_day_latest.json"),
            ),
        ] {
            let reply = f.get(path);
            assert_eq!(reply.status, 200);
            let theirs: Value = serde_json::from_str(fixture).expect("fixture");
            assert_eq!(shape(&json(&reply)), shape(&theirs), "{path}");
            assert!(
                json(&reply)["next"]
                    .as_str()
                    .is_some_and(|n| n.contains("limit=1&offset=1"))
            );
        }
        let hours = json(&f.get("/api/v2/statistics/hour?ordering=hour_start&limit=30&offset=24"));
        assert_eq!(hours["count"], 4 * 24 + 1, "the autumn day has 25 hours");
        assert_eq!(
            hours["results"][0]["hour_start"],
            "2026-10-25T00:00:00+02:00"
        );
        assert_eq!(
            hours["results"][2]["hour_start"],
            "2026-10-25T02:00:00+02:00"
        );
        assert_eq!(
            hours["results"][3]["hour_start"],
            "2026-10-25T02:00:00+01:00"
        );
        assert!(
            hours["results"][0]["electricity1"]
                .as_str()
                .is_some_and(|v| v.contains('.'))
        );
        let filtered = json(&f.get(
            "/api/v2/statistics/hour?hour_start__gte=2026-10-27T00:00:00%2B01:00&ordering=hour_start",
        ));
        assert_eq!(filtered["count"], 24);
        let days = json(&f.get("/api/v2/statistics/day?day__gte=2026-10-26&ordering=day"));
        assert_eq!(days["count"], 2);
        assert_eq!(days["results"][0]["day"], "2026-10-26");
        assert_eq!(
            days["results"][0]["electricity_reading_timestamp"],
            "2026-10-26T00:00:00+01:00"
        );
        let empty = json(&Fixture::default().get("/api/v2/statistics/hour"));
        assert_eq!(empty["count"], 0);
    }

    /// Today's hours, not archived yet, are in the readings table: the first reading at or after
    /// an hour boundary, asked for as a client should (filtered both ways, ordered, one row).
    #[test]
    fn the_archive_s_hours_are_in_the_readings_table() {
        let f = with_archive(super::super::HistoryOptions {
            first_day: time::macros::date!(2026 - 11 - 20),
            now: super::super::ArchiveNow::At(datetime!(2026-11-26 13:30 +1)),
            gaps: vec![(datetime!(2026-11-26 10:00 UTC), 1)],
            ..Default::default()
        });
        let archive = f.archive.as_ref().expect("archive");
        assert!(
            archive
                .hour_rows()
                .iter()
                .all(|r| r.hour_start < datetime!(2026-11-26 00:00 +1))
        );
        let first_at = |from: &str, to: &str| {
            json(&f.get(&format!(
                "/api/v2/datalogger/dsmrreading?timestamp__gte={from}&timestamp__lte={to}&ordering=timestamp&limit=1"
            )))
        };
        let page = first_at("2026-11-26T10:00:00%2B01:00", "2026-11-26T10:59:59%2B01:00");
        assert_eq!(page["count"], 360);
        let reading = &page["results"][0];
        assert_eq!(reading["timestamp"], "2026-11-26T10:00:00+01:00");
        let index = archive.reading_index(datetime!(2026-11-26 10:00 +1));
        let expected = archive.reading(index).expect("reading");
        assert_eq!(
            reading["electricity_delivered_2"],
            thousandths(expected.registers[1])
        );
        assert_eq!(
            reading["extra_device_delivered"],
            thousandths(expected.registers[4])
        );
        assert_eq!(
            reading["extra_device_timestamp"],
            "2026-11-26T10:00:00+01:00"
        );
        let gap = first_at("2026-11-26T10:00:00Z", "2026-11-26T10:59:59Z");
        assert_eq!(gap["count"], 0, "no readings in the gap");
        let newest = json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"));
        assert_eq!(
            newest["results"][0]["id"], 1_201,
            "the meter's readings come last"
        );
        let oldest = json(&f.get("/api/v2/datalogger/dsmrreading?limit=2&offset=1"));
        assert_eq!(
            oldest["results"][0]["timestamp"],
            "2026-11-20T00:00:10+01:00"
        );
        assert_eq!(
            oldest["count"],
            u64::try_from(archive.reading_count()).expect("count") + 1_201
        );
        let exact =
            json(&f.get("/api/v2/datalogger/dsmrreading?timestamp=2026-11-26T12:00:10%2B01:00"));
        assert_eq!(exact["count"], 1);
    }

    #[test]
    fn latest_reading_has_the_fixture_shape() {
        let f = Fixture::default();
        let reply = f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "application/json");
        assert_eq!(reply.allow, Some("GET, POST, HEAD, OPTIONS"));
        let body = json(&reply);
        assert_eq!(body["count"], 1_201);
        assert_eq!(
            body["next"],
            "http://127.0.0.1:8000/api/v2/datalogger/dsmrreading?limit=1&offset=1&ordering=-timestamp"
        );
        assert_eq!(body["previous"], Value::Null);
        let reading = &body["results"][0];
        assert_eq!(reading["id"], 1_201);
        assert_eq!(reading["timestamp"], "2026-11-26T14:22:14+01:00");
        assert_eq!(
            reading["extra_device_timestamp"],
            "2026-11-26T14:20:00+01:00"
        );
        assert!(reading["phase_power_current_l1"].is_u64());
        let voltage = reading["phase_voltage_l2"]
            .as_str()
            .expect("voltage string");
        assert_eq!(voltage.split('.').nth(1).map(str::len), Some(1));
        let delivered = reading["electricity_delivered_1"]
            .as_str()
            .expect("register string");
        assert_eq!(delivered.split('.').nth(1).map(str::len), Some(3));
        let first_result = &reply.body[reply.body.find("\"results\"").expect("results")..];
        assert_eq!(keys(first_result)[..22], READING_FIELDS.map(str::to_owned));
    }

    #[test]
    fn ordering_limit_and_offset_work_like_drf() {
        let f = Fixture::default();
        let newest =
            json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=3&offset=1"));
        let ids: Vec<u64> = newest["results"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|r| r["id"].as_u64())
            .collect();
        assert_eq!(ids, [1_200, 1_199, 1_198]);
        assert_eq!(
            newest["previous"],
            "http://127.0.0.1:8000/api/v2/datalogger/dsmrreading?limit=3&ordering=-timestamp"
        );
        assert_eq!(
            newest["next"],
            "http://127.0.0.1:8000/api/v2/datalogger/dsmrreading?limit=3&offset=4&ordering=-timestamp"
        );

        let ignored = json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-nonexistent&limit=1"));
        let oldest_kept = f.model.history().front().expect("history").id;
        assert_eq!(ignored["results"][0]["id"], oldest_kept);
        let oldest = json(&f.get("/api/v2/datalogger/dsmrreading?ordering=timestamp&limit=1"));
        assert_eq!(oldest["results"][0]["id"], oldest_kept);

        let default_page = json(&f.get("/api/v2/datalogger/dsmrreading?limit=0"));
        assert_eq!(default_page["results"].as_array().map(Vec::len), Some(25));
    }

    #[test]
    fn timestamp_filters_accept_local_and_iso_forms() {
        let f = Fixture::default();
        let local = json(&f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-11-26%2014:22:10&ordering=-timestamp"));
        assert_eq!(local["count"], 5);
        let iso = json(&f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-11-26T13:22:10Z&timestamp__lte=2026-11-26T14:22:11%2B01:00"));
        assert_eq!(iso["count"], 2);
        assert_eq!(iso["results"][0]["timestamp"], "2026-11-26T14:22:10+01:00");

        let future = f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-11-27%2000:00:00");
        assert_eq!(future.status, 200);
        assert_eq!(
            future.body,
            r#"{"count":0,"next":null,"previous":null,"results":[]}"#
        );

        let bad = f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=yesterday");
        assert_eq!(bad.status, 400);
        assert_eq!(
            bad.body,
            r#"{"timestamp__gte":["Enter a valid date/time."]}"#
        );
        // An unencoded '+' decodes to a space, which Django rejects too.
        let plus = f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-11-26T14:00:00+01:00");
        assert_eq!(plus.status, 400);
        let empty = f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=&limit=1");
        assert_eq!(json(&empty)["count"], 1_201);
    }

    /// DSMR-reader in Europe/Amsterdam around the autumn change: timestamps carry the offset
    /// of their instant, a naive filter time in the repeated hour is refused as Django refuses
    /// it, and the same time with its offset is taken.
    #[test]
    fn naive_filter_times_the_zone_cannot_place_are_refused() {
        let mut f = Fixture::new(SimOptions {
            start: datetime!(2026-10-25 00:45:00 UTC),
            zone: Some(TimeZone::europe_amsterdam()),
            ..SimOptions::default()
        });
        f.model.advance_to(datetime!(2026-10-25 01:05:00 UTC));
        let page = json(&f.get("/api/v2/datalogger/dsmrreading?ordering=timestamp&limit=1"));
        assert_eq!(page["results"][0]["timestamp"], "2026-10-25T02:50:01+02:00");
        let page = json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"));
        assert_eq!(page["results"][0]["timestamp"], "2026-10-25T02:05:00+01:00");

        let naive = f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-10-25%2002:30:00");
        assert_eq!(naive.status, 400);
        assert_eq!(
            naive.body,
            "{\"timestamp__gte\":[\"2026-10-25 02:30:00 couldn\u{2019}t be interpreted in time zone Europe/Amsterdam; it may be ambiguous or it may not exist.\"]}"
        );
        let aware = json(&f.get(
            "/api/v2/datalogger/dsmrreading?timestamp__gte=2026-10-25T02:00:00%2B01:00&ordering=-timestamp",
        ));
        assert_eq!(aware["count"], 301, "01:00:00 to 01:05:00 UTC");
        let utc =
            json(&f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-10-25T01:00:00Z"));
        assert_eq!(utc["count"], 301);

        let spring = Fixture::new(SimOptions {
            start: datetime!(2026-03-29 00:45:00 UTC),
            zone: Some(TimeZone::europe_amsterdam()),
            ..SimOptions::default()
        });
        let missing =
            spring.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-03-29%2002:15:00");
        assert_eq!(missing.status, 400);
        assert!(
            missing.body.contains("2026-03-29 02:15:00 couldn"),
            "{}",
            missing.body
        );
        let page = json(&spring.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"));
        assert_eq!(page["results"][0]["timestamp"], "2026-03-29T03:05:00+02:00");
    }

    #[test]
    fn shifted_timestamps_are_reported_and_filtered() {
        let mut f = Fixture::default();
        f.shift = Duration::hours(-2);
        let body = json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"));
        assert_eq!(body["results"][0]["timestamp"], "2026-11-26T12:22:14+01:00");
        let recent =
            json(&f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-11-26%2014:00:00"));
        assert_eq!(recent["count"], 0);

        f.shift = Duration::hours(1);
        let live = json(&f.get("/api/v2/consumption/electricity-live"));
        assert_eq!(
            live["timestamp"], "2026-11-26T13:22:14Z",
            "a clock ahead is capped at the server's now, in UTC"
        );
    }

    #[test]
    fn parses_datetimes_like_django() {
        let local = offset!(+1);
        let parse = |s: &str| parse_filter_datetime(s, local);
        let expected = datetime!(2026-11-26 14:02:14 +1);
        assert_eq!(parse("2026-11-26 14:02:14"), Some(expected));
        assert_eq!(parse(" 2026-11-26T14:02:14 "), Some(expected));
        assert_eq!(parse("2026-11-26T14:02:14+01:00"), Some(expected));
        assert_eq!(parse("2026-11-26T14:02:14+0100"), Some(expected));
        assert_eq!(parse("2026-11-26T13:02:14Z"), Some(expected));
        assert_eq!(parse("2026-11-26T08:02:14-05"), Some(expected));
        assert_eq!(
            parse("2026-11-26 14:02"),
            Some(datetime!(2026-11-26 14:02:00 +1))
        );
        assert_eq!(parse("2026-11-26"), Some(datetime!(2026-11-26 00:00:00 +1)));
        assert_eq!(
            parse("2026-1-6 4:2:1"),
            Some(datetime!(2026-01-06 04:02:01 +1))
        );
        assert_eq!(
            parse("2026-11-26T14:02:14.5"),
            Some(datetime!(2026-11-26 14:02:14.5 +1))
        );
        for bad in [
            "",
            " ",
            "yesterday",
            "2026-11-26 14:02:14 01:00",
            "2026-13-01 00:00:00",
            "2026-02-30",
            "2026-11-26 24:00:00",
            "2026-11-26T14",
            "2026-11-26T14:02:14+1",
            "2026-11-26T14:02:14+01:",
            "2026-11-26T14:02:14+99:00",
            "20261126",
            "2026-11-26T14:02:14Zjunk",
            "٢٠٢٦-11-26",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn query_and_paging_parameters_are_lenient() {
        let q = Query::parse(Some(
            "limit=5&limit=7&ordering=-timestamp,foo&x=%ZZ&&=&offset=-3",
        ));
        assert_eq!(q.get("limit"), Some("7"), "the last value wins");
        assert_eq!(
            Page::from_query(&q),
            Page {
                limit: 7,
                offset: 0
            }
        );
        assert_eq!(ordering(&q, &["timestamp"]), Some((0, true)));
        assert_eq!(
            ordering(
                &Query::parse(Some("ordering=foo,,timestamp")),
                &["timestamp"]
            ),
            Some((0, false))
        );
        assert_eq!(
            ordering(&Query::parse(Some("ordering=-")), &["timestamp"]),
            None
        );
        for limit in ["0", "-1", "abc", "99999999999999999999999"] {
            let page = Page::from_query(&Query::parse(Some(&format!("limit={limit}"))));
            assert_eq!(page.limit, DEFAULT_LIMIT, "{limit}");
        }
        let many = "a=1&".repeat(1_000);
        assert_eq!(Query::parse(Some(&many)).pairs.len(), MAX_QUERY_PAIRS);
        assert!(Query::parse(None).get("limit").is_none());
    }

    #[test]
    fn pagination_links_keep_other_parameters_sorted() {
        let q = Query::parse(Some(
            "timestamp__gte=2026-11-26%2014:00:00&ordering=-timestamp&limit=2&offset=4",
        ));
        let links = Links {
            base: "http://h:1/p".to_owned(),
            query: &q,
        };
        let page = Page::from_query(&q);
        assert_eq!(
            links.next(&page, 7).as_deref(),
            Some(
                "http://h:1/p?limit=2&offset=6&ordering=-timestamp&timestamp__gte=2026-11-26+14%3A00%3A00"
            )
        );
        assert_eq!(links.next(&page, 6), None);
        assert_eq!(
            links.previous(&page).as_deref(),
            Some(
                "http://h:1/p?limit=2&offset=2&ordering=-timestamp&timestamp__gte=2026-11-26+14%3A00%3A00"
            )
        );
    }

    #[test]
    fn auth_errors_methods_and_unknown_paths() {
        let f = Fixture::default();
        let path = "/api/v2/consumption/electricity-live";
        let ok = f.request("GET", path, None, Some(KEY));
        assert_eq!(ok.status, 200);
        for (auth, xkey) in [
            (None, None),
            (Some("Token wrong"), None),
            (Some(&*format!("Bearer {KEY}")), None),
            (Some(KEY), None),
            (None, Some("wrong")),
        ] {
            let reply = f.request("GET", path, auth, xkey);
            assert_eq!(reply.status, 403, "{auth:?} {xkey:?}");
            assert_eq!(reply.body, r#"{"detail":"Invalid auth key"}"#);
        }
        let post = f.request("POST", path, Some(&format!("Token {KEY}")), None);
        assert_eq!(post.status, 405);
        assert_eq!(post.body, r#"{"detail":"Method \"POST\" not allowed."}"#);
        assert_eq!(post.allow, Some("GET, HEAD, OPTIONS"));
        assert_eq!(f.request("POST", path, None, None).status, 403);

        for unknown in [
            "/api/v2/does-not-exist",
            "/api/v2/statistics/meter",
            "/",
            "/api/v2/datalogger/dsmrreading/",
        ] {
            let reply = f.request("GET", unknown, None, None);
            assert_eq!(reply.status, 404, "{unknown}");
            assert_eq!(reply.content_type, "text/html");
            assert_eq!(reply.body.len(), 179, "as long as Django's page");
        }
    }

    #[test]
    fn today_costs_match_the_fixture_arithmetic() {
        // v2_consumption_today.json: 5.052/1.011 kWh (tariff 1), 3.032/4.042 kWh (tariff 2), 1.513 m³.
        let costs = DayCosts::new([5_052, 1_011, 3_032, 4_042], 1_513);
        assert_eq!(
            costs,
            DayCosts {
                electricity1: 121,
                electricity2: 46,
                gas: 209,
                fixed: 95,
                total: 471,
            }
        );
        // v2_consumption_electricity-live.json: 404 W delivered, 208 W returned, tariff 1.
        assert_eq!(euro_text(cost_per_hour(404, 208, 1)), "0.09");
        assert_eq!(euro_text(cost_per_hour(0, 900, 2)), "-0.08");
        // v2_consumption_gas-live.json: 0.006 m³.
        assert_eq!(euro_text(cents(6 * i128::from(PRICE_GAS))), "0.01");
        assert_eq!(cents(-5_000_000), -1);
        assert_eq!(cents(4_999_999), 0);
    }

    #[test]
    fn today_and_live_endpoints() {
        let f = Fixture::default();
        let today = json(&f.get("/api/v2/consumption/today"));
        assert_eq!(today["day"], "2026-11-26");
        assert!(today["electricity1"].as_f64().is_some_and(|kwh| kwh > 0.0));
        assert_eq!(
            today["energy_supplier_price_electricity_delivered_1"],
            0.25731
        );
        assert_eq!(today["fixed_cost"], 0.95);
        let live = json(&f.get("/api/v2/consumption/electricity-live"));
        assert_eq!(live["timestamp"], "2026-11-26T14:22:14+01:00");
        assert!(live["currently_delivered"].is_u64());
        assert!(live["cost_per_hour"].is_string());
        assert_eq!(live["tariff_name"], "Normaaltarief");
        let gas = json(&f.get("/api/v2/consumption/gas-live"));
        assert_eq!(gas["timestamp"], "2026-11-26T14:20:00+01:00");
        assert!(gas["currently_delivered"].is_f64());
        let peaks = json(&f.get(
            "/api/v2/consumption/quarter-hour-peak-electricity?ordering=-read_at_start&limit=1",
        ));
        assert_eq!(peaks["count"], 1);
        assert_eq!(
            peaks["results"][0]["read_at_start"],
            "2026-11-26T14:02:14+01:00"
        );
        assert_eq!(
            peaks["results"][0]["read_at_end"],
            "2026-11-26T14:15:00+01:00"
        );
        assert_eq!(
            f.get("/api/v2/application/version").body,
            r#"{"version":"5.11.0"}"#
        );
        assert_eq!(
            f.get("/api/v2/application/monitoring").body,
            r#"{"problems":0,"details":[]}"#
        );
        let prices = json(&f.get("/api/v2/consumption/energy-supplier-prices"));
        assert_eq!(prices["results"][0]["gas_price"], "1.384120");
    }

    #[test]
    fn today_is_a_bare_string_in_the_first_minute() {
        let f = Fixture::new(SimOptions {
            start: datetime!(2026-11-26 23:40:30 +1),
            ..SimOptions::default()
        });
        let reply = f.get("/api/v2/consumption/today");
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            r#""No electricity readings found for: 2026-11-27""#
        );
    }

    #[test]
    fn single_phase_without_gas_nulls_the_missing_parts() {
        let f = Fixture::new(SimOptions {
            phases: 1,
            gas: false,
            solar: false,
            start: datetime!(2026-11-26 14:02:14 +1),
            ..SimOptions::default()
        });
        let reading =
            json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"))["results"]
                [0]
            .take();
        for field in [
            "phase_currently_delivered_l2",
            "phase_voltage_l3",
            "phase_power_current_l2",
            "extra_device_timestamp",
            "extra_device_delivered",
        ] {
            assert_eq!(reading[field], Value::Null, "{field}");
        }
        assert_eq!(reading["electricity_returned_1"], "0.000");
        assert_eq!(reading["electricity_currently_returned"], "0.000");
        let stats = json(&f.get("/api/v2/datalogger/meter-statistics"));
        assert!(stats["voltage_sag_count_l1"].is_u64());
        assert_eq!(stats["voltage_sag_count_l2"], Value::Null);
        assert_eq!(stats["voltage_swell_count_l3"], Value::Null);
        assert_eq!(f.get("/api/v2/consumption/gas-live").body, "{}");
        assert_eq!(json(&f.get("/api/v2/consumption/today"))["gas"], 0.0);
    }

    #[test]
    fn meter_statistics_carries_a_valid_telegram() {
        let f = Fixture::default();
        let stats = json(&f.get("/api/v2/datalogger/meter-statistics"));
        assert_eq!(stats["id"], 1);
        assert_eq!(stats["dsmr_version"], "50");
        assert_eq!(stats["power_failure_count"], 3);
        let telegram = stats["latest_telegram"].as_str().expect("telegram");
        assert!(telegram.contains("0-0:1.0.0(261126142214W)\r\n0-0:96.1.1(E1)\r\n"));
        let bang = telegram.rfind('!').expect("trailer");
        let crc = super::super::telegram::crc16_arc(&telegram.as_bytes()[..=bang]);
        assert_eq!(&telegram[bang + 1..], format!("{crc:04X}\n"));
    }

    #[test]
    fn register_overrides_keep_each_field_type() {
        let mut f = Fixture::default();
        f.overrides.insert(
            "electricity_delivered_1".to_owned(),
            Some("0.000".to_owned()),
        );
        f.overrides
            .insert("electricity_returned_2".to_owned(), None);
        f.overrides
            .insert("phase_power_current_l1".to_owned(), Some("250".to_owned()));
        f.overrides.insert(
            "power_failure_count".to_owned(),
            Some("not a number".to_owned()),
        );
        let reading =
            json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"))["results"]
                [0]
            .take();
        assert_eq!(reading["electricity_delivered_1"], "0.000");
        assert_eq!(reading["electricity_returned_2"], Value::Null);
        assert_eq!(reading["phase_power_current_l1"], 250);
        let stats = json(&f.get("/api/v2/datalogger/meter-statistics"));
        assert_eq!(stats["power_failure_count"], "not a number");
    }

    #[test]
    fn faults_replace_or_cut_the_answer() {
        let reply = fault_reply(&Fault::Status(500)).expect("reply");
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (500, r#"{"detail":"Internal Server Error"}"#)
        );
        assert_eq!(
            fault_reply(&Fault::Status(503)).map(|r| r.body),
            Some(r#"{"detail":"Service Unavailable"}"#.to_owned())
        );
        assert_eq!(fault_reply(&Fault::Status(42)).map(|r| r.status), Some(500));
        assert_eq!(
            fault_reply(&Fault::ApiDisabled).map(|r| r.body),
            Some(r#"{"detail":"API is disabled"}"#.to_owned())
        );
        assert!(
            fault_reply(&Fault::Garbage)
                .is_some_and(|r| serde_json::from_str::<Value>(&r.body).is_err())
        );
        assert!(fault_reply(&Fault::Html).is_some_and(|r| r.content_type.starts_with("text/html")));
        assert_eq!(fault_reply(&Fault::Hang), None);

        let f = Fixture::default();
        let full = f.get("/api/v2/application/version");
        let cut = truncate(full.clone());
        assert_eq!(cut.status, 200);
        assert_eq!(cut.body, full.body[..full.body.len() / 2]);
        assert!(serde_json::from_str::<Value>(&cut.body).is_err());
    }

    #[test]
    fn iso_timestamps_match_python() {
        assert_eq!(
            iso(datetime!(2026-11-26 14:02:14 +1)),
            "2026-11-26T14:02:14+01:00"
        );
        assert_eq!(
            iso(datetime!(2026-11-26 13:02:14.25 UTC)),
            "2026-11-26T13:02:14.250000Z"
        );
        assert_eq!(
            iso(datetime!(2026-11-26 08:02:14 -5:30)),
            "2026-11-26T08:02:14-05:30"
        );
    }
}
