//! Integration tests: the bridge binary against a real Mosquitto and the simulated
//! DSMR-reader over HTTP. What they assert is what a user sees on the broker and in the log.

mod app;
mod bridge;
mod broker_limits;
mod browser;
#[cfg(feature = "demo")]
mod demo;
#[path = "../support/eventually.rs"]
mod eventually;
mod faults;
#[path = "../support/ha_core.rs"]
mod ha_core;
mod harness;
mod history;
#[path = "../support/optional.rs"]
mod optional;
mod outliers;
mod restart;
mod security;
mod source;
mod status_page;
mod telegram;
