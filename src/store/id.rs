//! Run ids: `20261121-052600-3fa2`, the UTC start time to the second and four random hex digits.
//! They sort by time as plain strings, and a few characters are enough to name one.

use std::time::SystemTime;

/// A fresh run id for a run starting at `now`.
pub fn new_run_id(now: SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    // 2026-11-21T05:26:00Z -> 20261121-052600
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let (date, time) = digits.split_at(8.min(digits.len()));
    let random = uuid::Uuid::new_v4().as_u128() as u16;
    format!("{date}-{time}-{random:04x}")
}

/// True when `text` has the shape of a run id (so it can safely name a directory).
pub fn is_run_id(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b[8] == b'-'
        && b[15] == b'-'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[16..].iter().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape_and_sort_by_time() {
        let t = crate::store::time::parse("2026-11-21T05:26:00Z").unwrap();
        let id = new_run_id(t);
        assert!(id.starts_with("20261121-052600-"), "{id}");
        assert!(is_run_id(&id), "{id}");
        let later = new_run_id(t + std::time::Duration::from_secs(1));
        assert!(later > id);
        assert!(!is_run_id("../etc"));
        assert!(!is_run_id("20261121-052600-3fa"));
    }
}
