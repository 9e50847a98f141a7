//! Simulated DSMR-reader (placeholder until the simulator lands).
