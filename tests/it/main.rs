//! Integration tests: the bridge binary against a real Mosquitto and the simulated
//! DSMR-reader over HTTP. What they assert is what a user sees on the broker and in the log.

mod app;
mod bridge;
mod broker_limits;
mod browser;
#[cfg(feature = "demo")]
mod demo;
mod faults;
mod harness;
mod history;
mod outliers;
mod restart;
mod security;
mod source;
mod status_page;
