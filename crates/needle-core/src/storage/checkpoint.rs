//! The checkpoint (`.needle`) format, also used as the snapshot byte stream. `docs/file-format.md`
//! is the authority on the bytes; keep it in step with this file.
//!
//! A 64-byte header, then per collection eight sections (meta, vectors, levels, layer-0 links,
//! upper-layer offsets, upper-layer links, records, payload indexes; version 1 files have no
//! index section and still open, with no indexes). Each section is
//! `kind u32 | len u64 | header-crc u32 | payload | payload-crc u32 | zero padding to 8 bytes`,
//! so it can be written as a stream (no seeking) and checked piece by piece. Arrays are raw
//! little-endian, so opening copies them out of the map without rebuilding anything.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use super::Reader;
use crate::collection::{Collection, validate_collection_name};
use crate::config::{CollectionConfig, Distance, Quantization};
use crate::distance::kernel_for;
use crate::error::{Error, Result};
use crate::hnsw::{Flat, Graph, Links0, Links0Kind, MAX_LEVEL, NONE};
use crate::sq8::{Sq8, Sq8Ranges};
use crate::value_graphs::ValueGraph;
use crate::vectors::Vectors;
use std::collections::BTreeMap;

pub(crate) const MAGIC: &[u8; 8] = b"NEEDLEDB";
pub(crate) const VERSION: u32 = 6;
/// The oldest version this build reads: version 1 lacks the index section, version 2 the
/// quantization byte of the meta section and the sq8 section, version 3 the alignment section
/// before the vectors, version 4 the value-graph section (those files open with no value graphs:
/// see `docs/file-format.md`), version 5 the index option that turns value graphs off (every
/// index of those files builds them).
const OLDEST_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 64;

const KIND_META: u32 = 1;
const KIND_VECTORS: u32 = 2;
const KIND_LEVELS: u32 = 3;
const KIND_LINKS0: u32 = 4;
const KIND_UPPER_START: u32 = 5;
const KIND_UPPER: u32 = 6;
const KIND_RECORDS: u32 = 7;
const KIND_INDEXES: u32 = 8;
const KIND_SQ8: u32 = 9;
const KIND_ALIGN: u32 = 10;
const KIND_VALUE_GRAPHS: u32 = 11;
/// From version 4 the vectors' payload starts at a multiple of this (a page), preceded by an
/// alignment section of zeros: the vectors can be mapped page by page, and each vector whose
/// size is a multiple of 64 bytes lies on whole cache lines.
pub(crate) const VECTORS_ALIGN: u64 = 4096;
const SECTION_HEADER: usize = 16;
/// Marks "no metadata" in the records section.
const NO_METADATA: u32 = u32::MAX;

/// What a checkpoint holds besides the collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Header {
    /// The caller's opaque value (needle-raft: the applied Raft index).
    pub tag: u64,
    /// Counts checkpoints; the WAL names the generation it follows.
    pub generation: u64,
}

/// A `Write` that counts bytes and keeps a running CRC-32C.
struct Crc<'a> {
    inner: &'a mut dyn Write,
    crc: u32,
    count: u64,
}

impl Write for Crc<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn section(
    w: &mut dyn Write,
    kind: u32,
    len: u64,
    body: impl FnOnce(&mut Crc) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut head = [0u8; SECTION_HEADER];
    head[0..4].copy_from_slice(&kind.to_le_bytes());
    head[4..12].copy_from_slice(&len.to_le_bytes());
    let hcrc = crc32c::crc32c(&head[0..12]);
    head[12..16].copy_from_slice(&hcrc.to_le_bytes());
    w.write_all(&head)?;
    let mut crc = Crc {
        inner: w,
        crc: 0,
        count: 0,
    };
    body(&mut crc)?;
    assert_eq!(
        crc.count, len,
        "section {kind}: declared length matches bytes written"
    );
    let crc_value = crc.crc;
    w.write_all(&crc_value.to_le_bytes())?;
    w.write_all(&[0u8; 8][..pad8(len + 4)])?;
    Ok(())
}

fn pad8(n: u64) -> usize {
    ((8 - n % 8) % 8) as usize
}

/// Writes little-endian values of an array through a small buffer.
fn write_array<T: Copy, const N: usize>(
    w: &mut dyn Write,
    items: &[T],
    to_bytes: impl Fn(T) -> [u8; N],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(64 * 1024);
    for chunk in items.chunks(16 * 1024 / N.max(1)) {
        buf.clear();
        for &x in chunk {
            buf.extend_from_slice(&to_bytes(x));
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

/// Writes a whole checkpoint: header, then the collections in name order. Returns where each
/// collection's vectors start in the bytes written (the payload of its vectors section: the
/// slots' f32 values, contiguous, little-endian, 8-byte aligned), for `Database::map_vectors`.
pub(crate) fn encode<'a>(
    w: &mut dyn Write,
    header: Header,
    collections: impl ExactSizeIterator<Item = &'a Collection>,
) -> std::io::Result<Vec<u64>> {
    encode_version(w, header, collections, VERSION)
}

/// A `Write` that counts the bytes written through it.
struct Position<'a> {
    inner: &'a mut dyn Write,
    at: u64,
}

impl Write for Position<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// [`encode`] in the layout of an older `version` (for tests of reading old files): what that
/// version lacks is left out.
fn encode_version<'a>(
    w: &mut dyn Write,
    header: Header,
    collections: impl ExactSizeIterator<Item = &'a Collection>,
    version: u32,
) -> std::io::Result<Vec<u64>> {
    let mut w = Position { inner: w, at: 0 };
    let mut head = [0u8; HEADER_LEN];
    head[0..8].copy_from_slice(MAGIC);
    head[8..12].copy_from_slice(&version.to_le_bytes());
    head[16..24].copy_from_slice(&header.tag.to_le_bytes());
    head[24..32].copy_from_slice(&header.generation.to_le_bytes());
    head[32..36].copy_from_slice(&(collections.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c(&head[0..60]);
    head[60..64].copy_from_slice(&crc.to_le_bytes());
    w.write_all(&head)?;
    let mut offsets = Vec::with_capacity(collections.len());
    for c in collections {
        offsets.push(encode_collection(&mut w, c, version)?);
    }
    Ok(offsets)
}

/// Writes one collection; returns where its vectors start.
fn encode_collection(w: &mut Position, c: &Collection, version: u32) -> std::io::Result<u64> {
    let g = &c.graph;
    let mut meta = Vec::new();
    meta.extend_from_slice(&(c.name.len() as u32).to_le_bytes());
    meta.extend_from_slice(c.name.as_bytes());
    meta.extend_from_slice(&(c.dim as u64).to_le_bytes());
    meta.push(c.config.distance.code());
    meta.extend_from_slice(&(c.config.m as u32).to_le_bytes());
    meta.extend_from_slice(&(c.config.ef_construction as u32).to_le_bytes());
    meta.extend_from_slice(&(c.config.ef_search as u32).to_le_bytes());
    meta.extend_from_slice(&c.config.seed.to_le_bytes());
    meta.extend_from_slice(&(c.slots() as u64).to_le_bytes());
    meta.extend_from_slice(&g.entry.to_le_bytes());
    meta.push(g.max_level);
    if version >= 3 {
        meta.push(c.config.quantization.code());
    }
    section(w, KIND_META, meta.len() as u64, |w| w.write_all(&meta))?;

    if version >= 4 {
        // A payload of 4 + 8j zero bytes (no padding after its checksum) ending where the
        // vectors' section header must start.
        let header = SECTION_HEADER as u64;
        let after_align = w.at + header + 4 + 4;
        let j = (VECTORS_ALIGN - (after_align + header) % VECTORS_ALIGN) % VECTORS_ALIGN / 8;
        let len = 4 + 8 * j;
        section(w, KIND_ALIGN, len, |w| {
            w.write_all(&vec![0u8; len as usize])
        })?;
        debug_assert_eq!((w.at + header) % VECTORS_ALIGN, 0);
    }
    let vectors_at = w.at + SECTION_HEADER as u64;
    section(w, KIND_VECTORS, c.vectors.len() as u64 * 4, |w| {
        let (head, tail) = c.vectors.parts();
        write_array(w, head, f32::to_le_bytes)?;
        write_array(w, tail, f32::to_le_bytes)
    })?;
    section(w, KIND_LEVELS, g.levels.len() as u64, |w| {
        w.write_all(&g.levels)
    })?;
    let links0_bytes = (g.links0.len() * (1 + 2 * g.m)) as u64 * 4;
    section(w, KIND_LINKS0, links0_bytes, |w| {
        g.links0
            .write_words(|run| write_array(w, run, u32::to_le_bytes))
    })?;
    section(w, KIND_UPPER_START, g.len() as u64 * 4, |w| {
        let mut starts = g.upper_starts();
        let mut run = Vec::with_capacity(4096);
        loop {
            run.clear();
            run.extend(starts.by_ref().take(4096));
            if run.is_empty() {
                return Ok(());
            }
            write_array(w, &run, u32::to_le_bytes)?;
        }
    })?;
    section(w, KIND_UPPER, g.upper.word_len() as u64 * 4, |w| {
        if let Some(words) = g.upper.words() {
            return write_array(w, words, u32::to_le_bytes);
        }
        let mut run = Vec::with_capacity(4096);
        let mut result = Ok(());
        g.upper.for_each_word(|x| {
            run.push(x);
            if run.len() == 4096 {
                if result.is_ok() {
                    result = write_array(w, &run, u32::to_le_bytes);
                }
                run.clear();
            }
        });
        result?;
        write_array(w, &run, u32::to_le_bytes)
    })?;

    let mut records = Vec::new();
    for s in 0..c.slots() {
        records.push(u8::from(c.deleted[s]));
        records.extend_from_slice(&(c.ids[s].len() as u32).to_le_bytes());
        records.extend_from_slice(c.ids[s].as_bytes());
        match &c.metadata[s] {
            None => records.extend_from_slice(&NO_METADATA.to_le_bytes()),
            Some(m) => {
                let json = serde_json::to_vec(m).expect("a serde_json::Value always serialises");
                records.extend_from_slice(&(json.len() as u32).to_le_bytes());
                records.extend_from_slice(&json);
            }
        }
    }
    section(w, KIND_RECORDS, records.len() as u64, |w| {
        w.write_all(&records)
    })?;
    if version < 2 {
        return Ok(vectors_at);
    }
    let indexes = crate::payload::codec::encode(&c.indexes, c.slots(), version);
    section(w, KIND_INDEXES, indexes.len() as u64, |w| {
        w.write_all(&indexes)
    })?;
    if version < 3 {
        return Ok(vectors_at);
    }
    // The trained ranges only: the codes are a function of them and the vectors.
    let mut sq8 = Vec::new();
    match &c.sq8 {
        None => sq8.push(0),
        Some(q) => {
            sq8.push(1);
            sq8.extend_from_slice(&q.trained_slots.to_le_bytes());
            sq8.extend_from_slice(&q.ranges.scale.to_le_bytes());
            for o in &q.ranges.offsets {
                sq8.extend_from_slice(&o.to_le_bytes());
            }
        }
    }
    section(w, KIND_SQ8, sq8.len() as u64, |w| w.write_all(&sq8))?;
    if version < 5 {
        return Ok(vectors_at);
    }
    let graphs = encode_value_graphs(c);
    section(w, KIND_VALUE_GRAPHS, graphs.len() as u64, |w| {
        w.write_all(&graphs)
    })?;
    Ok(vectors_at)
}

/// The value graphs (see `crate::value_graphs`), stored as they are in memory so that opening
/// builds nothing: per indexed path in path order, per key in key order, the graph's nodes
/// (slot and left flag of each), levels, links and entry point.
fn encode_value_graphs(c: &Collection) -> Vec<u8> {
    let put = |out: &mut Vec<u8>, v: usize| out.extend_from_slice(&(v as u32).to_le_bytes());
    let mut out = Vec::new();
    put(&mut out, c.value_graphs.len());
    for (path, graphs) in &c.value_graphs {
        put(&mut out, path.len());
        out.extend_from_slice(path.as_bytes());
        put(&mut out, graphs.len());
        for (key, vg) in graphs {
            let g = &vg.graph;
            out.extend_from_slice(&key.to_le_bytes());
            put(&mut out, vg.slots.len());
            out.extend_from_slice(&g.entry.to_le_bytes());
            out.push(g.max_level);
            for s in &vg.slots {
                out.extend_from_slice(&s.to_le_bytes());
            }
            out.extend(vg.dead.iter().map(|&d| u8::from(d)));
            out.extend_from_slice(&g.levels);
            g.links0
                .write_words(|run| {
                    for x in run {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                    Ok::<(), std::convert::Infallible>(())
                })
                .unwrap_or_else(|never| match never {});
            for x in g.upper_starts() {
                out.extend_from_slice(&x.to_le_bytes());
            }
            put(&mut out, g.upper.word_len());
            g.upper
                .for_each_word(|x| out.extend_from_slice(&x.to_le_bytes()));
        }
    }
    out
}

/// Decodes and checks the value graphs of a collection whose records and indexes are decoded:
/// each path an index that can have them, each node a slot, the nodes still in the value
/// exactly the live records holding it, the links and levels those of a valid graph. An error
/// is the offset within `bytes` and what is wrong there.
fn decode_value_graphs(
    bytes: &[u8],
    c: &Collection,
) -> std::result::Result<BTreeMap<String, BTreeMap<u64, ValueGraph>>, (usize, String)> {
    let mut r = Reader::new(bytes);
    let cut = |r: &Reader| (r.pos(), "truncated".to_string());
    let (m, slots_n) = (c.config.m, c.slots());
    let (stride0, stride_up) = (1 + 2 * m, 1 + m);
    let mut all = BTreeMap::new();
    let paths = r.u32().ok_or_else(|| cut(&r))?;
    for _ in 0..paths {
        let at = r.pos();
        let len = r.u32().ok_or_else(|| cut(&r))? as usize;
        let path = r
            .take(len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| (at, "path is not UTF-8 or is cut off".to_string()))?
            .to_string();
        let index = c
            .indexes
            .get(&path)
            .filter(|i| i.kind != crate::payload::IndexKind::Float && i.value_graphs)
            .ok_or_else(|| {
                (
                    at,
                    format!("value graphs of '{path}', which has no such index"),
                )
            })?;
        if all.contains_key(&path) {
            return Err((at, format!("value graphs of '{path}' twice")));
        }
        let count = r.u32().ok_or_else(|| cut(&r))?;
        let mut graphs: BTreeMap<u64, ValueGraph> = BTreeMap::new();
        for _ in 0..count {
            let at = r.pos();
            let bad = |what: &str| (at, format!("value graph in '{path}': {what}"));
            let key = r.u64().ok_or_else(|| cut(&r))?;
            if graphs.keys().next_back().is_some_and(|&last| last >= key) {
                return Err(bad("keys out of order or repeated"));
            }
            let n = r.u32().ok_or_else(|| cut(&r))? as usize;
            let entry = r.u32().ok_or_else(|| cut(&r))?;
            let max_level = r.u8().ok_or_else(|| cut(&r))?;
            let words = |r: &mut Reader, n: usize| -> Option<Vec<u32>> {
                r.take(n.checked_mul(4)?).map(u32s)
            };
            let slots = words(&mut r, n).ok_or_else(|| cut(&r))?;
            let dead_bytes = r.take(n).ok_or_else(|| cut(&r))?;
            let levels = r.take(n).ok_or_else(|| cut(&r))?.to_vec();
            let links0 = words(&mut r, n.saturating_mul(stride0)).ok_or_else(|| cut(&r))?;
            let upper_start = words(&mut r, n).ok_or_else(|| cut(&r))?;
            let upper_len = r.u32().ok_or_else(|| cut(&r))? as usize;
            let upper = words(&mut r, upper_len).ok_or_else(|| cut(&r))?;
            let list = index.postings.get(&key).map_or(&[][..], |l| l.as_slice());
            let mut local = std::collections::HashMap::with_capacity(list.len());
            let mut dead = Vec::with_capacity(n);
            for (id, (&slot, &d)) in slots.iter().zip(dead_bytes).enumerate() {
                if slot as usize >= slots_n || d > 1 {
                    return Err(bad("a node's slot or left flag is out of range"));
                }
                dead.push(d == 1);
                if d == 0 {
                    let holds = list.binary_search(&slot).is_ok();
                    if !holds || local.insert(slot, id as u32).is_some() {
                        return Err(bad("a node in the value is not a live record holding it"));
                    }
                }
            }
            if local.len() != list.len() {
                return Err(bad("a live record holding the value is not in its graph"));
            }
            if levels.iter().any(|&l| l > MAX_LEVEL) {
                return Err(bad("level above the maximum"));
            }
            check_links(&links0, stride0, n)
                .map_err(|_| bad("layer-0 links: bad count or target"))?;
            let mut expected = 0usize;
            for id in 0..n {
                let level = levels[id] as usize;
                let ok = if level == 0 {
                    upper_start[id] == NONE
                } else {
                    upper_start[id] as usize == expected
                };
                if !ok {
                    return Err(bad("upper-layer offsets inconsistent with levels"));
                }
                expected += level * stride_up;
            }
            if expected != upper.len() {
                return Err(bad("upper-layer links: length inconsistent with levels"));
            }
            check_links(&upper, stride_up, n)
                .map_err(|_| bad("upper-layer links: bad count or target"))?;
            check_upper_levels(&upper, &upper_start, &levels, stride_up)
                .map_err(|_| bad("an upper link to a node without that layer"))?;
            let entry_ok = if n == 0 {
                entry == NONE && max_level == 0
            } else {
                (entry as usize) < n && levels[entry as usize] == max_level
            };
            if !entry_ok {
                return Err(bad("bad entry point"));
            }
            let links0 = Links0::from_words(&links0, m, Links0Kind::U32)
                .map_err(|e| bad(&format!("no memory for the links: {e}")))?;
            let upper = crate::hnsw::Upper::from_words(upper, m, Links0Kind::U32, levels.len())
                .map_err(|e| bad(&format!("no memory for the links: {e}")))?;
            graphs.insert(
                key,
                ValueGraph {
                    slots,
                    local,
                    dead,
                    graph: checked_graph(
                        m,
                        crate::value_graphs::ef_construction(c.config.ef_construction),
                        levels,
                        links0,
                        upper,
                        entry,
                        max_level,
                    ),
                },
            );
        }
        all.insert(path, graphs);
    }
    if r.remaining() != 0 {
        return Err((r.pos(), "unexpected trailing bytes".to_string()));
    }
    Ok(all)
}

/// A graph from its parts as read from a file, once checked (the main graph's sections and
/// each value graph's record).
#[allow(clippy::too_many_arguments)]
fn checked_graph(
    m: usize,
    ef_construction: usize,
    levels: Vec<u8>,
    links0: Links0,
    upper: crate::hnsw::Upper,
    entry: u32,
    max_level: u8,
) -> Graph {
    Graph {
        m,
        ef_construction,
        upper_base: crate::hnsw::upper_bases(&levels, m),
        upper,
        levels,
        links0,
        entry,
        max_level,
    }
}

/// Reads and fully checks a checkpoint. Any inconsistency is `Corrupted` with the file and the
/// offset of the part that is wrong; nothing here can panic on bad bytes.
pub(crate) fn decode(bytes: &[u8], file: &Path) -> Result<(Header, Vec<Collection>)> {
    decode_with_offsets(bytes, file).map(|(header, collections, _)| (header, collections))
}

/// [`decode`], also returning where each collection's vectors start in `bytes`.
pub(crate) fn decode_with_offsets(
    bytes: &[u8],
    file: &Path,
) -> Result<(Header, Vec<Collection>, Vec<u64>)> {
    let corrupt = |offset: usize, reason: String| Error::corrupted(file, offset as u64, reason);
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(
            0,
            format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[0..8] != MAGIC {
        return Err(corrupt(0, "not a Needle file (bad magic)".into()));
    }
    let mut r = Reader::new(&bytes[..HEADER_LEN]);
    r.take(8);
    let version = r.u32().unwrap_or(0);
    let stored_crc = u32::from_le_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]);
    if crc32c::crc32c(&bytes[0..60]) != stored_crc {
        return Err(corrupt(0, "header checksum mismatch".into()));
    }
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            file: file.to_path_buf(),
            found: version,
            supported: VERSION,
        });
    }
    let _flags = r.u32();
    let tag = r.u64().unwrap_or(0);
    let generation = r.u64().unwrap_or(0);
    let n_collections = r.u32().unwrap_or(0) as usize;

    let mut sections = SectionReader {
        bytes,
        pos: HEADER_LEN,
        file,
    };
    let mut collections: Vec<Collection> = Vec::new();
    let mut offsets = Vec::new();
    for _ in 0..n_collections {
        let (c, vectors_at) = decode_collection(&mut sections, version)?;
        offsets.push(vectors_at as u64);
        if collections.last().is_some_and(|prev| prev.name >= c.name) {
            return Err(corrupt(
                sections.pos,
                format!("collection '{}' is out of order or repeated", c.name),
            ));
        }
        collections.push(c);
    }
    if sections.pos != bytes.len() {
        return Err(corrupt(
            sections.pos,
            format!(
                "{} unexpected bytes after the last section",
                bytes.len() - sections.pos
            ),
        ));
    }
    Ok((Header { tag, generation }, collections, offsets))
}

struct SectionReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a Path,
}

impl<'a> SectionReader<'a> {
    fn corrupt(&self, offset: usize, reason: impl Into<String>) -> Error {
        Error::corrupted(self.file, offset as u64, reason)
    }

    fn no_memory(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(
            format!("allocating the {what} of {}", self.file.display()),
            e,
        )
    }

    /// Returns the payload of the next section, which must be of `kind`, and its offset.
    fn next(&mut self, kind: u32) -> Result<(&'a [u8], usize)> {
        let start = self.pos;
        let mut r = Reader::new(&self.bytes[start..]);
        let head = r
            .take(SECTION_HEADER)
            .ok_or_else(|| self.corrupt(start, "truncated: section header cut off"))?;
        let stored = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        if crc32c::crc32c(&head[0..12]) != stored {
            return Err(self.corrupt(start, "section header checksum mismatch"));
        }
        let found_kind = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if found_kind != kind {
            return Err(self.corrupt(
                start,
                format!("expected section kind {kind}, found {found_kind}"),
            ));
        }
        let len = u64::from_le_bytes(head[4..12].try_into().unwrap_or([0xff; 8]));
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= r.remaining())
            .ok_or_else(|| {
                self.corrupt(
                    start,
                    format!("truncated: section of {len} bytes runs past the end"),
                )
            })?;
        let payload_at = start + SECTION_HEADER;
        let payload = r
            .take(len)
            .ok_or_else(|| self.corrupt(payload_at, "truncated payload"))?;
        let crc = r
            .u32()
            .ok_or_else(|| self.corrupt(payload_at + len, "truncated: section checksum cut off"))?;
        if crc32c::crc32c(payload) != crc {
            return Err(self.corrupt(
                payload_at,
                format!("section kind {kind}: payload checksum mismatch"),
            ));
        }
        let pad = pad8(len as u64 + 4);
        r.take(pad)
            .ok_or_else(|| self.corrupt(payload_at + len + 4, "truncated: padding cut off"))?;
        self.pos = start + r.pos();
        Ok((payload, payload_at))
    }
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Reads one collection; returns it and where its vectors start.
fn decode_collection(s: &mut SectionReader, version: u32) -> Result<(Collection, usize)> {
    let (meta, at) = s.next(KIND_META)?;
    let file = s.file;
    let bad_meta =
        |reason: &str| Error::corrupted(file, at as u64, format!("collection meta: {reason}"));
    let mut r = Reader::new(meta);
    let name_len = r.u32().ok_or_else(|| bad_meta("truncated"))? as usize;
    let name = r
        .take(name_len)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| bad_meta("name is not UTF-8 or is cut off"))?
        .to_string();
    validate_collection_name(&name).map_err(|e| bad_meta(&e.to_string()))?;
    let dim = r.u64().ok_or_else(|| bad_meta("truncated"))? as usize;
    crate::collection::validate_dimensions(dim).map_err(|e| bad_meta(&e.to_string()))?;
    let distance = r
        .u8()
        .and_then(Distance::from_code)
        .ok_or_else(|| bad_meta("unknown distance"))?;
    let m = r.u32().ok_or_else(|| bad_meta("truncated"))? as usize;
    let ef_construction = r.u32().ok_or_else(|| bad_meta("truncated"))? as usize;
    let ef_search = r.u32().ok_or_else(|| bad_meta("truncated"))? as usize;
    let seed = r.u64().ok_or_else(|| bad_meta("truncated"))?;
    let mut config = CollectionConfig {
        distance,
        m,
        ef_construction,
        ef_search,
        seed,
        quantization: Quantization::None,
    };
    config.validate().map_err(|e| bad_meta(&e.to_string()))?;
    let n = r.u64().ok_or_else(|| bad_meta("truncated"))?;
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n < NONE as usize)
        .ok_or_else(|| bad_meta("too many slots"))?;
    let entry = r.u32().ok_or_else(|| bad_meta("truncated"))?;
    let max_level = r.u8().ok_or_else(|| bad_meta("truncated"))?;
    let quantization = if version >= 3 {
        r.u8()
            .and_then(Quantization::from_code)
            .ok_or_else(|| bad_meta("unknown quantization"))?
    } else {
        Quantization::None
    };
    config.quantization = quantization;
    if r.remaining() != 0 {
        return Err(bad_meta("unexpected trailing bytes"));
    }

    if version >= 4 {
        let (align, aat) = s.next(KIND_ALIGN)?;
        if align.iter().any(|&b| b != 0) {
            return Err(s.corrupt(aat, "alignment section: not zeros"));
        }
    }
    let (vbytes, vat) = s.next(KIND_VECTORS)?;
    if Some(vbytes.len()) != n.checked_mul(dim).and_then(|x| x.checked_mul(4)) {
        return Err(s.corrupt(
            vat,
            format!("vectors: {} bytes for {n} × {dim} floats", vbytes.len()),
        ));
    }
    let vectors: Vec<f32> = vbytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let vectors = Flat::try_from_slice(&vectors).map_err(|e| s.no_memory("vectors", e))?;
    if let Some(i) = vectors.iter().position(|x| !x.is_finite()) {
        return Err(s.corrupt(vat + i * 4, "vectors: a component is not finite"));
    }

    let (levels, lat) = s.next(KIND_LEVELS)?;
    if levels.len() != n {
        return Err(s.corrupt(
            lat,
            format!("levels: {} entries for {n} slots", levels.len()),
        ));
    }
    if let Some(i) = levels.iter().position(|&l| l > MAX_LEVEL) {
        return Err(s.corrupt(lat + i, "levels: level above the maximum"));
    }
    let levels = levels.to_vec();

    let stride0 = 1 + 2 * m;
    let (l0, l0at) = s.next(KIND_LINKS0)?;
    if l0.len() != n * stride0 * 4 {
        return Err(s.corrupt(l0at, "layer-0 links: wrong length"));
    }
    let links0 = u32s(l0);
    check_links(&links0, stride0, n)
        .map_err(|i| s.corrupt(l0at + i * 4, "layer-0 links: bad count or target"))?;
    // Packed in memory where the collection is quantized (the file holds `u32` words always).
    let links0_kind = Links0Kind::for_collection(quantization, dim, m);
    let links0 =
        Links0::from_words(&links0, m, links0_kind).map_err(|e| s.no_memory("layer-0 links", e))?;

    let (us, usat) = s.next(KIND_UPPER_START)?;
    if us.len() != n * 4 {
        return Err(s.corrupt(usat, "upper-layer offsets: wrong length"));
    }
    let upper_start = u32s(us);
    let (up, upat) = s.next(KIND_UPPER)?;
    if up.len() % 4 != 0 {
        return Err(s.corrupt(upat, "upper-layer links: length not a multiple of 4"));
    }
    let upper = u32s(up);
    let stride_up = 1 + m;
    let mut expected_start = 0usize;
    for slot in 0..n {
        let level = levels[slot] as usize;
        let start = upper_start[slot];
        let ok = if level == 0 {
            start == NONE
        } else {
            start as usize == expected_start
        };
        if !ok {
            return Err(s.corrupt(
                usat + slot * 4,
                "upper-layer offsets: inconsistent with levels",
            ));
        }
        expected_start += level * stride_up;
    }
    if expected_start != upper.len() {
        return Err(s.corrupt(upat, "upper-layer links: length inconsistent with levels"));
    }
    check_links(&upper, stride_up, n)
        .map_err(|i| s.corrupt(upat + i * 4, "upper-layer links: bad count or target"))?;
    check_upper_levels(&upper, &upper_start, &levels, stride_up).map_err(|i| {
        s.corrupt(
            upat + i * 4,
            "upper-layer links: a link to a node that does not reach that layer",
        )
    })?;
    if n == 0 {
        if entry != NONE || max_level != 0 {
            return Err(bad_meta("entry point set in an empty graph"));
        }
    } else if entry as usize >= n || levels[entry as usize] != max_level {
        return Err(bad_meta("entry point is not a node of the top level"));
    }

    let (rec, rat) = s.next(KIND_RECORDS)?;
    let mut r = Reader::new(rec);
    let mut ids = crate::ids::Ids::with_capacity(n, 0);
    let mut metadata = crate::metadata::Metadata::new();
    let mut deleted = Vec::with_capacity(n);
    let mut index = crate::id_index::IdIndex::new();
    for slot in 0..n {
        let at = rat + r.pos();
        let bad = |reason: &str| s.corrupt(at, format!("record of slot {slot}: {reason}"));
        let flag = r.u8().ok_or_else(|| bad("truncated"))?;
        if flag > 1 {
            return Err(bad("bad deleted flag"));
        }
        let id_len = r.u32().ok_or_else(|| bad("truncated"))? as usize;
        let id = r
            .take(id_len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| bad("id is not UTF-8 or is cut off"))?
            .to_string();
        if id.is_empty() || id.len() > crate::collection::MAX_ID_BYTES {
            return Err(bad("id length out of range"));
        }
        let meta_len = r.u32().ok_or_else(|| bad("truncated"))?;
        let meta = if meta_len == NO_METADATA {
            None
        } else {
            let json = r
                .take(meta_len as usize)
                .ok_or_else(|| bad("metadata cut off"))?;
            match serde_json::from_slice::<Value>(json) {
                Ok(v @ Value::Object(_)) => Some(v),
                _ => return Err(bad("metadata is not a JSON object")),
            }
        };
        ids.push(&id);
        if flag == 0 && !index.insert_unordered(&ids, slot as u32) {
            return Err(bad("id is live in two slots"));
        }
        if flag == 1 && meta.is_some() {
            return Err(bad("a deleted record carries metadata"));
        }
        metadata.push(meta);
        deleted.push(flag == 1);
    }
    if r.remaining() != 0 {
        return Err(s.corrupt(rat + r.pos(), "records: unexpected trailing bytes"));
    }
    index.sort_order(&ids);
    let live = index.len();
    let indexes = if version >= 2 {
        let (ibytes, iat) = s.next(KIND_INDEXES)?;
        let indexes = crate::payload::codec::decode(ibytes, &name, &deleted, version)
            .map_err(|(off, reason)| s.corrupt(iat + off, format!("payload indexes: {reason}")))?;
        for (path, idx) in &indexes {
            let disagrees = (0..n).find(|&slot| {
                !deleted[slot] && !idx.agrees_with(slot as u32, metadata[slot].as_ref())
            });
            if let Some(slot) = disagrees {
                return Err(s.corrupt(
                    iat,
                    format!(
                        "payload index '{path}': slot {slot} disagrees with its record's metadata"
                    ),
                ));
            }
        }
        indexes
    } else {
        std::collections::BTreeMap::new()
    };
    let sq8 = if version >= 3 {
        let (qbytes, qat) = s.next(KIND_SQ8)?;
        decode_sq8(qbytes, dim, n, &config, &vectors)
            .map_err(|(off, reason)| s.corrupt(qat + off, format!("sq8: {reason}")))?
    } else {
        None
    };
    let mut collection = Collection {
        sq8,
        codes: None,
        value_graphs: std::collections::BTreeMap::new(),
        waiting_value_graphs: std::collections::BTreeMap::new(),
        spare_value_graphs: std::collections::BTreeMap::new(),
        ordered: std::collections::BTreeMap::new(),
        indexes,
        kernel: kernel_for(config.distance),
        graph: checked_graph(
            m,
            ef_construction,
            levels,
            links0,
            crate::hnsw::Upper::from_words(upper, m, links0_kind, n)
                .map_err(|e| s.no_memory("upper-layer links", e))?,
            entry,
            max_level,
        ),
        name,
        dim,
        config,
        vectors: Vectors::from_flat(vectors),
        ids,
        metadata,
        deleted: deleted.into_iter().collect(),
        live,
        index,
    };
    // Derived from the vectors, never stored: built again at open.
    collection.sync_codes();
    // Version 4 and older files have none: they open with no value graphs, so opening builds
    // nothing; every value held by at least the threshold waits (below), and the eligible
    // ones get their graphs at the next write, as on every replica applying it.
    if version >= 5 {
        let (gbytes, gat) = s.next(KIND_VALUE_GRAPHS)?;
        collection.value_graphs = decode_value_graphs(gbytes, &collection)
            .map_err(|(off, reason)| s.corrupt(gat + off, format!("value graphs: {reason}")))?;
    }
    // Derived from the indexes and the graphs: the values that wait for a graph.
    let paths: Vec<String> = collection.indexes.keys().cloned().collect();
    for path in paths {
        collection.find_waiting_value_graphs(&path);
    }
    Ok((collection, vat))
}

/// The sq8 section: nothing, or the trained ranges, from which the codes are computed again.
fn decode_sq8(
    bytes: &[u8],
    dim: usize,
    n: usize,
    config: &CollectionConfig,
    vectors: &[f32],
) -> std::result::Result<Option<Sq8>, (usize, String)> {
    let mut r = Reader::new(bytes);
    let trained = r.u8().ok_or((0, "truncated".to_string()))?;
    let sq8 = match trained {
        0 => None,
        1 => {
            if config.quantization != Quantization::Sq8 {
                return Err((
                    0,
                    "ranges stored for a collection that does not quantize".into(),
                ));
            }
            let trained_slots = r.u64().ok_or((1, "truncated".to_string()))?;
            let scale = r
                .u32()
                .map(f32::from_bits)
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or((9, "scale missing, not finite or not positive".to_string()))?;
            let mut offsets = Vec::with_capacity(dim);
            for d in 0..dim {
                let o = r
                    .u32()
                    .map(f32::from_bits)
                    .filter(|o| o.is_finite())
                    .ok_or((13 + 4 * d, "offset missing or not finite".to_string()))?;
                offsets.push(o);
            }
            if trained_slots == 0 || trained_slots > n as u64 {
                return Err((1, format!("trained at {trained_slots} slots of {n}")));
            }
            let ranges = Sq8Ranges { offsets, scale };
            Some(Sq8::reencoded(
                ranges,
                vectors.chunks_exact(dim),
                trained_slots,
            ))
        }
        other => return Err((0, format!("bad flag {other}"))),
    };
    if r.remaining() != 0 {
        return Err((r.pos(), "unexpected trailing bytes".into()));
    }
    Ok(sq8)
}

/// Checks every `[count, targets..]` block: count within the stride, targets within `n`.
/// Returns the index of the first bad word.
fn check_links(links: &[u32], stride: usize, n: usize) -> std::result::Result<(), usize> {
    for (b, block) in links.chunks_exact(stride).enumerate() {
        let count = block[0] as usize;
        if count > stride - 1 {
            return Err(b * stride);
        }
        if let Some(i) = block[1..1 + count].iter().position(|&t| t as usize >= n) {
            return Err(b * stride + 1 + i);
        }
    }
    Ok(())
}

/// Checks that every link on layer ℓ points at a node whose level is at least ℓ, so a descent
/// never steps onto a node without that layer. Returns the index of the first bad word.
fn check_upper_levels(
    upper: &[u32],
    upper_start: &[u32],
    levels: &[u8],
    stride: usize,
) -> std::result::Result<(), usize> {
    for (slot, &start) in upper_start.iter().enumerate() {
        if start == NONE {
            continue;
        }
        for layer in 1..=levels[slot] as usize {
            let base = start as usize + (layer - 1) * stride;
            let Some(block) = upper.get(base..base + stride) else {
                return Err(base);
            };
            let count = (block[0] as usize).min(stride - 1);
            for (i, &t) in block[1..1 + count].iter().enumerate() {
                if levels.get(t as usize).is_none_or(|&l| (l as usize) < layer) {
                    return Err(base + 1 + i);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::Prepared;

    fn collection_with_upper_layers() -> Collection {
        let mut c = Collection::new(
            "c",
            2,
            CollectionConfig {
                m: 2,
                ..Default::default()
            },
        );
        let records = (0..200)
            .map(|i| Prepared {
                id: format!("r{i}"),
                vector: vec![1.0 + i as f32, (i % 7) as f32 + 0.5],
                metadata: None,
            })
            .collect();
        c.apply_batch(records);
        c
    }

    fn encoded(c: &Collection) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(&mut bytes, Header::default(), std::iter::once(c)).unwrap();
        bytes
    }

    /// A checkpoint whose layer-0 words sit at the limits opens packed with exactly those links
    /// (every count 2·m, every target the last slot of a power-of-two node count, the widest
    /// a link gets at that count); one past a limit (a count of 2·m + 1 or `u32::MAX`, a
    /// target equal to the node count or `u32::MAX`) is a typed error, never a panic (break15).
    #[test]
    fn layer0_words_at_their_limits_open_packed_or_give_a_typed_error() {
        use crate::hnsw::MAX_LINKS;
        let (dim, m, n) = (8usize, 2usize, 1024usize);
        let config = CollectionConfig {
            m,
            ef_construction: 16,
            quantization: Quantization::Sq8,
            ..Default::default()
        };
        let mut c = Collection::new("c", dim, config);
        let records = (0..n)
            .map(|i| Prepared {
                id: format!("r{i}"),
                vector: (0..dim).map(|d| ((i * 31 + d * 7) % 97) as f32).collect(),
                metadata: None,
            })
            .collect();
        c.apply_batch(records);
        let bytes = encoded(&c);
        let stride = 1 + 2 * m;
        let len = (n * stride * 4) as u64;
        // The layer-0 section: its kind, its length and a header checksum that holds.
        let at = (0..bytes.len() - 16)
            .find(|&i| {
                bytes[i..i + 4] == KIND_LINKS0.to_le_bytes()
                    && bytes[i + 4..i + 12] == len.to_le_bytes()
                    && crc32c::crc32c(&bytes[i..i + 12]).to_le_bytes() == bytes[i + 12..i + 16]
            })
            .expect("the layer-0 section")
            + SECTION_HEADER;
        let with = |edit: &dyn Fn(&mut [u32])| {
            let mut b = bytes.clone();
            let mut words = u32s(&b[at..at + len as usize]);
            edit(&mut words);
            for (i, w) in words.iter().enumerate() {
                b[at + 4 * i..at + 4 * i + 4].copy_from_slice(&w.to_le_bytes());
            }
            let crc = crc32c::crc32c(&b[at..at + len as usize]);
            b[at + len as usize..at + len as usize + 4].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let full = with(&|w: &mut [u32]| {
            for block in w.chunks_exact_mut(stride) {
                block[0] = 2 * m as u32;
                block[1..].iter_mut().for_each(|t| *t = n as u32 - 1);
            }
        });
        let (_, back) = decode(&full, Path::new("t")).expect("links at their limits open");
        assert_eq!(back[0].graph.links0.kind(), Links0Kind::Packed);
        let mut buf = [0u32; MAX_LINKS];
        for s in 0..n as u32 {
            assert_eq!(
                back[0].graph.links0.get(s, &mut buf),
                &[n as u32 - 1; 4][..]
            );
        }
        type Edit<'a> = &'a dyn Fn(&mut [u32]);
        let past: [(&str, Edit); 4] = [
            ("count 2m + 1", &|w| w[stride * (n - 1)] = 2 * m as u32 + 1),
            ("count u32::MAX", &|w| w[0] = u32::MAX),
            ("target n", &|w| {
                w[stride * 7] = 1;
                w[stride * 7 + 1] = n as u32;
            }),
            ("target u32::MAX", &|w| {
                w[stride * (n - 1)] = 2 * m as u32;
                w[stride * n - 1] = u32::MAX;
            }),
        ];
        for (what, edit) in past {
            let err = decode(&with(edit), Path::new("t")).err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.to_string().contains("layer-0 links")),
                "{what}: {err:?}"
            );
        }
    }

    /// An sq8 collection holds its layer-0 links packed. The same writes into one forced to
    /// hold `u32` links give the same graph, the same hits and, once read back packed (which
    /// sorts each node's links), the same checkpoint bytes (so the same `state_checksum`), through growth past powers of two (1,024 and 2,048 nodes),
    /// the training of the ranges, deletes and compaction; the file reopens packed, with the
    /// same graph and bytes, and opened forced to `u32` links is the same again.
    #[test]
    fn sq8_collections_pack_their_links_and_write_the_same_bytes() {
        use crate::hnsw::{Links0Kind, forcing};
        let seeds: Vec<u64> = match std::env::var("NEEDLE_SEED") {
            Ok(s) => vec![s.parse().expect("NEEDLE_SEED is a number")],
            Err(_) => vec![1, 2],
        };
        for seed in seeds {
            eprintln!("NEEDLE_SEED={seed}");
            for (dim, m) in [(8usize, 2usize), (50, 16), (5, 128)] {
                let case = format!("seed {seed} dim {dim} m {m}");
                let config = CollectionConfig {
                    m,
                    ef_construction: 24,
                    seed,
                    quantization: Quantization::Sq8,
                    ..Default::default()
                };
                let mut x = seed ^ (dim * 1000 + m) as u64;
                let mut next = move || {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 40) as f32 / (1u64 << 24) as f32
                };
                let mut packed = Collection::new("c", dim, config.clone());
                let mut wide = forcing(Links0Kind::U32, || Collection::new("c", dim, config));
                assert_eq!(packed.graph.links0.kind(), Links0Kind::Packed, "{case}");
                assert_eq!(wide.graph.links0.kind(), Links0Kind::U32, "{case}");
                // The upper layers take the form of layer 0.
                assert!(packed.graph.upper.packed_bits().is_some(), "{case}");
                assert!(wide.graph.upper.packed_bits().is_none(), "{case}");
                let n = if m >= 64 { 1_300 } else { 2_300 };
                let mut made = 0;
                while made < n {
                    let batch: Vec<Prepared> = (made..(made + 450).min(n))
                        .map(|i| Prepared {
                            id: format!("r{i}"),
                            vector: (0..dim).map(|_| next()).collect(),
                            metadata: None,
                        })
                        .collect();
                    made += batch.len();
                    packed.apply_batch(batch.clone());
                    wide.apply_batch(batch);
                    for i in (0..made).filter(|i| i % 11 == made % 7) {
                        let id = format!("r{i}");
                        assert_eq!(packed.apply_delete(&id), wide.apply_delete(&id), "{case}");
                    }
                }
                assert!(packed.sq8.is_some(), "{case}: trained");
                let same =
                    |a: &Collection, b: &Collection, what: &str, next: &mut dyn FnMut() -> f32| {
                        assert_eq!(a.graph, b.graph, "{case}: {what}: graph");
                        // The `u32` form writes each node's links in the order set, the
                        // packed form sorted: the same bytes once read back packed.
                        let canonical = |c: &Collection| {
                            let (_, back) = decode(&encoded(c), Path::new("t")).expect("own file");
                            assert_eq!(back[0].graph.links0.kind(), Links0Kind::Packed);
                            encoded(&back[0])
                        };
                        let bytes = canonical(a);
                        assert!(bytes == canonical(b), "{case}: {what}: checkpoint bytes");
                        for c in [a, b] {
                            if c.graph.links0.kind() == Links0Kind::Packed {
                                assert!(encoded(c) == bytes, "{case}: {what}: packed bytes");
                            }
                        }
                        let opts = crate::SearchOptions::default();
                        for _ in 0..10 {
                            let q: Vec<f32> = (0..dim).map(|_| next()).collect();
                            let (ha, hb) = (a.search(&q, 10, &opts), b.search(&q, 10, &opts));
                            let key = |h: crate::Result<Vec<crate::collection::Hit>>| {
                                h.expect("a valid query")
                                    .iter()
                                    .map(|h| (h.slot, h.distance.to_bits()))
                                    .collect::<Vec<_>>()
                            };
                            assert_eq!(key(ha), key(hb), "{case}: {what}: hits");
                        }
                    };
                same(&packed, &wide, "built", &mut next);
                let packed_c = packed.compacted().expect("memory");
                let wide_c = forcing(Links0Kind::U32, || wide.compacted().expect("memory"));
                assert_eq!(packed_c.graph.links0.kind(), Links0Kind::Packed, "{case}");
                assert_eq!(wide_c.graph.links0.kind(), Links0Kind::U32, "{case}");
                same(&packed_c, &wide_c, "compacted", &mut next);
                let bytes = encoded(&packed);
                let (_, back) = decode(&bytes, Path::new("t")).expect("its own file");
                assert_eq!(back[0].graph.links0.kind(), Links0Kind::Packed, "{case}");
                same(&back[0], &packed, "reopened", &mut next);
                let (_, back) = forcing(Links0Kind::U32, || decode(&bytes, Path::new("t")))
                    .expect("its own file");
                assert_eq!(back[0].graph.links0.kind(), Links0Kind::U32, "{case}");
                same(&back[0], &packed, "reopened as u32", &mut next);
            }
        }
    }

    #[test]
    fn round_trip() {
        let c = collection_with_upper_layers();
        let (_, back) = decode(&encoded(&c), Path::new("t")).unwrap();
        assert_eq!(back[0].vectors, c.vectors);
        assert_eq!(back[0].graph, c.graph);
        assert_eq!(back[0].ids, c.ids);
    }

    /// Version 1 files (no index section) still open, with no indexes; version 2 files (no
    /// quantization) open without one; version 3 files carry the indexes and decode to the
    /// same ones.
    #[test]
    fn version_1_and_2_files_open_and_indexes_round_trip() {
        let mut c = collection_with_upper_layers();
        for version in [1, 2, 3] {
            let mut old = Vec::new();
            encode_version(&mut old, Header::default(), std::iter::once(&c), version).unwrap();
            let (_, back) = decode(&old, Path::new("t")).unwrap();
            assert_eq!(back[0].graph, c.graph, "version {version}");
            assert_eq!(back[0].vectors, c.vectors, "version {version}");
            if version == 3 {
                continue;
            }
            assert!(back[0].indexes.is_empty());
            assert_eq!(back[0].config.quantization, Quantization::None);
            assert!(back[0].sq8.is_none());
        }

        for i in 0..c.slots() {
            let m = serde_json::json!({"k": format!("w{}", i % 3), "n": [i % 5, 7]});
            c.metadata.set(i, Some(m));
        }
        let idx = c.prepare_index("k", crate::IndexKind::Keyword).unwrap();
        c.apply_create_index(idx);
        let idx = c.prepare_index("n", crate::IndexKind::Integer).unwrap();
        c.apply_create_index(idx);
        let (_, back) = decode(&encoded(&c), Path::new("t")).unwrap();
        assert_eq!(back[0].indexes, c.indexes);
    }

    /// Value graphs are stored as they are: decoding gives the same graphs; a version 4 file
    /// (no value-graph section) opens with none; a flipped byte in the section is refused.
    #[test]
    fn value_graphs_round_trip_and_version_4_files_open_without_them() {
        crate::value_graphs::set_min_records_here(40);
        let mut c = collection_with_upper_layers();
        for i in 0..c.slots() {
            let m = serde_json::json!({"k": format!("w{}", i % 4), "n": i % 3 == 0});
            c.metadata.set(i, Some(m));
        }
        for (path, kind) in [
            ("k", crate::IndexKind::Keyword),
            ("n", crate::IndexKind::Bool),
        ] {
            let idx = c.prepare_index(path, kind).unwrap();
            c.apply_create_index(idx);
        }
        c.apply_delete("r7");
        c.apply_update("r9", None, Some(serde_json::json!({"k": "w0"})));
        crate::value_graphs::set_min_records_here(0);
        // Four keywords of 50 records (one graph each) and `n: true` (67 of 200).
        assert_eq!(c.value_graphs["k"].len(), 4);
        assert_eq!(c.value_graphs["n"].len(), 1);
        let bytes = encoded(&c);
        let (_, back) = decode(&bytes, Path::new("t")).unwrap();
        assert_eq!(back[0].value_graphs, c.value_graphs);

        let mut old = Vec::new();
        encode_version(&mut old, Header::default(), std::iter::once(&c), 4).unwrap();
        let (_, back) = decode(&old, Path::new("t")).unwrap();
        assert!(back[0].value_graphs.is_empty());
        assert_eq!(back[0].indexes, c.indexes);

        // The last section of the file is the value graphs': flip a byte of its payload.
        let mut bad = bytes.clone();
        let at = bad.len() - 64;
        bad[at] ^= 0x10;
        let err = decode(&bad, Path::new("t")).unwrap_err();
        assert!(
            err.to_string().contains("kind 11"),
            "a flipped byte in the value graphs must be refused: {err}"
        );
    }

    /// From version 4 every collection's vectors start on a page boundary, where `encode` says.
    #[test]
    fn vectors_start_on_a_page() {
        let a = collection_with_upper_layers();
        let mut b = collection_with_upper_layers();
        b.name = "second".into();
        let mut bytes = Vec::new();
        let written = encode(&mut bytes, Header::default(), [&a, &b].into_iter()).unwrap();
        let (_, back, read) = decode_with_offsets(&bytes, Path::new("t")).unwrap();
        assert_eq!(written, read);
        assert_eq!(written.len(), 2);
        for (at, c) in written.iter().zip(&back) {
            assert_eq!(at % VECTORS_ALIGN, 0);
            let first =
                f32::from_le_bytes(bytes[*at as usize..*at as usize + 4].try_into().unwrap());
            assert_eq!(first, c.vectors.get(0, 1)[0]);
        }
    }

    /// Checksums only prove the bytes are the ones written; a file written with a bad link (by a
    /// bug or by hand, checksums recomputed) must still be refused, not panic a search.
    #[test]
    fn an_upper_link_to_a_node_without_that_layer_is_refused() {
        let mut c = collection_with_upper_layers();
        let g = &c.graph;
        let low = (0..g.len()).find(|&s| g.levels[s] == 0).unwrap() as u32;
        let high = (0..g.len()).find(|&s| g.levels[s] >= 1).unwrap();
        let at = g.upper_starts().nth(high).unwrap() as usize;
        let words = c.graph.upper.words_mut();
        words[at] = words[at].max(1);
        words[at + 1] = low;
        let err = decode(&encoded(&c), Path::new("t")).unwrap_err();
        assert!(
            err.to_string().contains("does not reach that layer"),
            "{err}"
        );
    }
}
