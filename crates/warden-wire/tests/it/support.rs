//! Test helpers: an order-preserving document tree that keeps duplicated keys, so that one JSON
//! text can be re-encoded as CBOR (definite or indefinite lengths) byte for byte as a device
//! would send it.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::fmt;
use std::path::PathBuf;
use warden_wire::{Format, Limits, MetricReport, Rejection, decode_report};

/// A JSON or CBOR document, keys in document order, duplicates kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Text(String),
    Array(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

/// CBOR container lengths: definite (what Warden and the Python agent write) or indefinite
/// (what tinycbor in the official C agent writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lengths {
    Definite,
    Indefinite,
}

impl Doc {
    pub fn from_json(json: &str) -> Doc {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("test JSON {json:?} is invalid: {e}"))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap()
    }

    /// Minimal-length heads, text keys, floats as 64 bits.
    pub fn to_cbor(&self, lengths: Lengths) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_cbor(&mut out, lengths);
        out
    }

    fn write_cbor(&self, out: &mut Vec<u8>, lengths: Lengths) {
        match self {
            Doc::Null => out.push(0xf6),
            Doc::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
            Doc::Int(i) if *i >= 0 => head(out, 0, u64::try_from(*i).unwrap()),
            Doc::Int(i) => head(out, 1, u64::try_from(-1 - *i).unwrap()),
            Doc::Float(f) => {
                out.push(0xfb);
                out.extend_from_slice(&f.to_be_bytes());
            }
            Doc::Text(s) => {
                head(out, 3, s.len() as u64);
                out.extend_from_slice(s.as_bytes());
            }
            Doc::Array(items) => {
                match lengths {
                    Lengths::Definite => head(out, 4, items.len() as u64),
                    Lengths::Indefinite => out.push(0x9f),
                }
                for item in items {
                    item.write_cbor(out, lengths);
                }
                if lengths == Lengths::Indefinite {
                    out.push(0xff);
                }
            }
            Doc::Map(entries) => {
                match lengths {
                    Lengths::Definite => head(out, 5, entries.len() as u64),
                    Lengths::Indefinite => out.push(0xbf),
                }
                for (k, v) in entries {
                    Doc::Text(k.clone()).write_cbor(out, lengths);
                    v.write_cbor(out, lengths);
                }
                if lengths == Lengths::Indefinite {
                    out.push(0xff);
                }
            }
        }
    }
}

/// A CBOR item head: major type and argument in the shortest form.
pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// The CBOR form of a JSON text, definite lengths.
pub fn cbor(json: &str) -> Vec<u8> {
    Doc::from_json(json).to_cbor(Lengths::Definite)
}

pub fn decode(bytes: &[u8], format: Format) -> Result<MetricReport, Rejection> {
    decode_report(bytes, format, &Limits::default())
}

/// A file under `tests/data/`.
pub fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Doc, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Doc, E> {
        Ok(Doc::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Doc, E> {
        Ok(Doc::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Doc, E> {
        Ok(Doc::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Doc, E> {
        Ok(Doc::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Doc, E> {
        Ok(Doc::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Doc, E> {
        Ok(Doc::Text(v.to_owned()))
    }
    fn visit_none<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }
    fn visit_unit<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Doc::Map(entries))
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Doc::Null => s.serialize_none(),
            Doc::Bool(b) => s.serialize_bool(*b),
            Doc::Int(i) => s.serialize_i128(*i),
            Doc::Float(f) => s.serialize_f64(*f),
            Doc::Text(t) => s.serialize_str(t),
            Doc::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Doc::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}
