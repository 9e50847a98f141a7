//! Demo: the whole bridge against the simulated DSMR-reader and an embedded broker.

pub async fn run(_flags: crate::config::RawOptions) -> anyhow::Result<()> {
    anyhow::bail!("demo not ready")
}
