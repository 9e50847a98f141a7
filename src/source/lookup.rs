//! Source stage, name lookup: DSMR-reader's address, looked up once and kept. DSMR-reader's
//! gunicorn closes every connection, so each request opens a new one; with the HTTP client's
//! own resolver each of them looked the host name up again (getaddrinfo on a blocking thread:
//! /etc/hosts, resolv.conf, a DNS query), which was most of the bridge's CPU. Looked up again
//! after a request that could not connect, so a DSMR-reader that moved is found.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The addresses of the names looked up so far; clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeptAddresses {
    kept: Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>,
}

impl KeptAddresses {
    /// The next connection looks the name up again.
    pub(crate) fn forget(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<SocketAddr>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Resolve for KeptAddresses {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        if let Some(addresses) = self.lock().get(&host).cloned() {
            return Box::pin(std::future::ready(Ok(
                Box::new(addresses.into_iter()) as Addrs
            )));
        }
        let kept = self.clone();
        Box::pin(async move {
            // The system's resolver, as the HTTP client's own: /etc/hosts, mDNS, DNS.
            let lookup = host.clone();
            let addresses: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
                    .await??
                    .collect();
            if !addresses.is_empty() {
                kept.lock().insert(host, addresses.clone());
            }
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lookup(kept: &KeptAddresses, host: &str) -> Vec<SocketAddr> {
        kept.resolve(host.parse().unwrap()).await.unwrap().collect()
    }

    /// A name is looked up once and kept until `forget`.
    #[tokio::test]
    async fn a_name_is_looked_up_once_until_forgotten() {
        let kept = KeptAddresses::default();
        let first = lookup(&kept, "localhost").await;
        assert!(first.iter().all(|a| a.ip().is_loopback()), "{first:?}");
        // Kept: what is kept is what comes back, without asking the system.
        kept.lock()
            .insert("localhost".into(), vec!["192.0.2.7:0".parse().unwrap()]);
        assert_eq!(
            lookup(&kept, "localhost").await,
            ["192.0.2.7:0".parse().unwrap()]
        );
        kept.forget();
        assert_eq!(lookup(&kept, "localhost").await, first);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error_and_not_kept() {
        let kept = KeptAddresses::default();
        assert!(
            kept.resolve("nothing.invalid".parse().unwrap())
                .await
                .is_err()
        );
        assert!(kept.lock().is_empty());
    }
}
