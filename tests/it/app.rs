//! The Home Assistant app: its files agree with each other and with the code, and the binary
//! behaves inside the container as the Supervisor runs it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dsmr_bridge::config::{Config, RawOptions};
use serde_yaml::Value as Yaml;

use crate::harness::{Bridge, Broker, SIM_KEY, Watcher, args};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keys(value: &Yaml) -> BTreeSet<String> {
    value
        .as_mapping()
        .expect("a mapping")
        .keys()
        .map(|k| k.as_str().expect("string key").to_owned())
        .collect()
}

/// Does `value` satisfy the Supervisor schema element `schema` (`int(1,3600)`, `list(a|b)`, ...)?
fn satisfies(schema: &str, value: &Yaml) -> bool {
    let schema = schema.trim_end_matches('?');
    let inner = |prefix: &str| {
        schema
            .strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(')'))
    };
    if let Some(range) = inner("int(") {
        let (min, max) = range.split_once(',').expect("int(min,max)");
        let Some(n) = value.as_i64() else {
            return false;
        };
        return min.parse::<i64>().map_or(true, |m| n >= m)
            && max.parse::<i64>().map_or(true, |m| n <= m);
    }
    if let Some(options) = inner("list(") {
        return value
            .as_str()
            .is_some_and(|v| options.split('|').any(|o| o == v));
    }
    if let Some(pattern) = inner("match(") {
        let re = regex::Regex::new(pattern).expect("schema regex");
        return value.as_str().is_some_and(|v| re.is_match(v));
    }
    match schema {
        "bool" => value.is_bool(),
        "port" => value.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
        "str" | "password" | "url" | "email" => value.is_string(),
        other => panic!("schema type {other} not understood by this test"),
    }
}

/// `config.yaml`, both translations, the options struct and DOCS.md name the same options;
/// every default parses into the options struct and satisfies its schema; the app version is
/// the crate's.
#[test]
fn app_files_agree_with_the_code() {
    let config = yaml("config.yaml");
    let names: BTreeSet<String> = RawOptions::NAMES.iter().map(|s| (*s).to_owned()).collect();
    let schema = keys(&config["schema"]);
    assert_eq!(schema, names, "config.yaml schema vs RawOptions::NAMES");
    let options = keys(&config["options"]);
    assert!(
        options.is_subset(&names),
        "options without a schema entry: {:?}",
        options.difference(&names)
    );
    for lang in ["en", "nl"] {
        let translations = yaml(&format!("translations/{lang}.yaml"));
        let translated = keys(&translations["configuration"]);
        assert_eq!(translated, names, "translations/{lang}.yaml vs the options");
        for name in &names {
            let entry = &translations["configuration"][name.as_str()];
            assert!(
                entry["name"].as_str().is_some_and(|s| !s.is_empty()),
                "{lang}: {name} has no name"
            );
            assert!(
                entry["description"].as_str().is_some_and(|s| s.len() > 10),
                "{lang}: {name} has no description"
            );
        }
    }
    let docs = std::fs::read_to_string(root().join("DOCS.md")).expect("DOCS.md");
    for name in &names {
        assert!(
            docs.contains(&format!("### Option: `{name}`")),
            "DOCS.md has no section for {name}"
        );
    }

    for (name, default) in config["options"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let rule = config["schema"][name].as_str().expect("schema type");
        if default.is_null() {
            assert!(
                !rule.ends_with('?'),
                "{name}: a null default means required; the schema must not mark it optional"
            );
            continue;
        }
        assert!(
            satisfies(rule, default),
            "{name}: default {default:?} breaks its schema {rule}"
        );
    }
    // The defaults parse into the options struct and validate once the required ones are set.
    let mut defaults = config["options"].clone();
    let map = defaults.as_mapping_mut().unwrap();
    map.insert("dsmr_reader_url".into(), "http://dsmr.local:7777/".into());
    map.insert("dsmr_reader_api_key".into(), "KEY".into());
    let raw: RawOptions = serde_yaml::from_value(defaults).expect("defaults parse into RawOptions");
    let parsed = Config::try_from(raw).expect("defaults validate");
    assert_eq!(
        parsed.dsmr.poll_interval,
        Duration::from_secs(config["options"]["poll_interval"].as_u64().unwrap())
    );
    // Optional options have no default (a default would make them required in the UI).
    for (name, rule) in config["schema"].as_mapping().unwrap() {
        if rule.as_str().unwrap().ends_with('?') {
            assert!(
                !options.contains(name.as_str().unwrap()),
                "{name:?} is optional but has a default"
            );
        }
    }

    assert_eq!(
        config["version"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "config.yaml version vs Cargo.toml"
    );
    assert_eq!(config["slug"].as_str(), Some("dsmr_bridge"));
    assert_eq!(config["init"].as_bool(), Some(true));
    // The status page in the sidebar: the port the bridge listens on inside Home Assistant.
    assert_eq!(config["ingress"].as_bool(), Some(true));
    assert_eq!(
        config["ingress_port"].as_u64(),
        Some(u64::from(dsmr_bridge::web::INGRESS_PORT))
    );
    assert!(
        config["panel_icon"]
            .as_str()
            .is_some_and(|i| i.starts_with("mdi:"))
    );
    assert!(config["panel_title"].as_str().is_some());
    assert!(
        config["services"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|s| s.as_str() == Some("mqtt:want"))
    );
    let changelog = std::fs::read_to_string(root().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog.contains(&format!("## {}", env!("CARGO_PKG_VERSION"))),
        "CHANGELOG.md has no entry for this version"
    );
}

fn find_configs(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && name != ".git" {
                find_configs(&path, found);
            }
        } else if matches!(name.as_str(), "config.yaml" | "config.yml" | "config.json") {
            found.push(path);
        }
    }
}

/// The Supervisor treats every config.yaml/.yml/.json as an app: the root one must stay alone.
#[test]
fn root_config_yaml_is_the_only_app_config() {
    let mut found = Vec::new();
    find_configs(root(), &mut found);
    assert_eq!(found, vec![root().join("config.yaml")]);
}

/// The store needs these next to config.yaml.
#[test]
fn store_files_exist() {
    for file in [
        "repository.yaml",
        "README.md",
        "DOCS.md",
        "CHANGELOG.md",
        "icon.png",
        "logo.png",
        "Dockerfile",
        "apparmor.txt",
    ] {
        assert!(root().join(file).is_file(), "{file} is missing");
    }
    let repository = yaml("repository.yaml");
    assert!(repository["name"].as_str().is_some());
    let icon = std::fs::read(root().join("icon.png")).unwrap();
    assert_eq!(&icon[..8], b"\x89PNG\r\n\x1a\n");
    // Width and height from the IHDR chunk: the icon is square.
    let width = u32::from_be_bytes(icon[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(icon[20..24].try_into().unwrap());
    assert_eq!(width, height, "icon.png must be square");
    let apparmor = std::fs::read_to_string(root().join("apparmor.txt")).unwrap();
    assert!(
        apparmor.contains("profile dsmr_bridge "),
        "the AppArmor profile is named after the slug"
    );
}

/// Started as root with the image's `DSMR_BRIDGE_RUN_AS`, the bridge reads its options and then
/// runs unprivileged, and still does its job.
#[tokio::test]
async fn started_as_root_it_drops_to_the_configured_user() {
    if !nix_is_root() {
        eprintln!("not root: nothing to drop");
        return;
    }
    let broker = Broker::start();
    let sim = dsmr_sim::Simulator::start(dsmr_sim::SimOptions {
        api_key: SIM_KEY.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    let bridge = Bridge::start_with_env(
        &args(&sim.url(), broker.port, "unpriv", &[]),
        &[("DSMR_BRIDGE_RUN_AS", "65534:65534".to_owned())],
    );
    let watcher = Watcher::connect(broker.port, &["unpriv/status"]).await;
    watcher
        .wait_for("online", |seen| seen.iter().any(|s| s.payload == "online"))
        .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", bridge.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id == "65534"),
        "{uid_line}"
    );
    let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert!(
        gid_line.split_whitespace().skip(1).all(|id| id == "65534"),
        "{gid_line}"
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
