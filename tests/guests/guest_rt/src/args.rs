//! Helpers for a guest's argument string: whitespace-separated words, numbers in decimal or
//! `0x` hexadecimal.

/// Why a number did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberError {
    /// Empty, or a character that is not a digit of the base.
    Invalid,
    /// Does not fit in a `u64`.
    Overflow,
}

impl core::fmt::Display for NumberError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Invalid => "not a number",
            Self::Overflow => "number too large",
        })
    }
}

/// Parses `123` or `0x7b` / `0X7B` (underscores allowed between digits).
///
/// # Errors
/// [`NumberError`].
pub fn parse_u64(text: &str) -> Result<u64, NumberError> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' && any {
            continue;
        }
        let digit = c.to_digit(radix).ok_or(NumberError::Invalid)?;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(NumberError::Overflow)?;
        any = true;
    }
    if any {
        Ok(value)
    } else {
        Err(NumberError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_hex() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("1000000"), Ok(1_000_000));
        assert_eq!(parse_u64("1_000"), Ok(1000));
        assert_eq!(parse_u64("0x10"), Ok(16));
        assert_eq!(parse_u64("0XfeE0_0000"), Ok(0xFEE0_0000));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64("0xffffffffffffffff"), Ok(u64::MAX));
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in ["", "0x", "_1", "12a", "-1", "0x_", "1 2", "0xg"] {
            assert_eq!(parse_u64(bad), Err(NumberError::Invalid), "{bad:?}");
        }
        assert_eq!(
            parse_u64("18446744073709551616"),
            Err(NumberError::Overflow)
        );
        assert_eq!(parse_u64("0x10000000000000000"), Err(NumberError::Overflow));
    }
}
