//! Writing entries as they stream out of a walk, in bpftool's shapes: JSON
//! `[{"key":["0x01",…],"value":[…]}]` (per-CPU: `"values":[{"cpu":0,"value":[…]}]`) and its
//! plain-text `key: 01 00  value: …` lines. `--format typed` adds bpftool's `"formatted"` member
//! from the map's layouts; `--sum` adds `"sum"`, the per-CPU total of the integer parts.
//! The JSON array holds one entry per line, so it stays valid JSON and greppable.

use std::io::{self, Write};

use serde_json::Value;

use super::{Error, MapHandle, Result, types::MapTypes};

/// `"0x00"` … `"0xff"` with their quotes, so the hex shape is a table lookup per byte.
static HEX_JSON: [[u8; 6]; 256] = {
    let digits = b"0123456789abcdef";
    let mut t = [[0u8; 6]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [b'"', b'0', b'x', digits[i >> 4], digits[i & 15], b'"'];
        i += 1;
    }
    t
};

/// What to print for each entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct DumpOptions {
    /// bpftool's JSON instead of its text.
    pub json: bool,
    /// Add decoded keys and values.
    pub typed: bool,
    /// Keys only, no values.
    pub keys_only: bool,
    /// Add the per-CPU sum of integer values.
    pub sum: bool,
}

/// Streams entries of one map to `out`.
pub struct Renderer<'a, W: Write> {
    out: W,
    opts: DumpOptions,
    types: &'a MapTypes,
    cpus: usize,
    stride: usize,
    value_size: usize,
    per_cpu: bool,
    count: u64,
}

impl<'a, W: Write> Renderer<'a, W> {
    /// Checks the options against the map (`--sum` needs per-CPU integer values).
    pub fn new(out: W, map: &MapHandle, types: &'a MapTypes, opts: DumpOptions) -> Result<Self> {
        let per_cpu = map.meta.kind.per_cpu();
        if opts.sum && !opts.keys_only {
            if !per_cpu {
                return Err(Error::bad(format!(
                    "--sum adds up per-CPU values, and {} is not a per-CPU map: drop --sum",
                    map.label()
                )));
            }
            let zero = vec![0u8; map.meta.value_size as usize];
            if types.value.sum(&[&zero]).is_none() {
                return Err(Error::bad(format!(
                    "--sum needs integer values, but the {}-byte values of {} have no known \
                     integer fields (no BTF): drop --sum",
                    map.meta.value_size,
                    map.label()
                )));
            }
        }
        Ok(Self {
            out,
            opts,
            types,
            cpus: map.cpus(),
            stride: map.stride(),
            value_size: map.meta.value_size as usize,
            per_cpu,
            count: 0,
        })
    }

    /// Opens the JSON array.
    pub fn begin(&mut self) -> io::Result<()> {
        if self.opts.json {
            self.out.write_all(b"[")?;
        }
        Ok(())
    }

    fn copies<'v>(&self, value: &'v [u8]) -> impl Iterator<Item = &'v [u8]> + use<'v, W> {
        split_copies(value, self.stride, self.value_size, self.cpus)
    }

    /// Writes one entry of a dump.
    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if self.opts.json {
            if self.count > 0 {
                self.out.write_all(b",\n")?;
            }
            self.json_entry(Some(key), value)?;
        } else {
            self.text_entry(Some(key), value)?;
        }
        self.count += 1;
        Ok(())
    }

    /// Closes the dump: `]` for JSON, bpftool's `Found N elements` for text.
    pub fn finish(mut self) -> io::Result<W> {
        if self.opts.json {
            self.out.write_all(b"]\n")?;
        } else {
            writeln!(
                self.out,
                "Found {} element{}",
                self.count,
                if self.count == 1 { "" } else { "s" }
            )?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes a single entry or value (`map get`, `pop`, `peek`) without the dump's framing.
    pub fn single(mut self, key: Option<&[u8]>, value: &[u8]) -> io::Result<W> {
        if self.opts.json {
            self.json_entry(key, value)?;
            self.out.write_all(b"\n")?;
        } else {
            self.text_entry(key, value)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn hex_json(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(b"[")?;
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            self.out.write_all(&HEX_JSON[*b as usize])?;
        }
        self.out.write_all(b"]")
    }

    fn json_entry(&mut self, key: Option<&[u8]>, value: &[u8]) -> io::Result<()> {
        let mut sep = "{";
        if let Some(key) = key {
            self.out.write_all(b"{\"key\":")?;
            self.hex_json(key)?;
            sep = ",";
        }
        let show_values = !self.opts.keys_only;
        if show_values && self.per_cpu {
            write!(self.out, "{sep}\"values\":[")?;
            for (cpu, copy) in
                split_copies(value, self.stride, self.value_size, self.cpus).enumerate()
            {
                if cpu > 0 {
                    self.out.write_all(b",")?;
                }
                write!(self.out, "{{\"cpu\":{cpu},\"value\":")?;
                self.hex_json(copy)?;
                self.out.write_all(b"}")?;
            }
            self.out.write_all(b"]")?;
            sep = ",";
        } else if show_values {
            write!(self.out, "{sep}\"value\":")?;
            self.hex_json(&value[..self.value_size.min(value.len())])?;
            sep = ",";
        }
        if self.opts.typed {
            let formatted = self.formatted(key, value);
            write!(self.out, "{sep}\"formatted\":")?;
            serde_json::to_writer(&mut self.out, &formatted)?;
            sep = ",";
        }
        if self.opts.sum
            && show_values
            && let Some(sum) = self.sum(value)
        {
            write!(self.out, "{sep}\"sum\":")?;
            serde_json::to_writer(&mut self.out, &sum)?;
        }
        self.out.write_all(b"}")
    }

    fn formatted(&self, key: Option<&[u8]>, value: &[u8]) -> Value {
        let mut f = serde_json::Map::new();
        if let Some(key) = key {
            f.insert("key".into(), self.types.key.decode(key));
        }
        if self.opts.keys_only {
        } else if self.per_cpu {
            let values = self
                .copies(value)
                .enumerate()
                .map(
                    |(cpu, c)| serde_json::json!({"cpu": cpu, "value": self.types.value.decode(c)}),
                )
                .collect();
            f.insert("values".into(), Value::Array(values));
        } else {
            f.insert("value".into(), self.types.value.decode(value));
        }
        Value::Object(f)
    }

    fn sum(&self, value: &[u8]) -> Option<Value> {
        let parts: Vec<&[u8]> = self.copies(value).collect();
        self.types.value.sum(&parts)
    }

    fn hex_text(&mut self, bytes: &[u8]) -> io::Result<()> {
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b" ")?;
            }
            write!(self.out, "{b:02x}")?;
        }
        Ok(())
    }

    fn text_value(&mut self, copy: &[u8]) -> io::Result<()> {
        if self.opts.typed {
            let v = self.types.value.decode(copy);
            serde_json::to_writer(&mut self.out, &v)?;
            Ok(())
        } else {
            self.hex_text(copy)
        }
    }

    fn text_entry(&mut self, key: Option<&[u8]>, value: &[u8]) -> io::Result<()> {
        if let Some(key) = key {
            self.out
                .write_all(if self.per_cpu && !self.opts.keys_only {
                    b"key:\n"
                } else {
                    b"key: "
                })?;
            if self.opts.typed {
                let k = self.types.key.decode(key);
                serde_json::to_writer(&mut self.out, &k)?;
            } else {
                self.hex_text(key)?;
            }
        }
        if self.opts.keys_only {
            return self.out.write_all(b"\n");
        }
        if self.per_cpu {
            if key.is_some() {
                self.out.write_all(b"\n")?;
            }
            let copies: Vec<&[u8]> = self.copies(value).collect();
            for (cpu, copy) in copies.iter().enumerate() {
                write!(self.out, "value (CPU {cpu:02}): ")?;
                self.text_value(copy)?;
                self.out.write_all(b"\n")?;
            }
            if self.opts.sum
                && let Some(sum) = self.types.value.sum(&copies)
            {
                writeln!(self.out, "sum: {sum}")?;
            }
            Ok(())
        } else {
            self.out.write_all(if key.is_some() {
                b"  value: "
            } else {
                b"value: "
            })?;
            let v = &value[..self.value_size.min(value.len())];
            self.text_value(v)?;
            self.out.write_all(b"\n")
        }
    }
}

/// The per-CPU copies in one lookup result: `cpus` slices of `size` bytes, `stride` apart.
pub fn split_copies(
    value: &[u8],
    stride: usize,
    size: usize,
    cpus: usize,
) -> impl Iterator<Item = &[u8]> {
    value
        .chunks(stride.max(1))
        .take(cpus)
        .map(move |c| &c[..size.min(c.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::{typed::Layout, types::Source};

    fn render(per_cpu: bool, opts: DumpOptions, entries: &[(&[u8], &[u8])]) -> String {
        let types = MapTypes {
            key: Layout::Uint(4),
            value: Layout::Uint(8),
            source: Source::Size,
        };
        let mut r = Renderer {
            out: Vec::new(),
            opts,
            types: &types,
            cpus: if per_cpu { 2 } else { 1 },
            stride: 8,
            value_size: 8,
            per_cpu,
            count: 0,
        };
        r.begin().unwrap();
        for (k, v) in entries {
            r.entry(k, v).unwrap();
        }
        String::from_utf8(r.finish().unwrap()).unwrap()
    }

    const K: &[u8] = &[1, 0, 0, 0];
    const V: &[u8] = &[7, 0, 0, 0, 0, 0, 0, 0];
    const PCPU: &[u8] = &[7, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn json_matches_bpftool_shape() {
        let opts = DumpOptions {
            json: true,
            ..Default::default()
        };
        let out = render(false, opts, &[(K, V), (K, V)]);
        let parsed: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            parsed[0],
            serde_json::json!({"key":["0x01","0x00","0x00","0x00"],
                "value":["0x07","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]})
        );
        assert_eq!(parsed.as_array().unwrap().len(), 2);
        assert_eq!(render(false, opts, &[]), "[]\n");
    }

    #[test]
    fn per_cpu_json_with_typed_and_sum() {
        let opts = DumpOptions {
            json: true,
            typed: true,
            sum: true,
            ..Default::default()
        };
        let out = render(true, opts, &[(K, PCPU)]);
        let parsed: Value = serde_json::from_str(&out).unwrap();
        let e = &parsed[0];
        assert_eq!(e["values"][1]["cpu"], 1);
        assert_eq!(e["values"][1]["value"][0], "0x03");
        assert_eq!(
            e["formatted"],
            serde_json::json!({"key":1,"values":[{"cpu":0,"value":7},{"cpu":1,"value":3}]})
        );
        assert_eq!(e["sum"], 10);
    }

    #[test]
    fn text_like_bpftool() {
        let out = render(false, DumpOptions::default(), &[(K, V)]);
        assert_eq!(
            out,
            "key: 01 00 00 00  value: 07 00 00 00 00 00 00 00\nFound 1 element\n"
        );
        let opts = DumpOptions {
            sum: true,
            ..Default::default()
        };
        let out = render(true, opts, &[(K, PCPU)]);
        assert_eq!(
            out,
            "key:\n01 00 00 00\nvalue (CPU 00): 07 00 00 00 00 00 00 00\n\
             value (CPU 01): 03 00 00 00 00 00 00 00\nsum: 10\nFound 1 element\n"
        );
        let opts = DumpOptions {
            keys_only: true,
            typed: true,
            ..Default::default()
        };
        assert_eq!(render(false, opts, &[(K, V)]), "key: 1\nFound 1 element\n");
    }
}
