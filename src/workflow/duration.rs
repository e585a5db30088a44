//! Durations as written in workflows: `500ms`, `30s`, `10m`, `1h30m`, `2d`.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing but blanks.
    #[error("a duration cannot be empty")]
    Empty,
    /// Something other than a digit where a number should start.
    #[error("`{text}` is not a duration: expected a number at `{at}`")]
    NotANumber {
        /// The whole duration as written.
        text: String,
        /// The rest of it, from where the number is missing.
        at: String,
    },
    /// A number with nothing after it (`10`).
    #[error("`{text}` has a number without a unit")]
    NoUnit {
        /// The whole duration as written.
        text: String,
    },
    /// A unit other than `ms`, `s`, `m`, `h` and `d`.
    #[error("`{unit}` is not a unit of time")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
    },
    /// More milliseconds than 64 bits hold.
    #[error("`{text}` is too large")]
    TooLarge {
        /// The whole duration as written.
        text: String,
    },
}

/// Parses a duration; the error says what is wrong in words.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let too_large = || DurationError::TooLarge { text: s.into() };
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(DurationError::NotANumber {
                text: s.into(),
                at: rest.into(),
            });
        }
        let number: u128 = rest[..digits].parse().map_err(|_| too_large())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        let millis = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(DurationError::NoUnit { text: s.into() }),
            other => return Err(DurationError::UnknownUnit { unit: other.into() }),
        };
        total = total
            .checked_add(number.saturating_mul(millis))
            .ok_or_else(too_large)?;
        rest = rest[unit_len..].trim_start();
    }
    let millis = u64::try_from(total).map_err(|_| too_large())?;
    Ok(Duration::from_millis(millis))
}

/// Formats a duration the short way: `1.2s`, `3m04s`, `1h02m`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1_000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(" 2d "), Ok(Duration::from_secs(172_800)));
        assert_eq!(
            parse("10").unwrap_err().to_string(),
            "`10` has a number without a unit"
        );
        assert!(parse("10x")
            .unwrap_err()
            .to_string()
            .starts_with("`x` is not a unit"));
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert!(matches!(
            parse("99999999999999999999999999d"),
            Err(DurationError::TooLarge { .. })
        ));
    }
}
