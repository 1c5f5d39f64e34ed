//! A minimal reader of kernel BTF: just enough to find the byte offset of a struct member in the
//! running kernel, which is how the exec programs follow `task->real_parent->tgid` on any kernel
//! without CO-RE support in Rust. aya keeps its BTF type lookups private, so this is ours.

use crate::{Error, Result};

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

/// One type's header, with where its kind-specific data starts.
#[derive(Clone, Copy)]
struct TypeEntry {
    name_off: u32,
    info: u32,
    data: usize,
}

impl TypeEntry {
    fn kind(&self) -> u32 {
        (self.info >> 24) & 0x1f
    }
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }
}

/// Parsed BTF: the type table indexed by id (id 0 is `void`) and the string section.
pub struct Btf<'a> {
    data: &'a [u8],
    types: Vec<TypeEntry>,
    strings: &'a [u8],
}

fn bad(what: &str) -> Error {
    Error::InvalidArgument(format!("malformed BTF: {what}"))
}

fn u32_at(data: &[u8], off: usize) -> Result<u32> {
    data.get(off..off + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad("truncated"))
}

impl<'a> Btf<'a> {
    /// Parses a little-endian BTF blob such as /sys/kernel/btf/vmlinux.
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(bad("bad magic"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section out of range"))?;
        if types_end > data.len() {
            return Err(bad("type section out of range"));
        }
        let mut types = vec![TypeEntry {
            name_off: 0,
            info: 0,
            data: 0,
        }];
        let mut pos = types_start;
        while pos < types_end {
            let entry = TypeEntry {
                name_off: u32_at(data, pos)?,
                info: u32_at(data, pos + 4)?,
                data: pos + 12,
            };
            let vlen = entry.vlen();
            let extra = match entry.kind() {
                1 => 4,                    // INT
                3 => 12,                   // ARRAY
                4 | 5 => 12 * vlen,        // STRUCT, UNION: members
                6 => 8 * vlen,             // ENUM
                13 => 8 * vlen,            // FUNC_PROTO
                14 => 4,                   // VAR
                15 => 12 * vlen,           // DATASEC
                17 => 4,                   // DECL_TAG
                19 => 12 * vlen,           // ENUM64
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
                k => return Err(bad(&format!("unknown kind {k}"))),
            };
            types.push(entry);
            pos = entry.data + extra;
        }
        Ok(Self {
            data,
            types,
            strings,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous struct/union members.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32> {
        let id = self
            .types
            .iter()
            .position(|t| {
                t.kind() == KIND_STRUCT && t.vlen() > 0 && self.name(t.name_off) == name.as_bytes()
            })
            .ok_or_else(|| bad(&format!("no struct {name}")))?;
        self.find_member(id, member.as_bytes(), 0, 0)?
            .ok_or_else(|| bad(&format!("no member {member} in struct {name}")))
    }

    fn find_member(
        &self,
        id: usize,
        member: &[u8],
        base_bits: u32,
        depth: u32,
    ) -> Result<Option<u32>> {
        let t = self.types[id];
        if depth > 8 || !matches!(t.kind(), KIND_STRUCT | KIND_UNION) {
            return Ok(None);
        }
        for i in 0..t.vlen() {
            let m = t.data + 12 * i;
            let (m_name, m_type, m_off) = (
                u32_at(self.data, m)?,
                u32_at(self.data, m + 4)?,
                u32_at(self.data, m + 8)?,
            );
            // With kind_flag, the low 24 bits are the bit offset and the top 8 a bitfield size.
            let bits = base_bits
                + if t.kind_flag() {
                    m_off & 0x00ff_ffff
                } else {
                    m_off
                };
            let m_name = self.name(m_name);
            if m_name == member {
                if !bits.is_multiple_of(8) {
                    return Err(bad("member is a bitfield"));
                }
                return Ok(Some(bits / 8));
            }
            if m_name.is_empty()
                && (m_type as usize) < self.types.len()
                && let Some(off) = self.find_member(m_type as usize, member, bits, depth + 1)?
            {
                return Ok(Some(off));
            }
        }
        Ok(None)
    }
}

/// One BTF type as the map toolbox's decoder needs it (`Btf::type_by_id`): modifiers and
/// typedefs are left for the caller to follow, kinds it cannot decode are `Other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BtfType {
    /// An integer: `encoding` bit 0 signed, bit 1 char, bit 2 bool; `offset`/`bits` from the
    /// int's extra word (non-zero offset or odd bit counts are bitfields).
    Int {
        name: String,
        size: u32,
        encoding: u8,
        offset: u8,
        bits: u8,
    },
    /// A pointer (8 bytes on the 64-bit targets mapscope supports).
    Ptr,
    /// `len` elements of type `elem`.
    Array { elem: u32, len: u32 },
    /// A struct or union of `size` bytes.
    Struct {
        name: String,
        size: u32,
        union: bool,
        members: Vec<BtfMember>,
    },
    /// ENUM or ENUM64 of `size` bytes with its enumerators (value as the raw bits).
    Enum {
        name: String,
        size: u32,
        signed: bool,
        values: Vec<(String, u64)>,
    },
    /// TYPEDEF (`typedef`), or CONST, VOLATILE, RESTRICT, TYPE_TAG: the type it names.
    Alias { target: u32, typedef: bool },
    /// Any other kind (FLOAT, FUNC, VAR, …), with its size when it has one.
    Other { kind: u32, size: u32 },
}

/// A struct or union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfMember {
    pub name: String,
    pub type_id: u32,
    /// Offset from the start of the struct, in bits.
    pub bit_offset: u32,
    /// Width of a bitfield member in bits, 0 for an ordinary member.
    pub bitfield_size: u32,
}

impl Btf<'_> {
    fn name_string(&self, off: u32) -> String {
        String::from_utf8_lossy(self.name(off)).into_owned()
    }

    /// Decodes type `id` from the blob.
    pub fn type_by_id(&self, id: u32) -> Result<BtfType> {
        let t = *self
            .types
            .get(id as usize)
            .filter(|_| id > 0)
            .ok_or_else(|| bad(&format!("no type id {id}")))?;
        let size = u32_at(self.data, t.data - 4)?;
        Ok(match t.kind() {
            1 => {
                let extra = u32_at(self.data, t.data)?;
                BtfType::Int {
                    name: self.name_string(t.name_off),
                    size,
                    encoding: ((extra >> 24) & 0x0f) as u8,
                    offset: ((extra >> 16) & 0xff) as u8,
                    bits: (extra & 0xff) as u8,
                }
            }
            2 => BtfType::Ptr,
            3 => BtfType::Array {
                elem: u32_at(self.data, t.data)?,
                len: u32_at(self.data, t.data + 8)?,
            },
            KIND_STRUCT | KIND_UNION => {
                let mut members = Vec::with_capacity(t.vlen());
                for i in 0..t.vlen() {
                    let m = t.data + 12 * i;
                    let off = u32_at(self.data, m + 8)?;
                    let (bit_offset, bitfield_size) = if t.kind_flag() {
                        (off & 0x00ff_ffff, off >> 24)
                    } else {
                        (off, 0)
                    };
                    members.push(BtfMember {
                        name: self.name_string(u32_at(self.data, m)?),
                        type_id: u32_at(self.data, m + 4)?,
                        bit_offset,
                        bitfield_size,
                    });
                }
                BtfType::Struct {
                    name: self.name_string(t.name_off),
                    size,
                    union: t.kind() == KIND_UNION,
                    members,
                }
            }
            6 | 19 => {
                let wide = t.kind() == 19;
                let stride = if wide { 12 } else { 8 };
                let mut values = Vec::with_capacity(t.vlen());
                for i in 0..t.vlen() {
                    let e = t.data + stride * i;
                    let lo = u64::from(u32_at(self.data, e + 4)?);
                    let hi = if wide {
                        u64::from(u32_at(self.data, e + 8)?)
                    } else {
                        0
                    };
                    values.push((self.name_string(u32_at(self.data, e)?), hi << 32 | lo));
                }
                BtfType::Enum {
                    name: self.name_string(t.name_off),
                    size,
                    signed: t.kind_flag(),
                    values,
                }
            }
            8 | 9 | 10 | 11 | 18 => BtfType::Alias {
                target: size,
                typedef: t.kind() == 8,
            },
            kind => BtfType::Other { kind, size },
        })
    }
}

/// `task_struct` offsets the exec programs need, from the running kernel's BTF.
pub fn task_struct_offsets() -> Result<(u32, u32)> {
    let path = "/sys/kernel/btf/vmlinux";
    let data = std::fs::read(path).map_err(|e| Error::io(format!("reading {path}"), e))?;
    let btf = Btf::parse(&data)?;
    Ok((
        btf.member_offset("task_struct", "real_parent")?,
        btf.member_offset("task_struct", "tgid")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob: `int`, an anonymous union {long a; int tgid;} and
    /// `struct task_struct { int state; <anon union at byte 8>; void *real_parent at 24; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0task_struct\0state\0a\0tgid\0real_parent\0";
        let s = |n: &str| {
            let needle = format!("\0{n}\0");
            (strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap()
                + 1) as u32
        };
        let mut types: Vec<u32> = Vec::new();
        // id 1: INT "int", size 4, encoding
        types.extend([s("int"), 1 << 24, 4, 32]);
        // id 2: PTR -> void
        types.extend([0, 2 << 24, 0]);
        // id 3: anonymous UNION, 2 members, size 8
        types.extend([0, (5 << 24) | 2, 8]);
        types.extend([s("a"), 1, 0, s("tgid"), 1, 0]);
        // id 4: STRUCT task_struct, 3 members, size 32
        types.extend([s("task_struct"), (4 << 24) | 3, 32]);
        types.extend([s("state"), 1, 0, 0, 3, 64, s("real_parent"), 2, 192]);
        let type_bytes: Vec<u8> = types.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for v in [
            24u32,
            0,
            type_bytes.len() as u32,
            type_bytes.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(v.to_le_bytes());
        }
        out.extend(type_bytes);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let data = sample();
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(btf.member_offset("task_struct", "state").unwrap(), 0);
        assert_eq!(btf.member_offset("task_struct", "real_parent").unwrap(), 24);
        assert_eq!(btf.member_offset("task_struct", "tgid").unwrap(), 8);
        assert!(btf.member_offset("task_struct", "nope").is_err());
        assert!(btf.member_offset("mm_struct", "tgid").is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(b"not btf at all, definitely not").is_err());
        let mut data = sample();
        data.truncate(40);
        assert!(Btf::parse(&data).is_err());
    }

    #[test]
    fn running_kernel_has_task_struct_offsets() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            eprintln!("skipped: no /sys/kernel/btf/vmlinux on this kernel");
            return;
        }
        let (real_parent, tgid) = task_struct_offsets().unwrap();
        assert!(real_parent > 0 && tgid > 0 && real_parent != tgid);
    }
}
