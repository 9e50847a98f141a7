//! Startup: leave root once the options are read. The Supervisor writes `/data/options.json`
//! readable by root only and offers no way to pick the container's user, so the app image
//! starts as root and drops to an unprivileged user before it opens any connection.

use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};

/// `uid:gid` to switch to when started as root (set in the app image).
pub(crate) const RUN_AS_ENV: &str = "DSMR_BRIDGE_RUN_AS";

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("{RUN_AS_ENV}={0:?} is not uid:gid")]
    Spec(String),
    #[error("cannot switch to {0}: {1}")]
    Switch(String, nix::Error),
}

/// Switches to the user in `DSMR_BRIDGE_RUN_AS` when running as root; otherwise does nothing.
/// Returns the user switched to.
pub fn drop_root() -> Result<Option<(u32, u32)>, PrivilegeError> {
    let Ok(spec) = std::env::var(RUN_AS_ENV) else {
        return Ok(None);
    };
    if !Uid::effective().is_root() || spec.is_empty() {
        return Ok(None);
    }
    let (uid, gid) = spec
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse::<u32>().ok()?, g.parse::<u32>().ok()?)))
        .filter(|(u, _)| *u != 0)
        .ok_or_else(|| PrivilegeError::Spec(spec.clone()))?;
    // Group first: once the user is not root it may no longer change groups.
    setgroups(&[]).map_err(|e| PrivilegeError::Switch(spec.clone(), e))?;
    setgid(Gid::from_raw(gid)).map_err(|e| PrivilegeError::Switch(spec.clone(), e))?;
    setuid(Uid::from_raw(uid)).map_err(|e| PrivilegeError::Switch(spec.clone(), e))?;
    Ok(Some((uid, gid)))
}
