//! A filter compiled against a collection's payload indexes ([`Pred`]): a test per slot that reads
//! typed columns instead of JSON where a path is indexed, an upper bound of the matches from the
//! posting lists, and the candidate slots themselves when the lists can name them.
//!
//! The meaning is the filter's own (`filter::eval`), exactly: parts on unindexed paths, irregular
//! slots and operands a column cannot answer (whole-array equality) evaluate the JSON.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Included, Unbounded};

use serde_json::Value;

use super::{IndexKind, PayloadIndex, SlotKeys, key_float, key_int};
use crate::filter::{Bound, CmpOp, FieldPath, Filter, Node, Num, Op};

/// A set of keys of one index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeySet {
    /// Sorted, distinct.
    Keys(Vec<u64>),
    /// Inclusive.
    Range(u64, u64),
}

impl KeySet {
    const EMPTY: KeySet = KeySet::Keys(Vec::new());

    #[inline]
    fn contains(&self, k: u64) -> bool {
        match self {
            KeySet::Keys(keys) => match keys.len() {
                0 => false,
                1 => keys[0] == k,
                2..=8 => keys.contains(&k),
                _ => keys.binary_search(&k).is_ok(),
            },
            KeySet::Range(lo, hi) => *lo <= k && k <= *hi,
        }
    }

    #[inline]
    fn any(&self, keys: &[u64]) -> bool {
        keys.iter().any(|&k| self.contains(k))
    }

    /// The posting lists of the keys in the set.
    fn lists<'a>(
        &'a self,
        postings: &'a BTreeMap<u64, Vec<u32>>,
    ) -> Box<dyn Iterator<Item = &'a Vec<u32>> + 'a> {
        match self {
            KeySet::Keys(keys) => Box::new(keys.iter().filter_map(|k| postings.get(k))),
            KeySet::Range(lo, hi) => Box::new(postings.range(*lo..=*hi).map(|(_, l)| l)),
        }
    }
}

/// One operator compiled against an index, for slots that hold keys.
#[derive(Debug)]
pub(crate) enum COp<'a> {
    /// Some key is in the set (`$eq`, `$in`, comparisons).
    Any(KeySet),
    /// No key is in the set (`$ne`, `$nin`).
    NotAny(KeySet),
    /// `$exists`: slots with keys are present.
    Const(bool),
    /// Not all of these hold.
    Not(Vec<COp<'a>>),
    /// Evaluate the JSON (whole-array equality).
    Json(&'a Op),
}

/// A filter compiled against a collection's indexes.
#[derive(Debug)]
pub(crate) enum Pred<'a> {
    Const(bool),
    And(Vec<Pred<'a>>),
    Or(Vec<Pred<'a>>),
    Not(Box<Pred<'a>>),
    /// A field with an index.
    Field {
        index: &'a PayloadIndex,
        ops: Vec<COp<'a>>,
        /// What the ops say of a missing value.
        missing: bool,
        path: &'a FieldPath,
        raw: &'a [Op],
    },
    /// A part on unindexed paths: evaluated on the JSON.
    Json(&'a Node),
}

impl<'a> Pred<'a> {
    /// Compiles `filter` against `indexes` (keyed by dotted path).
    pub fn compile(filter: &'a Filter, indexes: &'a BTreeMap<String, PayloadIndex>) -> Pred<'a> {
        compile_node(filter.root(), indexes)
    }

    /// Whether any part reads an index (else the planner keeps the JSON path).
    pub fn uses_index(&self) -> bool {
        match self {
            Pred::Const(_) | Pred::Json(_) => false,
            Pred::Field { .. } => true,
            Pred::And(c) | Pred::Or(c) => c.iter().any(Pred::uses_index),
            Pred::Not(c) => c.uses_index(),
        }
    }

    /// Whether the live slot `slot` (with metadata `metadata`) matches.
    #[inline]
    pub fn matches<M>(&self, slot: u32, metadata: &M) -> bool
    where
        M: std::ops::Index<usize, Output = Option<Value>> + ?Sized,
    {
        match self {
            Pred::Const(b) => *b,
            Pred::And(c) => c.iter().all(|p| p.matches(slot, metadata)),
            Pred::Or(c) => c.iter().any(|p| p.matches(slot, metadata)),
            Pred::Not(c) => !c.matches(slot, metadata),
            Pred::Json(node) => node.matches(metadata[slot as usize].as_ref()),
            Pred::Field {
                index,
                ops,
                missing,
                path,
                raw,
            } => match index.slot_keys(slot) {
                SlotKeys::Missing => *missing,
                SlotKeys::Irregular => {
                    let value = path.lookup(metadata[slot as usize].as_ref());
                    raw.iter().all(|op| op.matches(value))
                }
                SlotKeys::Keys(keys) => ops
                    .iter()
                    .all(|op| op.holds(keys, || path.lookup(metadata[slot as usize].as_ref()))),
            },
        }
    }

    /// An upper bound of the live slots that match, from the posting lists; `None` when the
    /// lists cannot bound it (negations, unindexed paths).
    pub fn estimate(&self) -> Option<usize> {
        match self {
            Pred::Const(false) => Some(0),
            Pred::Const(true) | Pred::Json(_) | Pred::Not(_) => None,
            Pred::And(c) => c.iter().filter_map(Pred::estimate).min(),
            Pred::Or(c) => c
                .iter()
                .map(Pred::estimate)
                .try_fold(0usize, |sum, e| Some(sum + e?)),
            Pred::Field {
                index,
                ops,
                missing,
                ..
            } => {
                if *missing {
                    return None;
                }
                ops.iter()
                    .filter_map(|op| match op {
                        COp::Any(set) => Some(set.lists(&index.postings).map(Vec::len).sum()),
                        _ => None,
                    })
                    .min()
                    .map(|n: usize| n + index.irregular.len())
            }
        }
    }

    /// Whether [`gather`](Self::gather) names exactly the matches (live slots only: the posting
    /// lists hold no tombstone), so that no candidate needs [`matches`](Self::matches).
    pub fn gather_is_exact(&self) -> bool {
        match self {
            Pred::Const(false) => true,
            Pred::Const(true) | Pred::Json(_) | Pred::Not(_) => false,
            Pred::And(c) => c.len() == 1 && c[0].gather_is_exact(),
            Pred::Or(c) => c.iter().all(Pred::gather_is_exact),
            Pred::Field {
                index,
                ops,
                missing,
                ..
            } => !*missing && index.irregular.is_empty() && matches!(ops.as_slice(), [COp::Any(_)]),
        }
    }

    /// Whether [`gather`](Self::gather) returns one posting list as it is (no merge, no sort).
    pub fn is_one_list(&self) -> bool {
        self.one_list().is_some()
    }

    /// The posting list [`gather`](Self::gather) would copy when it is one list as it is (no
    /// merge, no sort): read in place, with no copy.
    pub fn one_list(&self) -> Option<&[u32]> {
        match self {
            Pred::And(c) if c.len() == 1 => c[0].one_list(),
            Pred::Field { index, ops, .. } => match ops.as_slice() {
                [COp::Any(set)] if index.irregular.is_empty() => {
                    let mut lists = set.lists(&index.postings);
                    let first = lists.next()?;
                    lists.next().is_none().then_some(first.as_slice())
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The posting lists that name exactly the matches with no slot in two of them, when there
    /// are several: a field whose index holds one value a slot (no array of several), no
    /// irregular slot, and one operator that is a set of keys (`$in`, a range). An exact pass
    /// reads them one after the other, with no bitmap built.
    pub fn disjoint_lists(&self) -> Option<Vec<&[u32]>> {
        match self {
            Pred::And(c) if c.len() == 1 => c[0].disjoint_lists(),
            Pred::Field {
                index,
                ops,
                missing: false,
                ..
            } if index.irregular.is_empty() && index.many.is_empty() => match ops.as_slice() {
                [COp::Any(set)] => {
                    let lists: Vec<&[u32]> = set
                        .lists(&index.postings)
                        .map(Vec::as_slice)
                        .filter(|l| !l.is_empty())
                        .collect();
                    (lists.len() >= 2).then_some(lists)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The index and inclusive key range when the filter is exactly one range on an index
    /// that holds one value a slot with no irregular slot (`{"price": {"$lt": 10}}`, or
    /// `{"$gte": 2, "$lt": 5}`: the intersection): its matches are the live slots whose key
    /// lies in the range (none when `lo > hi`).
    pub fn numeric_range(&self) -> Option<(&'a PayloadIndex, u64, u64)> {
        match self {
            Pred::And(c) if c.len() == 1 => c[0].numeric_range(),
            Pred::Field {
                index,
                ops,
                missing: false,
                ..
            } if index.irregular.is_empty() && index.many.is_empty() && !ops.is_empty() => {
                // Several bounds (`{"$gte": 2, "$lt": 5}`): their ranges' intersection.
                let (mut lo, mut hi) = (0, u64::MAX);
                for op in ops {
                    match op {
                        COp::Any(KeySet::Range(a, b)) => {
                            lo = lo.max(*a);
                            hi = hi.min(*b);
                        }
                        _ => return None,
                    }
                }
                Some((*index, lo, hi))
            }
            _ => None,
        }
    }

    /// The posting-list entries [`bitmap`](Self::bitmap) reads (its cost), or `None` when the
    /// filter has no exact bitmap.
    pub fn bitmap_cost(&self) -> Option<usize> {
        match self {
            Pred::Const(_) => Some(0),
            Pred::Json(_) | Pred::Not(_) => None,
            Pred::And(c) | Pred::Or(c) => c
                .iter()
                .map(Pred::bitmap_cost)
                .try_fold(0usize, |sum, e| Some(sum + e?)),
            Pred::Field {
                index,
                ops,
                missing,
                ..
            } => {
                if *missing || !index.irregular.is_empty() {
                    return None;
                }
                ops.iter()
                    .map(|op| match op {
                        COp::Any(set) => Some(set.lists(&index.postings).map(Vec::len).sum()),
                        _ => None,
                    })
                    .try_fold(0usize, |sum, e: Option<usize>| Some(sum + e?))
            }
        }
    }

    /// The matches as a bitmap over `slots` slots (bit `s % 64` of word `s / 64`), built from the
    /// posting lists alone; `None` where [`bitmap_cost`](Self::bitmap_cost) is `None`.
    /// `live` is the bitmap of live slots (for `Const(true)`).
    pub fn bitmap(&self, live: &dyn Fn() -> Vec<u64>, words: usize) -> Option<Vec<u64>> {
        match self {
            Pred::Const(false) => Some(vec![0; words]),
            Pred::Const(true) => Some(live()),
            Pred::Json(_) | Pred::Not(_) => None,
            Pred::And(c) => {
                let mut acc: Option<Vec<u64>> = None;
                for p in c {
                    let b = p.bitmap(live, words)?;
                    acc = Some(match acc {
                        None => b,
                        Some(mut a) => {
                            a.iter_mut().zip(&b).for_each(|(x, y)| *x &= y);
                            a
                        }
                    });
                }
                Some(acc.unwrap_or_else(live))
            }
            Pred::Or(c) => {
                let mut acc = vec![0u64; words];
                for p in c {
                    let b = p.bitmap(live, words)?;
                    acc.iter_mut().zip(&b).for_each(|(x, y)| *x |= y);
                }
                Some(acc)
            }
            Pred::Field {
                index,
                ops,
                missing,
                ..
            } => {
                if *missing || !index.irregular.is_empty() {
                    return None;
                }
                let mut acc: Option<Vec<u64>> = None;
                for op in ops {
                    let COp::Any(set) = op else { return None };
                    let mut b = vec![0u64; words];
                    for list in set.lists(&index.postings) {
                        set_bits(&mut b, list);
                    }
                    acc = Some(match acc {
                        None => b,
                        Some(mut a) => {
                            a.iter_mut().zip(&b).for_each(|(x, y)| *x &= y);
                            a
                        }
                    });
                }
                // A field with no operator (`{"f": {}}`) holds wherever the field is present:
                // not answerable from the lists.
                acc
            }
        }
    }

    /// Every slot that may match (a superset of the matches, each to be tested with
    /// [`matches`](Self::matches)), sorted and distinct; `None` where `estimate` is `None`.
    pub fn gather(&self) -> Option<Vec<u32>> {
        match self {
            Pred::Const(false) => Some(Vec::new()),
            Pred::Const(true) | Pred::Json(_) | Pred::Not(_) => None,
            Pred::And(c) => c
                .iter()
                .filter_map(|p| p.estimate().map(|e| (e, p)))
                .min_by_key(|(e, _)| *e)
                .and_then(|(_, p)| p.gather()),
            Pred::Or(c) => {
                let mut all = Vec::new();
                for p in c {
                    all.extend(p.gather()?);
                }
                all.sort_unstable();
                all.dedup();
                Some(all)
            }
            Pred::Field {
                index,
                ops,
                missing,
                ..
            } => {
                if *missing {
                    return None;
                }
                let set = ops
                    .iter()
                    .filter_map(|op| match op {
                        COp::Any(set) => {
                            Some((set.lists(&index.postings).map(Vec::len).sum::<usize>(), set))
                        }
                        _ => None,
                    })
                    .min_by_key(|(n, _)| *n)?
                    .1;
                let mut lists: Vec<&Vec<u32>> = set.lists(&index.postings).collect();
                let mut all: Vec<u32> = if lists.len() == 1 {
                    lists.pop().cloned().unwrap_or_default()
                } else {
                    let mut all: Vec<u32> = lists.into_iter().flatten().copied().collect();
                    all.sort_unstable();
                    all.dedup();
                    all
                };
                if !index.irregular.is_empty() {
                    all.extend(index.irregular.iter().copied());
                    all.sort_unstable();
                    all.dedup();
                }
                Some(all)
            }
        }
    }
}

/// Sets the bits of `slots` (bit `s % 64` of word `s / 64`; slots past the end are ignored).
pub(crate) fn set_bits(bits: &mut [u64], slots: &[u32]) {
    for &s in slots {
        if let Some(w) = bits.get_mut(s as usize / 64) {
            *w |= 1 << (s % 64);
        }
    }
}

impl COp<'_> {
    #[inline]
    fn holds<'v>(&self, keys: &[u64], json: impl Fn() -> Option<&'v Value> + Copy) -> bool {
        match self {
            COp::Any(set) => set.any(keys),
            COp::NotAny(set) => !set.any(keys),
            COp::Const(b) => *b,
            COp::Not(ops) => !ops.iter().all(|op| op.holds(keys, json)),
            COp::Json(op) => op.matches(json()),
        }
    }
}

fn compile_node<'a>(node: &'a Node, indexes: &'a BTreeMap<String, PayloadIndex>) -> Pred<'a> {
    match node {
        Node::And(c) if c.is_empty() => Pred::Const(true),
        Node::And(c) => Pred::And(c.iter().map(|n| compile_node(n, indexes)).collect()),
        Node::Or(c) => Pred::Or(c.iter().map(|n| compile_node(n, indexes)).collect()),
        Node::Not(c) => match compile_node(c, indexes) {
            Pred::Json(_) => Pred::Json(node),
            p => Pred::Not(Box::new(p)),
        },
        Node::Field { path, ops } => match indexes.get(&path.dotted()) {
            None => Pred::Json(node),
            Some(index) => Pred::Field {
                index,
                ops: ops.iter().map(|op| compile_op(index, op)).collect(),
                missing: ops.iter().all(|op| op.matches(None)),
                path,
                raw: ops,
            },
        },
    }
}

fn compile_op<'a>(index: &PayloadIndex, op: &'a Op) -> COp<'a> {
    match op {
        Op::Eq(v) => eq_set(index, v).map_or(COp::Json(op), COp::Any),
        Op::Ne(v) => eq_set(index, v).map_or(COp::Json(op), COp::NotAny),
        Op::In(vs) => in_set(index, vs).map_or(COp::Json(op), COp::Any),
        Op::Nin(vs) => in_set(index, vs).map_or(COp::Json(op), COp::NotAny),
        Op::Cmp(cmp, bound) => COp::Any(range_set(index, *cmp, bound)),
        // A slot holding keys (even an empty array) has the field.
        Op::Exists(b) => COp::Const(*b),
        Op::Not(ops) => {
            let inner: Vec<COp> = ops.iter().map(|o| compile_op(index, o)).collect();
            if inner.iter().any(|o| matches!(o, COp::Json(_))) {
                COp::Json(op)
            } else {
                COp::Not(inner)
            }
        }
    }
}

/// The keys equal to `v` (`eq_matches` on a slot holding keys: some key equals `v`); `None` when
/// a column cannot answer (an array operand compares whole arrays).
fn eq_set(index: &PayloadIndex, v: &Value) -> Option<KeySet> {
    match v {
        Value::Array(_) => None,
        // Keys are scalars of the kind, never null and never objects.
        Value::Null | Value::Object(_) => Some(KeySet::EMPTY),
        scalar => Some(
            index
                .scalar_key(scalar)
                .map_or(KeySet::EMPTY, |k| KeySet::Keys(vec![k])),
        ),
    }
}

fn in_set(index: &PayloadIndex, vs: &[Value]) -> Option<KeySet> {
    let mut keys = Vec::new();
    for v in vs {
        if let KeySet::Keys(k) = eq_set(index, v)? {
            keys.extend(k);
        }
    }
    keys.sort_unstable();
    keys.dedup();
    Some(KeySet::Keys(keys))
}

/// The keys whose value compares so with `bound`.
fn range_set(index: &PayloadIndex, cmp: CmpOp, bound: &Bound) -> KeySet {
    match (index.kind, bound) {
        (IndexKind::Keyword, Bound::Str(b)) => {
            let range = match cmp {
                CmpOp::Gt => index
                    .dict
                    .range::<str, _>((Excluded(b.as_str()), Unbounded)),
                CmpOp::Gte => index
                    .dict
                    .range::<str, _>((Included(b.as_str()), Unbounded)),
                CmpOp::Lt => index
                    .dict
                    .range::<str, _>((Unbounded, Excluded(b.as_str()))),
                CmpOp::Lte => index
                    .dict
                    .range::<str, _>((Unbounded, Included(b.as_str()))),
            };
            let mut keys: Vec<u64> = range.map(|(_, &k)| k).collect();
            keys.sort_unstable();
            KeySet::Keys(keys)
        }
        (IndexKind::Integer, Bound::Num(b)) => key_range(cmp, 0, u64::MAX, |k| {
            Num::Int(key_int(k).into()).compare(*b)
        }),
        (IndexKind::Float, Bound::Num(b)) => key_range(
            cmp,
            super::float_key(f64::NEG_INFINITY),
            super::float_key(f64::INFINITY),
            |k| Num::Float(key_float(k)).compare(*b),
        ),
        // Comparisons across types are false; bools are not ordered.
        _ => KeySet::EMPTY,
    }
}

/// The keys in `[lo, hi]` for which `cmp` holds, found by binary search: key order is value
/// order, so they form a prefix (`$lt`, `$lte`) or a suffix (`$gt`, `$gte`) of the domain.
fn key_range(cmp: CmpOp, lo: u64, hi: u64, order: impl Fn(u64) -> Option<Ordering>) -> KeySet {
    let holds = |k: u64| cmp.holds(order(k));
    let upward = matches!(cmp, CmpOp::Gt | CmpOp::Gte);
    // Find the boundary: the first key where `holds` differs from its value at `lo`.
    let (mut a, mut b) = (lo, hi);
    if upward {
        if !holds(hi) {
            return KeySet::EMPTY;
        }
        // Invariant: holds(b); find the smallest such b.
        while a < b {
            let mid = a + (b - a) / 2;
            if holds(mid) {
                b = mid;
            } else {
                a = mid + 1;
            }
        }
        KeySet::Range(b, hi)
    } else {
        if !holds(lo) {
            return KeySet::EMPTY;
        }
        // Invariant: holds(a); find the largest such a.
        while a < b {
            let mid = a + (b - a).div_ceil(2);
            if holds(mid) {
                a = mid;
            } else {
                b = mid - 1;
            }
        }
        KeySet::Range(lo, a)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::payload::int_key;

    fn index(kind: IndexKind, values: &[Value]) -> PayloadIndex {
        let mut idx = PayloadIndex::new(FieldPath::parse("v").expect("a valid path"), kind);
        for (slot, v) in values.iter().enumerate() {
            idx.insert(slot as u32, Some(&json!({ "v": v })));
        }
        idx
    }

    /// The bitmap and the exact gather name exactly the slots `matches` accepts, whenever they
    /// exist (the planner uses them without testing the slots again).
    #[test]
    fn bitmaps_and_exact_gathers_are_the_matches() {
        let mut indexes = BTreeMap::new();
        for (path, kind) in [
            ("t", IndexKind::Keyword),
            ("n", IndexKind::Integer),
            ("p", IndexKind::Float),
        ] {
            indexes.insert(
                path.to_string(),
                PayloadIndex::new(FieldPath::parse(path).expect("a valid path"), kind),
            );
        }
        let words = ["a", "b", "c"];
        let metadata: Vec<Option<Value>> = (0..300u32)
            .map(|i| {
                let t = if i % 7 == 0 {
                    json!([words[(i % 3) as usize], words[((i / 3) % 3) as usize]])
                } else {
                    json!(words[(i % 3) as usize])
                };
                (i % 11 != 0).then(|| json!({"t": t, "n": i % 13, "p": f64::from(i % 17) / 2.0}))
            })
            .collect();
        for idx in indexes.values_mut() {
            for (slot, m) in metadata.iter().enumerate() {
                idx.insert(slot as u32, m.as_ref());
            }
        }
        let filters = [
            json!({"t": "a"}),
            json!({"t": {"$in": ["a", "c"]}}),
            json!({"n": {"$lt": 4}}),
            json!({"n": {"$gte": 4, "$lt": 9}}),
            json!({"p": {"$gt": 3.5}}),
            json!({"$and": [{"t": "b"}, {"n": {"$gt": 6}}]}),
            json!({"$or": [{"t": "c"}, {"p": {"$lte": 1}}]}),
            json!({"$or": [{"t": "zz"}, {"n": 3}]}),
            json!({"t": {"$ne": "a"}}),
            json!({"t": null}),
            json!({"q": 1}),
        ];
        let words_n = 300usize.div_ceil(64);
        let live = || vec![u64::MAX; words_n];
        for fj in filters {
            let f = Filter::parse(&fj).expect("a valid filter");
            let pred = Pred::compile(&f, &indexes);
            let want: Vec<u32> = (0..300u32)
                .filter(|&s| f.matches(metadata[s as usize].as_ref()))
                .collect();
            for &s in &want {
                assert!(pred.matches(s, &metadata), "{fj}: slot {s}");
            }
            if let Some(bits) = pred.bitmap(&live, words_n) {
                let got: Vec<u32> = (0..300u32)
                    .filter(|&s| bits[s as usize / 64] & (1 << (s % 64)) != 0)
                    .collect();
                assert_eq!(got, want, "{fj}: bitmap");
                assert!(pred.bitmap_cost().is_some(), "{fj}");
            } else {
                assert!(pred.bitmap_cost().is_none(), "{fj}");
            }
            if pred.gather_is_exact() {
                assert_eq!(pred.gather(), Some(want.clone()), "{fj}: exact gather");
            }
        }
    }

    #[test]
    fn ranges_are_exact_at_the_bounds() {
        let idx = index(
            IndexKind::Integer,
            &[json!(-3), json!(0), json!(5), json!(9)],
        );
        let r = |cmp, b: Num| range_set(&idx, cmp, &Bound::Num(b));
        assert_eq!(
            r(CmpOp::Gt, Num::Int(0)),
            KeySet::Range(int_key(1), u64::MAX)
        );
        assert_eq!(
            r(CmpOp::Gte, Num::Float(0.5)),
            KeySet::Range(int_key(1), u64::MAX)
        );
        assert_eq!(
            r(CmpOp::Lt, Num::Float(-2.5)),
            KeySet::Range(0, int_key(-3))
        );
        assert_eq!(r(CmpOp::Lte, Num::Int(i128::MIN)), KeySet::EMPTY);
        assert_eq!(r(CmpOp::Gt, Num::Int(u64::MAX.into())), KeySet::EMPTY);
        let f = index(IndexKind::Float, &[json!(0.1), json!(2)]);
        let KeySet::Range(lo, _) = range_set(&f, CmpOp::Gt, &Bound::Num(Num::Float(0.1))) else {
            panic!("a suffix");
        };
        assert!(key_float(lo) > 0.1 && key_float(lo) < 0.100_000_1);
    }
}
