//! The simulated API answered in-process: shapes against the captured fixtures, Django's
//! filters and DRF's paging through the routes, faults.

use time::macros::datetime;

use super::django::*;
use super::*;
use crate::{READING_FIELDS, SimOptions};

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

fn with_archive(opts: crate::HistoryOptions) -> Fixture {
    let mut f = Fixture::default();
    f.archive = Some(Archive::new(opts));
    f
}

#[test]
fn statistics_have_the_fixture_shape_and_page_like_drf() {
    let f = with_archive(crate::HistoryOptions {
        first_day: time::macros::date!(2026 - 10 - 24),
        days: 4,
        ..Default::default()
    });
    for (path, fixture) in [
        (
            "/api/v2/statistics/hour?ordering=-hour_start&limit=1",
            include_str!("../../../../tests/fixtures/v2_statistics_hour_latest.json"),
        ),
        (
            "/api/v2/statistics/day?ordering=-day&limit=1",
            include_str!("../../../../tests/fixtures/v2_statistics_day_latest.json"),
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
    let f = with_archive(crate::HistoryOptions {
        first_day: time::macros::date!(2026 - 11 - 20),
        now: crate::ArchiveNow::At(datetime!(2026-11-26 13:30 +1)),
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
    let local = json(&f.get(
        "/api/v2/datalogger/dsmrreading?timestamp__gte=2026-11-26%2014:22:10&ordering=-timestamp",
    ));
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
    assert_eq!(page["results"][0]["timestamp"], "2026-10-25T02:45:00+02:00");
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
    let utc = json(&f.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-10-25T01:00:00Z"));
    assert_eq!(utc["count"], 301);

    let spring = Fixture::new(SimOptions {
        start: datetime!(2026-03-29 00:45:00 UTC),
        zone: Some(TimeZone::europe_amsterdam()),
        ..SimOptions::default()
    });
    let missing = spring.get("/api/v2/datalogger/dsmrreading?timestamp__gte=2026-03-29%2002:15:00");
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
    let peaks = json(
        &f.get("/api/v2/consumption/quarter-hour-peak-electricity?ordering=-read_at_start&limit=1"),
    );
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
        json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"))["results"][0]
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
    let crc = crate::telegram::crc16_arc(&telegram.as_bytes()[..=bang]);
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
        json(&f.get("/api/v2/datalogger/dsmrreading?ordering=-timestamp&limit=1"))["results"][0]
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
