//! API retries made visible: the agent CLI retries a model API call that failed (Claude Code
//! prints `system/api_retry`, up to ten times over minutes of backoff); each retry is recorded
//! as an `agent_retry` event, so the live view says `retrying (3 of 10): connection refused`
//! within a second instead of going quiet.
//!
//! Claude Code reports an HTTP failure with its status, but a call that never got an answer
//! only as `unknown`; reins then tries a TCP connection to the API's address itself (once per
//! attempt, at most a second) to say why: `connection refused`, `connection timed out`...

use std::time::Duration;

use super::runner::Job;
use crate::agent::events::ApiRetry;
use crate::store::Event;

/// How long the probe of the API's address may take.
const PROBE_LIMIT: Duration = Duration::from_secs(1);

/// Reports the retries of one agent attempt.
pub(crate) struct RetryReporter {
    /// `host:port` of the model API.
    address: String,
    /// What the probe found, once it ran.
    probed: Option<String>,
}

impl RetryReporter {
    /// For an agent whose environment is `env` (its `ANTHROPIC_BASE_URL`, else reins' own,
    /// else the public API).
    pub(crate) fn new(env: &[(String, String)]) -> Self {
        let url = env
            .iter()
            .rev()
            .find(|(k, _)| k == "ANTHROPIC_BASE_URL")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("ANTHROPIC_BASE_URL").ok())
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "https://api.anthropic.com".into());
        Self {
            address: address_of(&url),
            probed: None,
        }
    }

    /// Records one retry of the CLI as an `agent_retry` event of the job's node.
    pub(crate) async fn report(&mut self, job: &Job, retry: &ApiRetry) {
        let kind = retry.error.as_deref().filter(|k| *k != "unknown");
        let reason = match (retry.error_status, kind) {
            (Some(status), Some(kind)) => format!("HTTP {status} {}", kind.replace('_', " ")),
            (Some(status), None) => format!("HTTP {status}"),
            (None, kind) => {
                if self.probed.is_none() {
                    self.probed = Some(probe(&self.address).await);
                }
                match (self.probed.as_deref(), kind) {
                    (Some(found), _) if !found.is_empty() => found.to_string(),
                    (_, Some(kind)) => kind.replace('_', " "),
                    _ => format!("no answer from {}", self.address),
                }
            }
        };
        job.recorder.record(Event::AgentRetry {
            node: job.node.clone(),
            attempt: retry.attempt.unwrap_or(1),
            max_retries: retry.max_retries,
            reason,
        });
    }
}

/// `host:port` of a URL (`https://h` → `h:443`, `http://h` → `h:80`).
fn address_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        authority.to_string()
    } else {
        let port = if scheme.eq_ignore_ascii_case("http") {
            80
        } else {
            443
        };
        format!("{authority}:{port}")
    }
}

/// Why a TCP connection to `address` fails, in words; empty when it connects.
async fn probe(address: &str) -> String {
    match tokio::time::timeout(PROBE_LIMIT, tokio::net::TcpStream::connect(address)).await {
        Ok(Ok(_)) => String::new(),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused ({address})")
        }
        Ok(Err(e)) => format!("cannot connect to {address}: {e}"),
        Err(_) => format!("connection to {address} timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_urls() {
        assert_eq!(address_of("http://127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(
            address_of("https://api.anthropic.com"),
            "api.anthropic.com:443"
        );
        assert_eq!(address_of("http://proxy/v1"), "proxy:80");
        assert_eq!(address_of("https://u:p@h:8443/x"), "h:8443");
    }

    #[tokio::test]
    async fn a_closed_port_is_connection_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert_eq!(
            probe(&address).await,
            format!("connection refused ({address})")
        );
    }
}
