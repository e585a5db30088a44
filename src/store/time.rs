//! Timestamps in the event log: RFC 3339 in UTC with milliseconds, like `2026-11-21T05:26:00.123Z`.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serializer};

/// The current time, to the millisecond (what the log can hold), so a record in memory equals
/// the same record read back.
pub fn now() -> SystemTime {
    let t = SystemTime::now();
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(since.as_millis() as u64)
}

/// Formats a time as RFC 3339 with milliseconds.
pub fn format(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// A text that is not an RFC 3339 timestamp.
#[derive(Debug, thiserror::Error)]
#[error("bad timestamp `{text}`: {source}")]
pub struct TimestampError {
    /// The text as found.
    pub text: String,
    /// What is wrong with it.
    pub source: humantime::TimestampError,
}

/// Parses an RFC 3339 timestamp.
pub fn parse(text: &str) -> Result<SystemTime, TimestampError> {
    humantime::parse_rfc3339_weak(text).map_err(|source| TimestampError {
        text: text.into(),
        source,
    })
}

/// Serde `with` module for a [`SystemTime`] field.
pub fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*time))
}

/// Serde `with` module for a [`SystemTime`] field.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    parse(&text).map_err(serde::de::Error::custom)
}

/// The same for an optional time.
pub mod option {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `Some` as a timestamp and `None` as null.
    pub fn serialize<S: Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(t) => s.serialize_str(&super::format(*t)),
            None => s.serialize_none(),
        }
    }

    /// Reads a timestamp or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::parse(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
