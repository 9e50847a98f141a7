//! The simulated REST API v2, endpoints: the JSON of each answer, from the meter model and the
//! archive, in DSMR-reader 5.11's shapes, field order and number formats.

use serde_json::Value;
use time::{Duration, OffsetDateTime, UtcOffset};

use super::django::*;
use super::{Context, Reply, Request};
use crate::history::{Archive, ArchiveReading, DayRow, HourRow};
use crate::meter::{GasReading, PhaseReading, Reading};
use crate::prices::*;
use crate::telegram;

/// The readings table: the archive's readings (one every `READING_EVERY` s of each simulated
/// hour) followed by the meter's recent ones, ordered by timestamp as the view always is, and
/// filtered, counted and paged without building the millions of rows of an archive.
pub(super) fn dsmr_readings(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
    const FILTERS: [&str; 3] = ["timestamp", "timestamp__gte", "timestamp__lte"];
    let query = &hostile_query(query, ctx.archive, "timestamp");
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

pub(super) fn quarter_hour_peaks(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
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

pub(super) fn gas_consumption(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
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

pub(super) fn hour_statistics(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
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

pub(super) fn day_statistics(ctx: &Context<'_>, req: &Request<'_>, query: &Query) -> Reply {
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

pub(super) fn meter_statistics(ctx: &Context<'_>) -> Obj {
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

pub(super) fn today(ctx: &Context<'_>) -> Reply {
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

pub(super) fn electricity_live(ctx: &Context<'_>) -> Obj {
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

pub(super) fn gas_live(ctx: &Context<'_>) -> Obj {
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

pub(super) fn supplier_prices(ctx: &Context<'_>) -> Obj {
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
