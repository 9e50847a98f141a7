//! Fault tests: the bridge survives broker and DSMR-reader failures and never publishes a wrong value.
