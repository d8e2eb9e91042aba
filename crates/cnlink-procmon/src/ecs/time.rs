//! RFC 3339 timestamps in UTC with nanoseconds, without a calendar crate.

/// Appends `unix_ns` (ns since 1970-01-01 UTC; earlier times are written as the epoch) as
/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub(crate) fn rfc3339(out: &mut Vec<u8>, unix_ns: i128) {
    let ns = unix_ns.max(0);
    let secs = (ns / 1_000_000_000) as i64;
    let frac = (ns % 1_000_000_000) as u32;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400) as u32;
    let year = y.clamp(0, 9999) as u32;
    out.extend_from_slice(&[year / 1000, year / 100 % 10, year / 10 % 10, year % 10].map(|d| b'0' + d as u8));
    out.push(b'-');
    let mut two = |v: u32, sep: u8| {
        out.extend_from_slice(&[b'0' + (v / 10) as u8, b'0' + (v % 10) as u8, sep]);
    };
    two(m, b'-');
    two(d, b'T');
    two(s / 3600, b':');
    two(s / 60 % 60, b':');
    two(s % 60, b'.');
    let mut f = [b'0'; 9];
    let mut v = frac;
    for slot in f.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&f);
    out.push(b'Z');
}

/// Year, month (1-12) and day (1-31) of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ns: i128) -> String {
        let mut v = Vec::new();
        rfc3339(&mut v, ns);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn dates_match_date_1() {
        // date -u -d @0, @951782400 (a leap day), @1795867200 and @4102444799 with +%FT%T.%NZ
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(fmt(951_782_400_000_000_001), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(fmt(1_795_867_200_123_456_789), "2026-11-28T12:00:00.123456789Z");
        assert_eq!(fmt(4_102_444_799_999_999_999), "2099-12-31T23:59:59.999999999Z");
        assert_eq!(fmt(-5), "1970-01-01T00:00:00.000000000Z");
    }
}
