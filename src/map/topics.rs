//! Map stage, state messages: the full topic of every table entry below `base_topic`, and the
//! retained messages that carry the current values.

use std::sync::Arc;

use super::MeterState;
use super::catalog::{Key, PerKey};
use crate::model::Message;

/// Full state topics, built once: `<base>/<table topic>` per table entry.
#[derive(Debug, Clone)]
pub struct Topics {
    pub(crate) bridge_status: Arc<str>,
    pub(crate) reader_status: Arc<str>,
    state: PerKey<Arc<str>>,
}

impl Topics {
    pub fn new(base: &str) -> Self {
        let state: PerKey<Arc<str>> =
            PerKey::new(|key| Arc::from(format!("{base}/{}", key.sensor().topic)));
        Self {
            bridge_status: Arc::from(format!("{base}/status")),
            reader_status: state[Key::health()].clone(),
            state,
        }
    }

    pub fn state(&self, index: Key) -> &Arc<str> {
        &self.state[index]
    }
}

/// The state messages for the given table entries, in table order of `indices`.
pub fn state_messages<'a>(
    state: &'a MeterState,
    topics: &'a Topics,
    indices: impl IntoIterator<Item = Key> + 'a,
) -> impl Iterator<Item = Message> + 'a {
    indices.into_iter().filter_map(|i| {
        state.shared_value(i).map(|v| Message {
            topic: topics.state(i).clone(),
            payload: v.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::fixtures::{self, NOW, published};

    #[test]
    fn fixture_meter_maps_to_dsmr_reader_topics() {
        let mut state = MeterState::new("dsmr-bridge");
        let topics = Topics::new("dsmr-bridge");
        // Twice: a register's first value waits for a second reading.
        state.apply(&fixtures::snapshot(), NOW);
        let offered = state.apply(&fixtures::snapshot(), NOW);
        let messages = published(&state, &topics, offered);
        let get = |t: &str| {
            messages
                .iter()
                .find(|(topic, _)| topic == t)
                .map(|(_, p)| p.as_str())
        };
        assert_eq!(
            get("dsmr-bridge/reading/electricity_delivered_1"),
            Some("37562.774")
        );
        assert_eq!(
            get("dsmr-bridge/reading/electricity_returned_2"),
            Some("30050.219")
        );
        assert_eq!(
            get("dsmr-bridge/reading/timestamp"),
            Some("2026-11-26T14:02:14+01:00")
        );
        assert_eq!(get("dsmr-bridge/reading/phase_power_current_l1"), Some("7"));
        assert_eq!(
            get("dsmr-bridge/consumption/gas/delivered"),
            Some("11268.833")
        );
        assert_eq!(get("dsmr-bridge/meter-stats/electricity_tariff"), Some("1"));
        assert_eq!(get("dsmr-bridge/meter-stats/dsmr_version"), Some("50"));
        assert_eq!(
            get("dsmr-bridge/day-consumption/electricity1_cost"),
            Some("1.21")
        );
        assert_eq!(get("dsmr-bridge/day-consumption/gas"), Some("1.513"));
        assert_eq!(
            get("dsmr-bridge/consumption/quarter-hour-peak-electricity/average_delivered"),
            Some("0.577")
        );
        assert_eq!(get("dsmr-bridge/dsmr-reader/version"), Some("5.11.0"));
        assert_eq!(get("dsmr-bridge/dsmr-reader/problems"), Some("0"));
        assert!(state.take_entities_changed());
        assert_eq!(
            state.identity().electricity.as_ref(),
            "dsmrbridge_12345678901234567890123456789000"
        );
        assert_eq!(
            state.identity().gas.as_ref(),
            "dsmrbridge_12345678901234567890123456789001"
        );
    }
}
