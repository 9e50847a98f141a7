//! Health reporting for `dsmr-bridge healthcheck`: the running bridge keeps a tiny state file,
//! the healthcheck process (run by Docker's HEALTHCHECK) reads it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default location; `/tmp` exists (and is writable) in the app image.
pub const DEFAULT_HEALTH_FILE: &str = "/tmp/dsmr-bridge.health";
/// Environment variable that moves the file (tests, several bridges on one host).
pub const HEALTH_FILE_ENV: &str = "DSMR_BRIDGE_HEALTH_FILE";

/// The file is rewritten on connection changes at once, for polls at most this often, so an
/// SD card is not written every few seconds.
const POLL_WRITE_EVERY: Duration = Duration::from_secs(30);

pub fn health_file() -> PathBuf {
    std::env::var_os(HEALTH_FILE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HEALTH_FILE))
}

/// The running bridge's side.
#[derive(Debug)]
pub struct Health {
    path: Option<PathBuf>,
    connected: bool,
    last_poll: Option<u64>,
    /// How old the last successful poll may be before the bridge counts as unhealthy.
    max_age: Duration,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Health {
    pub fn disabled() -> Self {
        Self {
            path: None,
            connected: false,
            last_poll: None,
            max_age: Duration::ZERO,
        }
    }

    /// Allows a few missed polls plus the longest backoff before calling the bridge stuck.
    pub fn new(path: PathBuf, poll_interval: Duration) -> Self {
        let health = Self {
            path: Some(path),
            connected: false,
            last_poll: None,
            max_age: (poll_interval * 10).max(Duration::from_secs(300)),
        };
        health.write();
        health
    }

    pub fn set_connected(&mut self, connected: bool) {
        if self.connected != connected {
            self.connected = connected;
            self.write();
        }
    }

    pub fn polled(&mut self) {
        let now = unix_now();
        let stale = self
            .last_poll
            .is_none_or(|last| now.saturating_sub(last) >= POLL_WRITE_EVERY.as_secs());
        if stale {
            self.last_poll = Some(now);
            self.write();
        }
    }

    fn write(&self) {
        let Some(path) = &self.path else { return };
        let text = format!(
            "connected {}\nlast_poll {}\nmax_age {}\n",
            u8::from(self.connected),
            self.last_poll.unwrap_or(0),
            self.max_age.as_secs() + POLL_WRITE_EVERY.as_secs(),
        );
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .is_err()
        {
            tracing::debug!(path = %path.display(), "cannot write the health file");
        }
    }
}

/// The healthcheck's side: `Ok` when the bridge is connected and its last poll is recent.
pub fn check(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "no health file at {} ({e}); is the bridge running?",
            path.display()
        )
    })?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    let (Some(connected), Some(last_poll), Some(max_age)) =
        (field("connected "), field("last_poll "), field("max_age "))
    else {
        return Err("health file is unreadable".into());
    };
    if connected != 1 {
        return Err("not connected to the MQTT broker".into());
    }
    if last_poll == 0 {
        return Err("no successful poll of DSMR-reader yet".into());
    }
    let age = unix_now().saturating_sub(last_poll);
    if age > max_age {
        return Err(format!(
            "last successful poll of DSMR-reader was {age} s ago"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_connected_and_polled() {
        let path = std::env::temp_dir().join(format!("dsmr-bridge-health-{}", std::process::id()));
        let mut health = Health::new(path.clone(), Duration::from_secs(5));
        assert!(check(&path).unwrap_err().contains("not connected"));
        health.set_connected(true);
        assert!(check(&path).unwrap_err().contains("no successful poll"));
        health.polled();
        assert_eq!(check(&path), Ok(()));
        health.set_connected(false);
        assert!(check(&path).is_err());
        std::fs::write(&path, "connected 1\nlast_poll 1000\nmax_age 60\n").unwrap();
        assert!(check(&path).unwrap_err().contains("s ago"));
        std::fs::remove_file(&path).unwrap();
        assert!(check(&path).unwrap_err().contains("no health file"));
    }
}
