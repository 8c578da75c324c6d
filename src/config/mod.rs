//! Configuration: one TOML file plus `CAPI_CDC_*` environment overrides.
//!
//! Loading happens in two steps (STYLE.md habit 4). [`RawConfig`] mirrors the
//! file exactly (`deny_unknown_fields`, so a misspelt key is an error that
//! names it); [`Config::try_from`] validates it once into typed values.
//! Everything after start-up trusts the types. Secrets are [`Secret`]s, whose
//! `Debug`/`Display` never print the value.
//!
//! Environment overrides use the prefix `CAPI_CDC_` and `__` for nesting:
//! `CAPI_CDC_DESTINATIONS__META__ACCESS_TOKEN` sets
//! `destinations.meta.access_token`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

mod destinations;

use destinations::RawDestinations;
pub use destinations::{
    ConsentPolicy, DeliveryConfig, GoogleConfig, MetaConfig, GOOGLE_MAX_BATCH, META_MAX_BATCH,
};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// Default config file looked up when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "capi-cdc.toml";

/// A configuration problem, naming the key and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or a key is unknown or of the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A key's value is present but unusable.
    #[error("configuration key `{key}`: {problem}")]
    Invalid {
        /// Dotted key path, e.g. `destinations.meta.pixel_id`.
        key: String,
        /// What is wrong and the remedy.
        problem: String,
    },
}

fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

// ---------------------------------------------------------------- raw form

/// The file as written; see `config/capi-cdc.example.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    source: RawSource,
    #[serde(default)]
    spool: RawSpool,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    destinations: RawDestinations,
    #[serde(default)]
    derive: RawDerive,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDerive {
    rules_file: Option<PathBuf>,
}

/// Default of `source.receive_buffer_mb`: received messages waiting for the
/// apply loop, in MiB (each counted at least 1 KiB). Enough for tens of
/// thousands of small row changes; a bulk update of 1 MB values holds 64 of
/// them here (bench/RESULTS.md, workload D).
pub const DEFAULT_RECEIVE_BUFFER_MB: u32 = 64;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Option<String>,
    slot: Option<String>,
    publication: Option<String>,
    status_interval_ms: Option<u64>,
    reconnect_max_backoff_ms: Option<u64>,
    tls_ca_file: Option<PathBuf>,
    heartbeat_interval_s: Option<u64>,
    receive_buffer_mb: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    path: Option<PathBuf>,
    retention_days: Option<u32>,
    prune_interval_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    #[serde(default, deserialize_with = "string_like")]
    token: Option<String>,
    grades_interval_s: Option<u64>,
}

/// Accepts a string or a bare number as a string: figment reads
/// `CAPI_CDC_DESTINATIONS__META__PIXEL_ID=1234567890` as an integer, and an
/// ID is text however it looks.
pub(crate) fn string_like<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        U(u64),
        I(i64),
    }
    Ok(Option::<Text>::deserialize(d)?.map(|t| match t {
        Text::S(s) => s,
        Text::U(n) => n.to_string(),
        Text::I(n) => n.to_string(),
    }))
}

// ---------------------------------------------------------------- typed form

/// A secret value (token, password). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where changes come from.
    pub source: SourceConfig,
    /// The embedded durable store.
    pub spool: SpoolConfig,
    /// The admin HTTP listener.
    pub admin: AdminConfig,
    /// Meta Conversions API, when configured.
    pub meta: Option<MetaConfig>,
    /// Google Ads through the Data Manager API, when configured.
    pub google: Option<GoogleConfig>,
    /// The rules and lookups (`derive.rules_file`, else the built-in rules
    /// for the reference schema).
    pub rules: crate::derive::RuleSet,
}

/// `[source]`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Parsed libpq-style connection settings (URL or key=value form).
    pub pg: tokio_postgres::Config,
    /// Logical replication slot name.
    pub slot: String,
    /// Publication name.
    pub publication: String,
    /// How often standby status goes to the server even when idle.
    pub status_interval: Duration,
    /// Ceiling of the reconnect backoff.
    pub reconnect_max_backoff: Duration,
    /// CA certificate(s) the server's certificate must chain to; when set,
    /// both connections verify the chain and the host name.
    pub tls_ca_file: Option<PathBuf>,
    /// Emit a `pg_logical_emit_message` heartbeat this often (off if `None`):
    /// keeps the slot moving when this database is idle but others are busy.
    pub heartbeat_interval: Option<Duration>,
    /// MiB of replication messages received but not yet applied, at most
    /// (plus the client's own 64 messages).
    pub receive_buffer_mb: u32,
}

/// `[spool]`.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The SQLite file (a `spool.sqlite3` inside `spool.path` when that is a directory).
    pub file: PathBuf,
    /// How long events stay replayable; `None`: the longest window of the
    /// enabled destinations, at least Meta's 7 days ([`Config::retention`]).
    pub retention: Option<Duration>,
    /// How often the pruner looks.
    pub prune_every: Duration,
}

/// `[admin]`.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address of the admin HTTP server.
    pub listen: SocketAddr,
    /// Bearer token for the mutating endpoints (test event, pause/resume,
    /// retry dead letters); they answer 403 when none is configured.
    pub token: Option<Secret>,
    /// How often the platforms' own grades are read (Meta's Dataset Quality
    /// API, Data Manager's request status).
    pub grades_every: Duration,
}

impl Config {
    /// How long spooled events are kept: `spool.retention_days`, else the
    /// longest window of the enabled destinations and at least 7 days.
    pub fn retention(&self) -> Duration {
        const META_WINDOW: Duration = Duration::from_secs(7 * 86_400);
        self.spool.retention.unwrap_or_else(|| {
            let google = self.google.as_ref().map_or(Duration::ZERO, |g| g.lookback);
            META_WINDOW.max(google)
        })
    }

    /// Loads `path` (if it exists) and the environment, then validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::from_figment(Self::figment(path))
    }

    /// The provider chain: TOML file, then `CAPI_CDC_` environment.
    pub fn figment(path: &Path) -> Figment {
        Figment::new().merge(Toml::file(path)).merge(
            Env::prefixed("CAPI_CDC_")
                // Variables of the command line, not keys of the file:
                // CAPI_CDC_CONFIG names the file (the image sets it), the
                // sandbox's own flags come as CAPI_CDC_SANDBOX_*.
                .filter(|k| {
                    k != "config" && !k.as_str().to_ascii_lowercase().starts_with("sandbox_")
                })
                .split("__"),
        )
    }

    /// Extracts and validates from any figment (tests pass their own).
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(Box::new)?;
        Config::try_from(raw)
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let url = raw.source.url.ok_or_else(|| {
            invalid(
                "source.url",
                "missing: set it to the commerce database, e.g. \
                 postgresql://capi_cdc@db:5432/shop (or CAPI_CDC_SOURCE__URL)",
            )
        })?;
        let pg = tokio_postgres::Config::from_str(&url).map_err(|e| {
            invalid(
                "source.url",
                format!("not a libpq connection string or URL ({e})"),
            )
        })?;
        if pg.get_dbname().is_none() {
            return Err(invalid(
                "source.url",
                "names no database: add it, e.g. postgresql://host/shop",
            ));
        }
        let slot = raw.source.slot.unwrap_or_else(|| "capi_cdc".into());
        check_identifier("source.slot", &slot, true)?;
        let publication = raw.source.publication.unwrap_or_else(|| "capi_cdc".into());
        check_identifier("source.publication", &publication, false)?;
        let status_interval = Duration::from_millis(raw.source.status_interval_ms.unwrap_or(5000));
        if status_interval < Duration::from_millis(100) || status_interval > Duration::from_secs(30)
        {
            return Err(invalid(
                "source.status_interval_ms",
                "must be between 100 and 30000 so the server's wal_sender_timeout (60 s by default) never fires",
            ));
        }
        let reconnect_max_backoff =
            Duration::from_millis(raw.source.reconnect_max_backoff_ms.unwrap_or(30_000));
        let receive_buffer_mb = raw
            .source
            .receive_buffer_mb
            .unwrap_or(DEFAULT_RECEIVE_BUFFER_MB);
        if !(1..=4096).contains(&receive_buffer_mb) {
            return Err(invalid(
                "source.receive_buffer_mb",
                "must be between 1 and 4096 (MiB of received messages waiting to be applied)",
            ));
        }
        let heartbeat_interval = match raw.source.heartbeat_interval_s {
            None | Some(0) => None,
            Some(s) if s > 86_400 => {
                return Err(invalid(
                    "source.heartbeat_interval_s",
                    "must be at most 86400 (a day); use 0 to turn the heartbeat off",
                ))
            }
            Some(s) => Some(Duration::from_secs(s)),
        };
        let tls_ca_file = raw.source.tls_ca_file;
        if let Some(path) = &tls_ca_file {
            if !path.is_file() {
                return Err(invalid(
                    "source.tls_ca_file",
                    format!("{} is not a readable file: point it at the PEM CA certificate of the server", path.display()),
                ));
            }
        }

        let spool_path = raw
            .spool
            .path
            .unwrap_or_else(|| PathBuf::from("./capi-cdc-spool/"));
        let file = spool_file(&spool_path);
        let retention = match raw.spool.retention_days {
            None => None,
            Some(0) => {
                return Err(invalid(
                    "spool.retention_days",
                    "must be at least 1 (replay reaches back this far)",
                ))
            }
            Some(d) => Some(Duration::from_secs(u64::from(d) * 86_400)),
        };
        let prune_every = Duration::from_secs(raw.spool.prune_interval_s.unwrap_or(300).max(1));

        let listen = raw.admin.listen.unwrap_or_else(|| "127.0.0.1:9187".into());
        let listen = listen.parse().map_err(|_| {
            invalid(
                "admin.listen",
                format!("{listen:?} is not an address like 127.0.0.1:9187"),
            )
        })?;

        let rules = match &raw.derive.rules_file {
            Some(path) => crate::derive::RuleSet::load(path),
            None => crate::derive::RuleSet::default_rules(),
        }
        .map_err(|e| invalid("derive.rules_file", e.to_string()))?;

        let meta = raw
            .destinations
            .meta
            .map(destinations::meta)
            .transpose()?
            .flatten();
        let google = raw
            .destinations
            .google
            .map(destinations::google)
            .transpose()?
            .flatten();

        Ok(Config {
            source: SourceConfig {
                pg,
                slot,
                publication,
                status_interval,
                reconnect_max_backoff,
                tls_ca_file,
                heartbeat_interval,
                receive_buffer_mb,
            },
            spool: SpoolConfig {
                file,
                retention,
                prune_every,
            },
            admin: AdminConfig {
                listen,
                token: match raw.admin.token {
                    Some(t) if t.trim().len() < 16 => {
                        return Err(invalid("admin.token", "must be at least 16 characters (it guards sending test events and pausing destinations); pass it as CAPI_CDC_ADMIN__TOKEN"))
                    }
                    t => t.map(Secret::new),
                },
                grades_every: Duration::from_secs(raw.admin.grades_interval_s.unwrap_or(3600).max(1)),
            },
            meta,
            google,
            rules,
        })
    }
}

/// `spool.path` names a directory when it ends in `/` or already is one.
fn spool_file(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    if text.ends_with('/') || path.is_dir() {
        path.join("spool.sqlite3")
    } else {
        path.to_path_buf()
    }
}

/// Slot names may hold only lower-case letters, digits and `_` (PostgreSQL's
/// rule); publication names are quoted by us, but we keep the same rule so
/// the SQL we print for a DBA needs no quoting surprises.
fn check_identifier(key: &'static str, name: &str, slot: bool) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    if ok {
        Ok(())
    } else {
        let what = if slot {
            "replication slot"
        } else {
            "publication"
        };
        Err(invalid(
            key,
            format!(
                "{name:?} is not a valid {what} name: use 1-63 lower-case letters, digits and _"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        Config::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    const MINIMAL: &str = r#"
        [source]
        url = "postgresql://capi@localhost:5432/shop"
    "#;

    #[test]
    fn defaults_apply() {
        let c = from_toml(MINIMAL).unwrap();
        assert_eq!(c.source.slot, "capi_cdc");
        assert_eq!(c.source.publication, "capi_cdc");
        assert_eq!(
            c.spool.file,
            PathBuf::from("./capi-cdc-spool/spool.sqlite3")
        );
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9187");
        assert!(c.meta.is_none());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = from_toml(&format!("{MINIMAL}\nslott = \"x\"")).unwrap_err();
        assert!(err.to_string().contains("slott"), "{err}");
        let err =
            from_toml("[source]\nurl = \"postgresql://h/db\"\npublicaton = \"p\"").unwrap_err();
        assert!(err.to_string().contains("publicaton"), "{err}");
    }

    #[test]
    fn missing_url_names_the_key() {
        let err = from_toml("").unwrap_err();
        assert!(err.to_string().contains("source.url"), "{err}");
    }

    #[test]
    fn meta_requires_token_and_numeric_pixel() {
        let base = format!(
            "{MINIMAL}\n[destinations.meta]\npixel_id = \"123\"\napi_version = \"v25.0\"\n"
        );
        let err = from_toml(&base).unwrap_err();
        assert!(
            err.to_string().contains("destinations.meta.access_token"),
            "{err}"
        );
        let err = from_toml(&base.replace("\"123\"", "\"abc\"")).unwrap_err();
        assert!(
            err.to_string().contains("destinations.meta.pixel_id"),
            "{err}"
        );
        let ok = from_toml(&format!("{base}access_token = \"tok\"")).unwrap();
        let meta = ok.meta.unwrap();
        assert_eq!(meta.pixel_id, "123");
        assert_eq!(format!("{:?}", meta.access_token), "[redacted]");
        assert!(!format!("{meta:?}").contains("tok\""));
    }

    #[test]
    fn disabled_meta_is_not_validated() {
        let c = from_toml(&format!(
            "{MINIMAL}\n[destinations.meta]\nenabled = false\n"
        ))
        .unwrap();
        assert!(c.meta.is_none());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn environment_overrides_nested_keys() {
        let fig = Figment::new()
            .merge(Toml::string(MINIMAL))
            .merge(Serialized::default("source.slot", "from_env"));
        assert_eq!(Config::from_figment(fig).unwrap().source.slot, "from_env");
        // The real provider: split on `__`, prefix stripped.
        figment::Jail::expect_with(|jail| {
            jail.set_env("CAPI_CDC_SOURCE__URL", "postgresql://h/envdb");
            jail.set_env("CAPI_CDC_SPOOL__PATH", "/var/lib/capi/spool.db");
            // Numeric-looking IDs from the environment stay text.
            jail.set_env("CAPI_CDC_DESTINATIONS__META__PIXEL_ID", "1234567890");
            jail.set_env("CAPI_CDC_DESTINATIONS__META__ACCESS_TOKEN", "987654");
            // What the image sets for the command line is not a key.
            jail.set_env("CAPI_CDC_CONFIG", "/etc/capi-cdc/capi-cdc.toml");
            jail.set_env("CAPI_CDC_SANDBOX_META_TOKEN", "sandbox-meta-token");
            let c = Config::load(Path::new("does-not-exist.toml")).unwrap();
            let meta = c.meta.as_ref().unwrap();
            assert_eq!(meta.pixel_id, "1234567890");
            assert_eq!(meta.access_token.expose(), "987654");
            assert_eq!(c.source.pg.get_dbname(), Some("envdb"));
            assert_eq!(c.spool.file, PathBuf::from("/var/lib/capi/spool.db"));
            Ok(())
        });
    }

    #[test]
    fn bad_slot_name_is_rejected() {
        let err = from_toml(&format!("{MINIMAL}slot = \"Bad-Name\"")).unwrap_err();
        assert!(err.to_string().contains("source.slot"), "{err}");
    }
}
