//! Where the Temporal server is and how to reach it.
//!
//! The address comes from `--temporal HOST:PORT`, else `REINS_TEMPORAL`, else `temporal.address`
//! in the user config file (`config.yaml` in the user-global folder). The namespace and the
//! shared task queue come the same way (`--namespace`/`REINS_TEMPORAL_NAMESPACE`/`namespace`,
//! `--task-queue`/`REINS_TEMPORAL_TASK_QUEUE`/`task_queue`). TLS and credentials, for a cluster
//! of your own or Temporal Cloud, come from the environment or the config file:
//!
//! * `REINS_TEMPORAL_API_KEY` (or `temporal.api_key_env`, naming the variable that holds it):
//!   an API key, which turns TLS on;
//! * `REINS_TEMPORAL_TLS=1` (`temporal.tls: true`): TLS with the system's roots;
//! * `REINS_TEMPORAL_TLS_CA`, `REINS_TEMPORAL_TLS_CERT`, `REINS_TEMPORAL_TLS_KEY`,
//!   `REINS_TEMPORAL_TLS_DOMAIN` (`temporal.tls_ca`, `tls_cert`, `tls_key`, `tls_domain`): PEM
//!   files for a private CA and mTLS, and the name the server's certificate must carry.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How to reach a Temporal server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `HOST:PORT` (or a URL).
    pub address: String,
    /// The namespace.
    pub namespace: String,
    /// The shared task queue: run submissions.
    pub task_queue: String,
    /// TLS, when on.
    pub tls: Option<Tls>,
    /// An API key (Temporal Cloud), sent as a bearer token.
    pub api_key: Option<String>,
}

/// TLS settings: PEM files, all optional.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Tls {
    /// The CA that signed the server's certificate (default: the system's roots).
    pub ca: Option<PathBuf>,
    /// The client certificate, for mTLS.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key, for mTLS.
    pub key: Option<PathBuf>,
    /// The name to check the server's certificate against (default: the host).
    pub domain: Option<String>,
}

/// Why the endpoint cannot be worked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointError(pub String);

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EndpointError {}

/// The `temporal:` section of the user config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    address: Option<String>,
    namespace: Option<String>,
    task_queue: Option<String>,
    tls: Option<bool>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_domain: Option<String>,
    api_key_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct UserConfig {
    #[serde(default)]
    temporal: Option<Section>,
}

fn read_section(path: Option<&Path>) -> Result<Section, EndpointError> {
    let Some(path) = path else {
        return Ok(Section::default());
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Section::default()),
        Err(e) => {
            return Err(EndpointError(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    if text.len() > 64 * 1024 || text.trim().is_empty() {
        return Ok(Section::default());
    }
    let config: UserConfig = serde_saphyr::from_str(&text).map_err(|e| {
        EndpointError(format!(
            "{}: the `temporal:` section cannot be read: {e}",
            path.display()
        ))
    })?;
    Ok(config.temporal.unwrap_or_default())
}

/// What the command line gave.
#[derive(Debug, Clone, Default)]
pub(crate) struct Given {
    /// `--temporal`.
    pub address: Option<String>,
    /// `--namespace`.
    pub namespace: Option<String>,
    /// `--task-queue`.
    pub task_queue: Option<String>,
}

impl Endpoint {
    /// The endpoint from the flags, then `env`, then the config file at `config`; `None` when
    /// none of them names a server (the run is local).
    pub(crate) fn resolve(
        given: &Given,
        env: impl Fn(&str) -> Option<String>,
        config: Option<&Path>,
    ) -> Result<Option<Endpoint>, EndpointError> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let section = read_section(config)?;
        let Some(address) = given
            .address
            .clone()
            .or_else(|| env("REINS_TEMPORAL"))
            .or(section.address.clone())
        else {
            return Ok(None);
        };
        let address = address.trim().to_string();
        if address.is_empty() || address.chars().any(char::is_whitespace) {
            return Err(EndpointError(format!(
                "`{address}` is not a Temporal address; give HOST:PORT, like 127.0.0.1:7233"
            )));
        }
        let namespace = given
            .namespace
            .clone()
            .or_else(|| env("REINS_TEMPORAL_NAMESPACE"))
            .or(section.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let task_queue = given
            .task_queue
            .clone()
            .or_else(|| env("REINS_TEMPORAL_TASK_QUEUE"))
            .or(section.task_queue.clone())
            .unwrap_or_else(|| super::DEFAULT_TASK_QUEUE.into());
        let api_key = match &section.api_key_env {
            Some(var) => Some(env(var).ok_or_else(|| {
                EndpointError(format!(
                    "the user config says the Temporal API key is in ${var}, which is not set"
                ))
            })?),
            None => env("REINS_TEMPORAL_API_KEY"),
        };
        let path = |k: &str, v: &Option<PathBuf>| env(k).map(PathBuf::from).or(v.clone());
        let tls = Tls {
            ca: path("REINS_TEMPORAL_TLS_CA", &section.tls_ca),
            cert: path("REINS_TEMPORAL_TLS_CERT", &section.tls_cert),
            key: path("REINS_TEMPORAL_TLS_KEY", &section.tls_key),
            domain: env("REINS_TEMPORAL_TLS_DOMAIN").or(section.tls_domain.clone()),
        };
        if tls.cert.is_some() != tls.key.is_some() {
            return Err(EndpointError(
                "mTLS needs both a client certificate and its key (REINS_TEMPORAL_TLS_CERT and REINS_TEMPORAL_TLS_KEY)".into(),
            ));
        }
        let tls_on = env("REINS_TEMPORAL_TLS").is_some_and(|v| v != "0" && v != "false")
            || section.tls == Some(true)
            || tls != Tls::default()
            || address.starts_with("https://");
        Ok(Some(Endpoint {
            address,
            namespace,
            task_queue,
            tls: tls_on.then_some(tls),
            api_key,
        }))
    }

    /// The server's URL.
    #[cfg(feature = "temporal")]
    pub(crate) fn url(&self) -> String {
        if self.address.contains("://") {
            return self.address.clone();
        }
        let scheme = if self.tls.is_some() || self.api_key.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_flag_wins_over_the_environment_and_nothing_means_local() {
        let none = Endpoint::resolve(&Given::default(), env(&[]), None).unwrap();
        assert_eq!(none, None);
        let given = Given {
            address: Some("10.0.0.1:7233".into()),
            ..Given::default()
        };
        let e = Endpoint::resolve(&given, env(&[("REINS_TEMPORAL", "x:1")]), None)
            .unwrap()
            .unwrap();
        assert_eq!(e.address, "10.0.0.1:7233");
        assert_eq!(e.namespace, "default");
        assert_eq!(e.task_queue, "reins");
        assert_eq!(e.url(), "http://10.0.0.1:7233");
        let e = Endpoint::resolve(
            &Given::default(),
            env(&[
                ("REINS_TEMPORAL", "ns.tmprl.cloud:7233"),
                ("REINS_TEMPORAL_API_KEY", "k"),
            ]),
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.url(), "https://ns.tmprl.cloud:7233");
    }

    #[test]
    fn the_config_file_names_the_server_and_half_an_mtls_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(
            &file,
            "max_agents: 2\ntemporal:\n  address: t:7233\n  namespace: team\n  tls_cert: c.pem\n",
        )
        .unwrap();
        let err = Endpoint::resolve(&Given::default(), env(&[]), Some(&file)).unwrap_err();
        assert!(
            err.0.contains("both a client certificate and its key"),
            "{err}"
        );
        std::fs::write(&file, "temporal:\n  address: t:7233\n  namespace: team\n").unwrap();
        let e = Endpoint::resolve(&Given::default(), env(&[]), Some(&file))
            .unwrap()
            .unwrap();
        assert_eq!(
            (e.address.as_str(), e.namespace.as_str()),
            ("t:7233", "team")
        );
    }
}
