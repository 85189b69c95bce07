//! The bytes of a collection's payload indexes in a checkpoint (the payload of its `indexes`
//! section; `docs/file-format.md` is the authority). Columns and posting lists are stored as
//! they are in memory, so opening copies them and builds nothing; decoding checks that the two
//! halves agree, so a bad file is refused instead of giving wrong answers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{IRREGULAR, IndexKind, MANY, MISSING, ONE, PayloadIndex, key_float, parse_path};
use crate::storage::Reader;

fn put_u32(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_le_bytes());
}

/// In the kind byte, from checkpoint version 6: the index builds no value graphs.
pub(crate) const NO_VALUE_GRAPHS: u8 = 0x80;

/// Encodes the indexes in path order, in the layout of checkpoint `version` (before 6 the
/// kind byte cannot say that an index builds no value graphs: left out).
pub(crate) fn encode(
    indexes: &BTreeMap<String, PayloadIndex>,
    slots: usize,
    version: u32,
) -> Vec<u8> {
    let mut out = Vec::new();
    put_u32(&mut out, indexes.len());
    for (path, idx) in indexes {
        put_u32(&mut out, path.len());
        out.extend_from_slice(path.as_bytes());
        let off = if version >= 6 && !idx.value_graphs {
            NO_VALUE_GRAPHS
        } else {
            0
        };
        out.push(idx.kind.code() | off);
        put_u32(&mut out, idx.strings.len());
        for s in &idx.strings {
            put_u32(&mut out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        // Columns cover every slot (an index made before the last records may be shorter).
        for s in 0..slots {
            out.push(idx.tags.get(s).copied().unwrap_or(MISSING));
        }
        for s in 0..slots {
            out.extend_from_slice(&idx.ones.get(s).copied().unwrap_or(0).to_le_bytes());
        }
        let mut many: Vec<(&u32, &Box<[u64]>)> = idx.many.iter().collect();
        many.sort_unstable_by_key(|(s, _)| **s);
        put_u32(&mut out, many.len());
        for (slot, keys) in many {
            put_u32(&mut out, *slot as usize);
            put_u32(&mut out, keys.len());
            for k in keys.iter() {
                out.extend_from_slice(&k.to_le_bytes());
            }
        }
        put_u32(&mut out, idx.postings.len());
        for (key, list) in &idx.postings {
            out.extend_from_slice(&key.to_le_bytes());
            put_u32(&mut out, list.len());
            for s in list {
                out.extend_from_slice(&s.to_le_bytes());
            }
        }
    }
    out
}

/// Decodes and checks the indexes of a collection of `slots` slots (`deleted` per slot).
/// An error is the offset within `bytes` and what is wrong there.
pub(crate) fn decode(
    bytes: &[u8],
    collection: &str,
    deleted: &[bool],
    version: u32,
) -> Result<BTreeMap<String, PayloadIndex>, (usize, String)> {
    let n = deleted.len();
    let mut r = Reader::new(bytes);
    let cut = |r: &Reader| (r.pos(), "truncated".to_string());
    let count = r.u32().ok_or_else(|| cut(&r))? as usize;
    let mut indexes = BTreeMap::new();
    for _ in 0..count {
        let at = r.pos();
        let path_len = r.u32().ok_or_else(|| cut(&r))? as usize;
        let path = r
            .take(path_len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| (at, "index path is not UTF-8 or is cut off".to_string()))?;
        let parsed = parse_path(collection, path).map_err(|e| (at, e.to_string()))?;
        if parsed.dotted() != path {
            return Err((at, format!("index path '{path}' is not in canonical form")));
        }
        if indexes
            .keys()
            .next_back()
            .is_some_and(|last: &String| last.as_str() >= path)
        {
            return Err((at, format!("index '{path}' is out of order or repeated")));
        }
        let byte = r.u8().ok_or_else(|| cut(&r))?;
        let off = version >= 6 && byte & NO_VALUE_GRAPHS != 0;
        let code = if version >= 6 {
            byte & !NO_VALUE_GRAPHS
        } else {
            byte
        };
        let kind = IndexKind::from_code(code)
            .ok_or_else(|| (at, format!("index '{path}': unknown kind")))?;
        let bad = |at: usize, what: &str| (at, format!("index '{path}': {what}"));
        let mut idx = PayloadIndex::new(parsed, kind);
        idx.value_graphs = !off;

        let n_strings = r.u32().ok_or_else(|| cut(&r))? as usize;
        if kind != IndexKind::Keyword && n_strings != 0 {
            return Err(bad(
                r.pos(),
                "a dictionary in an index that is not a keyword index",
            ));
        }
        for _ in 0..n_strings {
            let at = r.pos();
            let len = r.u32().ok_or_else(|| cut(&r))? as usize;
            let s = r
                .take(len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| bad(at, "dictionary word is not UTF-8 or is cut off"))?;
            let k = idx.strings.len() as u64;
            if idx.dict.insert(s.to_string(), k).is_some() {
                return Err(bad(at, "dictionary word repeated"));
            }
            idx.strings.push(s.to_string());
        }

        let at = r.pos();
        let tags = r.take(n).ok_or_else(|| cut(&r))?.to_vec();
        for (s, &t) in tags.iter().enumerate() {
            if t > IRREGULAR || (deleted[s] && t != MISSING) {
                return Err(bad(at + s, "bad column tag"));
            }
        }
        let at = r.pos();
        let ones_bytes = r
            .take(n.checked_mul(8).ok_or_else(|| cut(&r))?)
            .ok_or_else(|| cut(&r))?;
        let ones: Vec<u64> = ones_bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect();
        for s in 0..n {
            if tags[s] != ONE && ones[s] != 0 {
                return Err(bad(
                    at + s * 8,
                    "a value in a slot not tagged as holding one",
                ));
            }
            if tags[s] == ONE && !key_valid(&idx, ones[s]) {
                return Err(bad(at + s * 8, "a value out of the kind's range"));
            }
        }

        let n_many = r.u32().ok_or_else(|| cut(&r))? as usize;
        let mut many: HashMap<u32, Box<[u64]>> = HashMap::with_capacity(n_many.min(n));
        let mut last = None;
        for _ in 0..n_many {
            let at = r.pos();
            let slot = r.u32().ok_or_else(|| cut(&r))?;
            let len = r.u32().ok_or_else(|| cut(&r))? as usize;
            if last.is_some_and(|l| l >= slot) || tags.get(slot as usize) != Some(&MANY) || len == 1
            {
                return Err(bad(at, "bad list of array values"));
            }
            last = Some(slot);
            let raw = r
                .take(len.checked_mul(8).ok_or_else(|| cut(&r))?)
                .ok_or_else(|| cut(&r))?;
            let keys: Box<[u64]> = raw
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect();
            if keys.windows(2).any(|w| w[0] >= w[1]) || keys.iter().any(|&k| !key_valid(&idx, k)) {
                return Err(bad(at, "array values not sorted, repeated or out of range"));
            }
            many.insert(slot, keys);
        }
        if many.len() != tags.iter().filter(|&&t| t == MANY).count() {
            return Err(bad(
                r.pos(),
                "a slot tagged as holding an array has no values",
            ));
        }

        let n_postings = r.u32().ok_or_else(|| cut(&r))? as usize;
        let mut postings = BTreeMap::new();
        let mut entries = 0usize;
        for _ in 0..n_postings {
            let at = r.pos();
            let key = r.u64().ok_or_else(|| cut(&r))?;
            let len = r.u32().ok_or_else(|| cut(&r))? as usize;
            if postings.keys().next_back().is_some_and(|&k: &u64| k >= key) || len == 0 {
                return Err(bad(at, "posting lists out of order, repeated or empty"));
            }
            let raw = r
                .take(len.checked_mul(4).ok_or_else(|| cut(&r))?)
                .ok_or_else(|| cut(&r))?;
            let list: Vec<u32> = raw
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
                .collect();
            if list.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad(at, "posting list not sorted"));
            }
            for &s in &list {
                let holds = match tags.get(s as usize) {
                    Some(&ONE) => ones[s as usize] == key,
                    Some(&MANY) => many.get(&s).is_some_and(|k| k.contains(&key)),
                    _ => false,
                };
                if !holds {
                    return Err(bad(at, "posting list names a slot without that value"));
                }
            }
            entries += list.len();
            postings.insert(key, list);
        }
        let values = tags.iter().filter(|&&t| t == ONE).count()
            + many.values().map(|k| k.len()).sum::<usize>();
        if entries != values {
            return Err(bad(r.pos(), "posting lists and columns disagree"));
        }
        idx.irregular = tags
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == IRREGULAR)
            .map(|(s, _)| s as u32)
            .collect::<BTreeSet<u32>>();
        idx.tags = tags;
        idx.ones = ones;
        idx.many = many;
        idx.postings = postings;
        indexes.insert(path.to_string(), idx);
    }
    if r.remaining() != 0 {
        return Err((r.pos(), "unexpected trailing bytes".into()));
    }
    Ok(indexes)
}

/// Whether `k` can be a key of this index.
fn key_valid(idx: &PayloadIndex, k: u64) -> bool {
    match idx.kind {
        IndexKind::Keyword => (k as usize) < idx.strings.len(),
        IndexKind::Integer => true,
        IndexKind::Float => {
            let f = key_float(k);
            f.is_finite() && super::float_key(f) == k
        }
        IndexKind::Bool => k <= 1,
    }
}
