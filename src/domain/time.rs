//! Time as microseconds since the Unix epoch: what the stores keep and what
//! the status documents print (RFC 3339 with microseconds).

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// `2026-11-22T10:15:30.123456Z`
pub fn format_rfc3339(us: Micros) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return String::from("1970-01-01T00:00:00.000000Z");
    };
    if !(0..=9999).contains(&t.year()) {
        return format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
        );
    }
    // Written digit by digit: every request's input document carries one, and
    // `format!` cost ~3,000 instructions of it.
    let mut out = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year() as u32);
    put(5, 2, u8::from(t.month()).into());
    put(8, 2, t.day().into());
    put(11, 2, t.hour().into());
    put(14, 2, t.minute().into());
    put(17, 2, t.second().into());
    put(20, 6, micros as u32);
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_time_crate_across_the_range() {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let mut us: Micros = -62_135_596_800_000_000; // 0001-01-01
        while us < 253_402_300_799_999_999 {
            let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap();
            assert_eq!(format_rfc3339(us), t.format(&format).unwrap(), "{us}");
            us += 1_234_567_890_123_457;
        }
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            format_rfc3339(253_402_300_799_999_999),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn formats_with_microseconds() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_rfc3339(1_795_000_000_123_456),
            "2026-11-18T11:06:40.123456Z"
        );
    }
}
