//! Health file, an edge of the pipeline: the running bridge keeps a tiny state file from its
//! `Status`, the healthcheck process (`dsmr-bridge healthcheck`, run by Docker's HEALTHCHECK)
//! reads it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::status::Status;

/// Default location; `/tmp` exists (and is writable) in the app image.
pub(crate) const DEFAULT_HEALTH_FILE: &str = "/tmp/dsmr-bridge.health";
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

/// The running bridge's side: the file's content, rewritten when it matters.
#[derive(Debug)]
struct HealthFile {
    path: PathBuf,
    connected: bool,
    last_poll: Option<u64>,
    /// How old the last successful poll may be before the bridge counts as unhealthy.
    max_age: Duration,
}

fn unix_now() -> u64 {
    unix(SystemTime::now())
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Keeps the health file in step with the pipeline's status until the pipeline ends (its end
/// of the channel is dropped), then writes the final state (not connected).
pub(crate) async fn keep_file(
    path: PathBuf,
    poll_interval: Duration,
    mut status: watch::Receiver<Status>,
) {
    let mut file = HealthFile::new(path, poll_interval);
    loop {
        // Only what the file holds: the status also carries the page's hour of power.
        let current = {
            let status = status.borrow_and_update();
            Status {
                broker_connected: status.broker_connected,
                last_poll: status.last_poll,
                ..Status::default()
            }
        };
        file.update(&current);
        if status.changed().await.is_err() {
            file.update(&Status::default());
            return;
        }
    }
}

impl HealthFile {
    /// Allows a few missed polls plus the longest backoff before calling the bridge stuck.
    fn new(path: PathBuf, poll_interval: Duration) -> Self {
        let file = Self {
            path,
            connected: false,
            last_poll: None,
            max_age: (poll_interval * 10).max(Duration::from_secs(300)),
        };
        file.write();
        file
    }

    fn update(&mut self, status: &Status) {
        let mut dirty = false;
        if self.connected != status.broker_connected {
            self.connected = status.broker_connected;
            dirty = true;
        }
        if let Some(at) = status.last_poll.map(unix) {
            let stale = self
                .last_poll
                .is_none_or(|last| at.saturating_sub(last) >= POLL_WRITE_EVERY.as_secs());
            if stale {
                self.last_poll = Some(at);
                dirty = true;
            }
        }
        if dirty {
            self.write();
        }
    }

    fn write(&self) {
        let text = format!(
            "connected {}\nlast_poll {}\nmax_age {}\n",
            u8::from(self.connected),
            self.last_poll.unwrap_or(0),
            self.max_age.as_secs() + POLL_WRITE_EVERY.as_secs(),
        );
        if replace(&self.path, text.as_bytes()).is_err() {
            tracing::debug!(path = %self.path.display(), "cannot write the health file");
        }
    }
}

/// Replaces `path` at once (the healthcheck never reads half a file) through a temp file next
/// to it. `/tmp` is shared: a fixed temp name could be a symlink planted by someone else, and
/// writing through it would overwrite its target. The temp file gets a random name and is
/// created exclusively (`O_CREAT|O_EXCL` fails on any existing name, a symlink included);
/// `rename` replaces a symlink at `path` itself, never its target.
fn replace(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(".{name}.{:016x}", fastrand::u64(..)));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
        {
            Ok(file) => break (tmp, file),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 3 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = file
        .write_all(content)
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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
        let mut file = HealthFile::new(path.clone(), Duration::from_secs(5));
        assert!(check(&path).unwrap_err().contains("not connected"));
        let mut status = Status {
            broker_connected: true,
            ..Status::default()
        };
        file.update(&status);
        assert!(check(&path).unwrap_err().contains("no successful poll"));
        status.last_poll = Some(SystemTime::now());
        file.update(&status);
        assert_eq!(check(&path), Ok(()));
        status.broker_connected = false;
        file.update(&status);
        assert!(check(&path).is_err());
        std::fs::write(&path, "connected 1\nlast_poll 1000\nmax_age 60\n").unwrap();
        assert!(check(&path).unwrap_err().contains("s ago"));
        std::fs::remove_file(&path).unwrap();
        assert!(check(&path).unwrap_err().contains("no health file"));
    }

    /// Another user of a shared `/tmp` can put a symlink where the temp file goes: writing the
    /// health file must not follow it and overwrite its target.
    #[test]
    fn the_temp_file_does_not_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dsmr-bridge.health");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        // The name the temp file had; any fixed name could be planted the same way.
        std::os::unix::fs::symlink(&victim, path.with_extension("tmp")).unwrap();

        let mut file = HealthFile::new(path.clone(), Duration::from_secs(5));
        file.update(&Status {
            broker_connected: true,
            last_poll: Some(SystemTime::now()),
            ..Status::default()
        });

        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert_eq!(check(&path), Ok(()));
        assert!(
            !std::fs::symlink_metadata(&path).unwrap().is_symlink(),
            "the health file is a file of its own"
        );
        // No temp file is left behind.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["dsmr-bridge.health", "dsmr-bridge.tmp", "victim"]);
    }

    /// The file follows the pipeline's status and says "not connected" once the pipeline ends.
    #[tokio::test]
    async fn file_follows_the_status_until_the_pipeline_ends() {
        let path =
            std::env::temp_dir().join(format!("dsmr-bridge-health-task-{}", std::process::id()));
        let (reporter, rx) = crate::status::StatusReporter::new();
        let task = tokio::spawn(keep_file(path.clone(), Duration::from_secs(5), rx));
        reporter.set_connected(true);
        reporter.polled(SystemTime::now());
        tokio::task::yield_now().await;
        // The task runs on this thread: one yield lets it write.
        while check(&path).is_err() {
            tokio::task::yield_now().await;
        }
        drop(reporter);
        task.await.unwrap();
        assert!(check(&path).unwrap_err().contains("not connected"));
        std::fs::remove_file(&path).unwrap();
    }
}
