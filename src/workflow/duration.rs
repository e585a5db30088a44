//! Durations as written in workflows: `500ms`, `30s`, `10m`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses a duration; the error says what is wrong in words.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("a duration cannot be empty".into());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "`{s}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}` is too large"))?;
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
            "" => return Err(format!("`{s}` has a number without a unit")),
            other => return Err(format!("`{other}` is not a unit of time")),
        };
        total = total
            .checked_add(number.saturating_mul(millis))
            .ok_or_else(|| format!("`{s}` is too large"))?;
        rest = rest[unit_len..].trim_start();
    }
    let millis = u64::try_from(total).map_err(|_| format!("`{s}` is too large"))?;
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
        assert!(parse("10").unwrap_err().contains("without a unit"));
        assert!(parse("10x").unwrap_err().contains("`x` is not a unit"));
        assert!(parse("").is_err());
        assert!(parse("99999999999999999999999999d").is_err());
    }
}
