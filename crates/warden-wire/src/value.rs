//! A document tree that the encoders build and serialise as JSON or CBOR.
//!
//! Reports and replies are built as nested maps, which a tree expresses directly; keys and text
//! borrow from the report where they can, so building one allocates little more than its
//! containers. Decoding uses the flat [`Document`](crate::document::Document) instead, which is
//! cheaper to fill from a parser and to drop.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::borrow::Cow;

#[derive(Debug)]
pub(crate) enum Value<'a> {
    /// Any integer; emitted in the narrowest form so CBOR stays minimal and JSON exact.
    Int(i128),
    Float(f64),
    Text(Cow<'a, str>),
    Array(Vec<Value<'a>>),
    /// Entries in the order they are written.
    Map(Vec<(Cow<'a, str>, Value<'a>)>),
}

impl Serialize for Value<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Int(i) => match (u64::try_from(*i), i64::try_from(*i)) {
                (Ok(u), _) => s.serialize_u64(u),
                (_, Ok(i)) => s.serialize_i64(i),
                _ => s.serialize_i128(*i),
            },
            Value::Float(f) => s.serialize_f64(*f),
            Value::Text(t) => s.serialize_str(t),
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}
