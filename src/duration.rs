//! Durations as users write them, in one place: Go's syntax (`500ms`,
//! `1h30m`) for the config keys, the flags and the DSN's timeouts, as the Go
//! sera and go-sql-driver read them; plain seconds (`5`, `0.5`) for
//! `<wait>`; and both back to text for messages.
//!
//! Integer arithmetic only: floating point's parsing and formatting code
//! alone would cost some 30 KB of the static binary.

use std::time::{Duration, Instant};

use crate::report::quoted;

/// Go's time.ParseDuration (no negative values): "500ms", "1.5s", "2m", "1h30m", "0".
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {} (expected a Go duration such as 500ms, 1.5s or 1h30m)",
            quoted(text)
        )
    };
    if text.starts_with('-') {
        return Err(format!(
            "invalid duration {}: negative durations are not allowed",
            quoted(text)
        ));
    }
    let body = text.strip_prefix('+').unwrap_or(text);
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(bad());
    }
    let not_digit = |c: char| !c.is_ascii_digit();
    let mut rest = body;
    let mut total_ns: u64 = 0;
    while !rest.is_empty() {
        let (whole, after) = rest.split_at(rest.find(not_digit).unwrap_or(rest.len()));
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => after.split_at(after.find(not_digit).unwrap_or(after.len())),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(bad());
        }
        let unit_end = after.find(|c: char| c == '.' || c.is_ascii_digit());
        let (unit, after) = after.split_at(unit_end.unwrap_or(after.len()));
        let unit_ns: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let too_long = || format!("invalid duration {}: too long", quoted(text));
        // Only digits: a number that does not fit is too long.
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_long())?
        };
        // Each digit of the fraction is worth a tenth of the one before;
        // past a nanosecond, nothing.
        let mut fraction_ns = 0;
        let mut worth = unit_ns;
        for digit in fraction.bytes() {
            worth /= 10;
            fraction_ns += u64::from(digit - b'0') * worth;
        }
        total_ns = whole
            .checked_mul(unit_ns)
            .and_then(|ns| ns.checked_add(fraction_ns))
            .and_then(|ns| ns.checked_add(total_ns))
            .filter(|&ns| ns <= i64::MAX as u64)
            .ok_or_else(too_long)?;
        rest = after;
    }
    Ok(Duration::from_nanos(total_ns))
}

/// A duration in Go syntax, in the largest unit that keeps it exact.
pub fn format(duration: Duration) -> String {
    // Every duration sera formats came from `parse`: at most i64::MAX ns.
    let ns = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    let units = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    for (size, name) in units {
        if ns.is_multiple_of(size) {
            return format!("{}{name}", ns / size);
        }
    }
    format!("{ns}ns")
}

/// `<wait>`: seconds, whole or decimal (`0`, `30`, `0.5`): plain digits with
/// at most one decimal point, read exactly as a Go duration in seconds.
pub fn parse_seconds(text: &str) -> Option<Duration> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 || digits + usize::from(text.contains('.')) != text.len() {
        return None;
    }
    parse(&format!("{text}s")).ok()
}

/// The time left until `deadline`; zero once it has passed.
pub fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Seconds as the user wrote them: `5`, `0.5`.
pub fn seconds(d: Duration) -> String {
    match d.subsec_nanos() {
        0 => d.as_secs().to_string(),
        ns => format!(
            "{}.{}",
            d.as_secs(),
            format!("{ns:09}").trim_end_matches('0')
        ),
    }
}

/// Seconds with one decimal, as `{:.1}` would print them.
pub fn tenths(d: Duration) -> String {
    let tenths = d.as_secs() * 10 + u64::from(d.subsec_millis() + 50) / 100;
    format!("{}.{}", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h30m15s", Duration::from_secs(5415)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("100ns", Duration::from_nanos(100)),
            ("0", Duration::ZERO),
            ("+0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("1.0000000000000000000001h", Duration::from_secs(3600)),
            ("2562047h", Duration::from_secs(2562047 * 3600)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn bad_durations() {
        for text in [
            "",
            "+",
            "-",
            "-1s",
            "-0",
            "1",
            "5 s",
            "s",
            ".s",
            ".",
            "1x",
            "1sm",
            "1.5.5s",
            "1e3s",
            "2562048h",
            "99999999999999999999999999999999999999999999s",
        ] {
            assert!(parse(text).is_err(), "{text:?} should fail");
        }
        let e = parse("-1s").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        assert!(parse("2562048h").unwrap_err().contains("too long"));
    }

    #[test]
    fn seconds_and_tenths() {
        assert_eq!(parse_seconds("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("1e3"), None);
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
        assert_eq!(seconds(Duration::from_secs(10)), "10");
        assert_eq!(tenths(Duration::from_millis(1449)), "1.4");
        assert_eq!(tenths(Duration::from_millis(1450)), "1.5");
    }
}
