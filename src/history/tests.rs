//! The import in-process: a meter whose registers are known every hour, DSMR-reader's archive and
//! readings of it, and a Home Assistant statistics store that behaves as Core's recorder does
//! (its own rows compiled from its first state, a day cost's counted whole from each midnight,
//! imports upserted by hour, adjustments added to its own rows from an hour on).

use std::collections::BTreeMap;

use proptest::prelude::*;
use time::macros::datetime;
use time::{Date, Duration, OffsetDateTime};

use super::*;

/// The meter: its registers (thousandths) at every hour boundary from `start`.
#[derive(Clone, Debug)]
struct Meter {
    start: OffsetDateTime,
    /// Registers at `start + k hours`, per register.
    boundary: Vec<[i64; REGISTERS]>,
}

impl Meter {
    fn new(start: OffsetDateTime, energies: &[i64]) -> Self {
        let mut register = [5_000_000, 3_000_000, 100_000, 200_000, 1_000_000];
        let mut boundary = vec![register];
        for e in energies {
            for (k, r) in register.iter_mut().enumerate() {
                *r += e / (k as i64 + 1);
            }
            boundary.push(register);
        }
        Self { start, boundary }
    }

    fn at(&self, t: OffsetDateTime) -> Option<[i64; REGISTERS]> {
        let k = usize::try_from((t - self.start).whole_hours()).ok()?;
        self.boundary.get(k).copied()
    }

    fn energy(&self, hour: OffsetDateTime, register: usize) -> i64 {
        self.at(hour + Duration::HOUR).unwrap()[register] - self.at(hour).unwrap()[register]
    }
}

/// DSMR-reader: hour and day rows of whole UTC days up to `archived_days`, without the hour rows
/// of `gaps`, and a reading at every hour boundary up to `now`.
struct FakeArchive {
    meter: Meter,
    archived_days: i64,
    /// Each archived day's costs (cents): `day_cost`.
    costs: bool,
    gaps: Vec<OffsetDateTime>,
    now: OffsetDateTime,
    readings_asked: std::sync::atomic::AtomicU64,
}

impl FakeArchive {
    fn day_start(&self, k: i64) -> OffsetDateTime {
        self.meter.start + Duration::days(k)
    }

    fn all_days(&self) -> Vec<DayStat> {
        (0..self.archived_days)
            .map(|k| {
                let start = self.day_start(k);
                let end = self.day_start(k + 1);
                let (a, b) = (self.meter.at(start).unwrap(), self.meter.at(end).unwrap());
                DayStat {
                    day: start.date(),
                    start,
                    consumption: std::array::from_fn(|r| b[r] - a[r]),
                    registers: a.map(Some),
                    costs: std::array::from_fn(|c| {
                        (self.costs && (c != GAS_COST || k > 0)).then(|| day_cost(k, c))
                    }),
                }
            })
            .collect()
    }
}

impl Archive for FakeArchive {
    async fn days(&self, from: Option<Date>, limit: usize) -> Result<Vec<DayStat>, ArchiveError> {
        Ok(self
            .all_days()
            .into_iter()
            .filter(|d| from.is_none_or(|f| d.day >= f))
            .take(limit)
            .collect())
    }

    async fn hours(
        &self,
        from: Option<OffsetDateTime>,
        before: Option<OffsetDateTime>,
    ) -> Result<Vec<HourStat>, ArchiveError> {
        let end = self.day_start(self.archived_days);
        let mut hours = Vec::new();
        let mut t = self.meter.start;
        while t < end {
            if from.is_none_or(|f| t >= f)
                && before.is_none_or(|b| t < b)
                && !self.gaps.contains(&t)
            {
                hours.push(HourStat {
                    start: t,
                    day: t.date(),
                    values: std::array::from_fn(|r| self.meter.energy(t, r)),
                });
            }
            t += Duration::HOUR;
        }
        Ok(hours)
    }

    async fn readings_at(
        &self,
        at: &[OffsetDateTime],
    ) -> Result<Vec<Option<[Option<i64>; REGISTERS]>>, ArchiveError> {
        self.readings_asked
            .fetch_add(at.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(at
            .iter()
            .map(|t| {
                (*t <= self.now)
                    .then(|| self.meter.at(*t).map(|r| r.map(Some)))
                    .flatten()
            })
            .collect())
    }
}

/// The gas cost's index among the costs: DSMR-reader has none on the archive's first day.
const GAS_COST: usize = 4;

/// Day `d`'s cost `c` in cents; the second day returned more than it bought (tariff 1).
fn day_cost(d: i64, c: usize) -> i64 {
    let base = [250, 120, 95, 465, 400][c] + d * 13;
    if d == 1 && c == 0 { base - 600 } else { base }
}

/// What a day cost sensor shows `hours` into day `d`: the day's cost so far.
fn cost_so_far(d: i64, c: usize, hours: i64) -> i64 {
    day_cost(d, c) * hours / 24
}

/// One stored row: state, sum (thousandths, or cents), and whether it carries the import's mark.
type Stored = (Option<i64>, i64, bool);

/// The registers, then the day costs.
const SERIES: usize = REGISTERS + COSTS;

/// Home Assistant's recorder for the sensors.
#[derive(Clone, Debug, Default, PartialEq)]
struct FakeStore {
    long: [BTreeMap<OffsetDateTime, Stored>; SERIES],
    short: [BTreeMap<OffsetDateTime, Stored>; SERIES],
    adjustments: u64,
    /// Sensors the user removed from Home Assistant: their statistics stay, with no entity.
    removed: [bool; SERIES],
}

fn meta(series: usize) -> Metadata {
    let key = statistic_keys().nth(series).unwrap();
    let (unit_class, unit) = if series < REGISTERS {
        (Some("energy".to_owned()), "kWh")
    } else {
        (None, "EUR")
    };
    Metadata {
        statistic_id: format!("sensor.dsmr_{key}"),
        source: "recorder".to_owned(),
        name: None,
        has_sum: true,
        has_mean: Some(false),
        mean_type: Some(0),
        unit_class,
        statistics_unit_of_measurement: Some(unit.to_owned()),
    }
}

fn register_of(meta: &Metadata) -> usize {
    statistic_keys()
        .position(|k| meta.statistic_id == format!("sensor.dsmr_{k}"))
        .unwrap()
}

impl FakeStore {
    /// Core's own rows: its first state `first` thousandths into hour `from`, compiled every
    /// 5 minutes from there and every hour for `hours` hours.
    fn compiled(meter: &Meter, from: OffsetDateTime, first_frac: i64, hours: i64) -> Self {
        let mut store = FakeStore::default();
        for r in 0..REGISTERS {
            let first = meter.at(from).unwrap()[r] + meter.energy(from, r) * first_frac / 100;
            for h in 0..hours {
                let t = from + Duration::hours(h);
                let end = meter.at(t + Duration::HOUR).unwrap()[r];
                store.long[r].insert(t, (Some(end), end - first, false));
            }
            // Its first 5-minute row ends 5 minutes after its first state.
            let t = from + Duration::minutes(55);
            let end = meter.at(from + Duration::HOUR).unwrap()[r];
            store.short[r].insert(t, (Some(end), end - first, false));
        }
        store
    }

    /// Core's own rows of the day costs: the sensors' first states `first_frac` % into hour
    /// `from`, each day counted whole from its midnight, for `hours` hours.
    fn with_costs(mut self, from: OffsetDateTime, first_frac: i64, hours: i64) -> Self {
        let at = |t: OffsetDateTime| {
            let since = (t - START).whole_hours();
            (since.div_euclid(24), since.rem_euclid(24))
        };
        for c in 0..COSTS {
            let series = REGISTERS + c;
            let (day, hour) = at(from);
            let (start, next) = (cost_so_far(day, c, hour), cost_so_far(day, c, hour + 1));
            let first = start + (next - start) * first_frac / 100;
            let (mut sum, mut state, mut state_day) = (0, first, day);
            for h in 0..hours {
                // The value at the hour's end belongs to the hour's day.
                let (day, hour) = at(from + Duration::hours(h));
                let end = cost_so_far(day, c, hour + 1);
                sum += if day == state_day { end - state } else { end };
                (state, state_day) = (end, day);
                self.long[series].insert(from + Duration::hours(h), (Some(end), sum, false));
            }
            self.short[series].insert(
                from + Duration::minutes(55),
                (Some(next), next - first, false),
            );
        }
        self
    }

    /// Each day cost's change over day `d`, as the Energy dashboard shows it.
    fn cost_of_day(&self, c: usize, d: i64) -> i64 {
        let sum_before = |t: OffsetDateTime| {
            self.long[REGISTERS + c]
                .range(..t)
                .next_back()
                .map_or(0, |(_, row)| row.1)
        };
        sum_before(START + Duration::days(d + 1)) - sum_before(START + Duration::days(d))
    }

    /// Each hour's change of the sum, as the Energy dashboard shows it.
    fn changes(&self, register: usize) -> Vec<(OffsetDateTime, i64)> {
        let mut previous = 0;
        self.long[register]
            .iter()
            .map(|(t, (_, sum, _))| {
                let change = sum - previous;
                previous = *sum;
                (*t, change)
            })
            .collect()
    }
}

fn stored_row(start: OffsetDateTime, row: &Stored, scale: f64) -> StoredRow {
    StoredRow {
        start,
        state: row.0.map(|s| s as f64 / scale),
        sum: Some(row.1 as f64 / scale),
        last_reset: None,
        imported: row.2,
    }
}

impl Store for FakeStore {
    async fn sensors(&mut self) -> Result<Vec<Option<Metadata>>, HaError> {
        Ok((0..SERIES)
            .map(|r| {
                (!self.removed[r] && (!self.long[r].is_empty() || !self.short[r].is_empty()))
                    .then(|| meta(r))
            })
            .collect())
    }

    async fn junction(&mut self, meta: &Metadata) -> Result<Option<Junction>, HaError> {
        let r = register_of(meta);
        let first = |rows: &BTreeMap<OffsetDateTime, Stored>| {
            rows.iter()
                .find(|(_, row)| !row.2)
                .map(|(t, row)| Junction {
                    hour: t.replace_minute(0).unwrap(),
                    state: row.0.unwrap(),
                    sum: row.1,
                    // The fake's days are UTC days.
                    day_start: (r >= REGISTERS).then(|| t.replace_time(time::Time::MIDNIGHT)),
                })
        };
        Ok(first(&self.long[r]).or_else(|| first(&self.short[r])))
    }

    async fn hours(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<StoredRow>, HaError> {
        Ok(self.long[register_of(meta)]
            .range(from..before)
            .map(|(t, row)| stored_row(*t, row, meta.scale()))
            .collect())
    }

    async fn import(&mut self, meta: &Metadata, rows: &[Row]) -> Result<(), HaError> {
        let r = register_of(meta);
        for row in rows {
            self.long[r].insert(row.start, (row.state, row.sum, true));
        }
        Ok(())
    }

    async fn adjust(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        by: i64,
    ) -> Result<(), HaError> {
        let r = register_of(meta);
        self.adjustments += 1;
        for rows in [&mut self.long[r], &mut self.short[r]] {
            for (_, row) in rows.range_mut(from..) {
                row.1 += by;
            }
        }
        Ok(())
    }

    async fn settle(&mut self) -> Result<(), HaError> {
        Ok(())
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

const START: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);

fn archive(meter: &Meter, days: i64, gaps: &[i64], now: OffsetDateTime) -> FakeArchive {
    FakeArchive {
        meter: meter.clone(),
        archived_days: days,
        costs: false,
        gaps: gaps
            .iter()
            .map(|h| meter.start + Duration::hours(*h))
            .collect(),
        now,
        readings_asked: Default::default(),
    }
}

/// What must hold after a run: every hour from the archive's start to Core's last shows the
/// meter's energy (gap hours' energy on the hour after the gap), sums start at the first hour's
/// energy and never fall, Core's rows keep their differences.
fn assert_whole(store: &FakeStore, meter: &Meter, gaps: &[i64]) {
    let first = (0..).find(|k| !gaps.contains(k)).unwrap();
    for r in 0..REGISTERS {
        let changes = store.changes(r);
        assert_eq!(
            changes[0].0,
            meter.start + Duration::hours(first),
            "register {r}: from the archive's first hour"
        );
        for (k, (t, change)) in changes.iter().enumerate() {
            // A gap's energy is on the hour after it.
            let since = k
                .checked_sub(1)
                .map_or(meter.start, |p| changes[p].0 + Duration::HOUR);
            let mut energy = 0;
            let mut u = since;
            while u <= *t {
                energy += meter.energy(u, r);
                u += Duration::HOUR;
            }
            assert_eq!(*change, energy, "register {r}: the hour {t}");
        }
    }
}

#[test]
fn a_fresh_install_waits_for_cores_first_row_then_joins_it() {
    let meter = Meter::new(START, &[700; 24 * 4]);
    let now = START + Duration::hours(24 * 3 + 10);
    let dsmr = archive(&meter, 3, &[], now);
    let mut store = FakeStore::default();
    let summary = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert_eq!(summary.waiting, 0, "no sensor in Home Assistant yet");
    assert_eq!(
        store,
        FakeStore::default(),
        "nothing imported before Core's first row"
    );

    // Core's first 5-minute row, 20 % into the install day's 10th hour.
    let junction = START + Duration::hours(24 * 3 + 9);
    let mut store = FakeStore::compiled(&meter, junction, 20, 0);
    let summary = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert_eq!(summary.hours, 72);
    assert_eq!(
        summary.filled,
        9 * 5,
        "midnight to Core's first hour, five sensors"
    );
    assert_eq!(summary.adjusted, 5);
    // Core compiles its first hour from the adjusted 5-minute rows.
    for r in 0..REGISTERS {
        let (t, row) = store.short[r].iter().next().map(|(t, v)| (*t, *v)).unwrap();
        store.long[r].insert(t.replace_minute(0).unwrap(), row);
    }
    assert_whole(&store, &meter, &[]);
    let before = store.clone();
    let again = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert_eq!(again.adjusted, 0);
    assert_eq!(again.filled, 0, "the install day is not filled twice");
    assert_eq!(store, before, "a second run changes nothing");
}

#[test]
fn the_statistics_of_a_removed_sensor_are_left_alone() {
    let meter = Meter::new(START, &[700; 24 * 4]);
    let now = START + Duration::hours(24 * 3 + 10);
    let dsmr = archive(&meter, 3, &[], now);
    let junction = START + Duration::hours(24 * 3 + 9);
    let mut store = FakeStore::compiled(&meter, junction, 20, 2);
    store.removed[1] = true;
    let before = store.clone();
    let summary = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert_eq!(summary.sensors, REGISTERS as u64 - 1);
    assert_eq!(
        store.long[1], before.long[1],
        "not one row imported or moved"
    );
    assert_eq!(store.short[1], before.short[1]);
    assert_ne!(store.long[0], before.long[0], "the others are joined");
}

#[test]
fn an_upgrade_imports_beneath_months_of_cores_rows() {
    let meter = Meter::new(START, &[400; 24 * 10]);
    let junction = START + Duration::hours(24 * 4 + 13);
    let mut store = FakeStore::compiled(&meter, junction, 50, 24 * 6 - 13);
    let core_before = store.long[0].clone();
    let dsmr = archive(&meter, 9, &[5, 6], START + Duration::hours(24 * 10));
    let summary = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert_eq!(summary.filled, 0);
    assert_eq!(summary.adjusted, 5);
    assert_whole(&store, &meter, &[5, 6]);
    // Core's rows: their states and differences kept, one offset on their sums.
    let offsets: std::collections::BTreeSet<i64> = core_before
        .iter()
        .map(|(t, (state, sum, _))| {
            let now = store.long[0][t];
            assert_eq!(now.0, *state);
            now.1 - sum
        })
        .collect();
    assert_eq!(offsets.len(), 1, "{offsets:?}");
    let before = store.clone();
    assert_eq!(block_on(sync(&dsmr, &mut store, None)).unwrap().adjusted, 0);
    assert_eq!(store, before);
}

#[test]
fn an_interrupted_import_resumes_to_the_same_rows() {
    let meter = Meter::new(START, &[300; 24 * 70]);
    let junction = START + Duration::hours(24 * 69 + 3);
    let dsmr = archive(&meter, 69, &[], START + Duration::hours(24 * 70));
    let mut whole = FakeStore::compiled(&meter, junction, 0, 20);
    block_on(sync(&dsmr, &mut whole, None)).unwrap();
    // Stopped after its first month: the rows of one chunk are in.
    let mut cut = FakeStore::compiled(&meter, junction, 0, 20);
    for r in 0..REGISTERS {
        for (t, row) in whole.long[r].range(..START + Duration::days(31)) {
            cut.long[r].insert(*t, *row);
        }
    }
    let resumed = block_on(sync(&dsmr, &mut cut, None)).unwrap();
    assert!(!resumed.from_scratch);
    assert!(resumed.hours < 24 * 45, "{resumed:?}");
    assert_eq!(cut.long, whole.long);
}

#[test]
fn the_install_day_filled_from_readings_is_replaced_by_the_archive_with_its_total() {
    let meter = Meter::new(START, &(0..24 * 3).map(|h| 100 + h * 7).collect::<Vec<_>>());
    let junction = START + Duration::hours(24 + 15);
    let mut store = FakeStore::compiled(&meter, junction, 30, 5);
    let today = archive(&meter, 1, &[], junction + Duration::hours(5));
    let first = block_on(sync(&today, &mut store, None)).unwrap();
    assert_eq!(first.filled, 15 * 5);
    assert_whole(&store, &meter, &[]);
    let asked = today
        .readings_asked
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(asked, 16, "each boundary once, for all five registers");
    let day_sum = |s: &FakeStore| s.long[0][&(junction - Duration::HOUR)].1;
    let filled_total = day_sum(&store);
    // After midnight DSMR-reader archives the install day: its hours replace the filled ones.
    let tomorrow = archive(&meter, 2, &[], junction + Duration::hours(12));
    let second = block_on(sync(&tomorrow, &mut store, None)).unwrap();
    assert_eq!(second.filled, 0);
    assert_eq!(second.adjusted, 0, "the day's total is unchanged");
    assert_eq!(day_sum(&store), filled_total);
    assert_whole(&store, &meter, &[]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any archive (1 to 6 days, gaps in the first day), any junction (inside the archive, at
    /// its end or on the install day), any first state inside the junction's hour, with or
    /// without Core's first hourly row: every hour shows its energy, and a second run changes
    /// nothing.
    #[test]
    fn any_archive_any_junction(
        // Enough hours for the latest junction and Core's last compiled hour after it.
        energies in proptest::collection::vec(0_i64..3_000, 24 * 9),
        days in 1_i64..=6,
        junction_after in 24_i64..24 * 7,
        first_frac in 0_i64..100,
        compiled in 0_i64..30,
        gap in proptest::option::of((0_i64..20, 1_i64..4)),
    ) {
        let meter = Meter::new(START, &energies);
        let junction = START + Duration::hours(junction_after);
        let gaps: Vec<i64> = gap.map(|(at, n)| (at..at + n).collect()).unwrap_or_default();
        let mut store = FakeStore::compiled(&meter, junction, first_frac, compiled);
        let end = junction + Duration::hours(compiled.max(1));
        let dsmr = archive(&meter, days, &gaps, end);
        block_on(sync(&dsmr, &mut store, None)).unwrap();
        if compiled == 0 {
            for r in 0..REGISTERS {
                let (t, row) = store.short[r].iter().next().map(|(t, v)| (*t, *v)).unwrap();
                store.long[r].insert(t.replace_minute(0).unwrap(), row);
            }
        }
        assert_whole(&store, &meter, &gaps);
        let before = store.clone();
        let again = block_on(sync(&dsmr, &mut store, None)).unwrap();
        prop_assert_eq!(again.adjusted, 0);
        prop_assert_eq!(&store, &before);
    }
}

#[test]
fn unique_ids_name_their_catalog_key() {
    assert_eq!(
        catalog_key("1234_electricity_delivered_1"),
        Some("electricity_delivered_1")
    );
    assert_eq!(
        catalog_key("1234_energy_supplier_price_electricity_delivered_1"),
        Some("energy_supplier_price_electricity_delivered_1")
    );
    assert_eq!(catalog_key("electricity_delivered_1"), None);
}

#[test]
fn the_registers_are_the_catalogs_in_the_ledgers_order() {
    assert_eq!(
        register_keys(),
        [
            "electricity_delivered_1",
            "electricity_delivered_2",
            "electricity_returned_1",
            "electricity_returned_2",
            "gas_delivered"
        ]
    );
    let fields: Vec<&str> = register_keys()
        .iter()
        .map(|key| {
            crate::map::catalog::SENSORS
                .iter()
                .find(|s| s.key == *key)
                .unwrap()
                .field
        })
        .collect();
    // DSMR-reader's reading fields, in the order of its hour statistics.
    assert_eq!(
        fields,
        [
            "electricity_delivered_1",
            "electricity_delivered_2",
            "electricity_returned_1",
            "electricity_returned_2",
            "extra_device_delivered"
        ]
    );
}

/// Day costs on a fresh install: Core's first states came the day after the archive's last.
/// Beneath them lies each archived day's cost (a sunny day's negative one included, none for a
/// day without a gas price), the install day counts whole from its midnight, Core's rows keep
/// their states and differences under one offset, and a second run changes nothing.
#[test]
fn day_costs_go_beneath_and_the_install_day_counts_whole() {
    let meter = Meter::new(START, &[500; 24 * 6]);
    let junction = START + Duration::hours(24 * 3 + 9);
    let mut store = FakeStore::compiled(&meter, junction, 20, 30).with_costs(junction, 20, 30);
    let core_before = store.long.clone();
    let dsmr = FakeArchive {
        costs: true,
        ..archive(&meter, 3, &[], junction + Duration::hours(30))
    };
    let summary = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert_eq!(summary.sensors, SERIES as u64);
    assert_eq!(summary.adjusted, SERIES as u64);
    assert_whole(&store, &meter, &[]);
    for c in 0..COSTS {
        for d in 0..3 {
            let want = if c == GAS_COST && d == 0 {
                0
            } else {
                day_cost(d, c)
            };
            assert_eq!(store.cost_of_day(c, d), want, "cost {c}: day {d}");
        }
        assert_eq!(
            store.cost_of_day(c, 3),
            day_cost(3, c),
            "cost {c}: the install day, whole"
        );
        assert_eq!(
            store.cost_of_day(c, 4),
            cost_so_far(4, c, 15),
            "cost {c}: Core's own next day"
        );
        let offsets: std::collections::BTreeSet<i64> = core_before[REGISTERS + c]
            .iter()
            .map(|(t, (state, sum, _))| {
                let now = store.long[REGISTERS + c][t];
                assert_eq!(now.0, *state, "cost {c}: Core's state at {t}");
                now.1 - sum
            })
            .collect();
        assert_eq!(offsets.len(), 1, "cost {c}: {offsets:?}");
    }
    assert_eq!(day_cost(1, 0), -337, "a sunny day is in the archive");
    let before = store.clone();
    let again = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert_eq!(again.adjusted, 0);
    assert_eq!(store, before, "a second run changes nothing");
}

/// Just after midnight DSMR-reader has not archived the day before the junction's yet: the days
/// there are go beneath, and once it archives that day the next run puts it beneath too and moves
/// Core's rows of the day costs once more (the registers, filled from readings, not at all);
/// then nothing moves.
#[test]
fn a_day_archived_after_the_junction_moves_the_day_costs_once_more() {
    let meter = Meter::new(START, &[500; 24 * 6]);
    let junction = START + Duration::hours(24 * 3 + 2);
    let mut store = FakeStore::compiled(&meter, junction, 50, 0).with_costs(junction, 50, 0);
    let early = FakeArchive {
        costs: true,
        ..archive(&meter, 2, &[], junction + Duration::hours(1))
    };
    let first = block_on(sync(&early, &mut store, None)).unwrap();
    assert_eq!(first.adjusted, SERIES as u64);
    // Core compiles its first hour from the adjusted 5-minute rows.
    for r in 0..SERIES {
        let (t, row) = store.short[r].iter().next().map(|(t, v)| (*t, *v)).unwrap();
        store.long[r].insert(t.replace_minute(0).unwrap(), row);
    }
    for c in 0..COSTS {
        assert_eq!(store.cost_of_day(c, 1), day_cost(1, c), "cost {c}");
        assert_eq!(store.cost_of_day(c, 2), 0, "cost {c}: not archived yet");
    }
    let late = FakeArchive {
        costs: true,
        ..archive(&meter, 3, &[], junction + Duration::hours(2))
    };
    let second = block_on(sync(&late, &mut store, None)).unwrap();
    assert_eq!(second.adjusted, COSTS as u64, "{second:?}");
    assert_whole(&store, &meter, &[]);
    for c in 0..COSTS {
        assert_eq!(store.cost_of_day(c, 2), day_cost(2, c), "cost {c}");
        assert_eq!(
            store.cost_of_day(c, 3),
            cost_so_far(3, c, 3),
            "cost {c}: the install day from its midnight"
        );
    }
    let before = store.clone();
    assert_eq!(block_on(sync(&late, &mut store, None)).unwrap().adjusted, 0);
    assert_eq!(store, before);
}

#[test]
fn the_costs_are_the_catalogs_day_totals() {
    assert_eq!(
        cost_keys(),
        [
            "electricity1_cost",
            "electricity2_cost",
            "fixed_cost",
            "total_cost",
            "gas_cost"
        ]
    );
    for key in cost_keys() {
        let sensor = crate::map::catalog::SENSORS
            .iter()
            .find(|s| s.key == key)
            .unwrap();
        // DSMR-reader's `today` and `statistics/day` name them alike.
        assert_eq!(sensor.field, key);
    }
}

/// A store that counts the day-cost rows sent to it.
struct Counting<'a> {
    store: &'a mut FakeStore,
    cost_rows: usize,
}

impl Store for Counting<'_> {
    async fn sensors(&mut self) -> Result<Vec<Option<Metadata>>, HaError> {
        self.store.sensors().await
    }

    async fn junction(&mut self, meta: &Metadata) -> Result<Option<Junction>, HaError> {
        self.store.junction(meta).await
    }

    async fn hours(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        before: OffsetDateTime,
    ) -> Result<Vec<StoredRow>, HaError> {
        self.store.hours(meta, from, before).await
    }

    async fn import(&mut self, meta: &Metadata, rows: &[Row]) -> Result<(), HaError> {
        if meta.mark() == ha::Mark::DayTotal {
            self.cost_rows += rows.len();
        }
        self.store.import(meta, rows).await
    }

    async fn adjust(
        &mut self,
        meta: &Metadata,
        from: OffsetDateTime,
        by: i64,
    ) -> Result<(), HaError> {
        self.store.adjust(meta, from, by).await
    }

    async fn settle(&mut self) -> Result<(), HaError> {
        self.store.settle().await
    }
}

/// Day costs enabled two months after the registers: their first run imports every day beneath
/// them, and the runs after it send each sensor only its own last days again, not every day since
/// the registers' junction.
#[test]
fn day_costs_enabled_later_are_not_sent_again_each_run() {
    let meter = Meter::new(START, &[200; 24 * 70]);
    let junction = START + Duration::hours(24 * 3 + 5);
    let costs_from = START + Duration::hours(24 * 65 + 7);
    let mut store = FakeStore::compiled(&meter, junction, 0, 24 * 66).with_costs(costs_from, 0, 30);
    let dsmr = FakeArchive {
        costs: true,
        ..archive(&meter, 68, &[], START + Duration::hours(24 * 69))
    };
    let first = block_on(sync(&dsmr, &mut store, None)).unwrap();
    assert!(first.from_scratch);
    assert_eq!(first.adjusted, SERIES as u64);
    for c in 0..COSTS {
        assert_eq!(store.cost_of_day(c, 64), day_cost(64, c), "cost {c}");
        assert_eq!(store.cost_of_day(c, 65), cost_so_far(65, c, 24), "cost {c}");
    }
    let before = store.clone();
    let mut counting = Counting {
        store: &mut store,
        cost_rows: 0,
    };
    let again = block_on(sync(&dsmr, &mut counting, None)).unwrap();
    assert!(!again.from_scratch);
    assert_eq!(again.adjusted, 0);
    // The runs restart two days before the registers' junction, two months back; each cost
    // gets its last three days again.
    assert_eq!(counting.cost_rows, COSTS * 3);
    assert_eq!(store, before);
}
