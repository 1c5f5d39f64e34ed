//! Keys and values on the command line, as bytes. Two syntaxes mix freely:
//! - bpftool's: one byte per word, `0x0a`, `10` or `012` (C `strtoul` base 0: hex, decimal,
//!   octal); after the word `hex`, bare words are hex (`hex 0a 00 00 01`);
//! - typed words `TYPE:VALUE`: `u8`/`u16`/`u32`/`u64` and `i8`…`i64` (host byte order, as the
//!   kernel stores them), `be16`/`be32`/`be64` (network order), `ip:A.B.C.D`, `ip6:ADDR` (16
//!   bytes), `ip:A.B.C.D/N` and `ip6:ADDR/N` (an LPM trie key: a u32 prefix length, then the
//!   address), `hex:0a0b0c` (any bytes).
//!
//! Each word appends its bytes; the caller checks the total against the map's key/value size.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Error, Result};

/// Parses the words of one key or value into bytes.
pub fn parse_bytes(words: &[String]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut hex = false;
    for w in words {
        if w == "hex" {
            hex = true;
        } else if let Some((ty, val)) = w.split_once(':') {
            typed(ty, val, &mut out).map_err(|why| Error::bad(format!("bad word {w:?}: {why}")))?;
        } else {
            out.push(byte(w, hex)?);
        }
    }
    Ok(out)
}

/// One bpftool byte word.
fn byte(w: &str, hex: bool) -> Result<u8> {
    let parsed = if hex {
        u8::from_str_radix(w.strip_prefix("0x").unwrap_or(w), 16).ok()
    } else {
        parse_c_number(w).and_then(|v| u8::try_from(v).ok())
    };
    parsed.ok_or_else(|| {
        Error::bad(format!(
            "{w:?} is not a byte: give bytes as 0x0a, 10 or 012 (each 0–255), `hex 0a 0b`, \
             or a typed word such as u32:5"
        ))
    })
}

/// A C-style unsigned number: `0x` hex, leading-0 octal, else decimal.
fn parse_c_number(w: &str) -> Option<u64> {
    if let Some(h) = w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else if w.len() > 1 && w.starts_with('0') {
        u64::from_str_radix(&w[1..], 8).ok()
    } else {
        w.parse().ok()
    }
}

/// A signed number in decimal or `0x` hex.
fn parse_signed(w: &str) -> Option<i128> {
    let (neg, digits) = match w.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, w),
    };
    let v = i128::from(parse_c_number_dec_hex(digits)?);
    Some(if neg { -v } else { v })
}

fn parse_c_number_dec_hex(w: &str) -> Option<u64> {
    match w.strip_prefix("0x").or_else(|| w.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => w.parse().ok(),
    }
}

fn typed(ty: &str, val: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let int = |bits: u32, signed: bool| -> Result<u64, String> {
        let v = parse_signed(val).ok_or_else(|| format!("{val:?} is not a number"))?;
        let (lo, hi) = if signed {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        if v < lo || v > hi {
            return Err(format!("{v} does not fit in {ty} ({lo}..={hi})"));
        }
        Ok(v as u64)
    };
    match ty {
        "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" => {
            let bits: u32 = ty[1..].parse().expect("width");
            let v = int(bits, ty.starts_with('i'))?;
            out.extend_from_slice(&v.to_ne_bytes()[..bits as usize / 8]);
        }
        "be16" | "be32" | "be64" => {
            let bits: u32 = ty[2..].parse().expect("width");
            let v = int(bits, false)?;
            out.extend_from_slice(&v.to_be_bytes()[8 - bits as usize / 8..]);
        }
        "ip" | "ip6" => {
            let (addr, prefix) = match val.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (val, None),
            };
            let bytes: Vec<u8> = if ty == "ip" {
                let a: Ipv4Addr = addr
                    .parse()
                    .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
                a.octets().to_vec()
            } else {
                let a: Ipv6Addr = addr
                    .parse()
                    .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
                a.octets().to_vec()
            };
            if let Some(p) = prefix {
                let max = 8 * bytes.len() as u32;
                let len: u32 = p
                    .parse()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("prefix length {p:?} must be 0..={max}"))?;
                out.extend_from_slice(&len.to_ne_bytes());
            }
            out.extend(bytes);
        }
        "hex" => {
            let digits = val.strip_prefix("0x").unwrap_or(val);
            if !digits.len().is_multiple_of(2) {
                return Err("hex: needs two digits per byte".to_string());
            }
            for i in (0..digits.len()).step_by(2) {
                let b = u8::from_str_radix(&digits[i..i + 2], 16)
                    .map_err(|_| format!("{:?} is not a hex byte", &digits[i..i + 2]))?;
                out.push(b);
            }
        }
        other => {
            return Err(format!(
                "unknown type {other:?}: use u8..u64, i8..i64, be16..be64, ip, ip6 or hex"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Vec<u8>> {
        parse_bytes(&s.split(' ').map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn bpftool_bytes() {
        assert_eq!(p("0x0a 0 0 1").unwrap(), [10, 0, 0, 1]);
        assert_eq!(p("10 012 0xff").unwrap(), [10, 10, 255]);
        assert_eq!(p("hex 0a ff 10").unwrap(), [10, 255, 16]);
        for bad in ["0xzz", "256", "zz", "08", "hex 0g"] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains("is not a byte"), "{bad}: {e}");
        }
    }

    #[test]
    fn typed_words() {
        assert_eq!(p("u32:5").unwrap(), 5u32.to_ne_bytes());
        assert_eq!(p("u64:7").unwrap(), 7u64.to_ne_bytes());
        assert_eq!(p("u16:0x1234 u8:1").unwrap(), [0x34, 0x12, 1]);
        assert_eq!(p("i32:-1").unwrap(), [255; 4]);
        assert_eq!(p("be16:8080").unwrap(), 8080u16.to_be_bytes());
        assert_eq!(p("ip:10.0.0.1").unwrap(), [10, 0, 0, 1]);
        let mut lpm = 8u32.to_ne_bytes().to_vec();
        lpm.extend([10, 0, 0, 0]);
        assert_eq!(p("ip:10.0.0.0/8").unwrap(), lpm);
        assert_eq!(p("ip6:fd00::1/128").unwrap().len(), 20);
        assert_eq!(p("hex:0a0b").unwrap(), [10, 11]);
        for (bad, why) in [
            ("u8:256", "does not fit"),
            ("i8:-129", "does not fit"),
            ("u32:x", "not a number"),
            ("ip:10.0.0.300", "not an IPv4"),
            ("ip:10.0.0.0/33", "prefix length"),
            ("hex:abc", "two digits"),
            ("f32:1", "unknown type"),
        ] {
            let e = p(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
