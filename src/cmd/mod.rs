//! One module per subcommand, and the small parsers they share.

pub(crate) mod bus;
pub(crate) mod collect;
pub(crate) mod decode;
pub(crate) mod generate;
pub(crate) mod list;
pub(crate) mod listen;
pub(crate) mod proc;
pub(crate) mod record;
pub(crate) mod replay;
pub(crate) mod send;
pub(crate) mod text_flags;

use std::time::Duration;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Human-readable text.
    Text,
    /// JSON Lines: one object per line (see docs/json.md).
    Json,
}

/// True when `e` is, at its root, a write to a closed pipe: the reader went away, which is not an error.
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Parses a duration: `250ms`, `5s`, `100us`, `2m`, or a plain number of seconds (`1.5`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?} (e.g. 5ms, 2s, 1.5)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("invalid duration unit {u:?} in {s:?} (ns, us, ms, s, m, h)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration out of range: {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte size: `4096`, `64K`, `256M`, `1G`.
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    let n: usize = num.parse().map_err(|_| format!("invalid size {s:?} (e.g. 4096, 64K, 256M)"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size too large: {s:?}"))
}

/// Parses hex bytes, ignoring whitespace, `:` separators and `0x` prefixes.
pub(crate) fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let mut digits = String::with_capacity(s.len());
    for tok in s.split(|c: char| c.is_whitespace() || c == ':' || c == ',') {
        let tok = tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")).unwrap_or(tok);
        digits.push_str(tok);
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", digits.len()));
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|_| format!("invalid hex {:?}", &digits[i..i + 2])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn hex() {
        assert_eq!(parse_hex("01 02:0x03ff"), Ok(vec![1, 2, 3, 0xff]));
        assert!(parse_hex("123").is_err());
        assert!(parse_hex("zz").is_err());
    }
}
