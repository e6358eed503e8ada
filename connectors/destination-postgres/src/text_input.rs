//! The text a PostgreSQL source sends for types Arrow has no form for (`uuid`, `jsonb`,
//! `inet`, `cidr`, `macaddr`, `numeric` beyond Decimal128, `NaN` and `±Infinity` included),
//! turned into those types' binary COPY form, so a product table keeps the source's type (see
//! [`crate::source_types`]). Text that does not parse is an error saying why; the encoder adds
//! the column's name.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use crate::types::PgType;

/// PostgreSQL's address family codes in `inet`'s binary form (`AF_INET`, `AF_INET + 1`).
const PGSQL_AF_INET: u8 = 2;
const PGSQL_AF_INET6: u8 = 3;

/// How a text value becomes a column type's binary form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextInput {
    Uuid,
    Jsonb,
    /// `inet` and `cidr` share their binary form (the server checks a `cidr`'s host bits).
    Inet,
    Macaddr,
    Numeric,
}

impl TextInput {
    /// The conversion text needs to be written into a column of type `ty`, if any.
    pub fn for_type(ty: &PgType) -> Option<Self> {
        match ty {
            PgType::Uuid => Some(Self::Uuid),
            PgType::Jsonb => Some(Self::Jsonb),
            PgType::Inet | PgType::Cidr => Some(Self::Inet),
            PgType::Macaddr => Some(Self::Macaddr),
            PgType::Numeric(_) => Some(Self::Numeric),
            _ => None,
        }
    }

    /// Appends `text` as one field (length, then the binary value).
    pub fn write(self, text: &str, buf: &mut BytesMut) -> Result<(), String> {
        match self {
            Self::Uuid => {
                let bytes = uuid(text).ok_or_else(|| format!("{text:?} is not a UUID"))?;
                buf.put_i32(16);
                buf.put_slice(&bytes);
            }
            Self::Jsonb => {
                // jsonb's binary form: a version byte (1), then the JSON text.
                let len = i32::try_from(text.len() + 1).unwrap_or(i32::MAX);
                buf.put_i32(len);
                buf.put_u8(1);
                buf.put_slice(text.as_bytes());
            }
            Self::Inet => {
                let (addr, bits) =
                    inet(text).ok_or_else(|| format!("{text:?} is not an IP address"))?;
                let (family, bytes): (u8, Vec<u8>) = match addr {
                    IpAddr::V4(a) => (PGSQL_AF_INET, a.octets().to_vec()),
                    IpAddr::V6(a) => (PGSQL_AF_INET6, a.octets().to_vec()),
                };
                buf.put_i32(4 + bytes.len() as i32);
                buf.put_u8(family);
                buf.put_u8(bits);
                buf.put_u8(0); // is_cidr: the server ignores it and goes by the column's type
                buf.put_u8(bytes.len() as u8);
                buf.put_slice(&bytes);
            }
            Self::Macaddr => {
                let bytes =
                    macaddr(text).ok_or_else(|| format!("{text:?} is not a MAC address"))?;
                buf.put_i32(6);
                buf.put_slice(&bytes);
            }
            Self::Numeric => numeric(text, buf)?,
        }
        Ok(())
    }
}

fn uuid(text: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// `address[/bits]`; without bits, the whole address.
fn inet(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = match text.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max)?,
        None => max,
    };
    Some((addr, bits))
}

fn macaddr(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        out[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

/// `numeric` in binary from its text (`[-]digits[.digits]`, `NaN`, `Infinity`, `-Infinity`):
/// digit count, weight of the first base-10000 digit, sign, display scale, digits.
fn numeric(text: &str, buf: &mut BytesMut) -> Result<(), String> {
    let special = match text {
        "NaN" => Some(0xC000u16),
        "Infinity" => Some(0xD000),
        "-Infinity" => Some(0xF000),
        _ => None,
    };
    if let Some(sign) = special {
        buf.put_i32(8);
        buf.put_i16(0);
        buf.put_i16(0);
        buf.put_u16(sign);
        buf.put_i16(0);
        return Ok(());
    }
    let bad = || format!("{text:?} is not a numeric value");
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    let scale = i16::try_from(frac.len()).map_err(|_| bad())?;
    // Groups of four decimal digits, aligned on the decimal point.
    let int_pad = (4 - int.len() % 4) % 4;
    let frac_pad = (4 - frac.len() % 4) % 4;
    let mut padded = Vec::with_capacity(int_pad + int.len() + frac.len() + frac_pad);
    padded.extend(std::iter::repeat_n(b'0', int_pad));
    padded.extend_from_slice(int.as_bytes());
    padded.extend_from_slice(frac.as_bytes());
    padded.extend(std::iter::repeat_n(b'0', frac_pad));
    let groups: Vec<i16> = padded
        .chunks(4)
        .map(|c| c.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0')))
        .collect();
    let int_groups = (int_pad + int.len()) / 4;
    let mut weight = i32::try_from(int_groups).map_err(|_| bad())? - 1;
    let mut first = 0;
    while first < groups.len() && groups[first] == 0 {
        first += 1;
        weight -= 1;
    }
    let mut last = groups.len();
    while last > first && groups[last - 1] == 0 {
        last -= 1;
    }
    let digits = &groups[first..last];
    if digits.is_empty() {
        weight = 0;
    }
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    let count = i16::try_from(digits.len()).map_err(|_| bad())?;
    buf.put_i32(8 + 2 * i32::from(count));
    buf.put_i16(count);
    buf.put_i16(weight);
    buf.put_u16(if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    });
    buf.put_i16(scale);
    for d in digits {
        buf.put_i16(*d);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_words(text: &str) -> Vec<i16> {
        let mut buf = BytesMut::new();
        numeric(text, &mut buf).unwrap();
        buf[4..]
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numeric_text_becomes_base_10000_digits() {
        // 12345.67 → [1, 2345, 6700], weight 1, scale 2
        assert_eq!(numeric_words("12345.67"), vec![3, 1, 0, 2, 1, 2345, 6700]);
        assert_eq!(numeric_words("-0.0001"), vec![1, -1, 0x4000, 4, 1]);
        assert_eq!(numeric_words("0.00001"), vec![1, -2, 0, 5, 1000]);
        assert_eq!(numeric_words("-0.00"), vec![0, 0, 0, 2]);
        assert_eq!(numeric_words("10000"), vec![1, 1, 0, 0, 1]);
        assert_eq!(numeric_words("NaN"), vec![0, 0, 0xC000u16 as i16, 0]);
        assert_eq!(numeric_words("-Infinity"), vec![0, 0, 0xF000u16 as i16, 0]);
        let mut buf = BytesMut::new();
        assert_eq!(
            numeric("1e5", &mut buf).unwrap_err(),
            "\"1e5\" is not a numeric value"
        );
    }

    #[test]
    fn addresses_and_uuids_parse() {
        assert_eq!(inet("10.0.0.1/8"), Some(("10.0.0.1".parse().unwrap(), 8)));
        assert_eq!(inet("::1"), Some(("::1".parse().unwrap(), 128)));
        assert_eq!(inet("10.0.0.1/33"), None);
        assert_eq!(macaddr("08:00:2b:01:02:03"), Some([8, 0, 0x2b, 1, 2, 3]));
        assert_eq!(
            uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap()[0],
            0xa0
        );
        assert_eq!(uuid("a0eebc99"), None);
    }
}
