//! The import in-process: a meter whose registers are known every hour, DSMR-reader's archive and
//! readings of it, and a Home Assistant statistics store that behaves as Core's recorder does
//! (its own rows compiled from its first state, imports upserted by hour, adjustments added to
//! its own rows from an hour on).

use std::collections::BTreeMap;

use proptest::prelude::*;
use time::macros::datetime;
use time::{Date, Duration, OffsetDateTime};

use super::*;

const UNIT: f64 = 1_000.0;

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
                    costs: [None; 3],
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

/// One stored row: state, sum (thousandths), and whether it carries the import's mark.
type Stored = (Option<i64>, i64, bool);

/// Home Assistant's recorder for the five sensors.
#[derive(Clone, Debug, Default, PartialEq)]
struct FakeStore {
    long: [BTreeMap<OffsetDateTime, Stored>; REGISTERS],
    short: [BTreeMap<OffsetDateTime, Stored>; REGISTERS],
    adjustments: u64,
}

fn meta(register: usize) -> Metadata {
    Metadata {
        statistic_id: format!("sensor.dsmr_{}", register_keys()[register]),
        source: "recorder".to_owned(),
        name: None,
        has_sum: true,
        has_mean: Some(false),
        mean_type: Some(0),
        unit_class: Some("energy".to_owned()),
        statistics_unit_of_measurement: Some("kWh".to_owned()),
    }
}

fn register_of(meta: &Metadata) -> usize {
    register_keys()
        .iter()
        .position(|k| meta.statistic_id.ends_with(k))
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

fn stored_row(start: OffsetDateTime, row: &Stored) -> StoredRow {
    StoredRow {
        start,
        state: row.0.map(|s| s as f64 / UNIT),
        sum: Some(row.1 as f64 / UNIT),
        imported: row.2,
    }
}

impl Store for FakeStore {
    async fn sensors(&mut self) -> Result<Vec<Option<Metadata>>, HaError> {
        Ok((0..REGISTERS)
            .map(|r| (!self.long[r].is_empty() || !self.short[r].is_empty()).then(|| meta(r)))
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
            .map(|(t, row)| stored_row(*t, row))
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
