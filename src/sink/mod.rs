//! Sink stage: delivers messages to the MQTT broker and reports what it acknowledged.
//! Together with the source, the only I/O.

mod mqtt;
pub mod supervisor;

pub use mqtt::{BrokerConfig, MqttSink, SinkEvent};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot set up TLS to the broker: {0}")]
    Tls(#[from] crate::tls::TlsError),
}
