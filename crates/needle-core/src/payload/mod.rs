//! Payload indexes: per collection, on chosen metadata paths, a typed column (the values of each
//! slot as ordered `u64` keys) and posting lists (key → the sorted slots holding it).
//!
//! Owns the index structures, how a JSON value becomes keys, and keeping both halves exact as
//! records come and go (`insert` / `remove`, called by the collection for every slot it writes or
//! tombstones). [`plan`] compiles a filter against these indexes for the search planner.
//! Knows nothing of graphs, files or logs.
//!
//! Keys: integers as `i64` with the sign bit flipped, floats by their total-order bits, bools as
//! 0/1, keywords as ids into a per-index dictionary (in first-seen order). Key order is value
//! order for numbers, so range filters are key ranges.
//!
//! A value the index cannot hold as its kind (another JSON type, `null`, an integer beyond the
//! kind's exact range, an array holding any of these) makes the slot *irregular*: it is in no
//! posting list, and filters on the path evaluate that slot's JSON instead. Results are therefore
//! the same with and without an index, whatever the data; only speed differs.

pub(crate) mod codec;
pub(crate) mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::filter::FieldPath;

/// The type of values a payload index holds (arrays of them included).
///
/// ```
/// use needle_core::IndexKind;
/// assert_eq!("keyword".parse::<IndexKind>()?, IndexKind::Keyword);
/// assert!("text".parse::<IndexKind>().is_err());
/// # Ok::<(), needle_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndexKind {
    /// Strings, compared by bytes (equality, `$in`, string ranges).
    Keyword,
    /// Integers in the `i64` range (floats with an integral value count as integers).
    Integer,
    /// Any finite number (integers beyond ±2⁵³ that a float cannot hold exactly are irregular).
    Float,
    /// `true` and `false`.
    Bool,
}

impl IndexKind {
    /// Every kind, in code order.
    pub const ALL: [IndexKind; 4] = [
        IndexKind::Keyword,
        IndexKind::Integer,
        IndexKind::Float,
        IndexKind::Bool,
    ];

    /// The name used in the API, the CLI and HTTP: `keyword`, `integer`, `float` or `bool`.
    pub fn name(self) -> &'static str {
        match self {
            IndexKind::Keyword => "keyword",
            IndexKind::Integer => "integer",
            IndexKind::Float => "float",
            IndexKind::Bool => "bool",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            IndexKind::Keyword => 1,
            IndexKind::Integer => 2,
            IndexKind::Float => 3,
            IndexKind::Bool => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<IndexKind> {
        IndexKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl std::fmt::Display for IndexKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for IndexKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<IndexKind> {
        IndexKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::InvalidArgument {
                what: "index kind".into(),
                reason: format!("unknown kind '{s}' (expected keyword, integer, float or bool)"),
            })
    }
}

/// What `collection_info` reports about one payload index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexInfo {
    /// The dotted metadata path.
    pub path: String,
    pub kind: IndexKind,
    /// Distinct values held.
    pub values: usize,
    /// Live records with a value of the index's kind at the path.
    pub indexed: usize,
    /// Live records whose value at the path is of another type (evaluated from JSON).
    pub irregular: usize,
    /// Approximate bytes of memory the index takes, its value graphs and (integer and float
    /// indexes) its value-ordered copy of the int8 codes included.
    pub memory_bytes: usize,
    /// Values with a graph of their own (keyword, integer and bool indexes; see
    /// `docs/benchmarks-history.md`, "Per-value graphs").
    pub value_graphs: usize,
    /// Approximate bytes of memory those graphs take (part of `memory_bytes`).
    pub value_graph_bytes: usize,
    /// Whether the index builds value graphs (see [`IndexOptions::value_graphs`]).
    pub builds_value_graphs: bool,
}

/// Options of a payload index ([`crate::Database::create_index_with`]).
///
/// ```
/// use needle_core::{Database, IndexKind, IndexOptions};
/// let db = Database::in_memory();
/// db.create_collection("c", 2).unwrap();
/// // A keyword index whose values never get graphs of their own (saves their memory).
/// db.create_index_with("c", "lang", IndexKind::Keyword, IndexOptions::new().value_graphs(false))
///     .unwrap();
/// assert!(!db.collection_info("c").unwrap().indexes[0].builds_value_graphs);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IndexOptions {
    /// Build a graph of its own for each value held by many records (keyword, integer and bool
    /// indexes; on by default). Off, filters on the index never walk value graphs and the
    /// index costs no graph memory (79.5 MB for glove50's five indexes).
    pub value_graphs: bool,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions { value_graphs: true }
    }
}

impl IndexOptions {
    /// The defaults: value graphs on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether values held by many records get graphs of their own.
    pub fn value_graphs(mut self, on: bool) -> Self {
        self.value_graphs = on;
        self
    }
}

pub(crate) const MISSING: u8 = 0;
pub(crate) const ONE: u8 = 1;
pub(crate) const MANY: u8 = 2;
pub(crate) const IRREGULAR: u8 = 3;

/// What a slot holds at the index's path.
pub(crate) enum SlotKeys<'a> {
    /// No value (or a tombstoned slot).
    Missing,
    /// A value the index cannot hold: evaluate the JSON.
    Irregular,
    /// The keys of the value (one for a scalar, sorted and distinct for an array, maybe none).
    Keys(&'a [u64]),
}

/// One payload index. See the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PayloadIndex {
    pub path: FieldPath,
    pub kind: IndexKind,
    /// Per slot: `MISSING`, `ONE`, `MANY` or `IRREGULAR`.
    pub tags: Vec<u8>,
    /// Per slot: the key when the tag is `ONE`, else 0.
    pub ones: Vec<u64>,
    /// The keys of slots tagged `MANY` (arrays with no, or several, distinct keys).
    pub many: HashMap<u32, Box<[u64]>>,
    /// Key → sorted live slots holding it; never an empty list.
    pub postings: BTreeMap<u64, Vec<u32>>,
    /// Slots tagged `IRREGULAR`.
    pub irregular: BTreeSet<u32>,
    /// Keyword indexes: string → key, and key → string (keys are dictionary positions).
    pub dict: BTreeMap<String, u64>,
    pub strings: Vec<String>,
    /// Values held by many records get graphs of their own ([`IndexOptions::value_graphs`]).
    pub value_graphs: bool,
}

/// Integers: `i64` with the sign bit flipped, so that key order is numeric order.
pub(crate) fn int_key(i: i64) -> u64 {
    (i as u64) ^ (1 << 63)
}

pub(crate) fn key_int(k: u64) -> i64 {
    (k ^ (1 << 63)) as i64
}

/// Floats: total-order bits (`-0.0` is stored as `0.0`, which it equals).
pub(crate) fn float_key(f: f64) -> u64 {
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

pub(crate) fn key_float(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// 2⁵³: every integer of smaller magnitude is exactly a float.
const EXACT_FLOAT_INT: i128 = 1 << 53;

impl PayloadIndex {
    pub fn new(path: FieldPath, kind: IndexKind) -> Self {
        PayloadIndex {
            path,
            kind,
            tags: Vec::new(),
            ones: Vec::new(),
            many: HashMap::new(),
            postings: BTreeMap::new(),
            irregular: BTreeSet::new(),
            dict: BTreeMap::new(),
            strings: Vec::new(),
            value_graphs: true,
        }
    }

    /// The key of a scalar of this index's kind, or `None` if the index cannot hold it (or, for
    /// a keyword, has never seen it: no slot holds it then).
    pub fn scalar_key(&self, v: &Value) -> Option<u64> {
        match (self.kind, v) {
            (IndexKind::Keyword, Value::String(s)) => self.dict.get(s).copied(),
            (IndexKind::Integer, Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    Some(int_key(i))
                } else if n.is_u64() {
                    None
                } else {
                    let f = n.as_f64()?;
                    // Exact: an integral float in [-2⁶³, 2⁶³) converts without rounding.
                    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
                    (f.is_finite() && f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f))
                        .then(|| int_key(f as i64))
                }
            }
            (IndexKind::Float, Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    (i128::from(i).abs() <= EXACT_FLOAT_INT).then(|| float_key(i as f64))
                } else if let Some(u) = n.as_u64() {
                    (i128::from(u) <= EXACT_FLOAT_INT).then(|| float_key(u as f64))
                } else {
                    n.as_f64().filter(|f| f.is_finite()).map(float_key)
                }
            }
            (IndexKind::Bool, Value::Bool(b)) => Some(u64::from(*b)),
            _ => None,
        }
    }

    /// Like `scalar_key`, adding an unseen keyword to the dictionary.
    fn intern_key(&mut self, v: &Value) -> Option<u64> {
        let unseen = match (self.kind, v) {
            (IndexKind::Keyword, Value::String(s)) if !self.dict.contains_key(s) => Some(s),
            _ => None,
        };
        if let Some(s) = unseen {
            let k = self.strings.len() as u64;
            self.dict.insert(s.clone(), k);
            self.strings.push(s.clone());
            return Some(k);
        }
        self.scalar_key(v)
    }

    /// What the slot holds at the path.
    #[inline]
    pub fn slot_keys(&self, slot: u32) -> SlotKeys<'_> {
        match self.tags.get(slot as usize).copied().unwrap_or(MISSING) {
            ONE => SlotKeys::Keys(std::slice::from_ref(&self.ones[slot as usize])),
            MANY => SlotKeys::Keys(self.many.get(&slot).map_or(&[], |k| &k[..])),
            IRREGULAR => SlotKeys::Irregular,
            _ => SlotKeys::Missing,
        }
    }

    /// Whether the index holds for `slot` what `insert` would record from `metadata` (keywords
    /// looked up, never added): a checkpoint's columns are checked against its records, so
    /// that an index and the metadata it was built from cannot disagree silently.
    pub(crate) fn agrees_with(&self, slot: u32, metadata: Option<&Value>) -> bool {
        let Some(value) = self.path.lookup(metadata) else {
            return matches!(self.slot_keys(slot), SlotKeys::Missing);
        };
        let Value::Array(items) = value else {
            // A scalar, the common case: no list to build.
            return match (self.scalar_key(value), self.slot_keys(slot)) {
                (None, SlotKeys::Irregular) => true,
                (Some(k), SlotKeys::Keys(held)) => held == [k],
                _ => false,
            };
        };
        let keys: Option<Vec<u64>> = items.iter().map(|v| self.scalar_key(v)).collect();
        match (keys, self.slot_keys(slot)) {
            (None, SlotKeys::Irregular) => true,
            (Some(mut keys), SlotKeys::Keys(held)) => {
                keys.sort_unstable();
                keys.dedup();
                keys == held
            }
            _ => false,
        }
    }

    /// Records `slot`'s value (its metadata is `metadata`). The slot must hold nothing yet.
    pub fn insert(&mut self, slot: u32, metadata: Option<&Value>) {
        let s = slot as usize;
        if self.tags.len() <= s {
            self.tags.resize(s + 1, MISSING);
            self.ones.resize(s + 1, 0);
        }
        let Some(value) = self.path.lookup(metadata) else {
            self.tags[s] = MISSING;
            return;
        };
        let keys: Option<Vec<u64>> = match value {
            Value::Array(items) => items.iter().map(|v| self.intern_key(v)).collect(),
            scalar => self.intern_key(scalar).map(|k| vec![k]),
        };
        let Some(mut keys) = keys else {
            self.tags[s] = IRREGULAR;
            self.irregular.insert(slot);
            return;
        };
        keys.sort_unstable();
        keys.dedup();
        for &k in &keys {
            let list = self.postings.entry(k).or_default();
            match list.last() {
                Some(&last) if last >= slot => {
                    if let Err(at) = list.binary_search(&slot) {
                        list.insert(at, slot);
                    }
                }
                _ => list.push(slot),
            }
        }
        if keys.len() == 1 {
            self.tags[s] = ONE;
            self.ones[s] = keys[0];
        } else {
            self.tags[s] = MANY;
            self.many.insert(slot, keys.into_boxed_slice());
        }
    }

    /// Forgets `slot`'s value (before it is tombstoned or its metadata replaced).
    pub fn remove(&mut self, slot: u32) {
        let s = slot as usize;
        let Some(&tag) = self.tags.get(s) else {
            return;
        };
        let keys: Vec<u64> = match tag {
            ONE => vec![self.ones[s]],
            MANY => self.many.remove(&slot).map(Vec::from).unwrap_or_default(),
            IRREGULAR => {
                self.irregular.remove(&slot);
                Vec::new()
            }
            _ => Vec::new(),
        };
        for k in keys {
            if let Some(list) = self.postings.get_mut(&k) {
                if let Ok(at) = list.binary_search(&slot) {
                    list.remove(at);
                }
                if list.is_empty() {
                    self.postings.remove(&k);
                }
            }
        }
        self.tags[s] = MISSING;
        self.ones[s] = 0;
    }

    /// Makes room for slots up to `slots` (a record appended without calling `insert`).
    pub fn grow(&mut self, slots: usize) {
        if self.tags.len() < slots {
            self.tags.resize(slots, MISSING);
            self.ones.resize(slots, 0);
        }
    }

    pub fn info(&self) -> IndexInfo {
        let indexed = self.tags.iter().filter(|&&t| t == ONE || t == MANY).count();
        let postings: usize = self.postings.values().map(|l| l.len() * 4 + 48).sum();
        let many: usize = self.many.values().map(|k| k.len() * 8 + 24).sum();
        let dict: usize = self.strings.iter().map(|s| 2 * s.len() + 80).sum();
        IndexInfo {
            path: self.path.dotted(),
            kind: self.kind,
            values: self.postings.len(),
            indexed,
            irregular: self.irregular.len(),
            memory_bytes: self.tags.len() * 9 + postings + many + dict + self.irregular.len() * 8,
            value_graphs: 0,
            value_graph_bytes: 0,
            builds_value_graphs: self.value_graphs,
        }
    }
}

/// Validates an index path given by a caller.
pub(crate) fn parse_path(collection: &str, path: &str) -> Result<FieldPath> {
    if path.len() > 1024 {
        return Err(Error::InvalidArgument {
            what: format!("index path in collection '{collection}'"),
            reason: format!("is {} bytes, the limit is 1024", path.len()),
        });
    }
    if path.starts_with('$') {
        return Err(Error::InvalidArgument {
            what: format!("index path in collection '{collection}'"),
            reason: format!("'{path}' starts with '$', which filters reserve for operators"),
        });
    }
    FieldPath::parse(path).ok_or_else(|| Error::InvalidArgument {
        what: format!("index path in collection '{collection}'"),
        reason: format!("'{path}' is empty or has an empty segment"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_is_value_order() {
        let ints = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in ints.windows(2) {
            assert!(int_key(w[0]) < int_key(w[1]));
            assert_eq!(key_int(int_key(w[0])), w[0]);
        }
        let floats = [
            f64::NEG_INFINITY,
            -1e300,
            -1.5,
            -1e-300,
            0.0,
            1e-300,
            2.5,
            1e300,
            f64::INFINITY,
        ];
        for w in floats.windows(2) {
            assert!(float_key(w[0]) < float_key(w[1]), "{} {}", w[0], w[1]);
            assert_eq!(key_float(float_key(w[0])), w[0]);
        }
        assert_eq!(float_key(-0.0), float_key(0.0));
    }

    #[test]
    fn insert_and_remove_keep_postings_exact() {
        let mut idx = PayloadIndex::new(FieldPath::parse("t").unwrap(), IndexKind::Keyword);
        idx.insert(0, Some(&json!({"t": "a"})));
        idx.insert(1, Some(&json!({"t": ["a", "b", "a"]})));
        idx.insert(2, Some(&json!({"t": 3})));
        idx.insert(3, Some(&json!({})));
        idx.insert(4, Some(&json!({"t": []})));
        let a = idx.dict["a"];
        let b = idx.dict["b"];
        assert_eq!(idx.postings[&a], vec![0, 1]);
        assert_eq!(idx.postings[&b], vec![1]);
        assert_eq!(idx.irregular.iter().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(idx.tags, vec![ONE, MANY, IRREGULAR, MISSING, MANY]);
        idx.remove(1);
        idx.remove(2);
        assert_eq!(idx.postings[&a], vec![0]);
        assert!(!idx.postings.contains_key(&b));
        assert!(idx.irregular.is_empty());
        // Re-inserting an earlier slot keeps the list sorted.
        idx.insert(1, Some(&json!({"t": "a"})));
        assert_eq!(idx.postings[&a], vec![0, 1]);
    }

    #[test]
    fn numbers_the_kind_cannot_hold_exactly_are_irregular() {
        let ints = PayloadIndex::new(FieldPath::parse("n").unwrap(), IndexKind::Integer);
        assert_eq!(ints.scalar_key(&json!(3.0)), Some(int_key(3)));
        assert_eq!(ints.scalar_key(&json!(3.5)), None);
        assert_eq!(ints.scalar_key(&json!(u64::MAX)), None);
        let floats = PayloadIndex::new(FieldPath::parse("n").unwrap(), IndexKind::Float);
        assert_eq!(floats.scalar_key(&json!(3)), Some(float_key(3.0)));
        assert_eq!(floats.scalar_key(&json!((1i64 << 53) + 1)), None);
        assert_eq!(floats.scalar_key(&json!("3")), None);
    }
}
