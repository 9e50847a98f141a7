//! Parts of the suite that need more than Rust and Mosquitto: Chromium for the status page's
//! browser test, a Home Assistant Core (Python 3.13 and PyPI to install it) for the history
//! tests, faketime for a Core at a chosen time. On a machine without them such a test says so in
//! one line and passes; under CI (`CI=true`, as `.ci/run` and most CI services set it) it is
//! required and fails with the same reason.
// Each includer uses part of it.
#![allow(dead_code)]

use std::io::Write;

/// Whether this run is CI, where every optional part must be there.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|ci| !matches!(ci.trim(), "" | "0" | "false"))
}

/// For a test that cannot run here for want of `need` (`"Chromium"`), because `why`: says so
/// in one line and returns, so that the test returns too; under CI it panics instead.
#[track_caller]
pub fn skip(need: &str, why: &str) {
    assert!(!required(), "CI requires {need}: {why}");
    // Straight to stderr: libtest captures `eprintln!` of a passing test, and this line is
    // for the person who runs `cargo test`.
    // One write, so that the line stays whole between libtest's own.
    let line = format!("skipped: needs {need} ({why})\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
