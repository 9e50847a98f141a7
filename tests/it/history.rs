//! The history import against a real Home Assistant Core, old (2025.4.4, `has_mean` metadata)
//! and new (2026.2.3, `mean_type` + `unit_class`), and the simulated DSMR-reader's archive.
//!
//! Each Core is installed once into a cache by `scripts/ha-core`, started once per test binary
//! (about 3 s), onboarded through its HTTP API and shared (`tests/support/ha_core.rs`); every
//! test imports under statistic ids of its own. Where a Core cannot be installed (no Python
//! 3.13), each test says so in one line and is skipped; under CI it fails. What is asserted is what Home Assistant holds afterwards: hourly rows, each
//! local day's change against DSMR-reader's day statistics, and the Energy dashboard's verdict.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dsmr_bridge::config::DsmrConfig;
use dsmr_bridge::history::ha::{HaClient, HaTarget};
use dsmr_bridge::history::{HistoryConfig, Importer, Summary};
use dsmr_sim::history::{Archive, DayRow};
use dsmr_sim::{HistoryOptions, Simulator};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::{date, datetime};

use super::ha_core::{self, Core};
use super::harness::{self, Bridge, Broker, SIM_KEY};

const VERSIONS: [&str; 2] = ["2025.4.4", "2026.2.3"];

/// The shared Core of `version`, or `None` on a machine that cannot install it (the test is
/// skipped, with one line saying why; under CI it fails).
fn core(version: &str) -> Option<&'static Core> {
    ha_core::shared(version)
}

fn target(port: u16, token: &str) -> HaTarget {
    HaTarget {
        url: url::Url::parse(&format!("ws://127.0.0.1:{port}/api/websocket")).expect("url"),
        token: SecretString::from(token),
        token_source: "homeassistant_token",
    }
}

impl Core {
    fn target(&self) -> HaTarget {
        target(self.port, &self.token)
    }

    async fn client(&self) -> HaClient {
        HaClient::connect(&self.target()).await.expect("connect")
    }
}

async fn sim_with(opts: HistoryOptions) -> Simulator {
    let sim = Simulator::start(harness::sim_options())
        .await
        .expect("simulator");
    sim.set_history(opts);
    sim
}

fn importer(core: &Core, sim: &Simulator, tag: &str) -> Importer {
    let dsmr = DsmrConfig {
        url: sim.url(),
        api_key: SecretString::from(SIM_KEY),
        ca_pem: None,
        poll_interval: Duration::from_secs(5),
    };
    let config = HistoryConfig {
        target: core.target(),
        id_tag: format!("{tag}_{}", core.version.replace('.', "_")),
    };
    Importer::new(config, &dsmr).expect("importer")
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("ms")
}

/// Each statistic's per-day change as Home Assistant computes it for the Energy dashboard
/// (days in Home Assistant's time zone, Europe/Amsterdam like the simulator), in thousandths.
async fn day_changes(
    ha: &mut HaClient,
    ids: &[String],
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Vec<BTreeMap<i64, i64>> {
    let result = ha
        .call(json!({
            "type": "recorder/statistics_during_period",
            "start_time": from.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "end_time": to.format(&time::format_description::well_known::Rfc3339).unwrap(),
            "statistic_ids": ids,
            "period": "day",
            "types": ["change"],
        }))
        .await
        .expect("statistics_during_period");
    ids.iter()
        .map(|id| {
            result[id.as_str()]
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            let change = r["change"].as_f64().unwrap_or(f64::NAN);
                            (
                                r["start"].as_i64().unwrap(),
                                (change * 1_000.0).round() as i64,
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

/// DSMR-reader's day row for each register, keyed like Home Assistant's day rows.
fn dsmr_days(archive: &Archive) -> Vec<BTreeMap<i64, i64>> {
    // Hour rows are electricity1, electricity2, returned 1, returned 2, gas; so are ours.
    (0..5)
        .map(|k| {
            archive
                .published_day_rows()
                .iter()
                .map(|d: &DayRow| (ms(d.start), i64::try_from(d.consumption[k]).unwrap()))
                .collect()
        })
        .collect()
}

/// Asserts that every local day's change of each energy sum equals DSMR-reader's day row, and
/// that Home Assistant holds exactly the archived hours.
async fn assert_matches_archive(core: &Core, importer: &Importer, sim: &Simulator) {
    let archive = sim.archive().expect("an archive");
    let ids: Vec<String> = importer.statistics()[..5]
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let first = archive.day_rows().first().expect("days").start;
    let end = archive.hours().last().expect("hours").0 + time::Duration::HOUR;
    let mut ha = core.client().await;
    ha.settle().await.expect("recorder settles");
    let changes = day_changes(&mut ha, &ids, first, end).await;
    let expected = dsmr_days(&archive);
    for (k, id) in ids.iter().enumerate() {
        for (start, want) in &expected[k] {
            assert_eq!(
                changes[k].get(start),
                Some(want),
                "{} {id}: day starting {start} ms",
                core.version
            );
        }
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let hours = ha
        .rows(&refs, first, Some(end), "hour")
        .await
        .expect("rows");
    let archived: Vec<i64> = archive
        .hour_rows()
        .iter()
        .map(|h| ms(h.hour_start))
        .collect();
    for (k, rows) in hours.iter().enumerate() {
        let starts: Vec<i64> = rows.iter().map(|r| ms(r.start)).collect();
        assert_eq!(
            starts, archived,
            "{} {}: one row per archived hour",
            core.version, ids[k]
        );
        assert!(
            rows.windows(2).all(|w| w[1].sum >= w[0].sum),
            "{}: sums never fall",
            ids[k]
        );
    }
}

/// Grid (two tariffs in, two out, with their costs) and gas in the Energy dashboard, as a user
/// picks them; `energy/validate` must find no issue with any of them.
async fn assert_energy_dashboard_accepts(core: &Core, importer: &Importer) {
    let s = importer.statistics();
    let mut ha = core.client().await;
    let grid = json!({
        "type": "grid",
        "flow_from": [
            {"stat_energy_from": s[0].id, "stat_cost": s[5].id, "entity_energy_price": null, "number_energy_price": null},
            {"stat_energy_from": s[1].id, "stat_cost": s[6].id, "entity_energy_price": null, "number_energy_price": null},
        ],
        "flow_to": [
            {"stat_energy_to": s[2].id, "stat_compensation": null, "entity_energy_price": null, "number_energy_price": null},
            {"stat_energy_to": s[3].id, "stat_compensation": null, "entity_energy_price": null, "number_energy_price": null},
        ],
        "cost_adjustment_day": 0.0,
    });
    let gas = json!({"type": "gas", "stat_energy_from": s[4].id, "stat_cost": s[7].id,
                     "entity_energy_price": null, "number_energy_price": null});
    ha.call(json!({"type": "energy/save_prefs", "energy_sources": [grid, gas], "device_consumption": []}))
        .await
        .expect("the Energy dashboard takes the statistics");
    let verdict = ha
        .call(json!({"type": "energy/validate"}))
        .await
        .expect("validate");
    let issues: Vec<&Value> = verdict["energy_sources"]
        .as_array()
        .expect("per source")
        .iter()
        .flat_map(|source| source.as_array().into_iter().flatten())
        .collect();
    assert!(
        issues.is_empty(),
        "{}: Energy dashboard issues: {verdict}",
        core.version
    );
}

async fn sync(importer: &mut Importer) -> Summary {
    importer.sync().await.expect("import")
}

/// Autumn's 25-hour day, a gap of five hours and a meter swap, imported from scratch: every day
/// adds exactly DSMR-reader's day total, the Energy dashboard takes the statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_import_across_autumn_dst_a_gap_and_a_meter_swap() {
    for version in VERSIONS {
        let Some(core) = core(version) else {
            return;
        };
        let sim = sim_with(HistoryOptions {
            first_day: date!(2025 - 10 - 20),
            days: 12,
            gaps: vec![(datetime!(2025-10-22 09:00 UTC), 5)],
            meter_swap: Some(datetime!(2025-10-28 13:00 UTC)),
            ..HistoryOptions::default()
        })
        .await;
        let mut importer = importer(core, &sim, "full");
        let summary = sync(&mut importer).await;
        assert!(summary.from_scratch);
        assert_eq!(summary.hours, 12 * 24 + 1 - 5, "{version}");
        assert_matches_archive(core, &importer, &sim).await;
        // The state is the meter reading: the new meter's registers restart low.
        let mut ha = core.client().await;
        let id = importer.statistics()[0].id.as_str();
        let rows = ha
            .rows(
                &[id],
                datetime!(2025-10-28 00:00 UTC),
                Some(datetime!(2025-10-29 00:00 UTC)),
                "hour",
            )
            .await
            .expect("rows");
        let states: Vec<f64> = rows[0].iter().filter_map(|r| r.state).collect();
        assert!(
            states.first().is_some_and(|s| *s > 1_000.0),
            "{version}: old meter {states:?}"
        );
        assert!(
            states.last().is_some_and(|s| *s < 100.0),
            "{version}: new meter {states:?}"
        );
        assert_energy_dashboard_accepts(core, &importer).await;
        // The metadata form fits the Core: no "called without specifying mean_type / unit_class"
        // deprecation warning from the new one (the old one rejects those keys outright).
        let log = core.log();
        assert!(!log.is_empty(), "{version}: Core's log");
        assert!(
            !log.contains("without specifying"),
            "{version}: {}",
            log.lines()
                .filter(|l| l.contains("without specifying"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Spring's 23-hour day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_dst_day_has_23_rows_and_its_day_total() {
    for version in VERSIONS {
        let Some(core) = core(version) else {
            return;
        };
        let sim = sim_with(HistoryOptions {
            first_day: date!(2025 - 03 - 28),
            days: 4,
            ..HistoryOptions::default()
        })
        .await;
        let mut importer = importer(core, &sim, "spring");
        assert_eq!(sync(&mut importer).await.hours, 4 * 24 - 1);
        assert_matches_archive(core, &importer, &sim).await;
    }
}

/// An import stopped midway (the bridge killed) continues where Home Assistant's statistics
/// end; importing again changes nothing; new hours are appended with the sum continuing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_reimport_and_new_hours() {
    for version in VERSIONS {
        let Some(core) = core(version) else {
            return;
        };
        let sim = sim_with(HistoryOptions {
            first_day: date!(2025 - 01 - 01),
            days: 70,
            ..HistoryOptions::default()
        })
        .await;
        let mut first = importer(core, &sim, "resume");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut stop = Some(stop);
        first.on_chunk = Some(Box::new(move |_| {
            if let Some(stop) = stop.take() {
                let _ = stop.send(());
            }
        }));
        tokio::select! {
            _ = first.sync() => panic!("{version}: the import should have been stopped midway"),
            _ = stopped => {}
        }
        drop(first);

        let mut second = importer(core, &sim, "resume");
        let resumed = sync(&mut second).await;
        assert!(!resumed.from_scratch, "{version}: resumed, not restarted");
        assert!(resumed.hours < 70 * 24 - 24 * 20, "{version}: {resumed:?}");
        assert_matches_archive(core, &second, &sim).await;

        let owned: Vec<String> = second.statistics().iter().map(|s| s.id.clone()).collect();
        let ids: Vec<&str> = owned.iter().map(String::as_str).collect();
        let from = datetime!(2024-12-31 00:00 UTC);
        let before = core
            .client()
            .await
            .rows(&ids, from, None, "hour")
            .await
            .expect("rows");
        let again = sync(&mut second).await;
        assert!(!again.from_scratch);
        let mut ha = core.client().await;
        ha.settle().await.expect("settle");
        let after = ha.rows(&ids, from, None, "hour").await.expect("rows");
        assert_eq!(before, after, "{version}: re-importing changes nothing");

        sim.extend_history(5);
        let appended = sync(&mut second).await;
        assert_eq!(
            appended.up_to,
            Some(sim.archive().unwrap().hours().last().unwrap().0)
        );
        ha.settle().await.expect("settle");
        let grown = ha.rows(&ids[..1], from, None, "hour").await.expect("rows");
        assert_eq!(
            grown[0].len(),
            after[0].len() + 5,
            "{version}: five new hours"
        );
        let last_hours: f64 = sim.archive().unwrap().hours()[70 * 24..]
            .iter()
            .map(|(_, v)| v[0] as f64 / 1_000.0)
            .sum();
        let old_end = after[0].last().unwrap().sum.unwrap();
        let new_end = grown[0].last().unwrap().sum.unwrap();
        assert!(
            ((new_end - old_end) - last_hours).abs() < 0.0005,
            "{version}: sum continues"
        );
    }
}

/// DSMR-reader goes away in the middle of an import (it restarts on every update): the run
/// fails, and the next one continues to the same result as an uninterrupted import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dsmr_reader_outage_midway_only_delays_the_import() {
    let Some(core) = core(VERSIONS[1]) else {
        return;
    };
    let sim = sim_with(HistoryOptions {
        first_day: date!(2025 - 02 - 01),
        days: 40,
        ..HistoryOptions::default()
    })
    .await;
    let mut importer = importer(core, &sim, "outage");
    let faulty = sim.clone();
    importer.on_chunk = Some(Box::new(move |_| {
        faulty.set_fault(Some(dsmr_sim::Fault::Status(502)));
    }));
    let error = importer.sync().await.expect_err("DSMR-reader went away");
    assert!(error.to_string().contains("502"), "{error}");
    importer.on_chunk = None;
    sim.set_fault(None);
    let resumed = sync(&mut importer).await;
    assert!(!resumed.from_scratch);
    assert_matches_archive(core, &importer, &sim).await;
}

/// Just after midnight DSMR-reader has archived the new day's first hours but not yet computed
/// yesterday's day row: the hourly update re-books from a day it has a row for, so a gap's energy
/// booked by the first import stays where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_before_yesterdays_day_row_keep_earlier_days_intact() {
    let Some(core) = core(VERSIONS[1]) else {
        return;
    };
    let sim = sim_with(HistoryOptions {
        first_day: date!(2025 - 09 - 01),
        days: 6,
        gaps: vec![(datetime!(2025-09-05 08:00 UTC), 3)],
        day_row_delay: 6,
        ..HistoryOptions::default()
    })
    .await;
    // At midnight the sixth day's row is not out yet; six hours later it is. The hour-by-hour
    // updates in between step back two days to the middle of the fifth day, the one with a gap.
    let mut importer = importer(core, &sim, "lag");
    sync(&mut importer).await;
    for _ in 0..7 {
        sim.extend_history(1);
        sync(&mut importer).await;
    }
    assert_matches_archive(core, &importer, &sim).await;
}

/// Home Assistant is not there when the bridge starts: the import waits, retries, and runs
/// once Home Assistant answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_down_at_start_delays_the_import() {
    let Some(core) = core(VERSIONS[0]) else {
        return;
    };
    let sim = sim_with(HistoryOptions {
        first_day: date!(2025 - 06 - 01),
        days: 2,
        ..HistoryOptions::default()
    })
    .await;
    let port = harness::free_port();
    let config_importer = importer(core, &sim, "down");
    let ids: Vec<String> = config_importer
        .statistics()
        .iter()
        .map(|s| s.id.clone())
        .collect();
    // The same importer, aimed at a port where nothing listens yet.
    let dsmr = DsmrConfig {
        url: sim.url(),
        api_key: SecretString::from(SIM_KEY),
        ca_pem: None,
        poll_interval: Duration::from_secs(5),
    };
    let cfg = HistoryConfig {
        target: target(port, &core.token),
        id_tag: format!("down_{}", core.version.replace('.', "_")),
    };
    let late = Importer::new(cfg, &dsmr).expect("importer");
    let failed = HaClient::connect(&target(port, "x"))
        .await
        .err()
        .map(|e| e.to_string())
        .expect("nothing listens yet");
    assert!(failed.contains(&format!("127.0.0.1:{port}")), "{failed}");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(dsmr_bridge::history::run(
        late,
        dsmr_bridge::status::StatusReporter::unobserved(),
        shutdown.clone(),
    ));
    // Home Assistant appears: a forwarder on the port the bridge was given.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let core_port = core.port;
    let forwarder = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", core_port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    loop {
        let rows = core
            .client()
            .await
            .rows(&refs[..1], datetime!(2025-05-30 00:00 UTC), None, "hour")
            .await
            .expect("rows");
        if rows[0].len() == 48 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the import never ran: {} rows",
            rows[0].len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shutdown.cancel();
    let _ = task.await;
    forwarder.abort();
}

/// The bridge binary as a user runs it outside Home Assistant: the live values reach the
/// broker while the archive goes into Home Assistant, and the log says once that it is done,
/// without the token even at debug level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_imports_beside_its_live_values() {
    let Some(core) = core(VERSIONS[0]) else {
        return;
    };
    let sim = sim_with(HistoryOptions {
        first_day: date!(2025 - 07 - 01),
        days: 10,
        ..HistoryOptions::default()
    })
    .await;
    let broker = Broker::start();
    let url = format!("http://127.0.0.1:{}/", core.port);
    let page_port = harness::free_port();
    let page = format!("http://127.0.0.1:{page_port}/");
    let listen = format!("127.0.0.1:{page_port}");
    let args = harness::args(
        &sim.url(),
        broker.port,
        "hist-live",
        &["--homeassistant-url", &url, "--status-listen", &listen],
    );
    let bridge = Bridge::start_with_env(&args, &[("HOMEASSISTANT_TOKEN", core.token.clone())]);
    let watcher = harness::Watcher::connect(broker.port, &["hist-live/#"]).await;
    bridge
        .wait_log("history: done, 240 hours in Home Assistant's statistics, up to 2025-07-10")
        .await;
    watcher
        .wait_for("a live value", |seen| {
            seen.iter()
                .any(|s| s.topic == "hist-live/reading/electricity_delivered_1")
        })
        .await;
    // The status page says where the import stands: the archive's last hour, 23:00 local.
    let status = crate::status_page::status_until(&page, "the import on the page", |s| {
        s["history"]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("up to date"))
    })
    .await;
    assert_eq!(status["history"]["ok"], true);
    assert_eq!(
        status["history"]["text"],
        "up to date: the last hour imported starts 2025-07-10 21:00 UTC"
    );
    let log = bridge.log();
    assert_eq!(log.matches("history: done").count(), 1, "{log}");
    assert!(!log.contains(&core.token), "the token is never logged");
    let mut ha = core.client().await;
    let rows = ha
        .rows(
            &["dsmr_bridge:gas_delivered"],
            datetime!(2025-06-30 00:00 UTC),
            None,
            "hour",
        )
        .await
        .expect("rows");
    assert_eq!(rows[0].len(), 240, "the product's statistic ids");
}

/// A rejected token: one error naming the option, never the token, and the live values keep
/// flowing to the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_names_the_option_and_the_bridge_keeps_running() {
    let Some(core) = core(VERSIONS[1]) else {
        return;
    };
    let sim = sim_with(HistoryOptions {
        first_day: date!(2025 - 06 - 01),
        days: 1,
        ..HistoryOptions::default()
    })
    .await;
    let broker = Broker::start();
    let url = format!("http://127.0.0.1:{}/", core.port);
    let page_port = harness::free_port();
    let page = format!("http://127.0.0.1:{page_port}/");
    let listen = format!("127.0.0.1:{page_port}");
    let args = harness::args(
        &sim.url(),
        broker.port,
        "hist-token",
        &[
            "--homeassistant-url",
            &url,
            "--homeassistant-token",
            "not-a-valid-token-4711",
            "--status-listen",
            &listen,
        ],
    );
    let bridge = Bridge::start(&args);
    bridge
        .wait_log("history: stopped; the live values keep flowing")
        .await;
    let status = crate::status_page::status_until(&page, "the stop on the page", |s| {
        s["history"]["ok"] == false
    })
    .await;
    let text = status["history"]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("stopped: ") && text.contains("homeassistant_token"),
        "{text}"
    );
    assert!(!status.to_string().contains("not-a-valid-token-4711"));
    let log = bridge.log();
    assert!(log.contains("check homeassistant_token"), "{log}");
    assert_eq!(log.matches("history: stopped").count(), 1, "{log}");
    assert!(
        !log.contains("not-a-valid-token-4711"),
        "the token is never logged"
    );
    let watcher = harness::Watcher::connect(broker.port, &["hist-token/#"]).await;
    watcher
        .wait_for("a live value", |seen| {
            seen.iter()
                .any(|s| s.topic == "hist-token/reading/electricity_delivered_1")
        })
        .await;
}

/// Peak resident memory (`VmHWM`, KiB) and CPU time (user + system) of a running process.
fn footprint(pid: u32) -> (u64, Duration) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    (hwm, Duration::from_millis(ticks * 10))
}

/// The benchmark of BENCHMARKS.md's history section (`scripts/bench-history`): two years of
/// DSMR-reader's archive imported by the bridge binary into Home Assistant 2026.2.3 on this
/// machine. Prints a Markdown table; asserts the targets (3 minutes, 10 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-history"]
async fn benchmark_two_years() {
    let version = std::env::var("HISTORY_BENCH_CORE").unwrap_or_else(|_| VERSIONS[1].to_owned());
    let version: &'static str = VERSIONS
        .into_iter()
        .find(|v| *v == version)
        .expect("HISTORY_BENCH_CORE is a tested version");
    let Some(core) = core(version) else {
        return;
    };
    let sim = sim_with(HistoryOptions::default()).await;
    let archive = sim.archive().expect("archive");
    let hours = archive.hour_rows().len();
    let broker = Broker::start();
    let binary = std::env::var("DSMR_BRIDGE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_dsmr-bridge").to_owned());
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("bridge.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let url = format!("http://127.0.0.1:{}/", core.port);
    let mut args = harness::args(
        &sim.url(),
        broker.port,
        "bench-history",
        &["--homeassistant-url", &url],
    );
    // At the level a user runs it.
    if let Some(level) = args.iter_mut().find(|a| *a == "debug") {
        *level = "info".to_owned();
    }
    let mut child = Command::new(&binary)
        .args(args)
        .env("HOMEASSISTANT_TOKEN", &core.token)
        .env_remove("SUPERVISOR_TOKEN")
        .env("DSMR_BRIDGE_HEALTH_FILE", dir.path().join("health"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the bridge");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    while !read().contains("history: done") {
        assert!(
            Instant::now() < deadline,
            "no end of the import:\n{}",
            read()
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the bridge exited ({status}):\n{}", read());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let wall = started.elapsed();
    let (hwm_kib, cpu) = footprint(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let hour_requests = sim.requests("/api/v2/statistics/hour");
    let day_requests = sim.requests("/api/v2/statistics/day");
    let progress = read().matches("hours imported, up to").count();
    let rows = hours * 5 + archive.day_rows().len() * 3;
    // Libtest's "test … " may open the line; the table starts on a line of its own.
    println!();
    println!("| Home Assistant Core | {version} (this machine, SQLite) |");
    println!("|---|---|");
    println!(
        "| Archive | {hours} hours, {} days: {rows} statistic rows (5 registers hourly, 3 costs daily) |",
        archive.day_rows().len()
    );
    println!(
        "| Import, start of the bridge to `history: done` | {:.1} s ({:.0} hours/s) |",
        wall.as_secs_f64(),
        hours as f64 / wall.as_secs_f64()
    );
    println!(
        "| The bridge's own CPU time (fetching, ledger, sending) | {:.2} s |",
        cpu.as_secs_f64()
    );
    println!(
        "| Requests to DSMR-reader | {} (statistics/hour {hour_requests}, statistics/day {day_requests}) |",
        hour_requests + day_requests
    );
    println!(
        "| Peak RSS of the bridge (VmHWM) | {:.1} MiB |",
        hwm_kib as f64 / 1024.0
    );
    println!("| Progress lines | {progress} |");
    assert!(wall < Duration::from_secs(180), "{wall:?}");
    assert!(hwm_kib < 10 * 1024, "{hwm_kib} KiB");
}
