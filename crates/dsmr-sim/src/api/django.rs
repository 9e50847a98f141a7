//! The simulated REST API v2, Django and DRF: query strings as `QueryDict` reads them,
//! django-filter's date/time filters, DRF's ordering and limit/offset paging with absolute
//! links, Python's formatting of dates and times, and serializer output in field order.

use std::collections::HashMap;

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::{Context, Reply, Request};
use crate::zone::{TimeZone, Unplaceable};

/// DRF's `PAGE_SIZE`.
pub(super) const DEFAULT_LIMIT: usize = 25;
/// Query strings with more pairs than this are cut; a real client sends a handful.
pub(super) const MAX_QUERY_PAIRS: usize = 64;

/// What a list view filters and orders by.
pub(super) struct ListSpec {
    /// Exact, `__gte` and `__lte` filter parameters on the list's timestamp.
    pub(super) filters: [&'static str; 3],
    /// Orderable fields; the first is the timestamp, the others are sort values of each row.
    pub(super) orderings: &'static [&'static str],
}

/// A row's filter timestamp and its other sort values, in `ListSpec::orderings[1..]` order.
pub(super) type Row<const N: usize> = (OffsetDateTime, [i128; N]);

pub(super) fn list<const N: usize>(
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
pub(super) fn page_reply(
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
pub(super) fn ordering(query: &Query, fields: &[&str]) -> Option<(usize, bool)> {
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
pub(super) struct Bounds {
    pub(super) exact: Option<OffsetDateTime>,
    pub(super) gte: Option<OffsetDateTime>,
    pub(super) lte: Option<OffsetDateTime>,
}

impl Bounds {
    pub(super) fn parse(
        query: &Query,
        names: [&'static str; 3],
        zone: &TimeZone,
    ) -> Result<Self, Obj> {
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

    pub(super) fn is_empty(&self) -> bool {
        self.exact.is_none() && self.gte.is_none() && self.lte.is_none()
    }

    pub(super) fn admits(&self, t: OffsetDateTime) -> bool {
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
fn parse_filter_datetime(value: &str, local: UtcOffset) -> Option<OffsetDateTime> {
    parse_filter_parts(value).map(|(t, offset)| t.assume_offset(offset.unwrap_or(local)))
}

/// Parses a filter value the way Django's `DateTimeField` does: `parse_datetime` (ISO 8601
/// with `T` or a space, optional seconds, fraction and `Z`/`±HH[:MM]`), then the
/// `YYYY-MM-DD` input format. Values without an offset come back without one: the server's
/// time zone places them (or refuses to).
pub(super) fn parse_filter_parts(value: &str) -> Option<(PrimitiveDateTime, Option<UtcOffset>)> {
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
    pub(super) fn new(text: &'a str) -> Self {
        Self {
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.at == self.bytes.len()
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(super) fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.at += 1;
        }
        hit
    }

    pub(super) fn digits(&mut self, min: u32, max: u32) -> Option<u32> {
        self.digits_counted(min, max).map(|(value, _)| value)
    }

    pub(super) fn digits_counted(&mut self, min: u32, max: u32) -> Option<(u32, u32)> {
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

    pub(super) fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    /// `Z` or `±HH[[:]MM]`; `Some(None)` when there is no offset, `None` when it is malformed.
    pub(super) fn offset(&mut self) -> Option<Option<UtcOffset>> {
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
pub(super) struct Page {
    pub(super) limit: usize,
    pub(super) offset: usize,
}

impl Page {
    pub(super) fn from_query(query: &Query) -> Self {
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
    pub(super) base: String,
    pub(super) query: &'a Query,
}

impl Links<'_> {
    pub(super) fn next(&self, page: &Page, count: usize) -> Option<String> {
        let next = page.offset.saturating_add(page.limit);
        (next < count).then(|| self.with(page.limit, Some(next)))
    }

    pub(super) fn previous(&self, page: &Page) -> Option<String> {
        if page.offset == 0 {
            return None;
        }
        let previous = page.offset.checked_sub(page.limit).filter(|&o| o > 0);
        Some(self.with(page.limit, previous))
    }

    pub(super) fn with(&self, limit: usize, offset: Option<usize>) -> String {
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
pub(super) struct Query {
    pub(super) pairs: Vec<(String, String)>,
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

/// A JSON object that keeps insertion order (serde_json's map sorts keys without the
/// `preserve_order` feature, and DSMR-reader's field order is part of what we mimic).
#[derive(Debug, Default)]
pub(super) struct Obj(Vec<(&'static str, Field)>);

#[derive(Debug)]
enum Field {
    Value(Value),
    Objects(Vec<Obj>),
}

impl Obj {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn put(mut self, key: &'static str, value: impl Into<Value>) -> Self {
        self.0.push((key, Field::Value(value.into())));
        self
    }

    pub(super) fn put_objects(mut self, key: &'static str, objects: Vec<Obj>) -> Self {
        self.0.push((key, Field::Objects(objects)));
        self
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `key` served as `value` instead.
    pub(super) fn replace(mut self, key: &str, value: Value) -> Self {
        for (k, field) in &mut self.0 {
            if *k == key {
                *field = Field::Value(value.clone());
            }
        }
        self
    }

    /// Forces fields to test values: a JSON number where the field is an integer (if the
    /// text is one), a decimal string elsewhere, `null` for `None`.
    pub(super) fn with_overrides(mut self, overrides: &HashMap<String, Option<String>>) -> Self {
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
pub(super) fn thousandths(value: u64) -> String {
    format!("{}.{:03}", value / 1_000, value % 1_000)
}
pub(super) fn iso_date(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Python's `isoformat()` as DRF prints it: microseconds only when non-zero, `Z` for UTC.
pub(super) fn iso(t: OffsetDateTime) -> String {
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

    use super::*;

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
