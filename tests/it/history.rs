//! The history import against a real Home Assistant Core, old (2025.4.4, `has_mean` metadata)
//! and new (2026.2.3, `mean_type` + `unit_class`): the bridge's live register sensors, created in
//! Core by its MQTT discovery, get the simulated DSMR-reader's archive beneath their own
//! statistics.
//!
//! Each Core is installed once into a cache by `scripts/ha-core` and started per test under
//! libfaketime at the archive's end, a minute before a 5-minute boundary, so that its own
//! compiler writes its first 5-minute row and its first hour within seconds
//! (`tests/support/ha_core.rs`). Where a Core cannot be installed (no Python 3.13, no faketime),
//! each test says so in one line and is skipped; under CI it fails. What is asserted is what the
//! Energy dashboard shows: each local day's change against DSMR-reader's day statistics, each
//! hour's change, Core's own rows before and after, and `energy/validate`.

use std::collections::BTreeMap;
use std::time::Duration;

use dsmr_bridge::config::DsmrConfig;
use dsmr_bridge::history::dsmr::ArchiveClient;
use dsmr_bridge::history::ha::{HaClient, HaError, HaTarget, Mark, Metadata, StoredRow};
use dsmr_bridge::history::ledger::Row;
use dsmr_bridge::history::plan::Junction;
use dsmr_bridge::history::{Store, Summary, cost_keys, register_keys, sync};
use dsmr_sim::history::ArchiveNow;
use dsmr_sim::history::{Archive, DayRow, local_midnight};
use dsmr_sim::{HistoryOptions, Registers, SimOptions, Simulator};
use secrecy::SecretString;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::{date, datetime, offset};

use super::eventually::eventually;
use super::ha_core::{self, Core, Setup};
use super::harness::{self, Bridge, Broker, SIM_KEY};

const VERSIONS: [&str; 2] = ["2025.4.4", "2026.2.3"];
/// Core's clock rate (libfaketime) in the scenes that wait for its compiles at a full hour.
const SCENE_RATE: u32 = 10;
/// Core's clock starts this long after the archive's end: the bridge's entities and their first
/// states (the day totals from a minute after midnight of the meter's clock on) come minutes of
/// Core's clock before its first hourly compile.
const CORE_LEAD: time::Duration = time::Duration::minutes(40);

/// The bridge, DSMR-reader and a Core of the test's own, at the end of DSMR-reader's archive.
struct Scene {
    core: Core,
    sim: Simulator,
    broker: Broker,
    /// The bridge that makes the entities (history off: the tests run the import themselves).
    bridge: Option<Bridge>,
    /// The archive's end: local midnight after its last day, where the live meter starts.
    end: OffsetDateTime,
}

impl Scene {
    /// `None` where this machine cannot run a Core.
    async fn start(version: &str, opts: HistoryOptions, base: &str) -> Option<Scene> {
        let end = local_midnight(
            opts.first_day
                .checked_add(time::Duration::days(i64::from(opts.days)))
                .expect("a date"),
        );
        let broker = Broker::start();
        let sim = Simulator::start(SimOptions {
            start: end.to_offset(offset!(+1)),
            // The meter runs on Core's clock: DSMR-reader's day totals (the day-cost entities)
            // come a minute of its clock after midnight, seconds of the test's.
            speed: f64::from(SCENE_RATE),
            ..harness::sim_options()
        })
        .await
        .expect("simulator");
        // The archive ends where the live meter starts: one meter, read by DSMR-reader.
        let live = sim.latest_reading();
        let gas = live.gas.map_or(0, |g| g.delivered);
        let probe = Archive::new(HistoryOptions {
            start_registers: [0; 5],
            ..opts.clone()
        });
        let added = end_registers(&probe);
        let opts = HistoryOptions {
            start_registers: [
                live.registers[0] - added[0],
                live.registers[2] - added[1],
                live.registers[1] - added[2],
                live.registers[3] - added[3],
                gas - added[4],
            ],
            ..opts
        };
        sim.set_history(opts);
        // With a meter swap in the archive, the live meter is the new one. A register that
        // never rose on it (no return yet) reads 0, which the bridge never publishes (Home
        // Assistant would count a reset): it starts 1 Wh on, within the tolerance below.
        let registers = end_registers(&sim.archive().expect("archive"));
        let kwh = |wh: u64| wh.max(1) as f64 / 1_000.0;
        sim.set_meter(
            &harness::sim_options().equipment_id,
            Registers {
                delivered_1: kwh(registers[0]),
                delivered_2: kwh(registers[1]),
                returned_1: kwh(registers[2]),
                returned_2: kwh(registers[3]),
            },
        );
        let core = ha_core::start(
            version,
            Setup {
                faketime: Some(end + CORE_LEAD),
                // Core's first hourly compile comes at its clock's next full hour: ten times
                // faster, half a minute instead of six.
                rate: Some(SCENE_RATE),
                ..Setup::default()
            },
        )?;
        core.add_mqtt(broker.port).await;
        let bridge = Bridge::start(&harness::args(&sim.url(), broker.port, base, &[]));
        Some(Scene {
            core,
            sim,
            broker,
            bridge: Some(bridge),
            end,
        })
    }

    /// The install day: DSMR-reader's archive runs up to the simulator's clock (`at`, local
    /// time), which the live meter counts on from, with today's hours as readings only; Core
    /// starts at the same time.
    async fn on_the_clock(
        version: &str,
        opts: HistoryOptions,
        base: &str,
        at: OffsetDateTime,
        rate: Option<u32>,
    ) -> Option<Scene> {
        let broker = Broker::start();
        let sim = Simulator::start(SimOptions {
            start: at,
            speed: f64::from(rate.unwrap_or(1)),
            ..harness::sim_options()
        })
        .await
        .expect("simulator");
        sim.set_history(HistoryOptions {
            now: ArchiveNow::Clock,
            ..opts
        });
        let core = ha_core::start(
            version,
            Setup {
                faketime: Some(at),
                rate,
                ..Setup::default()
            },
        )?;
        core.add_mqtt(broker.port).await;
        let bridge = Bridge::start(&harness::args(&sim.url(), broker.port, base, &[]));
        let end = local_midnight(at.date());
        Some(Scene {
            core,
            sim,
            broker,
            bridge: Some(bridge),
            end,
        })
    }

    fn archive(&self) -> ArchiveClient {
        ArchiveClient::new(&DsmrConfig {
            url: self.sim.url(),
            api_key: SecretString::from(SIM_KEY),
            ca_pem: None,
            poll_interval: Duration::from_secs(1),
        })
        .expect("archive client")
    }

    async fn ha(&self) -> HaClient {
        HaClient::connect(&HaTarget {
            url: url::Url::parse(&format!("ws://127.0.0.1:{}/api/websocket", self.core.port))
                .expect("url"),
            token: SecretString::from(self.core.token.clone()),
            token_source: "homeassistant_token",
        })
        .await
        .expect("connect")
    }

    async fn sync(&self) -> Summary {
        sync(&self.archive(), &mut self.ha().await, None)
            .await
            .expect("import")
    }

    /// The entity id of each register sensor, as the entity registry has it now.
    async fn entity_ids(&self) -> Vec<String> {
        self.find_entity_ids()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .expect("the register sensors in the entity registry")
    }

    /// The entity id of each register sensor, once the bridge's discovery made them all.
    async fn registered_ids(&self) -> Vec<String> {
        eventually("the register sensors in the entity registry")
            .until(async || {
                self.find_entity_ids()
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
    }

    async fn find_entity_ids(&self) -> Vec<Result<String, String>> {
        let mut ws = self.core.socket().await;
        let entries = ws
            .call(json!({"type": "config/entity_registry/list"}))
            .await
            .expect("entity registry");
        register_keys()
            .iter()
            .map(|key| {
                entries
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| {
                        e["platform"] == "mqtt"
                            && e["unique_id"].as_str().is_some_and(|u| {
                                device_ids().iter().any(|d| u == format!("{d}_{key}"))
                            })
                    })
                    .and_then(|e| e["entity_id"].as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| format!("no entity for {key}"))
            })
            .collect()
    }

    /// The live day-cost sensors enabled by default, by catalog key, and their entity ids.
    async fn cost_ids(&self) -> Vec<(&'static str, String)> {
        let mut ws = self.core.socket().await;
        let entries = ws
            .call(json!({"type": "config/entity_registry/list"}))
            .await
            .expect("entity registry");
        cost_keys()
            .into_iter()
            .filter_map(|key| {
                let entry = entries.as_array()?.iter().find(|e| {
                    e["platform"] == "mqtt"
                        && e["unique_id"]
                            .as_str()
                            .is_some_and(|u| u.ends_with(&format!("_{key}")))
                })?;
                if !entry["disabled_by"].is_null() {
                    return None;
                }
                Some((key, entry["entity_id"].as_str()?.to_owned()))
            })
            .collect()
    }

    async fn rows(&self, ids: &[String], period: &'static str) -> Vec<Vec<StoredRow>> {
        self.marked_rows(ids, period, Mark::Register).await
    }

    async fn marked_rows(
        &self,
        ids: &[String],
        period: &'static str,
        mark: Mark,
    ) -> Vec<Vec<StoredRow>> {
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.ha()
            .await
            .rows(&refs, datetime!(2020-01-01 00:00 UTC), None, period, mark)
            .await
            .expect("rows")
    }
}

/// The meters' device ids in the unique ids: from their equipment ids.
fn device_ids() -> [String; 2] {
    let sim = harness::sim_options();
    [sim.equipment_id, sim.gas_equipment_id].map(|id| format!("dsmrbridge_{id}"))
}

/// Registers (Wh, litres) at the end of the archive's last day, in its field order.
fn end_registers(archive: &Archive) -> [u64; 5] {
    let last = archive.day_rows().last().expect("a day");
    std::array::from_fn(|k| last.registers[k] + last.consumption[k])
}

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).expect("ms")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("time")
}

/// Each statistic's change per period as the Energy dashboard asks for it, in thousandths.
async fn changes(
    core: &Core,
    ids: &[String],
    period: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Vec<BTreeMap<i64, i64>> {
    let result = core
        .socket()
        .await
        .call(json!({
            "type": "recorder/statistics_during_period",
            "start_time": rfc3339(from),
            "end_time": rfc3339(to),
            "statistic_ids": ids,
            "period": period,
            "types": ["change"],
        }))
        .await
        .expect("statistics_during_period");
    ids.iter()
        .map(|id| {
            result[id.as_str()]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let change = r["change"].as_f64().unwrap_or(f64::NAN);
                    (
                        r["start"].as_i64().expect("start"),
                        (change * 1_000.0).round() as i64,
                    )
                })
                .collect()
        })
        .collect()
}

/// Every archived local day's change of each live sensor equals DSMR-reader's day row; no hour
/// of any view falls; the first archived hour starts near zero.
async fn assert_days_match(scene: &Scene, ids: &[String]) {
    let archive = scene.sim.archive().expect("archive");
    let first = archive.day_rows().first().expect("days").start;
    let days = changes(&scene.core, ids, "day", first, scene.end).await;
    for (k, id) in ids.iter().enumerate() {
        for d in archive.published_day_rows() {
            let want = i64::try_from(d.consumption[k]).expect("Wh");
            let got = days[k].get(&ms(d.start)).copied();
            assert!(
                got.is_some_and(|g| (g - want).abs() <= 1),
                "{} {id}: day {} is {got:?}, DSMR-reader says {want}",
                scene.core.version,
                d.day
            );
        }
    }
    let to = scene.end + time::Duration::hours(3);
    for (k, hours) in changes(&scene.core, ids, "hour", first, to)
        .await
        .iter()
        .enumerate()
    {
        assert!(
            hours.values().all(|c| *c >= 0),
            "{} {}: no hour falls: {hours:?}",
            scene.core.version,
            ids[k]
        );
        let (start, first_change) = hours.iter().next().expect("rows");
        let energy = archive
            .hours()
            .iter()
            .find(|(t, _)| ms(*t) == *start)
            .map(|(_, v)| i64::try_from(v[k]).expect("Wh"));
        assert!(
            energy.is_some_and(|e| e <= *first_change),
            "{}: the first hour shows its energy, not a baseline",
            ids[k]
        );
    }
}

/// Core's own rows (from `from` on) are the same rows after the import, their states and
/// row-to-row differences kept: one offset on all their sums.
fn assert_one_offset(before: &[StoredRow], after: &[StoredRow], what: &str) {
    let after: BTreeMap<i64, &StoredRow> = after.iter().map(|r| (ms(r.start), r)).collect();
    let mut offsets = Vec::new();
    for row in before.iter().filter(|r| !r.imported) {
        let now = after
            .get(&ms(row.start))
            .unwrap_or_else(|| panic!("{what}: Core's row at {} is gone", row.start));
        assert!(
            !now.imported,
            "{what}: Core's row at {} replaced",
            row.start
        );
        assert_eq!(now.state, row.state, "{what}: state at {}", row.start);
        offsets.push(now.sum.unwrap_or(0.0) - row.sum.unwrap_or(0.0));
    }
    assert!(!offsets.is_empty(), "{what}: Core has rows");
    assert!(
        offsets.iter().all(|o| (o - offsets[0]).abs() < 0.0005),
        "{what}: one offset, not {offsets:?}"
    );
}

/// The Energy dashboard with the live sensors picked, as DOCS tells users (with `costs`, the
/// electricity tariff 1 and 2 and gas day costs as "an entity tracking the total costs", no
/// compensation for the return); `energy/validate` must find no issue with any of them.
async fn assert_energy_dashboard_accepts(core: &Core, ids: &[String], costs: Option<[&str; 3]>) {
    let mut ws = core.socket().await;
    let cost = |k: usize| costs.map(|c| c[k]);
    let from = |id: &String, k: usize| json!({"stat_energy_from": id, "stat_cost": cost(k), "entity_energy_price": null, "number_energy_price": null});
    let to = |id: &String| json!({"stat_energy_to": id, "stat_compensation": null, "entity_energy_price": null, "number_energy_price": null});
    let grid = json!({
        "type": "grid",
        "flow_from": [from(&ids[0], 0), from(&ids[1], 1)],
        "flow_to": [to(&ids[2]), to(&ids[3])],
        "cost_adjustment_day": 0.0,
    });
    let gas = json!({"type": "gas", "stat_energy_from": ids[4], "stat_cost": cost(2),
                     "entity_energy_price": null, "number_energy_price": null});
    ws.call(json!({"type": "energy/save_prefs", "energy_sources": [grid, gas], "device_consumption": []}))
        .await
        .expect("the Energy dashboard takes the sensors");
    let verdict = ws
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

/// Waits until Core has compiled a first 5-minute row for every one of `ids`.
async fn cores_first_rows(scene: &Scene, ids: &[String]) -> Vec<Vec<StoredRow>> {
    eventually(format!(
        "Core {} to compile the sensors' first rows",
        scene.core.version
    ))
    .within(Duration::from_secs(600))
    .every(Duration::from_secs(2))
    .until(async || {
        let rows = scene.rows(ids, "5minute").await;
        if rows.iter().all(|r| !r.is_empty()) {
            Ok(rows)
        } else {
            Err(format!(
                "rows: {:?}",
                rows.iter().map(Vec::len).collect::<Vec<_>>()
            ))
        }
    })
    .await
}

/// A fresh install: the import waits for Core's first 5-minute row of each sensor, then puts
/// the archive (autumn's 25-hour day, a gap, a meter swap) beneath the live sensors, one of
/// them renamed by the user. Every archived day equals DSMR-reader's; Core's own rows keep
/// their states and differences under one offset; the hour where they begin shows its whole
/// energy; a second run changes nothing; the Energy dashboard takes the sensors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_sensors_carry_the_archive_on_2025_4() {
    the_live_sensors_carry_the_archive_beneath_their_own_statistics(VERSIONS[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_sensors_carry_the_archive_on_2026_2() {
    the_live_sensors_carry_the_archive_beneath_their_own_statistics(VERSIONS[1]).await;
}

async fn the_live_sensors_carry_the_archive_beneath_their_own_statistics(version: &str) {
    {
        let Some(scene) = Scene::start(
            version,
            HistoryOptions {
                first_day: date!(2026 - 10 - 22),
                days: 5,
                gaps: vec![(datetime!(2026-10-23 09:00 UTC), 3)],
                meter_swap: Some(datetime!(2026-10-24 13:00 UTC)),
                ..HistoryOptions::default()
            },
            &format!("fresh{}", version.replace('.', "")),
        )
        .await
        else {
            return;
        };
        // Before Core's first compile there is nothing to join to: the import waits.
        let early = scene.sync().await;
        assert_eq!((early.sensors, early.hours), (0, 0), "{version}: {early:?}");
        // The user renames a sensor before anything is imported.
        let mut ws = scene.core.socket().await;
        let ids: Vec<String> = scene.registered_ids().await;
        ws.call(
            json!({"type": "config/entity_registry/update", "entity_id": ids[0],
                       "new_entity_id": "sensor.my_meter_tariff_1"}),
        )
        .await
        .expect("rename");
        let ids = scene.entity_ids().await;
        assert_eq!(ids[0], "sensor.my_meter_tariff_1");

        let before_short = cores_first_rows(&scene, &ids).await;
        let summary = scene.sync().await;
        // The registers, and the day costs Core has compiled by now.
        assert!(summary.sensors >= 5, "{version}: {summary:?}");
        assert!(summary.from_scratch, "{version}: {summary:?}");
        let after_short = scene.rows(&ids, "5minute").await;
        for k in 0..5 {
            assert_one_offset(&before_short[k], &after_short[k], &ids[k]);
        }
        // Core's first hour: its hourly compile comes five minutes after its first 5-minute one.
        let hour_rows = eventually(format!("Core {version}'s first hourly row"))
            .within(Duration::from_secs(600))
            .every(Duration::from_secs(2))
            .until(async || {
                let rows = scene.rows(&ids, "hour").await;
                if rows.iter().all(|r| r.iter().any(|row| !row.imported)) {
                    Ok(rows)
                } else {
                    Err("no hour of Core's own yet")
                }
            })
            .await;
        assert_days_match(&scene, &ids).await;
        // The hour Core's statistics begin in shows its whole energy: DSMR-reader's register at
        // the hour's start (the archive's end) to Core's state at its end.
        let archive = scene.sim.archive().expect("archive");
        let at_end = end_registers(&archive);
        for (k, rows) in hour_rows.iter().enumerate() {
            let first_own = rows.iter().position(|r| !r.imported).expect("own row");
            let own = rows[first_own];
            let below = rows[first_own - 1];
            let change = own.sum.unwrap() - below.sum.unwrap();
            let energy = own.state.unwrap() - at_end[k] as f64 / 1_000.0;
            assert!(
                (change - energy).abs() < 0.0015,
                "{version} {}: the junction's hour shows {change}, the meter {energy}",
                ids[k]
            );
        }
        let costs = the_day_costs_carry_the_archive(&scene).await;
        // Again: nothing moves.
        let before_hours = scene.rows(&ids, "hour").await;
        let cost_ids: Vec<String> = costs.iter().map(|(_, id)| id.clone()).collect();
        let before_costs = scene.marked_rows(&cost_ids, "hour", Mark::DayTotal).await;
        let again = scene.sync().await;
        assert_eq!(again.adjusted, 0, "{version}: {again:?}");
        assert!(!again.from_scratch);
        let after_hours = scene.rows(&ids, "hour").await;
        for k in 0..5 {
            assert_eq!(
                before_hours[k][..],
                after_hours[k][..before_hours[k].len()],
                "{version} {}: a re-run changes nothing",
                ids[k]
            );
        }
        let after_costs = scene.marked_rows(&cost_ids, "hour", Mark::DayTotal).await;
        for (k, id) in cost_ids.iter().enumerate() {
            assert_eq!(
                before_costs[k][..],
                after_costs[k][..before_costs[k].len()],
                "{version} {id}: a re-run changes nothing"
            );
        }
        let cost_of = |key: &str| {
            costs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, id)| id.as_str())
                .expect("a day-cost sensor enabled by default")
        };
        assert_energy_dashboard_accepts(
            &scene.core,
            &ids,
            Some([
                cost_of("electricity1_cost"),
                cost_of("electricity2_cost"),
                cost_of("gas_cost"),
            ]),
        )
        .await;
        let log = scene.core.log();
        assert!(
            !log.contains("without specifying"),
            "{version}: the metadata sent is the sensor's own, in the Core's form"
        );
    }
}

/// The install day whole: Core starts late on the day DSMR-reader has not archived yet; the
/// hours from midnight to Core's first are filled from DSMR-reader's readings as soon as Core's
/// first row exists (the day's total then equals the meter's), and after midnight, once
/// DSMR-reader has archived the day, its hour statistics replace them with the day's total
/// unchanged and Core's rows not moved again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_day_is_whole_on_2025_4() {
    the_install_day_is_filled_then_replaced(VERSIONS[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_day_is_whole_on_2026_2() {
    the_install_day_is_filled_then_replaced(VERSIONS[1]).await;
}

async fn the_install_day_is_filled_then_replaced(version: &str) {
    // Core's start takes a few minutes of its fast clock: its first rows still come before
    // midnight, DSMR-reader archives the day after it.
    let at = datetime!(2026-12-07 23:50:00 +01:00);
    let Some(scene) = Scene::on_the_clock(
        version,
        HistoryOptions {
            first_day: date!(2026 - 12 - 03),
            ..HistoryOptions::default()
        },
        &format!("install{}", version.replace('.', "")),
        at,
        // Midnight, Core's compiles and DSMR-reader's archiving of the day come within a minute
        // instead of seven.
        Some(SCENE_RATE),
    )
    .await
    else {
        return;
    };
    let ids: Vec<String> = scene.registered_ids().await;
    cores_first_rows(&scene, &ids).await;
    // The day costs' first rows come with the registers' (the same poll of DSMR-reader's today).
    let cost_ids: Vec<String> = eventually("the day-cost sensors in the entity registry")
        .until(async || {
            let costs = scene.cost_ids().await;
            if costs.len() == 4 {
                Ok(costs.into_iter().map(|(_, id)| id).collect())
            } else {
                Err(format!("{costs:?}"))
            }
        })
        .await;
    cores_first_rows(&scene, &cost_ids).await;
    let first = scene.sync().await;
    assert_eq!(first.sensors, 9, "{version}: {first:?}");
    let archive = scene.sim.archive().expect("archive");
    assert!(
        archive
            .published_day_rows()
            .last()
            .is_some_and(|d| d.day == date!(2026 - 12 - 06)),
        "{version}: the install day is not archived yet"
    );
    assert!(first.filled >= 5 * 23, "{version}: {first:?}");
    let install_day = local_midnight(date!(2026 - 12 - 07));
    let next_day = local_midnight(date!(2026 - 12 - 08));
    let filled = scene.rows(&ids, "hour").await;
    // After midnight DSMR-reader archives the install day.
    eventually(format!("DSMR-reader to archive {}", install_day.date()))
        .within(Duration::from_secs(900))
        .every(Duration::from_secs(5))
        .until(async || {
            let archive = scene.sim.archive().expect("archive");
            match archive.published_day_rows().last() {
                Some(d) if d.day == install_day.date() => Ok(()),
                other => Err(format!("last day {:?}", other.map(|d| d.day))),
            }
        })
        .await;
    let second = scene.sync().await;
    assert_eq!(second.filled, 0, "{version}: {second:?}");
    assert_eq!(
        second.adjusted, 0,
        "{version}: the day's total is unchanged"
    );
    let replaced = scene.rows(&ids, "hour").await;
    let archive = scene.sim.archive().expect("archive");
    let day = archive
        .published_day_rows()
        .last()
        .expect("the install day");
    for k in 0..5 {
        let sum_before = |rows: &[StoredRow]| {
            rows.iter()
                .rev()
                .find(|r| r.imported)
                .and_then(|r| r.sum)
                .expect("imported rows")
        };
        assert!(
            (sum_before(&filled[k]) - sum_before(&replaced[k])).abs() < 0.0005,
            "{version} {}: the day's total before Core's first hour is unchanged",
            ids[k]
        );
        let hours = replaced[k]
            .iter()
            .filter(|r| r.imported && r.start >= install_day && r.start < next_day)
            .count();
        assert_eq!(hours, 23, "{version} {}: the archive's hours", ids[k]);
    }
    // Beneath Core's first hour the day holds exactly DSMR-reader's hours; with Core's own
    // hours the electricity day equals DSMR-reader's day. Gas only comes every 5 minutes: Core
    // books the reading at midnight on the next day, DSMR-reader on this one.
    let days = changes(&scene.core, &ids, "day", install_day, next_day).await;
    for (k, id) in ids.iter().enumerate() {
        let junction = replaced[k]
            .iter()
            .find(|r| !r.imported)
            .expect("Core's rows")
            .start;
        let want: u64 = archive
            .hour_rows()
            .iter()
            .filter(|h| h.hour_start >= install_day && h.hour_start < junction)
            .map(|h| h.values[k])
            .sum();
        let below = |t: OffsetDateTime| {
            replaced[k]
                .iter()
                .rev()
                .find(|r| r.start < t)
                .and_then(|r| r.sum)
                .expect("rows")
        };
        let got = ((below(junction) - below(install_day)) * 1_000.0).round() as i64;
        assert_eq!(
            got,
            i64::try_from(want).expect("Wh"),
            "{version} {id}: the install day's hours before Core's"
        );
        if k < 4 {
            let want = i64::try_from(day.consumption[k]).expect("Wh");
            let got = days[k].get(&ms(install_day)).copied();
            assert!(
                got.is_some_and(|g| (g - want).abs() <= 2),
                "{version} {id}: the install day is {got:?}, DSMR-reader says {want}"
            );
        }
    }
    the_day_costs_cross_midnight(&scene, install_day, next_day).await;
}

/// An upgrade: Home Assistant has compiled hours of the live sensors' own statistics (its
/// clock and the meter's at 60 times real speed) when the import first runs. The archive goes
/// beneath them, the install day's hours before Core's first from the readings; Core's rows keep
/// their states and differences under one offset, the hour they begin in shows its whole energy,
/// and a second run changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_on_2025_4() {
    an_upgrade_imports_beneath_hours_core_compiled(VERSIONS[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_on_2026_2() {
    an_upgrade_imports_beneath_hours_core_compiled(VERSIONS[1]).await;
}

async fn an_upgrade_imports_beneath_hours_core_compiled(version: &str) {
    let Some(scene) = Scene::on_the_clock(
        version,
        HistoryOptions {
            first_day: date!(2026 - 12 - 01),
            gaps: vec![(datetime!(2026-12-03 09:00 UTC), 2)],
            ..HistoryOptions::default()
        },
        &format!("upgrade{}", version.replace('.', "")),
        // The bridge's entities appear seconds after Core's start (a minute on a loaded machine),
        // up to an hour of this fast clock: early enough in the hour for its first hourly
        // compile to have their states.
        datetime!(2026-12-07 10:15:00 +01:00),
        Some(60),
    )
    .await
    else {
        return;
    };
    let ids: Vec<String> = scene.registered_ids().await;
    let before_hours = eventually(format!("Core {version} to compile hours of its own"))
        .within(Duration::from_secs(600))
        .every(Duration::from_secs(2))
        .until(async || {
            let rows = scene.rows(&ids, "hour").await;
            if rows.iter().all(|r| r.len() >= 2) {
                Ok(rows)
            } else {
                Err(format!(
                    "{:?}",
                    rows.iter().map(Vec::len).collect::<Vec<_>>()
                ))
            }
        })
        .await;
    let summary = scene.sync().await;
    assert!(summary.sensors >= 5, "{version}: {summary:?}");
    assert!(
        summary.from_scratch && summary.filled > 0,
        "{version}: {summary:?}"
    );
    let after_hours = scene.rows(&ids, "hour").await;
    for k in 0..5 {
        assert_one_offset(&before_hours[k], &after_hours[k], &ids[k]);
        let first_own = after_hours[k]
            .iter()
            .position(|r| !r.imported)
            .expect("Core's rows");
        let (below, own) = (after_hours[k][first_own - 1], after_hours[k][first_own]);
        let change = own.sum.unwrap() - below.sum.unwrap();
        let energy = own.state.unwrap() - below.state.unwrap();
        assert!(
            (change - energy).abs() < 0.0015,
            "{version} {}: the junction's hour shows {change}, the meter {energy}",
            ids[k]
        );
    }
    assert_days_match(&scene, &ids).await;
    let imported = |rows: &[Vec<StoredRow>]| -> Vec<Vec<StoredRow>> {
        rows.iter()
            .map(|r| r.iter().filter(|r| r.imported).copied().collect())
            .collect()
    };
    let again = scene.sync().await;
    assert_eq!(again.adjusted, 0, "{version}: {again:?}");
    let rerun = scene.rows(&ids, "hour").await;
    assert_eq!(
        imported(&after_hours),
        imported(&rerun),
        "{version}: a re-run changes nothing"
    );
    for k in 0..5 {
        assert_one_offset(&after_hours[k], &rerun[k], &ids[k]);
        let first = |rows: &[StoredRow]| rows.iter().find(|r| !r.imported).copied();
        assert_eq!(
            first(&after_hours[k]),
            first(&rerun[k]),
            "{version}: not moved again"
        );
    }
}

/// DSMR-reader's cost of day `d` in cents for the day-cost sensor `key`.
fn day_cost(d: &DayRow, key: &str) -> i64 {
    match key {
        "electricity1_cost" => d.electricity1_cost,
        "electricity2_cost" => d.electricity2_cost,
        "fixed_cost" => d.fixed_cost,
        "total_cost" => d.total_cost,
        "gas_cost" => d.gas_cost,
        other => panic!("no day cost {other}"),
    }
}

/// The day costs of a fresh install, once Core has compiled an hour of them: every archived day's
/// change of each cost statistic is DSMR-reader's day cost (to the cent), the hour Core's own rows
/// begin in shows the day's cost from midnight (the sensor's state there: the install day counts
/// whole), and Core's rows keep their states and differences under one offset. Returns the
/// cost sensors.
async fn the_day_costs_carry_the_archive(scene: &Scene) -> Vec<(&'static str, String)> {
    let version = &scene.core.version;
    // DSMR-reader's day totals exist from the day's first grouped minute: the entities come
    // with the bridge's first answer of them.
    let costs = eventually("the day-cost entities")
        .until(async || {
            let costs = scene.cost_ids().await;
            if costs.len() == 4 {
                Ok(costs)
            } else {
                Err(format!("{costs:?}"))
            }
        })
        .await;
    let keys: Vec<&str> = costs.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "electricity1_cost",
            "electricity2_cost",
            "total_cost",
            "gas_cost"
        ],
        "{version}: the day costs enabled by default"
    );
    let ids: Vec<String> = costs.iter().map(|(_, id)| id.clone()).collect();
    let before = eventually(format!(
        "Core {version}'s first hourly row of the day costs"
    ))
    .within(Duration::from_secs(600))
    .every(Duration::from_secs(2))
    .until(async || {
        let rows = scene.marked_rows(&ids, "hour", Mark::DayTotal).await;
        if rows.iter().all(|r| r.iter().any(|row| !row.imported)) {
            Ok(rows)
        } else {
            Err("no hour of Core's own yet")
        }
    })
    .await;
    let summary = scene.sync().await;
    assert_eq!(summary.sensors, 9, "{version}: {summary:?}");
    let after = scene.marked_rows(&ids, "hour", Mark::DayTotal).await;
    let archive = scene.sim.archive().expect("archive");
    let first = archive.day_rows().first().expect("days").start;
    let days = changes(&scene.core, &ids, "day", first, scene.end).await;
    for (k, (key, id)) in costs.iter().enumerate() {
        assert_one_offset(&before[k], &after[k], id);
        for d in archive.published_day_rows() {
            // `changes` reads thousandths: tenths of a cent.
            let want = day_cost(d, key) * 10;
            let got = days[k].get(&ms(d.start)).copied();
            assert!(
                got.is_some_and(|g| (g - want).abs() <= 5),
                "{version} {id}: day {} costs {got:?}, DSMR-reader says {want}",
                d.day
            );
        }
        let first_own = after[k].iter().position(|r| !r.imported).expect("own row");
        let (below, own) = (after[k][first_own - 1], after[k][first_own]);
        let change = own.sum.unwrap() - below.sum.unwrap();
        assert!(
            (change - own.state.unwrap()).abs() < 0.005,
            "{version} {id}: the junction's hour shows {change}, the day's cost so far is {:?}",
            own.state
        );
    }
    costs
}

/// The day costs across the install day's midnight, after DSMR-reader archived the install day:
/// the days before it are DSMR-reader's, the install day is Home Assistant's own and counts
/// whole from its midnight (its change is the sensor's last state of the day), its archived cost
/// changed nothing, and the next day starts again from zero (its change up to its first value is
/// that value): Core's new cycle at the daily `last_reset`.
async fn the_day_costs_cross_midnight(
    scene: &Scene,
    install_day: OffsetDateTime,
    next_day: OffsetDateTime,
) {
    let version = &scene.core.version;
    let costs = scene.cost_ids().await;
    let ids: Vec<String> = costs.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), 4, "{version}: {costs:?}");
    let archive = scene.sim.archive().expect("archive");
    let first = archive.day_rows().first().expect("days").start;
    let days = changes(&scene.core, &ids, "day", first, next_day).await;
    let rows = scene.marked_rows(&ids, "5minute", Mark::DayTotal).await;
    // The first 5-minute row of the next day that holds a value of that day (DSMR-reader's
    // totals come once a minute of the bridge's clock, which at Core's fast clock can leave the
    // first 5 minutes without one).
    let last_states: Vec<f64> = rows
        .iter()
        .map(|r| {
            r.iter()
                .rev()
                .find(|r| r.start < next_day)
                .and_then(|r| r.state)
                .expect("the install day's last row")
        })
        .collect();
    let first_of_next_day = eventually(format!("Core {version}'s first row of the next day"))
        .within(Duration::from_secs(600))
        .every(Duration::from_secs(2))
        .until(async || {
            let short = scene.marked_rows(&ids, "5minute", Mark::DayTotal).await;
            short
                .iter()
                .zip(&last_states)
                .map(|(rows, last)| {
                    rows.iter()
                        .find(|r| r.start >= next_day && r.state.is_some_and(|s| s != *last))
                        .copied()
                        .ok_or("no value of the next day yet")
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
    let until = first_of_next_day
        .iter()
        .map(|r| r.start)
        .max()
        .expect("rows")
        + time::Duration::minutes(5);
    let after_midnight = changes(&scene.core, &ids, "5minute", next_day, until).await;
    for (k, (key, id)) in costs.iter().enumerate() {
        for d in archive
            .published_day_rows()
            .iter()
            .filter(|d| d.start < install_day)
        {
            let want = day_cost(d, key) * 10;
            let got = days[k].get(&ms(d.start)).copied();
            assert!(
                got.is_some_and(|g| (g - want).abs() <= 5),
                "{version} {id}: day {} costs {got:?}, DSMR-reader says {want}",
                d.day
            );
        }
        let last_state = last_states[k];
        let got = days[k].get(&ms(install_day)).copied();
        assert!(
            got.is_some_and(|g| (g as f64 / 1_000.0 - last_state).abs() < 0.005),
            "{version} {id}: the install day is {got:?}, the sensor ended it at {last_state}"
        );
        let first = first_of_next_day[k];
        let state = first.state.expect("a state");
        let got: i64 = after_midnight[k]
            .range(..=ms(first.start))
            .map(|(_, change)| change)
            .sum();
        assert!(
            (got as f64 / 1_000.0 - state).abs() < 0.005,
            "{version} {id}: the next day up to {} shows {got}, the sensor {state}",
            first.start
        );
    }
}

/// Home Assistant's statistics store that goes away after `imports` imports, as a connection
/// lost in the middle of an import does.
struct Interrupted<'a> {
    ha: &'a mut HaClient,
    imports: usize,
}

impl Store for Interrupted<'_> {
    async fn sensors(&mut self) -> Result<Vec<Option<Metadata>>, HaError> {
        self.ha.sensors().await
    }

    async fn junction(&mut self, meta: &Metadata) -> Result<Option<Junction>, HaError> {
        Store::junction(self.ha, meta).await
    }

    async fn hours(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<StoredRow>, HaError> {
        Store::hours(self.ha, meta, from, before).await
    }

    async fn import(&mut self, meta: &Metadata, rows: &[Row]) -> Result<(), HaError> {
        if self.imports == 0 {
            return Err(HaError::Closed(None));
        }
        self.imports -= 1;
        Store::import(self.ha, meta, rows).await
    }

    async fn adjust(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        by: i64,
    ) -> Result<(), HaError> {
        Store::adjust(self.ha, meta, from, by).await
    }

    async fn settle(&mut self) -> Result<(), HaError> {
        Store::settle(self.ha).await
    }
}

/// An import cut off after its first month resumes where the imported rows end, not from the
/// archive's beginning, and ends as an uninterrupted one: every day DSMR-reader's, the junction
/// whole, Core's rows under one offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes() {
    let version = VERSIONS[1];
    let Some(scene) = Scene::on_the_clock(
        version,
        HistoryOptions {
            first_day: date!(2026 - 10 - 20),
            ..HistoryOptions::default()
        },
        "resume",
        // As in the upgrade: the entities' first states come before Core's hourly compile.
        datetime!(2026-12-07 10:35:00 +01:00),
        // Slower than the upgrade's 60: Core answers its barrier `timeout` after 10 s of its
        // clock, which a month of rows outlasts at 60 times real speed.
        Some(20),
    )
    .await
    else {
        return;
    };
    let ids: Vec<String> = scene.registered_ids().await;
    let before_hours = eventually(format!("Core {version} to compile an hour of its own"))
        .within(Duration::from_secs(600))
        .every(Duration::from_secs(2))
        .until(async || {
            let rows = scene.rows(&ids, "hour").await;
            if rows.iter().all(|r| !r.is_empty()) {
                Ok(rows)
            } else {
                Err("no hour yet")
            }
        })
        .await;
    let mut ha = scene.ha().await;
    // Cut in the second month: the first month's rows are in beneath every sensor.
    let sensors = ha
        .sensors()
        .await
        .expect("sensors")
        .into_iter()
        .flatten()
        .count();
    let cut = sync(
        &scene.archive(),
        &mut Interrupted {
            ha: &mut ha,
            imports: sensors + 2,
        },
        None,
    )
    .await;
    assert!(cut.is_err(), "{version}: the connection went away");
    let resumed = scene.sync().await;
    assert!(!resumed.from_scratch, "{version}: {resumed:?}");
    let archived = scene.sim.archive().expect("archive").hour_rows().len() as u64;
    assert!(resumed.hours < archived - 24 * 20, "{version}: {resumed:?}");
    let after_hours = scene.rows(&ids, "hour").await;
    for k in 0..5 {
        assert_one_offset(&before_hours[k], &after_hours[k], &ids[k]);
    }
    assert_days_match(&scene, &ids).await;
    assert_eq!(scene.sync().await.adjusted, 0, "{version}: joined once");
}

/// The bridge binary at `log_level: trace` with the history on: its WebSocket library logs
/// every frame at that level, Home Assistant's token among them; none of it reaches the log,
/// and the history runs (up to date: no sensor of this bridge in that Core).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_not_logged_at_trace() {
    let Some(core) = ha_core::shared(VERSIONS[1]) else {
        return;
    };
    let sim = Simulator::start(harness::sim_options())
        .await
        .expect("simulator");
    let broker = Broker::start();
    let url = core.url();
    let mut args = harness::args(
        &sim.url(),
        broker.port,
        "hist-trace",
        &["--homeassistant-url", &url],
    );
    if let Some(level) = args.iter_mut().find(|a| *a == "debug") {
        *level = "trace".to_owned();
    }
    let bridge = Bridge::start_with_env(&args, &[("HOMEASSISTANT_TOKEN", core.token.clone())]);
    bridge.wait_log("history: up to date").await;
    let log = bridge.log();
    assert!(log.contains("TRACE"), "the log is at trace");
    assert!(!log.contains(&core.token), "the token is never logged");
    assert!(!log.contains("access_token"), "nor the auth message");
}

/// A rejected token: one error naming the option, never the token, and the live values keep
/// flowing to the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_names_the_option_and_the_bridge_keeps_running() {
    let Some(core) = ha_core::shared(VERSIONS[1]) else {
        return;
    };
    let sim = Simulator::start(harness::sim_options())
        .await
        .expect("simulator");
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
/// DSMR-reader's archive imported by the bridge binary beneath the live sensors of a Home
/// Assistant Core on this machine, on the install day at 14:00 (13 hours filled from readings).
/// Prints a Markdown table; asserts the targets (3 minutes, 10 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-history"]
async fn benchmark_two_years() {
    let version = std::env::var("HISTORY_BENCH_CORE").unwrap_or_else(|_| VERSIONS[1].to_owned());
    let version: &'static str = VERSIONS
        .into_iter()
        .find(|v| *v == version)
        .expect("HISTORY_BENCH_CORE is a tested version");
    let at = datetime!(2026-12-07 13:58:40 +01:00);
    let Some(mut scene) = Scene::on_the_clock(
        version,
        HistoryOptions {
            first_day: date!(2024 - 12 - 07),
            ..HistoryOptions::default()
        },
        "bench-history",
        at,
        None,
    )
    .await
    else {
        return;
    };
    let ids: Vec<String> = scene.registered_ids().await;
    cores_first_rows(&scene, &ids).await;
    // The measured bridge takes over from the one that made the entities.
    drop(scene.bridge.take());
    let archive = scene.sim.archive().expect("archive");
    let hours = archive.hour_rows().len();
    let binary = std::env::var("DSMR_BRIDGE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_dsmr-bridge").to_owned());
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("bridge.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let url = scene.core.url();
    let mut args = harness::args(
        &scene.sim.url(),
        scene.broker.port,
        "bench-history",
        &["--homeassistant-url", &url],
    );
    // At the level a user runs it.
    if let Some(level) = args.iter_mut().find(|a| *a == "debug") {
        *level = "info".to_owned();
    }
    let requests = |s: &Simulator| {
        (
            s.requests("/api/v2/statistics/hour"),
            s.requests("/api/v2/statistics/day"),
            s.requests_ordered("/api/v2/datalogger/dsmrreading", "timestamp"),
        )
    };
    let before = requests(&scene.sim);
    let mut child = std::process::Command::new(&binary)
        .args(args)
        .env("HOMEASSISTANT_TOKEN", &scene.core.token)
        .env_remove("SUPERVISOR_TOKEN")
        .env_remove("HASSIO_TOKEN")
        .env("DSMR_BRIDGE_HEALTH_FILE", dir.path().join("health"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start the bridge");
    let started = std::time::Instant::now();
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    eventually("the import to end")
        .within(Duration::from_secs(300))
        .every(Duration::from_millis(100))
        .until(async || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the bridge exited ({status}):\n{}", read());
            }
            if read().contains("history: done") {
                Ok(())
            } else {
                Err("no end yet")
            }
        })
        .await;
    let wall = started.elapsed();
    let (hwm_kib, cpu) = footprint(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let after = requests(&scene.sim);
    let (hour_requests, day_requests, reading_requests) =
        (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    let summary = read()
        .lines()
        .find(|l| l.contains("history: done"))
        .map(str::to_owned)
        .unwrap_or_default();
    println!();
    println!("| Home Assistant Core | {version} (this machine, SQLite) |");
    println!("|---|---|");
    println!(
        "| Archive | {hours} hours, {} days, beneath 5 live sensors; install day at 14:00 |",
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
        "| Requests to DSMR-reader | {} (statistics/hour {hour_requests}, statistics/day {day_requests}, readings for the install day {reading_requests}) |",
        hour_requests + day_requests + reading_requests
    );
    println!(
        "| Peak RSS of the bridge (VmHWM) | {:.1} MiB |",
        hwm_kib as f64 / 1024.0
    );
    println!(
        "| The run's log line | `{}` |",
        summary.split("history: done").nth(1).unwrap_or("").trim()
    );
    assert!(wall < Duration::from_secs(180), "{wall:?}");
    assert!(hwm_kib < 10 * 1024, "{hwm_kib} KiB");
}
