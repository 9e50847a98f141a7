//! Entry point: parse options, set up logging, run the bridge until SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use dsmr_bridge::config::{Cli, Command, Config};
use dsmr_bridge::secrets::Redactor;
use dsmr_bridge::web::RecentLog;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Libraries whose TRACE lines carry secrets: tungstenite logs every WebSocket frame it sends,
/// Home Assistant's `auth` message with its access token among them. Capped at any level,
/// `RUST_LOG` included.
const SECRET_SAFE: &str = ",tungstenite=debug,tokio_tungstenite=debug";

/// The log on stdout, and its warnings and errors kept for the status page, both without
/// the secrets `redactor` knows.
fn init_logging(level: LevelFilter, extra: &str, redactor: &Redactor) -> RecentLog {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(format!("{f}{SECRET_SAFE}")).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("{level}{extra}{SECRET_SAFE}")));
    let recent = RecentLog::new();
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_writer(redactor.clone()),
        )
        .with(recent.layer(redactor.clone()))
        .init();
    recent
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // One thread is plenty for a few requests and messages per second.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck) => {
            return match dsmr_bridge::health::check(&dsmr_bridge::health::health_file()) {
                Ok(()) => {
                    println!("healthy");
                    ExitCode::SUCCESS
                }
                Err(reason) => {
                    println!("unhealthy: {reason}");
                    ExitCode::FAILURE
                }
            };
        }
        #[cfg(feature = "demo")]
        Some(Command::Demo(args)) => {
            let demo = match dsmr_bridge::demo::Demo::new(&args) {
                Ok(demo) => demo,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(2);
                }
            };
            let redactor = demo.redactor();
            let recent = init_logging(demo.log_level(), &demo.extra_log_directives(), &redactor);
            return match runtime()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(demo.run(recent, redactor)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("dsmr-bridge demo: {error:#}");
                    ExitCode::FAILURE
                }
            };
        }
        #[cfg(not(feature = "demo"))]
        Some(Command::Demo(_)) => {
            eprintln!("this build of dsmr-bridge has no demo (built without the `demo` feature)");
            return ExitCode::from(2);
        }
        None => {}
    }

    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let redactor = Redactor::for_config(&config);
    let recent = init_logging(config.log_level, "", &redactor);
    match dsmr_bridge::privileges::drop_root() {
        Ok(Some((uid, gid))) => tracing::debug!(uid, gid, "options read; running unprivileged"),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(error = %error, "cannot leave root");
            return ExitCode::FAILURE;
        }
    }
    let result = runtime().map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(async {
            let shutdown = dsmr_bridge::shutdown::on_signals()?;
            dsmr_bridge::run(config, recent, redactor, shutdown).await
        })
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "dsmr-bridge stopped");
            ExitCode::FAILURE
        }
    }
}
