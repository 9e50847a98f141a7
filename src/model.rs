//! Shared types that travel down the pipeline: what one poll fetched, and messages for the broker.

use std::sync::Arc;

use serde_json::{Map, Value};

/// One JSON object as DSMR-reader returned it, already unwrapped from pagination.
pub type Object = Map<String, Value>;

/// What one poll cycle fetched from DSMR-reader. Endpoints polled less often are `None` in
/// the cycles that skipped them; the map stage keeps their last values.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub meter_stats: Option<Object>,
    pub reading: Option<Object>,
    pub today: Option<Object>,
    pub peak: Option<Object>,
    pub version: Option<Object>,
    pub monitoring: Option<Object>,
}

/// A retained MQTT message. Topics and payloads are shared (`Arc<str>`): the same few dozen
/// topics are offered on every poll, and one payload is held at once by the meter state, the
/// pending queue, the in-flight set and the TTL cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Arc<str>,
}

impl Message {
    pub(crate) fn new(topic: impl Into<Arc<str>>, payload: impl Into<Arc<str>>) -> Self {
        Self {
            topic: topic.into(),
            payload: payload.into(),
        }
    }
}
