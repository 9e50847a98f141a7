//! Config stage: options from flags, a YAML file and the app's `/data/options.json`, validated
//! into typed values before anything else runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use serde::Deserialize;
use tracing::level_filters::LevelFilter;
use url::Url;

use crate::history::HistoryConfig;
pub use crate::source::DsmrConfig;

/// Where the Home Assistant Supervisor writes the app's options.
pub(crate) const HA_OPTIONS_FILE: &str = "/data/options.json";

#[derive(Parser)]
#[command(
    name = "dsmr-bridge",
    version,
    about = "DSMR-reader REST API to MQTT with Home Assistant discovery"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML file with options (same names as below, snake_case).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    /// Home Assistant app options (default: /data/options.json when it exists).
    #[arg(long, value_name = "FILE")]
    pub(crate) options: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) flags: RawOptions,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the whole bridge against a simulated DSMR-reader and an embedded broker.
    Demo(DemoArgs),
    /// Exit 0 when the running bridge is connected and polling, 1 otherwise.
    Healthcheck,
}

/// The options `dsmr-bridge demo` applies; the simulator stands in for DSMR-reader, so the
/// DSMR-reader options and the file sources have no meaning there.
#[derive(Args, Clone, Default)]
pub struct DemoArgs {
    /// Publish to this broker instead of an embedded one, e.g. your Home Assistant's
    #[arg(long)]
    pub(crate) mqtt_host: Option<String>,
    /// Port of the embedded broker [default: 1883, or a free one when 1883 is taken], or of
    /// --mqtt-host's broker [default: 1883]
    #[arg(long)]
    pub(crate) mqtt_port: Option<u16>,
    /// User name on --mqtt-host's broker
    #[arg(long, requires = "mqtt_host")]
    pub(crate) mqtt_username: Option<String>,
    /// Password on --mqtt-host's broker
    #[arg(long, requires = "mqtt_host")]
    pub(crate) mqtt_password: Option<SecretString>,
    /// Root of the state topics [default: dsmr-bridge]
    #[arg(long)]
    pub(crate) base_topic: Option<String>,
    /// [default: homeassistant]
    #[arg(long)]
    pub(crate) discovery_prefix: Option<String>,
    /// trace, debug, info, warn or error; info shows every published message [default: info]
    #[arg(long)]
    pub(crate) log_level: Option<String>,
    /// Address of the status page [default: 127.0.0.1:8099, or a free port when it is taken]
    #[arg(long)]
    pub(crate) status_listen: Option<String>,
    /// The simulated meter: dutch (gas), dutch-water (gas and a water meter) or belgian
    /// (Fluvius, with the capacity tariff) [default: dutch]
    #[arg(long, value_enum)]
    pub(crate) meter: Option<DemoMeter>,
}

/// The meter `dsmr-bridge demo` simulates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum DemoMeter {
    /// A Dutch DSMR 5 meter with a gas meter.
    #[default]
    Dutch,
    /// A Dutch DSMR 5 meter with a water meter and a gas meter on its M-Bus.
    DutchWater,
    /// A Belgian Fluvius meter with a year of monthly maxima (capacity tariff) and gas.
    Belgian,
}

impl DemoArgs {
    /// The same options as the bridge's, for `Config::try_from`.
    #[cfg(feature = "demo")]
    pub(crate) fn options(&self) -> RawOptions {
        RawOptions {
            mqtt_host: self.mqtt_host.clone(),
            mqtt_port: self.mqtt_port,
            mqtt_username: self.mqtt_username.clone(),
            mqtt_password: self.mqtt_password.clone(),
            base_topic: self.base_topic.clone(),
            discovery_prefix: self.discovery_prefix.clone(),
            log_level: self.log_level.clone(),
            status_listen: self.status_listen.clone(),
            ..RawOptions::default()
        }
    }
}

/// Options exactly as a user writes them. Every field is optional here so that the three sources
/// can be layered; `Config::try_from` decides what is required. Not `Debug`: it holds secrets.
#[derive(Args, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawOptions {
    /// DSMR-reader's address, e.g. http://192.168.1.10:7777/
    #[arg(long)]
    pub dsmr_reader_url: Option<String>,
    /// DSMR-reader API key (admin → API configuration).
    #[arg(long, env = "DSMR_READER_API_KEY", hide_env_values = true)]
    pub dsmr_reader_api_key: Option<SecretString>,
    /// PEM file with a CA to trust for an https:// DSMR-reader.
    #[arg(long)]
    pub dsmr_reader_ca_file: Option<PathBuf>,
    /// Seconds between polls of the newest reading [default: 5]
    #[arg(long)]
    pub poll_interval: Option<u64>,
    /// Broker host [default: the Supervisor's broker app, else localhost]
    #[arg(long)]
    pub mqtt_host: Option<String>,
    /// Broker port [default: 1883, 8883 with TLS]
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    #[arg(long)]
    pub mqtt_username: Option<String>,
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<SecretString>,
    /// Connect to the broker with TLS [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub mqtt_tls: Option<bool>,
    /// PEM file with the CA that signed the broker's certificate [default: Mozilla's roots]
    #[arg(long)]
    pub mqtt_ca_file: Option<PathBuf>,
    /// QoS of every publish, 0-2 [default: 1]
    #[arg(long)]
    pub mqtt_qos: Option<u8>,
    /// Root of the state topics [default: dsmr-bridge]
    #[arg(long)]
    pub base_topic: Option<String>,
    /// Publish Home Assistant MQTT discovery [default: true]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub discovery: Option<bool>,
    /// [default: homeassistant]
    #[arg(long)]
    pub discovery_prefix: Option<String>,
    /// Seconds an unchanged value is not sent again; 0 turns the cache off [default: 3600]
    #[arg(long)]
    pub cache_ttl: Option<u64>,
    /// Identity of the meter devices when the meter's equipment id is unknown.
    #[arg(long)]
    pub device_id: Option<String>,
    /// trace, debug, info, warn or error [default: info]
    #[arg(long)]
    pub log_level: Option<String>,

    // History import into Home Assistant's long-term statistics.
    /// Import DSMR-reader's archive into Home Assistant's statistics [default: true inside Home
    /// Assistant, else when homeassistant_url and homeassistant_token are set]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub history: Option<bool>,
    /// Home Assistant's address outside the app, e.g. http://homeassistant.local:8123/
    #[arg(long)]
    pub homeassistant_url: Option<String>,
    /// A long-lived access token of an administrator (Home Assistant profile → Security).
    #[arg(long, env = "HOMEASSISTANT_TOKEN", hide_env_values = true)]
    pub homeassistant_token: Option<SecretString>,
    // The status page.
    /// Address of the status page outside Home Assistant, e.g. 127.0.0.1:8099 [default: off]
    #[arg(long)]
    pub status_listen: Option<String>,
}

macro_rules! layer {
    ($upper:expr, $lower:expr, $($field:ident),+) => {
        RawOptions { $($field: $upper.$field.or($lower.$field)),+ }
    };
}

impl RawOptions {
    /// Fields set in `self` win over those in `lower`.
    pub(crate) fn over(self, lower: RawOptions) -> RawOptions {
        layer!(
            self,
            lower,
            dsmr_reader_url,
            dsmr_reader_api_key,
            dsmr_reader_ca_file,
            poll_interval,
            mqtt_host,
            mqtt_port,
            mqtt_username,
            mqtt_password,
            mqtt_tls,
            mqtt_ca_file,
            mqtt_qos,
            base_topic,
            discovery,
            discovery_prefix,
            cache_ttl,
            device_id,
            log_level,
            history,
            homeassistant_url,
            homeassistant_token,
            status_listen
        )
    }

    /// The option names, as users write them (the app contract test checks them against
    /// `config.yaml`, the translations and the docs).
    pub const NAMES: [&'static str; 21] = [
        "dsmr_reader_url",
        "dsmr_reader_api_key",
        "dsmr_reader_ca_file",
        "poll_interval",
        "mqtt_host",
        "mqtt_port",
        "mqtt_username",
        "mqtt_password",
        "mqtt_tls",
        "mqtt_ca_file",
        "mqtt_qos",
        "base_topic",
        "discovery",
        "discovery_prefix",
        "cache_ttl",
        "device_id",
        "log_level",
        "history",
        "homeassistant_url",
        "homeassistant_token",
        "status_listen",
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The one-line form `option: reason` is what users see in the app's log.
    #[error("{option}: {reason}")]
    Invalid { option: String, reason: String },
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

impl From<crate::history::options::OptionError> for ConfigError {
    fn from(e: crate::history::options::OptionError) -> Self {
        invalid(e.option, e.reason)
    }
}

fn invalid(option: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        option: option.to_owned(),
        reason: reason.into(),
    }
}

/// The levels the app's `config.yaml` schema offers (`list(trace|debug|info|warn|error)`).
/// `LevelFilter` parses more (digits, an empty text, upper case, `off`); the same words
/// everywhere keep a YAML file or a flag portable to the app's options. `off` is left out on
/// purpose: a bridge that logs nothing leaves its user nothing to report.
pub(crate) const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

fn log_level(text: Option<&str>) -> Result<LevelFilter, ConfigError> {
    let Some(text) = text.map(str::trim) else {
        return Ok(LevelFilter::INFO);
    };
    match text.parse::<LevelFilter>() {
        Ok(level) if LOG_LEVELS.contains(&text) => Ok(level),
        _ => Err(invalid(
            "log_level",
            format!("{text:?} is not one of {}", LOG_LEVELS.join(", ")),
        )),
    }
}

/// `status_listen`: an IP address and port; empty means off.
fn status_listen(text: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|_| {
        invalid(
            "status_listen",
            format!("{text:?} is not an IP address with a port, e.g. 127.0.0.1:8099 or [::1]:8099"),
        )
    })
}

/// Validated configuration. Nothing downstream sees raw options.
#[derive(Debug, Clone)]
pub struct Config {
    pub dsmr: DsmrConfig,
    pub mqtt: MqttConfig,
    pub topics: TopicConfig,
    /// Zero turns the cache off.
    pub cache_ttl: Duration,
    pub(crate) device_id: Option<String>,
    pub log_level: LevelFilter,
    /// Where to import DSMR-reader's archive; `None` when the history is off.
    pub(crate) history: Option<HistoryConfig>,
    /// Where the status page listens outside Home Assistant; inside, it moves the ingress
    /// listener (which still answers only the ingress proxy).
    pub(crate) status_listen: Option<SocketAddr>,
    /// Each published message as a short line at `info` instead of in full at `debug`: what
    /// the demo shows a newcomer. Not an option; the demo sets it.
    pub(crate) show_published: bool,
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// `None`: ask the Supervisor (inside Home Assistant) or use localhost.
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<SecretString>,
    pub(crate) tls: Option<bool>,
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) qos: u8,
}

#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub(crate) base: String,
    pub(crate) discovery: bool,
    pub(crate) discovery_prefix: String,
}

impl Config {
    /// Reads and layers the option sources: flags, then `--config`, then the app's options file.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let mut raw = cli.flags.clone();
        if let Some(path) = &cli.config {
            raw = raw.over(read_yaml(path)?);
        }
        let options = cli.options.clone().or_else(|| {
            let default = Path::new(HA_OPTIONS_FILE);
            default.exists().then(|| default.to_path_buf())
        });
        if let Some(path) = options {
            raw = raw.over(read_json(&path)?);
        }
        Config::try_from(raw)
    }
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Options whose values are never shown, not even in an error about them.
const SECRET_OPTIONS: [&str; 3] = [
    "dsmr_reader_api_key",
    "mqtt_password",
    "homeassistant_token",
];

/// Names the option in a parse error: `mqtt_port: invalid type: string "x", expected u16`.
/// Errors not about one option (syntax, an unknown key, not an object) name the file.
fn parse_error(path: &Path, at: String, error: impl std::fmt::Display) -> ConfigError {
    let option = if RawOptions::NAMES.contains(&at.as_str()) {
        at
    } else {
        path.display().to_string()
    };
    // serde quotes the value it rejects (`invalid type: integer `1234``): not for a secret.
    let reason = if SECRET_OPTIONS.contains(&option.as_str()) {
        "must be text in quotes (the value is not shown: it is a secret)".to_owned()
    } else {
        error.to_string()
    };
    invalid(&option, reason)
}

pub(crate) fn read_yaml(path: &Path) -> Result<RawOptions, ConfigError> {
    let text = read_file(path)?;
    if text.trim().is_empty() {
        return Ok(RawOptions::default());
    }
    // serde_norway's messages start with the option's path when there is one: the line then
    // starts with the option, as for flags and options.json.
    serde_yaml::from_str(&text).map_err(|e| {
        let message = e.to_string();
        match message.split_once(": ") {
            Some((at, reason)) if RawOptions::NAMES.contains(&at) => {
                parse_error(path, at.to_owned(), reason)
            }
            _ => invalid(&path.display().to_string(), message),
        }
    })
}

pub(crate) fn read_json(path: &Path) -> Result<RawOptions, ConfigError> {
    let text = read_file(path)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let at = e.path().to_string();
        parse_error(path, at, e.into_inner())
    })
}

fn read_pem(option: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| invalid(option, format!("cannot read {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(
            option,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    // A certificate that does not parse would otherwise stop the bridge later with an error
    // that names no option (or, for mqtt_ca_file without mqtt_tls, pass unnoticed).
    crate::tls::client_config(Some(&bytes))
        .map_err(|e| invalid(option, format!("{}: {e}", path.display())))?;
    Ok(bytes)
}

/// Longest `base_topic` or `discovery_prefix`, in bytes. MQTT allows 65535 bytes for a whole
/// topic; a root far shorter than that leaves room for every topic below it and keeps each
/// message small, and no broker or Home Assistant setup needs more.
pub(crate) const MAX_TOPIC_ROOT: usize = 256;

/// Longest `device_id`, in characters: it is a level of the discovery topics and part of every
/// entity's unique id. Meters' own equipment ids are 34 characters or fewer.
pub(crate) const MAX_DEVICE_ID: usize = 64;

/// A topic root: non-empty levels, no wildcards, no leading or trailing `/`, not a broker's own
/// `$` topic, short enough for every topic below it.
fn check_topic(option: &str, topic: &str) -> Result<(), ConfigError> {
    if topic.is_empty() {
        return Err(invalid(option, "must not be empty"));
    }
    if topic.len() > MAX_TOPIC_ROOT {
        return Err(invalid(
            option,
            format!("is {} bytes long; at most {MAX_TOPIC_ROOT}", topic.len()),
        ));
    }
    // Brokers keep topics that start with $ for themselves ($SYS): a publish there vanishes
    // and a subscription to `#` does not see it.
    if topic.starts_with('$') {
        return Err(invalid(
            option,
            "must not start with $ (the broker keeps those topics for itself)",
        ));
    }
    if topic.contains(['#', '+']) {
        return Err(invalid(
            option,
            "must not contain the MQTT wildcards # or +",
        ));
    }
    if topic.split('/').any(str::is_empty) {
        return Err(invalid(
            option,
            "must not start or end with / or contain an empty level",
        ));
    }
    if topic.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            option,
            "must not contain spaces or control characters",
        ));
    }
    Ok(())
}

/// A broker host name or address, without a scheme, path or port. An IPv6 address has colons
/// of its own; any other colon is most likely `host:port`, which would fail later as a name
/// that does not resolve.
fn check_mqtt_host(host: &str) -> Result<(), ConfigError> {
    let option = "mqtt_host";
    if host.contains("://") || host.contains(['/', ' ']) {
        return Err(invalid(
            option,
            format!("{host:?} is not a host name or address (leave out mqtt:// and paths)"),
        ));
    }
    if !host.contains(':') || host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(());
    }
    let (name, port) = match host.strip_prefix('[').and_then(|h| h.split_once(']')) {
        Some((v6, rest)) => (v6, rest.strip_prefix(':')),
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let valid_name =
        !name.is_empty() && (!name.contains(':') || name.parse::<std::net::Ipv6Addr>().is_ok());
    match port.map(str::parse::<u16>) {
        Some(Ok(port)) if valid_name => Err(invalid(
            option,
            format!("{host:?} holds a port; set mqtt_host: {name} and mqtt_port: {port}"),
        )),
        None if valid_name => Err(invalid(
            option,
            format!("{host:?}: leave out the brackets; set mqtt_host: {name}"),
        )),
        _ => Err(invalid(
            option,
            format!("{host:?} is not a host name or address"),
        )),
    }
}

fn in_range(option: &str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            option,
            format!("{value} is out of range ({min} to {max})"),
        ))
    }
}

/// DSMR-reader's address, ending in `/`. An address typed without `http://` gets the corrected
/// URL in its error: `url` reads `dsmr.local:7777` as scheme `dsmr.local` and refuses
/// `192.168.1.10:7777` as relative, and neither tells the user what to change.
fn dsmr_reader_url(text: &str) -> Result<Url, ConfigError> {
    let option = "dsmr_reader_url";
    if text.is_empty() {
        return Err(invalid(
            option,
            "is empty: set it to DSMR-reader's address, e.g. http://192.168.1.10:7777/",
        ));
    }
    let no_scheme = |fallback: String| match with_http(text) {
        Some(url) => invalid(option, format!("no scheme; did you mean {url} ?")),
        None => invalid(option, fallback),
    };
    let mut url = match Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err(no_scheme(
                "no scheme; start it with http:// or https://, e.g. http://192.168.1.10:7777/"
                    .to_owned(),
            ));
        }
        Err(e) => return Err(invalid(option, e.to_string())),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(no_scheme(format!(
            "scheme {} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(option, "has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(option, "must not have a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// What an address without a scheme most likely meant, when that is a valid address: not for
/// one with `://` (a wrong scheme), a bare path, or one that would read as user and password
/// (`mailto:a@b`).
fn with_http(text: &str) -> Option<Url> {
    if text.contains("://") || text.starts_with('/') {
        return None;
    }
    dsmr_reader_url(&format!("http://{text}"))
        .ok()
        .filter(|url| url.username().is_empty() && url.password().is_none())
}

impl TryFrom<RawOptions> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawOptions) -> Result<Self, Self::Error> {
        use secrecy::ExposeSecret;

        let url_text = raw.dsmr_reader_url.ok_or_else(|| {
            invalid(
                "dsmr_reader_url",
                "missing: set it to DSMR-reader's address, e.g. http://192.168.1.10:7777/",
            )
        })?;
        let url = dsmr_reader_url(url_text.trim())?;

        let api_key = raw.dsmr_reader_api_key.ok_or_else(|| {
            invalid(
                "dsmr_reader_api_key",
                "missing: copy it from DSMR-reader's admin, API configuration",
            )
        })?;
        let key = api_key.expose_secret();
        if key.trim().is_empty() {
            return Err(invalid("dsmr_reader_api_key", "must not be empty"));
        }
        if key.chars().any(|c| c.is_control() || c == ' ') || !key.is_ascii() {
            return Err(invalid(
                "dsmr_reader_api_key",
                "contains spaces or characters that cannot be sent in an HTTP header",
            ));
        }
        let api_key = SecretString::from(key.trim());

        let dsmr_ca = raw
            .dsmr_reader_ca_file
            .as_deref()
            .map(|p| read_pem("dsmr_reader_ca_file", p))
            .transpose()?;
        let poll_interval = in_range("poll_interval", raw.poll_interval.unwrap_or(5), 1, 3600)?;

        let host = raw
            .mqtt_host
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty());
        if let Some(h) = &host {
            check_mqtt_host(h)?;
        }
        if raw.mqtt_port == Some(0) {
            return Err(invalid("mqtt_port", "0 is not a valid port"));
        }
        let mqtt_ca = raw
            .mqtt_ca_file
            .as_deref()
            .map(|p| read_pem("mqtt_ca_file", p))
            .transpose()?;
        let qos = in_range("mqtt_qos", u64::from(raw.mqtt_qos.unwrap_or(1)), 0, 2)? as u8;
        let username = raw.mqtt_username.filter(|u| !u.is_empty());
        let password = raw.mqtt_password.filter(|p| !p.expose_secret().is_empty());
        // MQTT sends a password only together with a user name; alone it would be dropped
        // without a word and the broker would refuse the connection (or let anyone in).
        if password.is_some() && username.is_none() {
            return Err(invalid(
                "mqtt_password",
                "set without mqtt_username; a broker takes a password only with a user name \
                 (set mqtt_username too, or leave both empty to use the broker app's credentials)",
            ));
        }

        let base = raw.base_topic.unwrap_or_else(|| "dsmr-bridge".to_owned());
        check_topic("base_topic", &base)?;
        let discovery_prefix = raw
            .discovery_prefix
            .unwrap_or_else(|| "homeassistant".to_owned());
        check_topic("discovery_prefix", &discovery_prefix)?;
        let cache_ttl = in_range("cache_ttl", raw.cache_ttl.unwrap_or(3600), 0, 86_400)?;

        let device_id = raw.device_id.filter(|d| !d.is_empty());
        if let Some(d) = &device_id
            && d.chars().count() > MAX_DEVICE_ID
        {
            return Err(invalid(
                "device_id",
                format!(
                    "is {} characters long; at most {MAX_DEVICE_ID}",
                    d.chars().count()
                ),
            ));
        }
        if let Some(d) = &device_id
            && !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(invalid(
                "device_id",
                format!("{d:?} may only hold letters, digits, _ and -"),
            ));
        }

        let log_level = log_level(raw.log_level.as_deref())?;
        let history = crate::history::options::history(
            raw.history,
            raw.homeassistant_url.as_deref(),
            raw.homeassistant_token,
            crate::supervisor::token(),
        )?;
        let status_listen = status_listen(raw.status_listen.as_deref())?;

        Ok(Config {
            dsmr: DsmrConfig {
                url,
                api_key,
                ca_pem: dsmr_ca,
                poll_interval: Duration::from_secs(poll_interval),
            },
            mqtt: MqttConfig {
                host,
                port: raw.mqtt_port,
                username,
                password,
                tls: raw.mqtt_tls,
                ca_pem: mqtt_ca,
                qos,
            },
            topics: TopicConfig {
                base,
                discovery: raw.discovery.unwrap_or(true),
                discovery_prefix,
            },
            cache_ttl: Duration::from_secs(cache_ttl),
            device_id,
            log_level,
            history,
            status_listen,
            show_published: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> RawOptions {
        RawOptions {
            dsmr_reader_url: Some("http://dsmr.local:7777".into()),
            dsmr_reader_api_key: Some("ABC123".into()),
            ..RawOptions::default()
        }
    }

    fn error_of(raw: RawOptions) -> String {
        match Config::try_from(raw) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_fill_everything_but_url_and_key() {
        let cfg = Config::try_from(minimal()).unwrap();
        assert_eq!(cfg.dsmr.url.as_str(), "http://dsmr.local:7777/");
        assert_eq!(cfg.dsmr.poll_interval, Duration::from_secs(5));
        assert_eq!(cfg.mqtt.qos, 1);
        assert_eq!(cfg.topics.base, "dsmr-bridge");
        assert_eq!(cfg.topics.discovery_prefix, "homeassistant");
        assert!(cfg.topics.discovery);
        assert_eq!(cfg.cache_ttl, Duration::from_secs(3600));
        assert_eq!(cfg.log_level, LevelFilter::INFO);
        assert!(cfg.mqtt.host.is_none());
    }

    #[test]
    fn url_keeps_a_proxy_prefix() {
        let raw = RawOptions {
            dsmr_reader_url: Some("https://home.example/dsmr".into()),
            ..minimal()
        };
        let cfg = Config::try_from(raw).unwrap();
        assert_eq!(
            cfg.dsmr.url.join("api/v2/x").unwrap().as_str(),
            "https://home.example/dsmr/api/v2/x"
        );
    }

    #[test]
    fn each_invalid_option_is_named() {
        let cases: Vec<(RawOptions, &str)> = vec![
            (
                RawOptions {
                    dsmr_reader_url: None,
                    ..minimal()
                },
                "dsmr_reader_url: missing",
            ),
            (
                RawOptions {
                    dsmr_reader_url: Some("dsmr.local".into()),
                    ..minimal()
                },
                "dsmr_reader_url: no scheme; did you mean http://dsmr.local/ ?",
            ),
            (
                RawOptions {
                    dsmr_reader_url: Some("ftp://x/".into()),
                    ..minimal()
                },
                "dsmr_reader_url: scheme ftp",
            ),
            (
                RawOptions {
                    dsmr_reader_api_key: None,
                    ..minimal()
                },
                "dsmr_reader_api_key: missing",
            ),
            (
                RawOptions {
                    poll_interval: Some(0),
                    ..minimal()
                },
                "poll_interval: 0 is out of range",
            ),
            (
                RawOptions {
                    mqtt_qos: Some(3),
                    ..minimal()
                },
                "mqtt_qos: 3 is out of range",
            ),
            (
                RawOptions {
                    mqtt_port: Some(0),
                    ..minimal()
                },
                "mqtt_port:",
            ),
            (
                RawOptions {
                    mqtt_host: Some("mqtt://broker".into()),
                    ..minimal()
                },
                "mqtt_host:",
            ),
            (
                RawOptions {
                    base_topic: Some("a/#".into()),
                    ..minimal()
                },
                "base_topic:",
            ),
            (
                RawOptions {
                    base_topic: Some("/a".into()),
                    ..minimal()
                },
                "base_topic:",
            ),
            (
                RawOptions {
                    discovery_prefix: Some(String::new()),
                    ..minimal()
                },
                "discovery_prefix:",
            ),
            (
                RawOptions {
                    cache_ttl: Some(100_000),
                    ..minimal()
                },
                "cache_ttl:",
            ),
            (
                RawOptions {
                    device_id: Some("my meter".into()),
                    ..minimal()
                },
                "device_id:",
            ),
            (
                RawOptions {
                    log_level: Some("loud".into()),
                    ..minimal()
                },
                "log_level:",
            ),
            (
                RawOptions {
                    mqtt_ca_file: Some("/nonexistent/ca.pem".into()),
                    ..minimal()
                },
                "mqtt_ca_file: cannot read",
            ),
            (
                RawOptions {
                    dsmr_reader_ca_file: Some("/nonexistent/ca.pem".into()),
                    ..minimal()
                },
                "dsmr_reader_ca_file: cannot read",
            ),
        ];
        for (raw, expected) in cases {
            let got = error_of(raw);
            assert!(
                got.starts_with(expected),
                "{got:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn options_that_cannot_work_on_a_broker_are_refused() {
        let long = "a".repeat(70_000);
        let cases: Vec<(RawOptions, &str)> = vec![
            (
                RawOptions {
                    base_topic: Some("$SYS/meter".into()),
                    ..minimal()
                },
                "base_topic: must not start with $",
            ),
            (
                RawOptions {
                    discovery_prefix: Some("$homeassistant".into()),
                    ..minimal()
                },
                "discovery_prefix: must not start with $",
            ),
            (
                RawOptions {
                    mqtt_host: Some("127.0.0.1:1883".into()),
                    ..minimal()
                },
                "mqtt_host: \"127.0.0.1:1883\" holds a port; set mqtt_host: 127.0.0.1 and mqtt_port: 1883",
            ),
            (
                RawOptions {
                    mqtt_host: Some("broker.local:8883".into()),
                    ..minimal()
                },
                "mqtt_host: \"broker.local:8883\" holds a port; set mqtt_host: broker.local and mqtt_port: 8883",
            ),
            (
                RawOptions {
                    mqtt_host: Some("[::1]:1883".into()),
                    ..minimal()
                },
                "mqtt_host: \"[::1]:1883\" holds a port; set mqtt_host: ::1 and mqtt_port: 1883",
            ),
            (
                RawOptions {
                    mqtt_host: Some("broker:mqtt".into()),
                    ..minimal()
                },
                "mqtt_host: \"broker:mqtt\" is not a host name or address",
            ),
            (
                RawOptions {
                    base_topic: Some(long.clone()),
                    ..minimal()
                },
                "base_topic: is 70000 bytes long; at most 256",
            ),
            (
                RawOptions {
                    discovery_prefix: Some(long.clone()),
                    ..minimal()
                },
                "discovery_prefix: is 70000 bytes long; at most 256",
            ),
            (
                RawOptions {
                    device_id: Some(long.clone()),
                    ..minimal()
                },
                "device_id: is 70000 characters long; at most 64",
            ),
            (
                RawOptions {
                    mqtt_password: Some("hunter2-secret".into()),
                    ..minimal()
                },
                "mqtt_password: set without mqtt_username",
            ),
        ];
        for (raw, expected) in cases {
            let got = error_of(raw);
            assert!(
                got.starts_with(expected),
                "{got:?} should start with {expected:?}"
            );
            assert!(got.len() < 300, "the value is not echoed whole: {got:.100}");
            assert!(!got.contains("hunter2-secret"), "{got}");
        }
    }

    #[test]
    fn hosts_and_topics_that_work_are_accepted() {
        for host in [
            "::1",
            "fe80::1",
            "192.168.1.2",
            "core-mosquitto",
            "broker.local",
        ] {
            let raw = RawOptions {
                mqtt_host: Some(host.into()),
                ..minimal()
            };
            let cfg = Config::try_from(raw).unwrap_or_else(|e| panic!("{host}: {e}"));
            assert_eq!(cfg.mqtt.host.as_deref(), Some(host));
        }
        let at_limit = "a".repeat(256);
        let raw = RawOptions {
            base_topic: Some(at_limit.clone()),
            discovery_prefix: Some(format!("ha/$x/{}", "b".repeat(250))),
            device_id: Some("d".repeat(64)),
            mqtt_username: Some("me".into()),
            mqtt_password: Some("mine".into()),
            ..minimal()
        };
        let cfg = Config::try_from(raw).unwrap();
        assert_eq!(cfg.topics.base, at_limit);
        assert!(cfg.mqtt.password.is_some());
    }

    fn with_url(url: &str) -> RawOptions {
        RawOptions {
            dsmr_reader_url: Some(url.into()),
            ..minimal()
        }
    }

    #[test]
    fn an_address_without_a_scheme_gets_the_corrected_url() {
        for (typed, meant) in [
            ("dsmr.local:7777", "http://dsmr.local:7777/"),
            ("192.168.1.10:7777", "http://192.168.1.10:7777/"),
            ("192.168.1.10", "http://192.168.1.10/"),
            ("dsmr.local", "http://dsmr.local/"),
            ("localhost:7777/dsmr", "http://localhost:7777/dsmr/"),
            ("[::1]:7777", "http://[::1]:7777/"),
            (" dsmr.local:7777 ", "http://dsmr.local:7777/"),
        ] {
            assert_eq!(
                error_of(with_url(typed)),
                format!("dsmr_reader_url: no scheme; did you mean {meant} ?"),
                "{typed:?}"
            );
        }
        // The suggestion is itself accepted.
        let cfg = Config::try_from(with_url("http://dsmr.local:7777/")).unwrap();
        assert_eq!(cfg.dsmr.url.as_str(), "http://dsmr.local:7777/");
    }

    #[test]
    fn a_wrong_scheme_or_an_empty_address_is_named_as_such() {
        for (typed, expected) in [
            (
                "ftp://dsmr.local/",
                "dsmr_reader_url: scheme ftp is not http or https",
            ),
            (
                "file:///etc/passwd",
                "dsmr_reader_url: scheme file is not http or https",
            ),
            (
                "mailto:me@dsmr.local",
                "dsmr_reader_url: scheme mailto is not http or https",
            ),
            ("", "dsmr_reader_url: is empty"),
            (
                "/dsmr",
                "dsmr_reader_url: no scheme; start it with http:// or https://",
            ),
        ] {
            let got = error_of(with_url(typed));
            assert!(got.starts_with(expected), "{typed:?}: {got:?}");
        }
    }

    #[test]
    fn log_level_takes_the_words_of_the_app_schema() {
        for (text, level) in [
            ("trace", LevelFilter::TRACE),
            ("debug", LevelFilter::DEBUG),
            ("info", LevelFilter::INFO),
            ("warn", LevelFilter::WARN),
            ("error", LevelFilter::ERROR),
            (" debug ", LevelFilter::DEBUG),
        ] {
            let raw = RawOptions {
                log_level: Some(text.into()),
                ..minimal()
            };
            assert_eq!(Config::try_from(raw).unwrap().log_level, level, "{text:?}");
        }
        // LevelFilter alone would take these; the app's options cannot hold them.
        for text in ["off", "OFF", "Info", "warning", "0", "5", "", "loud"] {
            let raw = RawOptions {
                log_level: Some(text.into()),
                ..minimal()
            };
            let got = error_of(raw);
            assert!(
                got.starts_with("log_level: ") && got.contains("trace, debug, info, warn, error"),
                "{text:?}: {got:?}"
            );
        }
        let schema = include_str!("../config.yaml");
        let listed = format!("log_level: list({})", LOG_LEVELS.join("|"));
        assert!(schema.contains(&listed), "config.yaml's schema: {listed}");
    }

    #[test]
    fn upper_layer_wins() {
        let upper = RawOptions {
            poll_interval: Some(10),
            ..RawOptions::default()
        };
        let lower = RawOptions {
            poll_interval: Some(20),
            base_topic: Some("meter".into()),
            ..minimal()
        };
        let cfg = Config::try_from(upper.over(lower)).unwrap();
        assert_eq!(cfg.dsmr.poll_interval, Duration::from_secs(10));
        assert_eq!(cfg.topics.base, "meter");
    }

    #[test]
    fn json_type_errors_name_the_option() {
        let dir = std::env::temp_dir().join(format!("dsmr-bridge-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("options.json");
        std::fs::write(&path, r#"{"mqtt_port": "abc"}"#).unwrap();
        let err = read_json(&path).err().unwrap().to_string();
        assert!(err.starts_with("mqtt_port: invalid type"), "{err}");
        std::fs::write(&path, r#"{"bogus": 1}"#).unwrap();
        let err = read_json(&path).err().unwrap().to_string();
        assert!(err.contains("unknown field `bogus`"), "{err}");
        let yaml = dir.join("options.yaml");
        std::fs::write(&yaml, "poll_interval: -1\n").unwrap();
        let err = read_yaml(&yaml).err().unwrap().to_string();
        assert!(err.contains("poll_interval: invalid type"), "{err}");
        std::fs::write(&yaml, "mqtt_hots: x\n").unwrap();
        let err = read_yaml(&yaml).err().unwrap().to_string();
        assert!(err.contains("unknown field `mqtt_hots`"), "{err}");
    }

    #[test]
    fn status_listen_takes_an_address_with_a_port() {
        let with = |text: &str| {
            Config::try_from(RawOptions {
                status_listen: Some(text.into()),
                ..minimal()
            })
        };
        assert_eq!(Config::try_from(minimal()).unwrap().status_listen, None);
        assert_eq!(with("").unwrap().status_listen, None);
        assert_eq!(
            with(" 127.0.0.1:8099 ").unwrap().status_listen,
            Some("127.0.0.1:8099".parse().unwrap())
        );
        assert_eq!(
            with("[::1]:8099").unwrap().status_listen,
            Some("[::1]:8099".parse().unwrap())
        );
        for bad in ["127.0.0.1", "localhost:8099", "8099", "0.0.0.0:99999"] {
            let error = with(bad).unwrap_err().to_string();
            assert!(
                error.starts_with("status_listen: ") && error.contains("e.g. 127.0.0.1:8099"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let raw = RawOptions {
            mqtt_username: Some("me".into()),
            mqtt_password: Some("hunter2-secret".into()),
            ..minimal()
        };
        let cfg = Config::try_from(raw).unwrap();
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("ABC123"));
        assert!(!shown.contains("hunter2-secret"));
    }
}
