//! A real Mosquitto of the caller's own on a free port, restartable. The integration tests and
//! the end-to-end benchmark both include this file (`#[path]`), so they start brokers alike.
// Each includer uses part of it.
#![allow(dead_code)]

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where Debian and others install the broker: not on a normal user's PATH, only root's.
const SBIN: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

/// `mosquitto` from PATH, else from the sbin directories; just the name when it is nowhere,
/// so that spawning fails and says how to install it.
fn program() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from("mosquitto"))
}

pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn port_open(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// What the broker runs with besides its plain, anonymous listener on `Mosquitto::port`.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Keep retained messages and sessions across restarts, as Home Assistant's Mosquitto app
    /// does (`autosave_interval` goes into `general`).
    pub persistence: bool,
    /// General options, before any listener.
    pub general: String,
    /// Further listeners, each with its own settings (`per_listener_settings`), and the ports
    /// to wait for.
    pub listeners: String,
    pub listener_ports: Vec<u16>,
}

pub struct Mosquitto {
    pub port: u16,
    dir: tempfile::TempDir,
    setup: Setup,
    child: Option<Child>,
}

impl Mosquitto {
    pub fn start(setup: Setup) -> io::Result<Self> {
        Self::start_on(free_port()?, setup)
    }

    /// On a port chosen beforehand (a client was told it before the broker existed).
    pub fn start_on(port: u16, setup: Setup) -> io::Result<Self> {
        let mut broker = Self {
            port,
            dir: tempfile::tempdir()?,
            setup,
            child: None,
        };
        broker.launch()?;
        Ok(broker)
    }

    fn launch(&mut self) -> io::Result<()> {
        let dir = self.dir.path();
        // `user root`: started as root, Mosquitto would otherwise switch to the `mosquitto`
        // user, which cannot read or write the caller's private temp dirs.
        let mut text = String::new();
        if !self.setup.listeners.is_empty() {
            text += "per_listener_settings true\n";
        }
        text += &format!(
            "user root\nlog_dest file {}\n",
            dir.join("mosquitto.log").display()
        );
        if self.setup.persistence {
            text += &format!(
                "persistence true\npersistence_location {}/\n",
                dir.display()
            );
        } else {
            text += "persistence false\n";
        }
        text += &self.setup.general;
        text += &format!(
            "\nlistener {} 127.0.0.1\nallow_anonymous true\n{}\n",
            self.port, self.setup.listeners
        );
        let conf = dir.join("mosquitto.conf");
        std::fs::write(&conf, text)?;
        let mut child = Command::new(program())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot start mosquitto ({e}); the tests need it on PATH or in {}: \
                         install it with `sudo apt-get install mosquitto` (Debian, Ubuntu), \
                         `brew install mosquitto` (macOS) or your system's package manager",
                        SBIN.join(" or ")
                    ),
                )
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports = || std::iter::once(&self.port).chain(&self.setup.listener_ports);
        while !ports().all(|p| port_open(*p)) {
            let exited = child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::other(format!(
                    "mosquitto did not open its ports ({}); log:\n{}",
                    exited.map_or("still running".into(), |s| s.to_string()),
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, so that a persistent broker writes its store; SIGKILL after 5 s.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(5));
        }
    }

    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.launch()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// SIGTERM to one child we started, SIGKILL if it has not exited within `grace`.
pub fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // An error means it has exited already: the wait below collects it.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}
