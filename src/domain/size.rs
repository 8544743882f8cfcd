//! Sizes as people write them in settings and flow files: `256MiB`, `64 MB`,
//! `512KiB`, `1048576` (bytes).

/// Why a text is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{text}` is not a size like 256MiB, 64MB or 512KiB (unknown unit `{unit}`)")]
    Unit { text: String, unit: String },
    #[error("`{0}` is not a size like 256MiB, 64MB or 512KiB")]
    Number(String),
    #[error("`{0}` is too large")]
    TooLarge(String),
}

/// Bytes of a size like `256MiB`; binary (`KiB`, `MiB`, `GiB`) and decimal
/// (`kB`, `MB`, `GB`) units, or none for bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(SizeError::Unit {
                text: text.to_owned(),
                unit: unit.to_owned(),
            });
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| SizeError::Number(text.to_owned()))?;
    let bytes = n * factor as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(SizeError::TooLarge(text.to_owned()));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size(" 64 MB "), Ok(64_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("lots").is_err());
        let unit = SizeError::Unit {
            text: "12 parsecs".into(),
            unit: "parsecs".into(),
        };
        assert_eq!(parse_size("12 parsecs"), Err(unit));
        assert!(parse_size("").is_err());
    }
}
