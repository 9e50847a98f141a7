//! Sink stage: delivers messages to the MQTT broker and reports what it acknowledged.
//! `Sink` is the seam the pipeline drives; `MqttSink` is the real broker connection.

mod mqtt;

use std::future::Future;

pub use mqtt::{BrokerConfig, MqttSink, qos_of};

use crate::model::Message;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SinkError {
    #[error("cannot set up TLS to the broker: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// What the sink reports to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SinkEvent {
    Connected,
    Disconnected,
    /// The broker accepted this message (PUBACK/PUBCOMP; for QoS 0, once written).
    Delivered(Message),
    /// Not sent and never will be as it is: the broker drops the connection on a message this
    /// large (its `max_packet_size`).
    Refused(Message),
    /// A message on a subscribed topic.
    Received {
        topic: String,
        payload: Vec<u8>,
        retained: bool,
    },
}

/// The broker as the pipeline sees it: a connection that comes and goes, takes a bounded
/// number of unacknowledged messages, and reports acknowledgements and subscribed messages.
/// Everything but `next_event` and `disconnect` returns at once, so the pipeline's one task
/// never waits on the network.
pub(crate) trait Sink {
    fn is_connected(&self) -> bool;
    /// Connected, and room for one more unacknowledged message.
    fn can_send(&self) -> bool;
    /// Hands a message to the connection; gives it back when that is not possible now.
    fn send(&mut self, message: Message) -> Result<(), Message>;
    fn subscribe(&mut self, filter: &str);
    fn unsubscribe(&mut self, filter: &str);
    /// The next event from the broker connection. Must be cancel-safe: the pipeline selects
    /// on it together with its timers and the source.
    fn next_event(&mut self) -> impl Future<Output = SinkEvent> + Send;
    /// Ends the session with a DISCONNECT, so the broker does not publish the last will.
    fn disconnect(&mut self) -> impl Future<Output = ()> + Send;
    /// Drops the connection without a DISCONNECT, so the broker publishes the last will.
    fn abort(&mut self);
}
