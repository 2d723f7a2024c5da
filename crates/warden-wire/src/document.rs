//! A decoded JSON or CBOR document: what both encodings parse into before validation.
//!
//! Parsing into a document first and validating it second gives one validator for both
//! encodings and both naming schemes, and lets every rejection name the exact field. The
//! document is flat, one `Vec` of items in document order where a container is followed by its
//! contents, and its text borrows from the payload wherever the codec allows (JSON strings
//! without escapes, definite-length CBOR text). The tree of `Vec`s and `String`s it replaces
//! took some 80 allocations for a typical report, a third of the decoding time; the flat
//! document takes one. Validating straight from the parser's callbacks would save that one as
//! well, but problems are listed in reading order and a field given twice is refused before it
//! is read, so that validator would have to buffer fields and problems itself: much more code
//! for perhaps a tenth of the time, as the parsers themselves now take two thirds of it.
//!
//! The document is built with a depth limit, because neither codec bounds nesting on its own
//! terms (CBOR not at all) and a 128 KiB payload of `[[[[…` must not exhaust the stack.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Deeper than any valid report (6 levels) with room for unknown extensions.
pub(crate) const MAX_DEPTH: usize = 16;

/// A parsed document; [`Document::root`] is where reading starts.
#[derive(Debug)]
pub(crate) struct Document<'a> {
    /// Never empty: a document holds at least its root item.
    items: Vec<Item<'a>>,
}

/// One item of a [`Document`].
#[derive(Debug)]
pub(crate) enum Item<'a> {
    Null,
    /// No report field is a boolean, so only its kind is kept; the same goes for byte strings.
    Bool,
    /// Any integer, including CBOR's 65-bit negatives and bignums that fit.
    Int(i128),
    Float(f64),
    Text(Cow<'a, str>),
    /// A byte string (CBOR only).
    Bytes,
    /// `len` elements follow. `span` counts the items of the array and of all it contains, so
    /// that a reader can step over it.
    Array {
        len: usize,
        span: usize,
    },
    /// `len` entries follow, each a text key (other key types are refused while parsing) then
    /// its value. `span` as for arrays.
    Map {
        len: usize,
        span: usize,
    },
}

impl Item<'_> {
    /// What the item is, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Item::Null => "null",
            Item::Bool => "a boolean",
            Item::Int(_) => "an integer",
            Item::Float(_) => "a float",
            Item::Text(_) => "a string",
            Item::Bytes => "a byte string",
            Item::Array { .. } => "an array",
            Item::Map { .. } => "a map",
        }
    }

    /// How many items this one and its contents take.
    fn span(&self) -> usize {
        match self {
            Item::Array { span, .. } | Item::Map { span, .. } => *span,
            _ => 1,
        }
    }
}

impl<'a> Document<'a> {
    /// Parses one value from `d`. `payload_len` sizes the item list up front, so that a typical
    /// report needs one allocation: reports take one item per 3 (short CBOR) to 8 (long JSON)
    /// bytes. The cap keeps the guess for a large payload modest; the list grows past it.
    pub(crate) fn deserialize<D: de::Deserializer<'a>>(d: D, payload_len: usize) -> Result<Self, D::Error> {
        let mut items = Vec::with_capacity((payload_len / 3).clamp(1, 2048));
        Seed { items: &mut items, depth: 0 }.deserialize(d)?;
        Ok(Document { items })
    }

    pub(crate) fn root(&self) -> Node<'_> {
        Node { items: &self.items }
    }
}

/// A value inside a [`Document`]: its item and everything the item contains.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'d> {
    /// Never empty; `items[0]` is this value's item and `items.len()` is its span.
    items: &'d [Item<'d>],
}

impl<'d> Node<'d> {
    pub(crate) fn item(self) -> &'d Item<'d> {
        // A node is never empty (see `items`).
        &self.items[0]
    }

    pub(crate) fn is_null(self) -> bool {
        matches!(self.item(), Item::Null)
    }

    /// The elements of an array in order; nothing for any other value.
    pub(crate) fn elements(self) -> impl Iterator<Item = Node<'d>> {
        let contents = match self.item() {
            Item::Array { .. } => &self.items[1..],
            _ => &[],
        };
        Children { rest: contents }
    }

    /// The entries of a map in document order; nothing for any other value.
    pub(crate) fn entries(self) -> impl Iterator<Item = (&'d str, Node<'d>)> {
        let contents = match self.item() {
            Item::Map { .. } => &self.items[1..],
            _ => &[],
        };
        let mut children = Children { rest: contents };
        std::iter::from_fn(move || {
            let key = children.next()?;
            let value = children.next()?;
            match key.item() {
                Item::Text(key) => Some((&**key, value)),
                _ => unreachable!("map keys are text: the parser refuses others"),
            }
        })
    }
}

/// Consecutive values, stepped over by their span.
struct Children<'d> {
    rest: &'d [Item<'d>],
}

impl<'d> Iterator for Children<'d> {
    type Item = Node<'d>;

    fn next(&mut self) -> Option<Node<'d>> {
        let span = self.rest.first()?.span();
        // Spans are counted while parsing and always fit in their container.
        let (items, rest) = self.rest.split_at(span);
        self.rest = rest;
        Some(Node { items })
    }
}

/// Parses one value onto the end of `items` while counting how deep it is.
struct Seed<'s, 'de> {
    items: &'s mut Vec<Item<'de>>,
    depth: usize,
}

impl<'de> Seed<'_, 'de> {
    fn child(&mut self) -> Seed<'_, 'de> {
        Seed { items: self.items, depth: self.depth + 1 }
    }

    fn push<E>(self, item: Item<'de>) -> Result<(), E> {
        self.items.push(item);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format_args!("nested deeper than {MAX_DEPTH} levels")));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON or CBOR value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        self.push(Item::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.push(Item::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.push(Item::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<(), E> {
        self.push(Item::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<(), E> {
        let v = i128::try_from(v).map_err(|_| E::custom("integer too large"))?;
        self.push(Item::Int(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.push(Item::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.push(Item::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.push(Item::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.push(Item::Text(Cow::Owned(v)))
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<(), E> {
        self.push(Item::Bytes)
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.push(Item::Null)
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.push(Item::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let head = self.items.len();
        self.items.push(Item::Array { len: 0, span: 0 });
        let mut len = 0;
        while seq.next_element_seed(self.child())?.is_some() {
            len += 1;
        }
        self.items[head] = Item::Array { len, span: self.items.len() - head };
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let head = self.items.len();
        self.items.push(Item::Map { len: 0, span: 0 });
        let mut len = 0;
        loop {
            let key = self.items.len();
            if map.next_key_seed(self.child())?.is_none() {
                break;
            }
            if !matches!(self.items[key], Item::Text(_)) {
                return Err(de::Error::custom(format_args!(
                    "map keys must be strings, found {}",
                    self.items[key].kind()
                )));
            }
            map.next_value_seed(self.child())?;
            len += 1;
        }
        self.items[head] = Item::Map { len, span: self.items.len() - head };
        Ok(())
    }
}
