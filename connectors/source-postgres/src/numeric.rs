//! PostgreSQL's binary `numeric` (base-10000 digits with a weight, a sign and a display scale)
//! to exact text and to Decimal128's scaled i128.

/// A decoded numeric header and its digits.
pub struct Numeric<'a> {
    weight: i16,
    sign: u16,
    dscale: u16,
    digits: &'a [u8],
}

const NEG: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PINF: u16 = 0xD000;
const NINF: u16 = 0xF000;

impl<'a> Numeric<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        if data.len() < 8 {
            return Err("a numeric value shorter than its header".into());
        }
        let ndigits = i16::from_be_bytes([data[0], data[1]]);
        let digits = &data[8..];
        if ndigits < 0 || digits.len() != ndigits as usize * 2 {
            return Err("a numeric value whose digit count does not match its length".into());
        }
        Ok(Self {
            weight: i16::from_be_bytes([data[2], data[3]]),
            sign: u16::from_be_bytes([data[4], data[5]]),
            dscale: u16::from_be_bytes([data[6], data[7]]),
            digits,
        })
    }

    /// The base-10000 digit for 10000^exponent (0 outside the stored digits).
    fn digit(&self, exponent: i32) -> u16 {
        let index = self.weight as i32 - exponent;
        if index < 0 || index as usize * 2 >= self.digits.len() {
            return 0;
        }
        let i = index as usize * 2;
        u16::from_be_bytes([self.digits[i], self.digits[i + 1]])
    }

    /// `NaN`, `Infinity` or `-Infinity` when the value is special.
    pub fn special(&self) -> Option<&'static str> {
        match self.sign {
            NAN => Some("NaN"),
            PINF => Some("Infinity"),
            NINF => Some("-Infinity"),
            _ => None,
        }
    }

    /// The exact text PostgreSQL prints for the value.
    pub fn write_text(&self, out: &mut String) {
        use std::fmt::Write;
        if let Some(s) = self.special() {
            out.push_str(s);
            return;
        }
        if self.sign == NEG {
            out.push('-');
        }
        if self.weight < 0 {
            out.push('0');
        } else {
            for e in (0..=self.weight as i32).rev() {
                let d = self.digit(e);
                if e == self.weight as i32 {
                    let _ = write!(out, "{d}");
                } else {
                    let _ = write!(out, "{d:04}");
                }
            }
        }
        if self.dscale > 0 {
            out.push('.');
            let mut left = self.dscale as usize;
            let mut e = -1;
            while left > 0 {
                let group = format!("{:04}", self.digit(e));
                let take = left.min(4);
                out.push_str(&group[..take]);
                left -= take;
                e -= 1;
            }
        }
    }

    /// The value × 10^scale as an i128 (for Decimal128(p, scale)); `None` if it does not fit.
    /// Digits below the scale are dropped, which is exact for values of a numeric(p, scale)
    /// column (PostgreSQL rounds them to the scale on write).
    pub fn to_i128(&self, scale: i8) -> Option<i128> {
        let mut value: i128 = 0;
        let ndigits = (self.digits.len() / 2) as i32;
        for index in 0..ndigits {
            let exponent = self.weight as i32 - index;
            let d = self.digit(exponent) as i128;
            let pow10 = 4 * exponent + scale as i32;
            let term = if pow10 >= 0 {
                d.checked_mul(10i128.checked_pow(pow10 as u32)?)?
            } else if pow10 > -4 {
                d / 10i128.pow((-pow10) as u32)
            } else {
                0
            };
            value = value.checked_add(term)?;
        }
        Some(if self.sign == NEG { -value } else { value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    fn text(bytes: &[u8]) -> String {
        let mut s = String::new();
        Numeric::parse(bytes).unwrap().write_text(&mut s);
        s
    }

    #[test]
    fn text_matches_postgres() {
        // 12345.678 = [1, 2345, 6780] weight 1, dscale 3
        assert_eq!(text(&encode(1, 0, 3, &[1, 2345, 6780])), "12345.678");
        assert_eq!(text(&encode(1, NEG, 3, &[1, 2345, 6780])), "-12345.678");
        // 0.00001 = [1000] weight -2 (10000^-2 * 1000 = 1e-5), dscale 5
        assert_eq!(text(&encode(-2, 0, 5, &[1000])), "0.00001");
        assert_eq!(text(&encode(0, 0, 2, &[])), "0.00");
        assert_eq!(text(&encode(2, 0, 0, &[1])), "100000000");
        assert_eq!(text(&encode(0, NAN, 0, &[])), "NaN");
        assert_eq!(text(&encode(0, NINF, 0, &[])), "-Infinity");
    }

    #[test]
    fn scaled_integers() {
        let n = encode(1, NEG, 3, &[1, 2345, 6780]);
        assert_eq!(Numeric::parse(&n).unwrap().to_i128(3), Some(-12345678));
        assert_eq!(Numeric::parse(&n).unwrap().to_i128(5), Some(-1234567800));
        let big = encode(8, 0, 0, &[9999; 9]);
        assert_eq!(
            Numeric::parse(&big).unwrap().to_i128(0),
            Some(10i128.pow(36) - 1)
        );
        let huge = encode(12, 0, 0, &[1]);
        assert_eq!(Numeric::parse(&huge).unwrap().to_i128(0), None);
    }
}
