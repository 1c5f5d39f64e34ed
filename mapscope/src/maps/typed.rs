//! Typed views of keys and values: a [`Layout`] says how bytes decode, from the map's BTF
//! (integers, structs, unions, arrays, enums) or from mapscope's own table (`own.rs`). The JSON a
//! layout produces follows bpftool's BTF output ("formatted"): numbers for integers, enumerator
//! names, strings for NUL-terminated char arrays, hex strings for 128-bit integers and bitfields.

use serde_json::{Map, Value};

use super::{Error, Result};
use crate::btf::{Btf, BtfType};

/// Deepest nesting of types followed; real map types are a few levels deep.
const MAX_DEPTH: u32 = 32;

/// How the bytes of a key or value decode.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    /// Unsigned little-endian integer of 1, 2, 4 or 8 bytes.
    Uint(usize),
    /// Signed little-endian integer of 1, 2, 4 or 8 bytes.
    Int(usize),
    /// 16-byte integer, printed as a hex string as bpftool does.
    Int128,
    /// One-byte bool.
    Bool,
    /// One C `char`.
    Char,
    /// Struct or union members at bit offsets.
    Struct { size: usize, fields: Vec<Field> },
    /// `len` elements; `text` when the elements are chars (printed as a string when the bytes
    /// are printable and NUL-terminated).
    Array {
        elem: Box<Layout>,
        len: usize,
        text: bool,
    },
    /// Enumerators matched on the raw bits of a `size`-byte integer.
    Enum {
        size: usize,
        variants: Vec<(u64, String)>,
    },
    /// Fixed-size NUL-padded text (mapscope's `comm` and `filename` fields).
    Text(usize),
    /// NUL-separated strings filling a fixed-size buffer (mapscope's exec arguments).
    Strings(usize),
    /// Bytes of no known structure, as bpftool's hex strings.
    Bytes(usize),
}

/// One struct member.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub bit_offset: usize,
    /// Bitfield width in bits, 0 for an ordinary member.
    pub bits: usize,
    pub layout: Layout,
}

impl Field {
    /// An ordinary member at a byte offset.
    pub fn at(name: &str, offset: usize, layout: Layout) -> Self {
        Self {
            name: name.to_string(),
            bit_offset: offset * 8,
            bits: 0,
            layout,
        }
    }
}

/// Reads up to 8 little-endian bytes as an unsigned number.
pub fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .take(8)
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn le_i64(bytes: &[u8]) -> i64 {
    let n = bytes.len().min(8);
    let shift = 64 - 8 * n as u32;
    ((le_u64(bytes) << shift) as i64) >> shift
}

fn le_u128(bytes: &[u8]) -> u128 {
    bytes
        .iter()
        .take(16)
        .rev()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b))
}

/// A sum as a JSON number, or a decimal string when it does not fit in 64 bits.
fn big(n: i128) -> Value {
    if let Ok(v) = u64::try_from(n) {
        Value::from(v)
    } else if let Ok(v) = i64::try_from(n) {
        Value::from(v)
    } else {
        Value::String(n.to_string())
    }
}

fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

impl Layout {
    /// Bytes the layout covers.
    pub fn size(&self) -> usize {
        match self {
            Layout::Uint(n) | Layout::Int(n) | Layout::Text(n) | Layout::Strings(n) => *n,
            Layout::Bytes(n) => *n,
            Layout::Int128 => 16,
            Layout::Bool | Layout::Char => 1,
            Layout::Struct { size, .. } | Layout::Enum { size, .. } => *size,
            Layout::Array { elem, len, .. } => elem.size() * len,
        }
    }

    /// A named struct of `u64` counters, the shape of most of mapscope's values.
    pub fn counters(names: &[&str]) -> Self {
        Layout::Struct {
            size: 8 * names.len(),
            fields: names
                .iter()
                .enumerate()
                .map(|(i, n)| Field::at(n, 8 * i, Layout::Uint(8)))
                .collect(),
        }
    }

    /// Decodes `bytes` (at least `size()` long) into bpftool-style JSON.
    pub fn decode(&self, bytes: &[u8]) -> Value {
        let n = self.size().min(bytes.len());
        let bytes = &bytes[..n];
        match self {
            Layout::Uint(_) => Value::from(le_u64(bytes)),
            Layout::Int(_) => Value::from(le_i64(bytes)),
            Layout::Int128 => Value::String(format!("0x{:x}", le_u128(bytes))),
            Layout::Bool => Value::Bool(bytes.first().is_some_and(|&b| b != 0)),
            Layout::Char => Value::String(char::from(bytes.first().copied().unwrap_or(0)).into()),
            Layout::Struct { fields, .. } => {
                let mut out = Map::new();
                for f in fields {
                    out.insert(f.name.clone(), f.decode(bytes));
                }
                Value::Object(out)
            }
            Layout::Array { elem, len, text } => {
                if *text && is_c_string(bytes) {
                    return Value::String(self::text(bytes));
                }
                let step = elem.size();
                Value::Array(
                    (0..*len)
                        .map(|i| elem.decode(bytes.get(i * step..).unwrap_or_default()))
                        .collect(),
                )
            }
            Layout::Enum { variants, .. } => {
                let raw = le_u64(bytes);
                match variants.iter().find(|(v, _)| mask(*v, n) == raw) {
                    Some((_, name)) => Value::String(name.clone()),
                    None => Value::from(le_i64(bytes)),
                }
            }
            Layout::Text(_) => Value::String(text(bytes)),
            Layout::Strings(_) => Value::Array(
                bytes
                    .split(|&b| b == 0)
                    .take_while(|s| !s.is_empty())
                    .map(|s| Value::String(String::from_utf8_lossy(s).into_owned()))
                    .collect(),
            ),
            Layout::Bytes(_) => Value::Array(
                bytes
                    .iter()
                    .map(|b| Value::String(format!("0x{b:02x}")))
                    .collect(),
            ),
        }
    }

    /// Sums the integer parts of one value per CPU: numbers for integers, objects for structs
    /// (their summable members), arrays elementwise. None when nothing in it is an integer.
    pub fn sum(&self, parts: &[&[u8]]) -> Option<Value> {
        match self {
            Layout::Uint(_) => Some(big(parts.iter().map(|p| i128::from(le_u64(p))).sum())),
            Layout::Int(_) => Some(big(parts.iter().map(|p| i128::from(le_i64(p))).sum())),
            Layout::Struct { fields, .. } => {
                let mut out = Map::new();
                for f in fields.iter().filter(|f| f.bits == 0) {
                    let off = f.bit_offset / 8;
                    let sub: Vec<&[u8]> = parts
                        .iter()
                        .map(|p| p.get(off..).unwrap_or_default())
                        .collect();
                    if let Some(v) = f.layout.sum(&sub) {
                        out.insert(f.name.clone(), v);
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Layout::Array {
                elem,
                len,
                text: false,
            } => {
                let step = elem.size();
                (0..*len)
                    .map(|i| {
                        let sub: Vec<&[u8]> = parts
                            .iter()
                            .map(|p| p.get(i * step..).unwrap_or_default())
                            .collect();
                        elem.sum(&sub)
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(Value::Array)
            }
            _ => None,
        }
    }

    /// Names of the integer leaves (`packets`, `stats.bytes`, `slots[2]`), in the order
    /// [`Layout::leaves`] reads them: what `map watch` turns into deltas.
    pub fn leaf_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk_leaves(&mut |path, _, _| out.push(path.to_string()), "", 0);
        out
    }

    /// The integer leaves of `bytes`, summed with the same leaves of any further `more` copies
    /// (the other CPUs' values).
    pub fn leaves(&self, copies: &[&[u8]], out: &mut Vec<i128>) {
        out.clear();
        self.walk_leaves(
            &mut |_, off, layout| {
                let total = copies
                    .iter()
                    .map(|c| {
                        let b = c.get(off..off + layout.size()).unwrap_or_default();
                        match layout {
                            Layout::Int(_) => i128::from(le_i64(b)),
                            _ => i128::from(le_u64(b)),
                        }
                    })
                    .sum();
                out.push(total);
            },
            "",
            0,
        );
    }

    fn walk_leaves(&self, f: &mut dyn FnMut(&str, usize, &Layout), path: &str, offset: usize) {
        match self {
            Layout::Uint(_) | Layout::Int(_) => {
                f(if path.is_empty() { "value" } else { path }, offset, self)
            }
            Layout::Struct { fields, .. } => {
                for fld in fields
                    .iter()
                    .filter(|fl| fl.bits == 0 && fl.bit_offset.is_multiple_of(8))
                {
                    let p = if path.is_empty() {
                        fld.name.clone()
                    } else {
                        format!("{path}.{}", fld.name)
                    };
                    fld.layout.walk_leaves(f, &p, offset + fld.bit_offset / 8);
                }
            }
            Layout::Array {
                elem,
                len,
                text: false,
            } if *len <= 64 => {
                for i in 0..*len {
                    let p = format!("{path}[{i}]");
                    elem.walk_leaves(f, &p, offset + i * elem.size());
                }
            }
            _ => {}
        }
    }

    /// Converts BTF type `id` into a layout.
    pub fn from_btf(btf: &Btf<'_>, id: u32) -> Result<Layout> {
        layout_of(btf, id, 0)
    }
}

fn mask(v: u64, size: usize) -> u64 {
    if size >= 8 {
        v
    } else {
        v & ((1u64 << (8 * size)) - 1)
    }
}

/// bpftool's rule for char arrays: printable up to a NUL that must be present.
fn is_c_string(bytes: &[u8]) -> bool {
    for &b in bytes {
        if b == 0 {
            return true;
        }
        if !(0x20..0x7f).contains(&b) {
            return false;
        }
    }
    false
}

impl Field {
    fn decode(&self, bytes: &[u8]) -> Value {
        let start = self.bit_offset / 8;
        let rest = bytes.get(start..).unwrap_or_default();
        if self.bits == 0 && self.bit_offset.is_multiple_of(8) {
            return self.layout.decode(rest);
        }
        // A bitfield: bpftool prints it as a hex string.
        let bits = if self.bits == 0 {
            8 * self.layout.size()
        } else {
            self.bits
        };
        let shift = self.bit_offset % 8;
        let raw = le_u128(&rest[..rest.len().min((shift + bits).div_ceil(8))]) >> shift;
        let v = if bits >= 128 {
            raw
        } else {
            raw & ((1u128 << bits) - 1)
        };
        Value::String(format!("0x{v:x}"))
    }
}

fn bad_btf(what: String) -> Error {
    Error::Core(crate::Error::InvalidArgument(format!("BTF: {what}")))
}

fn layout_of(btf: &Btf<'_>, id: u32, depth: u32) -> Result<Layout> {
    if depth > MAX_DEPTH {
        return Err(bad_btf(format!("type {id} nests too deeply")));
    }
    Ok(match btf.type_by_id(id)? {
        BtfType::Int {
            size,
            encoding,
            offset,
            bits,
            ..
        } => {
            let size = size as usize;
            if offset != 0 || usize::from(bits) != 8 * size {
                // An int narrower than its storage: decode the storage as a one-member
                // bitfield (a hex string, like bpftool).
                Layout::Struct {
                    size,
                    fields: vec![Field {
                        name: String::new(),
                        bit_offset: usize::from(offset),
                        bits: usize::from(bits),
                        layout: Layout::Bytes(size),
                    }],
                }
            } else if encoding & 4 != 0 && size == 1 {
                Layout::Bool
            } else if encoding & 2 != 0 && size == 1 {
                Layout::Char
            } else {
                match (size, encoding & 1 != 0) {
                    (16, _) => Layout::Int128,
                    (1 | 2 | 4 | 8, true) => Layout::Int(size),
                    (1 | 2 | 4 | 8, false) => Layout::Uint(size),
                    _ => Layout::Bytes(size),
                }
            }
        }
        BtfType::Ptr => Layout::Uint(8),
        BtfType::Array { elem, len } => {
            let elem_layout = layout_of(btf, elem, depth + 1)?;
            let text = is_char(btf, elem, depth)?;
            Layout::Array {
                elem: Box::new(elem_layout),
                len: len as usize,
                text,
            }
        }
        BtfType::Struct { size, members, .. } => {
            let mut fields = Vec::with_capacity(members.len());
            for m in members {
                let layout = layout_of(btf, m.type_id, depth + 1)?;
                fields.push(Field {
                    name: m.name,
                    bit_offset: m.bit_offset as usize,
                    bits: m.bitfield_size as usize,
                    layout,
                });
            }
            Layout::Struct {
                size: size as usize,
                fields,
            }
        }
        BtfType::Enum { size, values, .. } => Layout::Enum {
            size: size as usize,
            variants: values.into_iter().map(|(n, v)| (v, n)).collect(),
        },
        BtfType::Alias { target, .. } => layout_of(btf, target, depth + 1)?,
        BtfType::Other { size, .. } => Layout::Bytes(size as usize),
    })
}

/// bpftool's test for string arrays: the element, through const/volatile but not typedefs, is a
/// one-byte int encoded as a char or named `char`.
fn is_char(btf: &Btf<'_>, id: u32, depth: u32) -> Result<bool> {
    if depth > MAX_DEPTH {
        return Ok(false);
    }
    Ok(match btf.type_by_id(id)? {
        BtfType::Int {
            name,
            size: 1,
            encoding,
            ..
        } => encoding & 2 != 0 || name == "char",
        BtfType::Alias {
            target,
            typedef: false,
        } => is_char(btf, target, depth + 1)?,
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A tiny BTF writer for the tests: types are pushed as raw words.
    struct BtfBlob {
        types: Vec<u32>,
        strings: Vec<u8>,
    }

    impl BtfBlob {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
            }
        }
        fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend(name.as_bytes());
            self.strings.push(0);
            off
        }
        fn push(&mut self, words: &[u32]) {
            self.types.extend(words);
        }
        fn bytes(&self) -> Vec<u8> {
            let tb: Vec<u8> = self.types.iter().flat_map(|v| v.to_le_bytes()).collect();
            let mut out = vec![0x9f, 0xeb, 1, 0];
            for v in [
                24u32,
                0,
                tb.len() as u32,
                tb.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend(v.to_le_bytes());
            }
            out.extend(tb);
            out.extend(&self.strings);
            out
        }
    }

    /// ids: 1 u32, 2 u64, 3 char, 4 char[8], 5 enum color, 6 typedef u64 counter_t,
    /// 7 struct rec { u64 packets; counter_t bytes; char name[8]; enum color c; u32 lo:4, hi:12; }
    fn sample() -> Vec<u8> {
        let mut b = BtfBlob::new();
        let (u32n, u64n, charn) = (
            b.s("unsigned int"),
            b.s("long long unsigned int"),
            b.s("char"),
        );
        b.push(&[u32n, 1 << 24, 4, 32]);
        b.push(&[u64n, 1 << 24, 8, 64]);
        b.push(&[charn, 1 << 24, 1, (1 << 24) | 8]);
        b.push(&[0, 3 << 24, 0, 3, 1, 8]);
        let (color, red, blue) = (b.s("color"), b.s("RED"), b.s("BLUE"));
        b.push(&[color, (6 << 24) | 2, 4, red, 0, blue, 7]);
        let ct = b.s("counter_t");
        b.push(&[ct, 8 << 24, 2]);
        let names: Vec<u32> = ["rec", "packets", "bytes", "name", "c", "lo", "hi"]
            .iter()
            .map(|n| b.s(n))
            .collect();
        b.push(&[names[0], (1 << 31) | (4 << 24) | 6, 32]);
        b.push(&[names[1], 2, 0]);
        b.push(&[names[2], 6, 64]);
        b.push(&[names[3], 4, 128]);
        b.push(&[names[4], 5, 192]);
        b.push(&[names[5], 1, (4 << 24) | 224]);
        b.push(&[names[6], 1, (12 << 24) | 228]);
        b.bytes()
    }

    fn record(packets: u64, bytes: u64, name: &[u8], color: u32, lo: u32, hi: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(packets.to_le_bytes());
        v.extend(bytes.to_le_bytes());
        let mut n = [0u8; 8];
        n[..name.len()].copy_from_slice(name);
        v.extend(n);
        v.extend(color.to_le_bytes());
        v.extend((lo | (hi << 4)).to_le_bytes());
        v
    }

    #[test]
    fn btf_struct_decodes_like_bpftool() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        let layout = Layout::from_btf(&btf, 7).unwrap();
        assert_eq!(layout.size(), 32);
        let v = record(3, 4096, b"eth0", 7, 5, 0xabc);
        assert_eq!(
            layout.decode(&v),
            json!({"packets":3,"bytes":4096,"name":"eth0","c":"BLUE","lo":"0x5","hi":"0xabc"})
        );
        // Not NUL-terminated: the chars as numbers (signed `char`, as bpftool prints them);
        // unknown enumerator: its number.
        let v = record(0, 0, b"abcdefgh", 9, 0, 0);
        let d = layout.decode(&v);
        assert_eq!(d["name"], json!([97, 98, 99, 100, 101, 102, 103, 104]));
        assert_eq!(d["c"], json!(9));
        assert_eq!(Layout::from_btf(&btf, 1).unwrap(), Layout::Uint(4));
        assert!(Layout::from_btf(&btf, 99).is_err());
    }

    #[test]
    fn sums_and_leaves_cover_integer_members() {
        let blob = sample();
        let btf = Btf::parse(&blob).unwrap();
        let layout = Layout::from_btf(&btf, 7).unwrap();
        let (a, b) = (record(1, 10, b"x", 0, 1, 1), record(2, 20, b"y", 7, 1, 1));
        assert_eq!(layout.sum(&[&a, &b]), Some(json!({"packets":3,"bytes":30})));
        assert_eq!(layout.leaf_names(), ["packets", "bytes"]);
        let mut out = Vec::new();
        layout.leaves(&[&a, &b], &mut out);
        assert_eq!(out, [3, 30]);
        assert_eq!(Layout::Uint(8).leaf_names(), ["value"]);
        assert_eq!(Layout::Text(4).sum(&[b"ab\0\0"]), None);
    }

    #[test]
    fn scalars() {
        assert_eq!(Layout::Int(4).decode(&(-5i32).to_le_bytes()), json!(-5));
        assert_eq!(Layout::Uint(2).decode(&[0x34, 0x12]), json!(0x1234));
        assert_eq!(
            Layout::Int128.decode(&[1; 16]),
            json!("0x1010101010101010101010101010101")
        );
        assert_eq!(Layout::Bool.decode(&[2]), json!(true));
        assert_eq!(Layout::Char.decode(b"A"), json!("A"));
        assert_eq!(Layout::Text(6).decode(b"bash\0\0"), json!("bash"));
        assert_eq!(
            Layout::Strings(10).decode(b"ls\0-l\0\0\0\0\0"),
            json!(["ls", "-l"])
        );
        assert_eq!(Layout::Bytes(2).decode(&[10, 255]), json!(["0x0a", "0xff"]));
        assert_eq!(
            Layout::Uint(8).sum(&[&u64::MAX.to_le_bytes(), &u64::MAX.to_le_bytes()]),
            Some(json!("36893488147419103230"))
        );
    }
}
