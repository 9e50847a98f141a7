//! Map stage: DSMR-reader's JSON becomes checked values, state messages and discovery messages.
//! No I/O and no clock of its own: the caller passes `now`.
//!
//! - `catalog`: the sensor table, everything known about each published value;
//! - `value`: a JSON field becomes the exact text to publish, or a `Rejection`;
//! - `guard`: meter registers never go out as 0, lower, or jumping;
//! - `state`: `MeterState`, the last accepted values, entities and meter identity;
//! - `telegram`: the meters' identity and tariff convention from the raw telegram;
//! - `topics`: state topics and messages;
//! - `discovery`: Home Assistant device configs, in parent-first order.

pub mod catalog;
pub mod discovery;
#[cfg(test)]
pub(crate) mod fixtures;
mod guard;
mod state;
mod telegram;
mod topics;
mod value;

pub(crate) use guard::RetainedRegister;
pub use state::{MAX_FUTURE, MeterState};
pub use topics::{Topics, state_messages};
pub use value::{Rejection, parse_timestamp, parse_value};
