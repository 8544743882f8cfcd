//! A consumer's limits as `_tenant.yaml` writes them: `rate: 100/s` (also
//! `/min` and `/h`) with `burst:`, and `quota: 1000000/day` (a UTC day).

/// Microseconds in a UTC day.
pub const DAY_MICROS: i64 = 86_400_000_000;

/// The UTC day (days since 1970-01-01) of a time in microseconds.
pub fn utc_day(us: i64) -> i64 {
    us.div_euclid(DAY_MICROS)
}

/// What is wrong with a `rate:` or `quota:` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("`{0}` is not a rate like 100/s, 600/min or 1000/h")]
    Rate(String),
    #[error("`{0}` is not a quota like 1000000/day")]
    Quota(String),
    #[error("the count must be at least 1")]
    Zero,
}

/// The period of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    fn nanos(self) -> u64 {
        match self {
            Self::Second => 1_000_000_000,
            Self::Minute => 60_000_000_000,
            Self::Hour => 3_600_000_000_000,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "min",
            Self::Hour => "h",
        }
    }
}

/// `count` requests per `per`, spread evenly: one every `interval_nanos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Per,
}

/// `N/<unit>` with `N` a positive integer: the count and the unit.
fn count_per(text: &str) -> Option<(u64, &str)> {
    let (n, unit) = text.trim().split_once('/')?;
    let n = n.trim();
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((n.parse().ok()?, unit.trim()))
}

impl Rate {
    pub fn parse(text: &str) -> Result<Self, LimitError> {
        let bad = || LimitError::Rate(text.to_owned());
        let (count, unit) = count_per(text).ok_or_else(bad)?;
        let per = match unit {
            "s" | "sec" | "second" => Per::Second,
            "m" | "min" | "minute" => Per::Minute,
            "h" | "hour" => Per::Hour,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(LimitError::Zero);
        }
        Ok(Self { count, per })
    }

    /// The time between two requests at this rate (at least 1 ns).
    pub fn interval_nanos(&self) -> u64 {
        (self.per.nanos() / self.count).max(1)
    }

    /// The default burst: one second's worth of requests, at least one.
    pub fn one_second(&self) -> u32 {
        let per_second = self.count * 1_000_000_000 / self.per.nanos();
        per_second.clamp(1, u64::from(u32::MAX)) as u32
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.count, self.per.as_str())
    }
}

/// `N/day`: requests per UTC day.
pub fn parse_quota(text: &str) -> Result<u64, LimitError> {
    let bad = || LimitError::Quota(text.to_owned());
    let (count, unit) = count_per(text).ok_or_else(bad)?;
    if !matches!(unit, "day" | "d") {
        return Err(bad());
    }
    if count == 0 {
        return Err(LimitError::Zero);
    }
    Ok(count)
}

/// The limits of one consumer (an `api_keys` label): neither is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per node, with `burst` requests at once.
    pub rate: Option<(Rate, u32)>,
    /// Requests per UTC day, counted in the store (across nodes).
    pub quota: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_quotas_parse_as_written() {
        let r = Rate::parse("100/s").unwrap();
        assert_eq!(
            (r.count, r.per, r.interval_nanos()),
            (100, Per::Second, 10_000_000)
        );
        assert_eq!(r.one_second(), 100);
        assert_eq!(r.to_string(), "100/s");
        let r = Rate::parse(" 600 / min").unwrap();
        assert_eq!((r.interval_nanos(), r.one_second()), (100_000_000, 10));
        let r = Rate::parse("10/h").unwrap();
        assert_eq!(r.one_second(), 1, "at least one request at once");
        for bad in ["100", "/s", "1.5/s", "-1/s", "100/day", "x/s", "100/s/s"] {
            assert!(
                matches!(Rate::parse(bad), Err(LimitError::Rate(_))),
                "{bad}"
            );
        }
        assert_eq!(Rate::parse("0/s"), Err(LimitError::Zero));
        assert_eq!(parse_quota("1000000/day"), Ok(1_000_000));
        assert_eq!(parse_quota("5/d"), Ok(5));
        assert!(parse_quota("5/h").is_err());
        assert_eq!(parse_quota("0/day"), Err(LimitError::Zero));
    }

    #[test]
    fn utc_days_start_at_midnight() {
        assert_eq!(utc_day(0), 0);
        assert_eq!(utc_day(DAY_MICROS - 1), 0);
        assert_eq!(utc_day(DAY_MICROS), 1);
        assert_eq!(utc_day(-1), -1);
    }
}
