//! Map stage, value checks: a JSON field of DSMR-reader's answer becomes the exact text to
//! publish, or the reason it is not published.

use std::borrow::Cow;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::warn;

use super::catalog::Kind;

/// Why a field's value was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The JSON had the wrong type or text that is not a number/timestamp.
    Malformed,
    /// A meter register at 0 or below.
    Zero,
    /// A meter register lower than the last value published.
    Decrease,
    /// A register rising faster than any household can consume.
    Jump,
    /// Below 0 where the table says the value cannot be (`Sensor::non_negative`).
    Negative,
    /// Above what a household's meter can measure (`Sensor::max`).
    TooLarge,
    /// A register's first value since the start, waiting for a second reading that agrees.
    Unconfirmed,
    /// A register's first value since the start, lower than what the broker retained from an
    /// earlier run for the same meter.
    BelowRetained,
}

impl Rejection {
    /// Whether the register guard held the value back (rather than the field being invalid).
    pub(crate) fn by_register_guard(self) -> bool {
        matches!(
            self,
            Self::Zero | Self::Decrease | Self::Jump | Self::BelowRetained
        )
    }

    /// Whether the entity exists all the same: the value is a real one, only not (yet) safe
    /// to publish.
    pub(super) fn keeps_entity(self) -> bool {
        matches!(self, Self::Unconfirmed | Self::BelowRetained)
    }

    /// Logs why `value` of `field` was not published; `last` is what stays published.
    /// One constant message per reason, so a log search finds each.
    pub(super) fn warn(self, field: &str, value: &Value, last: &str) {
        match self {
            Self::Malformed => warn!(
                field,
                value = %value,
                last,
                "Not published: value is not valid for this field"
            ),
            Self::Zero => warn!(
                field,
                value = %value,
                last,
                "Not published: meter register reads 0; Home Assistant would count a meter reset"
            ),
            Self::Decrease => warn!(
                field,
                value = %value,
                last,
                "Not published: meter register is lower than the last value published; Home Assistant would count a meter reset"
            ),
            Self::Jump => warn!(
                field,
                value = %value,
                last,
                "Not published: meter register rose more than any household can consume in that time"
            ),
            Self::Negative => warn!(
                field,
                value = %value,
                last,
                "Not published: value is negative, which this sensor cannot be"
            ),
            Self::TooLarge => warn!(
                field,
                value = %value,
                last,
                "Not published: value is larger than a household meter can measure"
            ),
            // The normal start: the next poll decides.
            Self::Unconfirmed => {}
            Self::BelowRetained => warn!(
                field,
                value = %value,
                retained = last,
                "Not published: meter register is lower than the value the broker retained from before the start; Home Assistant would count a meter reset. Holding it back while the meter reads less (see DOCS.md if the retained value is wrong)"
            ),
        }
    }
}

/// Checks a JSON value against the field's kind and returns the exact text to publish.
/// Decimal text is kept as DSMR-reader sent it (`"2000.000"` stays `2000.000`). Text fields are
/// borrowed from the JSON, so an unchanged value costs no copy.
pub fn parse_value(kind: Kind, value: &Value) -> Result<Option<Cow<'_, str>>, Rejection> {
    const MAX_TEXT: usize = 64;
    match (kind, value) {
        (_, Value::Null) => Ok(None),
        (Kind::Decimal, Value::String(s)) if is_decimal(s) => Ok(Some(Cow::Borrowed(s))),
        (Kind::Decimal, Value::Number(n)) => {
            let text = n.to_string();
            if is_decimal(&text) {
                Ok(Some(Cow::Owned(text)))
            } else {
                Err(Rejection::Malformed)
            }
        }
        (Kind::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(Some(Cow::Owned(n.to_string())))
        }
        (Kind::Timestamp, Value::String(s))
            if s.len() <= MAX_TEXT && parse_timestamp(s).is_some() =>
        {
            Ok(Some(Cow::Borrowed(s)))
        }
        (Kind::Text, Value::String(s))
            if !s.is_empty() && s.len() <= MAX_TEXT && !s.chars().any(char::is_control) =>
        {
            Ok(Some(Cow::Borrowed(s)))
        }
        _ => Err(Rejection::Malformed),
    }
}

/// Whether `value` renders exactly as `text`, checked piece by piece as it is formatted.
pub(super) fn displays_as(value: &impl std::fmt::Display, text: &str) -> bool {
    struct Rest<'a>(&'a str);
    impl std::fmt::Write for Rest<'_> {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            self.0 = self.0.strip_prefix(piece).ok_or(std::fmt::Error)?;
            Ok(())
        }
    }
    let mut rest = Rest(text);
    std::fmt::write(&mut rest, format_args!("{value}")).is_ok() && rest.0.is_empty()
}

/// `-?digits(.digits)?`, at most 32 characters: what DSMR-reader's DecimalFields produce.
fn is_decimal(s: &str) -> bool {
    if s.is_empty() || s.len() > 32 {
        return false;
    }
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let mut parts = unsigned.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

pub fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// A field's value that passed the checks.
pub(super) enum Accepted<'v> {
    /// The same text as the entry's current value: most fields, most polls.
    Unchanged,
    Changed(Cow<'v, str>),
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::map::fixtures::arbitrary::{check_published, config, value};

    #[test]
    fn decimals_keep_their_exact_text() {
        assert_eq!(
            parse_value(Kind::Decimal, &json!("37562.774")),
            Ok(Some("37562.774".into()))
        );
        assert_eq!(
            parse_value(Kind::Decimal, &json!("2000.000")),
            Ok(Some("2000.000".into()))
        );
        assert_eq!(
            parse_value(Kind::Decimal, &json!(5.052)),
            Ok(Some("5.052".into()))
        );
        assert_eq!(
            parse_value(Kind::Decimal, &json!(0.1)),
            Ok(Some("0.1".into()))
        );
        assert_eq!(parse_value(Kind::Decimal, &json!(null)), Ok(None));
        for bad in [
            json!("NaN"),
            json!("1e5"),
            json!(""),
            json!("1."),
            json!(true),
            json!({}),
            json!(1e300),
        ] {
            assert_eq!(
                parse_value(Kind::Decimal, &bad),
                Err(Rejection::Malformed),
                "{bad}"
            );
        }
        assert_eq!(parse_value(Kind::Integer, &json!(7)), Ok(Some("7".into())));
        assert_eq!(
            parse_value(Kind::Integer, &json!(7.5)),
            Err(Rejection::Malformed)
        );
        assert!(
            parse_value(Kind::Timestamp, &json!("2026-11-26T14:02:14+01:00"))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            parse_value(Kind::Timestamp, &json!("yesterday")),
            Err(Rejection::Malformed)
        );
    }

    #[test]
    fn numbers_compare_with_their_rendering() {
        assert!(displays_as(&json!(7), "7"));
        assert!(displays_as(&json!(5.052), "5.052"));
        assert!(displays_as(&json!(-3), "-3"));
        assert!(!displays_as(&json!(7), "70"));
        assert!(!displays_as(&json!(70), "7"));
        assert!(!displays_as(&json!(7.0), "7"));
        assert!(!displays_as(&json!(1e300), "1"));
    }

    proptest! {
        #![proptest_config(config(2048))]

        /// Whatever the JSON, `parse_value` does not panic and yields only a valid field's
        /// own text.
        #[test]
        fn parse_value_publishes_only_a_valid_fields_own_text(
            raw in value(),
            kind in prop::sample::select(vec![Kind::Decimal, Kind::Integer, Kind::Timestamp, Kind::Text]),
        ) {
            match parse_value(kind, &raw) {
                Ok(None) => prop_assert!(raw.is_null()),
                Ok(Some(text)) => check_published(kind, &raw, &text)?,
                Err(rejection) => prop_assert_eq!(rejection, Rejection::Malformed),
            }
        }
    }
}
