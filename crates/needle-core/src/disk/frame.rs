//! The CRC-framed record log shared by the database's write-ahead log and needle-raft's log:
//! how a record is framed, and how a log's bytes are read back — the records, and how the log
//! ends (cleanly, in a torn tail, or in corruption).
//!
//! A frame is `len: u32 LE | crc: u32 LE | payload`, with `1 ≤ len ≤ MAX_PAYLOAD` (an empty
//! payload is never valid, so zeroed bytes are never a record). Knows nothing of what the
//! payloads mean: the caller passes a decoder, and a frame is *valid* when its CRC matches and
//! its payload decodes.
//!
//! # The checksum is bound to the frame's place
//!
//! In the current format ([`Seal::Bound`]) the CRC is `crc32c(salt ‖ offset ‖ payload)`: `salt`
//! a random `u64` drawn when the log file is started (kept in its header), `offset` the frame's
//! own offset in the file (both little-endian `u64`). A frame image anywhere else — inside a
//! record's payload (user data: vector bytes, ids, metadata), at another offset, or left over
//! from an earlier life of the file under another salt — does not verify, so a torn record
//! whose bytes happen to spell a frame is still a torn tail. Logs of the first format
//! ([`Seal::Payload`], `crc32c(payload)`) are still read, and appended to, as they were.
//!
//! # Torn or corrupted
//!
//! [`scan`] reads frames from the start. At the first frame that is not valid (cut short, a bad
//! length, a CRC mismatch, a payload that does not decode), it asks whether any valid frame
//! exists anywhere after it — first where the bad frame's own length says the next one starts,
//! then at every later byte (the length field may be the damaged part):
//! - none: the log ends in a **torn tail** — a write cut short by a crash, never acknowledged —
//!   and the bytes from the bad frame on may be cut;
//! - one or more: the bad frame is **corruption** (a record that was complete and acknowledged,
//!   since something was written after it): nothing may be cut.
//!
//! A frame whose CRC matches but whose payload does not decode is whole (no tear makes a CRC
//! match): it is corruption wherever it is, with nothing searched for after it.
//!
//! When in doubt the answer is corruption. There is no budget that gives up on the search: every
//! later byte is considered, in time `O(n log n)` for `n` bytes after the bad frame (the CRC of
//! every candidate is derived from running CRCs of the log, never recomputed over its payload).
//!
//! ```
//! use needle_core::disk::frame::{self, End, Seal};
//!
//! let seal = Seal::Bound { salt: 0x5eed };
//! let mut log = Vec::new();
//! frame::encode_into(&mut log, seal, 0, b"first");
//! frame::encode_into(&mut log, seal, 13, b"second");
//! let torn = log.len() - 3;
//! let scan = frame::scan(&log[..torn], seal, 0, |p| Some(p.to_vec()));
//! assert_eq!(scan.records.len(), 1);
//! assert_eq!(scan.end, End::Torn { offset: 13, bytes: torn as u64 - 13 });
//!
//! log[9] ^= 1; // a bit flipped in the first record, with a valid one after it
//! let scan = frame::scan(&log, seal, 0, |p| Some(p.to_vec()));
//! assert!(matches!(scan.end, End::Corrupted { offset: 0, .. }));
//!
//! // The same bytes one byte further on, or under another salt, are no frames at all.
//! let mut moved = vec![0u8];
//! moved.extend_from_slice(&log[13..]);
//! assert!(frame::scan(&moved, seal, 0, |p| Some(p.to_vec())).records.is_empty());
//! let other = Seal::Bound { salt: 0x5eee };
//! assert!(frame::scan(&log[13..], other, 13, |p| Some(p.to_vec())).records.is_empty());
//! ```

/// Bytes before each payload: its length and its CRC-32C.
pub const HEADER: usize = 8;
/// The largest payload a frame may carry (1 GiB).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// How the frames of one log file are checksummed: which format version wrote the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Seal {
    /// The first format: `crc32c(payload)`. A frame image verifies wherever it is found, so a
    /// torn record whose payload spells a frame reads as corruption. Only for logs written by
    /// the first format, which are still read and appended to.
    Payload,
    /// The current format: `crc32c(salt ‖ offset ‖ payload)` (little-endian `u64`s), `offset`
    /// the frame's offset in its file and `salt` the file's, from its header.
    Bound {
        /// Drawn at random when the log file is started (see [`crate::disk::Disk::new_salt`]).
        salt: u64,
    },
}

impl Seal {
    /// The CRC of a frame holding `payload` at `offset` of its file.
    pub fn crc(self, offset: u64, payload: &[u8]) -> u32 {
        match self.prefix_crc(offset) {
            None => crc32c::crc32c(payload),
            Some(prefix) => crc32c::crc32c_append(prefix, payload),
        }
    }

    /// `crc32c(salt ‖ offset)`, the CRC a bound frame's payload continues.
    fn prefix_crc(self, offset: u64) -> Option<u32> {
        match self {
            Seal::Payload => None,
            Seal::Bound { salt } => {
                let mut prefix = [0u8; 16];
                prefix[..8].copy_from_slice(&salt.to_le_bytes());
                prefix[8..].copy_from_slice(&offset.to_le_bytes());
                Some(crc32c::crc32c(&prefix))
            }
        }
    }
}

/// Appends the frame of `payload`, to be stored at `offset` of its file, to `out`.
///
/// # Panics
/// If `payload` is empty or longer than [`MAX_PAYLOAD`]: callers check sizes first (a frame
/// that could not be read back must never be written).
pub fn encode_into(out: &mut Vec<u8>, seal: Seal, offset: u64, payload: &[u8]) {
    assert!(
        !payload.is_empty() && payload.len() <= MAX_PAYLOAD,
        "frame payload of {} bytes: callers keep payloads in 1..=MAX_PAYLOAD",
        payload.len()
    );
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&seal.crc(offset, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The frame of `payload` at `offset` (see [`encode_into`]).
pub fn encode(seal: Seal, offset: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, seal, offset, payload);
    out
}

/// The reason of [`End::Corrupted`] for a whole frame — its checksum matches — whose payload the
/// decoder refuses (written by a newer build, or by a bug). A tear cannot make a checksum match,
/// so such a frame is an acknowledged write: it is corruption wherever it is, even last.
pub const UNDECODABLE: &str = "a whole frame (its checksum matches) whose payload does not decode";

/// The reason of [`End::Corrupted`] for a last frame that is whole and one flipped bit away from
/// a valid frame (in its length, its checksum or its payload). A crash tears whole sectors (the
/// file keeps a prefix of the write, or zeros, or the sector's older bytes), which leaves a
/// frame cut short or wrong in many bits; a frame that is complete and wrong in exactly one bit
/// is bit rot of a write that was made durable — and may have been acknowledged — so it is
/// corruption even last, and nothing is cut. (Rot of two or more bits in the last frame still
/// reads as a torn tail: see `docs/file-format.md`.)
pub const ONE_BIT: &str =
    "a whole last frame one flipped bit away from valid (bit rot, not a torn write)";

/// One valid frame: where it starts and what its payload decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// Offset of the frame (its length field) in its file.
    pub offset: u64,
    /// Offset just past the frame: where the next one starts.
    pub end: u64,
    /// The decoded payload.
    pub value: T,
}

/// How a log ends. Offsets are offsets in the file (the scanned bytes start at `base`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a valid frame.
    Clean,
    /// The `bytes` from `offset` to the end hold no valid frame: a torn write, safe to cut.
    Torn { offset: u64, bytes: u64 },
    /// The frame at `offset` is bad, and a valid frame follows it (at `next_valid`): the log is
    /// damaged in the middle. Nothing may be cut. Also a whole frame that does not decode
    /// (`reason` [`UNDECODABLE`]), wherever it is; `next_valid` is then where it ends.
    Corrupted {
        offset: u64,
        next_valid: u64,
        reason: &'static str,
    },
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan<T> {
    /// Offset in the file of the first scanned byte.
    pub base: u64,
    /// The valid frames before the end, in order.
    pub records: Vec<Record<T>>,
    /// How the log ends, after the last record.
    pub end: End,
}

impl<T> Scan<T> {
    /// Offset in the file of the end of the last valid record (where a torn tail starts);
    /// `base` when there is none.
    pub fn valid_len(&self) -> u64 {
        self.records.last().map_or(self.base, |r| r.end)
    }
}

/// Reads the frames of `bytes`, which start at offset `base` of a file sealed with `seal`,
/// decoding each payload with `decode` (`None`: the payload is not a record, which counts as a
/// bad frame like a CRC mismatch). Every offset in the result is an offset in the file.
pub fn scan<T>(
    bytes: &[u8],
    seal: Seal,
    base: u64,
    decode: impl Fn(&[u8]) -> Option<T>,
) -> Scan<T> {
    let at = |pos: usize| base + pos as u64;
    let mut records = Vec::new();
    let mut pos = 0usize;
    let end = loop {
        if pos >= bytes.len() {
            break End::Clean;
        }
        match frame_at(bytes, seal, base, pos, &decode) {
            Ok((value, next)) => {
                records.push(Record {
                    offset: at(pos),
                    end: at(next),
                    value,
                });
                pos = next;
            }
            Err(reason) if reason == UNDECODABLE => {
                // Its checksum matches: a whole write, which no tear makes. Never torn.
                let next = pos + HEADER + plausible_len(bytes, pos).unwrap_or(0);
                break End::Corrupted {
                    offset: at(pos),
                    next_valid: at(next),
                    reason,
                };
            }
            Err(reason) => {
                break match valid_frame_after(bytes, seal, base, pos, &decode) {
                    Some(next_valid) => End::Corrupted {
                        offset: at(pos),
                        next_valid: at(next_valid),
                        reason,
                    },
                    None => match one_bit_from_valid(bytes, seal, base, pos, &decode) {
                        // A whole frame one flipped bit away from valid: rot of an
                        // acknowledged write, which no tear makes. Never cut.
                        Some(next) => End::Corrupted {
                            offset: at(pos),
                            next_valid: at(next),
                            reason: ONE_BIT,
                        },
                        None => End::Torn {
                            offset: at(pos),
                            bytes: (bytes.len() - pos) as u64,
                        },
                    },
                };
            }
        }
    };
    Scan { base, records, end }
}

/// The length field at `pos`, if it can describe a frame that fits in `bytes`.
fn plausible_len(bytes: &[u8], pos: usize) -> Option<usize> {
    let head = bytes.get(pos..pos.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    ((1..=MAX_PAYLOAD).contains(&len) && len <= bytes.len() - pos - HEADER).then_some(len)
}

/// The valid frame at `pos`: its decoded payload and where the next frame starts.
fn frame_at<T>(
    bytes: &[u8],
    seal: Seal,
    base: u64,
    pos: usize,
    decode: &impl Fn(&[u8]) -> Option<T>,
) -> Result<(T, usize), &'static str> {
    let Some(head) = bytes.get(pos..pos + HEADER) else {
        return Err("frame header cut short");
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 {
        return Err("zero-length frame");
    }
    if len > MAX_PAYLOAD {
        return Err("frame length over the maximum");
    }
    let Some(payload) = bytes.get(pos + HEADER..).and_then(|rest| rest.get(..len)) else {
        return Err("frame runs past the end of the log");
    };
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if seal.crc(base + pos as u64, payload) != crc {
        return Err("frame checksum mismatch");
    }
    let value = decode(payload).ok_or(UNDECODABLE)?;
    Ok((value, pos + HEADER + len))
}

/// Where the first valid frame after a bad one at `bad` starts, if there is one: first where
/// the bad frame's length says the next one starts, then every later offset.
fn valid_frame_after<T>(
    bytes: &[u8],
    seal: Seal,
    base: u64,
    bad: usize,
    decode: &impl Fn(&[u8]) -> Option<T>,
) -> Option<usize> {
    if let Some(len) = plausible_len(bytes, bad) {
        let next = bad + HEADER + len;
        if frame_at(bytes, seal, base, next, decode).is_ok() {
            return Some(next);
        }
    }
    // Candidates in chunks, so memory stays bounded whatever the bytes hold.
    const CHUNK: usize = 1 << 20;
    let mut p = bad + 1;
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    while p < bytes.len() {
        candidates.clear();
        while p < bytes.len() && candidates.len() < CHUNK {
            if let Some(len) = plausible_len(bytes, p) {
                candidates.push((p, len));
            }
            p += 1;
        }
        if candidates.is_empty() {
            continue;
        }
        let crcs = payload_crcs(bytes, &candidates);
        for (&(at, len), &payload_crc) in candidates.iter().zip(&crcs) {
            // crc(prefix ‖ payload) = crc(prefix)·x^(8·len) ⊕ crc(payload) (zlib's crc32_combine).
            let crc = match seal.prefix_crc(base + at as u64) {
                None => payload_crc,
                Some(prefix) => gf2::shift(prefix, len as u64) ^ payload_crc,
            };
            let stored =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            if crc == stored && decode(&bytes[at + HEADER..at + HEADER + len]).is_some() {
                return Some(at);
            }
        }
    }
    None
}

/// Where the frame at `bad` ends if it is whole and exactly one bit away from a valid frame:
/// one bit of its length field (the frame with the corrected length fits in `bytes`, its CRC
/// matches and its payload decodes), of its CRC field, or of its payload. The payload case
/// needs no trial CRCs: flipping bit `b` of payload byte `j` of an `L`-byte payload changes the
/// CRC by `x^(31 − b + 8(L − j)) mod P` whatever the bytes, so the syndrome (stored ⊕ computed
/// CRC) names the bit, found by stepping through the powers of `x` — `8L` shifts, once per
/// torn tail at most.
fn one_bit_from_valid<T>(
    bytes: &[u8],
    seal: Seal,
    base: u64,
    bad: usize,
    decode: &impl Fn(&[u8]) -> Option<T>,
) -> Option<usize> {
    let head = bytes.get(bad..bad.checked_add(HEADER)?)?;
    let stored_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let stored_crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let offset = base + bad as u64;
    let fits = |len: usize| (1..=MAX_PAYLOAD).contains(&len) && len <= bytes.len() - bad - HEADER;
    // The length field as stored: the CRC field or one payload bit is the flipped one.
    let len = stored_len as usize;
    if fits(len) {
        let payload = &bytes[bad + HEADER..bad + HEADER + len];
        let syndrome = seal.crc(offset, payload) ^ stored_crc;
        if syndrome.count_ones() == 1 && decode(payload).is_some() {
            return Some(bad + HEADER + len);
        }
        if let Some((j, b)) = gf2::single_bit(syndrome, len) {
            let mut fixed = payload.to_vec();
            fixed[j] ^= 1 << b;
            if seal.crc(offset, &fixed) == stored_crc && decode(&fixed).is_some() {
                return Some(bad + HEADER + len);
            }
        }
    }
    // One bit of the length field is the flipped one: the frame of the corrected length is valid.
    (0..32).find_map(|k| {
        let len = (stored_len ^ (1 << k)) as usize;
        if !fits(len) {
            return None;
        }
        let payload = &bytes[bad + HEADER..bad + HEADER + len];
        (seal.crc(offset, payload) == stored_crc && decode(payload).is_some())
            .then_some(bad + HEADER + len)
    })
}

/// The CRC-32C of each candidate's payload `[p + 8, p + 8 + len)`, for candidates in increasing
/// `p`, from the CRCs of prefixes of `bytes`: `crc(d[a..b]) = crc(d[..b]) ⊕ crc(d[..a])·x^(8(b−a))
/// mod P` (zlib's `crc32_combine`). Two streaming passes over the bytes (payload starts in
/// order, payload ends sorted), so the work is linear in the bytes plus `k log k` for k
/// candidates, however long their payloads.
fn payload_crcs(bytes: &[u8], candidates: &[(usize, usize)]) -> Vec<u32> {
    let prefix_crcs = |ends: &mut dyn Iterator<Item = usize>, out: &mut dyn FnMut(u32)| {
        let (mut pos, mut crc) = (0usize, 0u32);
        for a in ends {
            crc = crc32c::crc32c_append(crc, &bytes[pos..a]);
            pos = a;
            out(crc);
        }
    };
    let mut starts = Vec::with_capacity(candidates.len());
    prefix_crcs(&mut candidates.iter().map(|&(p, _)| p + HEADER), &mut |c| {
        starts.push(c)
    });
    let mut by_end: Vec<(usize, u32)> = candidates
        .iter()
        .enumerate()
        .map(|(i, &(p, len))| (p + HEADER + len, i as u32))
        .collect();
    by_end.sort_unstable();
    let mut ends = vec![0u32; candidates.len()];
    let mut order = by_end.iter().map(|&(_, i)| i as usize);
    prefix_crcs(&mut by_end.iter().map(|&(b, _)| b), &mut |c| {
        if let Some(i) = order.next() {
            ends[i] = c;
        }
    });
    candidates
        .iter()
        .enumerate()
        .map(|(i, &(_, len))| ends[i] ^ gf2::shift(starts[i], len as u64))
        .collect()
}

/// Arithmetic on CRC-32C values as polynomials over GF(2) modulo the (reflected) CRC-32C
/// polynomial, after zlib's `multmodp` and `x2nmodp`.
mod gf2 {
    const POLY: u32 = 0x82f6_3b78;

    /// `a·b mod P`.
    fn mul(a: u32, mut b: u32) -> u32 {
        let mut m = 1u32 << 31;
        let mut p = 0u32;
        loop {
            if a & m != 0 {
                p ^= b;
                if a & (m - 1) == 0 {
                    return p;
                }
            }
            m >>= 1;
            b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
            if m == 0 {
                return p;
            }
        }
    }

    /// `x^(2^k) mod P` for k in 0..64.
    fn powers() -> &'static [u32; 64] {
        static TABLE: std::sync::OnceLock<[u32; 64]> = std::sync::OnceLock::new();
        TABLE.get_or_init(|| {
            let mut t = [0u32; 64];
            let mut p = 1u32 << 30; // x^1
            for slot in t.iter_mut() {
                *slot = p;
                p = mul(p, p);
            }
            t
        })
    }

    /// The payload bit `(byte j, bit b)` of an `len`-byte payload whose flip changes the CRC by
    /// `syndrome`, if one does: the `e` in `32..=8·len + 31` with `x^e = syndrome` (then
    /// `e = 31 − b + 8(len − j)`).
    pub(super) fn single_bit(syndrome: u32, len: usize) -> Option<(usize, u8)> {
        if syndrome == 0 {
            return None;
        }
        let mut v = 1u32; // x^31
        let last = 8 * len as u64 + 31;
        for e in 32..=last {
            v = if v & 1 != 0 { (v >> 1) ^ POLY } else { v >> 1 };
            if v == syndrome {
                let q = e - 31; // 8(len − j) − b
                let back = q.div_ceil(8) as usize; // len − j
                let b = (8 * back as u64 - q) as u8;
                return Some((len - back, b));
            }
        }
        None
    }

    /// `crc · x^(8·bytes) mod P`: the CRC register after `bytes` zero bytes, without the
    /// pre- and post-inversion.
    pub(super) fn shift(crc: u32, bytes: u64) -> u32 {
        let t = powers();
        let mut n = bytes;
        let mut k = 3; // x^(8n) = x^(n·2^3)
        let mut p = crc;
        while n != 0 {
            if n & 1 != 0 {
                p = mul(t[k & 63], p);
            }
            n >>= 1;
            k += 1;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(p: &[u8]) -> Option<Vec<u8>> {
        Some(p.to_vec())
    }

    #[test]
    fn payload_crcs_match_direct_crcs() {
        let bytes: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let cands: Vec<(usize, usize)> =
            (0..200).map(|i| (i * 17, 1 + (i * 7919) % 1500)).collect();
        let crcs = payload_crcs(&bytes, &cands);
        for (&(p, len), &crc) in cands.iter().zip(&crcs) {
            let (a, b) = (p + HEADER, p + HEADER + len);
            assert_eq!(crc, crc32c::crc32c(&bytes[a..b]), "range {a}..{b}");
        }
    }

    const SEAL: Seal = Seal::Bound {
        salt: 0x0123_4567_89ab_cdef,
    };

    fn log(payloads: &[&[u8]]) -> Vec<u8> {
        log_sealed(SEAL, payloads)
    }

    fn log_sealed(seal: Seal, payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            let offset = out.len() as u64;
            encode_into(&mut out, seal, offset, p);
        }
        out
    }

    #[test]
    fn clean_log_reads_back() {
        let bytes = log(&[b"a", b"bc", b"def"]);
        let s = scan(&bytes, SEAL, 0, raw);
        assert_eq!(s.end, End::Clean);
        let values: Vec<_> = s.records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, vec![b"a".to_vec(), b"bc".to_vec(), b"def".to_vec()]);
        assert_eq!(s.valid_len(), bytes.len() as u64);
        assert_eq!(scan(&[], SEAL, 0, raw).end, End::Clean);
    }

    #[test]
    fn every_cut_is_a_torn_tail_at_the_last_whole_record() {
        let bytes = log(&[b"one", b"two two", b"three three three"]);
        let ends = [0usize, 11, 26, bytes.len()];
        for cut in 0..=bytes.len() {
            let s = scan(&bytes[..cut], SEAL, 0, raw);
            let last = *ends.iter().rev().find(|&&e| e <= cut).unwrap();
            assert_eq!(s.valid_len(), last as u64, "cut {cut}");
            if cut == last {
                assert_eq!(s.end, End::Clean, "cut {cut}");
            } else {
                assert_eq!(
                    s.end,
                    End::Torn {
                        offset: last as u64,
                        bytes: (cut - last) as u64
                    },
                    "cut {cut}"
                );
            }
        }
    }

    #[test]
    fn every_bit_flip_is_corruption_even_in_the_last_record() {
        let bytes = log(&[b"one", b"two two", b"three three three"]);
        let last = 26;
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let s = scan(&b, SEAL, 0, raw);
            if bit / 8 < last {
                assert!(
                    matches!(s.end, End::Corrupted { offset, .. } if offset as usize <= bit / 8),
                    "bit {bit}: {:?}",
                    s.end
                );
            } else {
                // The last record, whole, one bit off: rot, not a tear (see `ONE_BIT`).
                assert_eq!(
                    s.end,
                    End::Corrupted {
                        offset: last as u64,
                        next_valid: bytes.len() as u64,
                        reason: ONE_BIT
                    },
                    "bit {bit}"
                );
            }
        }
    }

    /// The syndrome of every single payload bit names that bit (checked against a recomputed
    /// CRC for each), and every one-bit change of a whole last frame — length, CRC or payload —
    /// is found, under both seals; two flipped bits are not.
    #[test]
    fn one_flipped_bit_of_a_whole_last_frame_is_found_wherever_it_is() {
        let payload: Vec<u8> = (0..300u32).map(|i| (i * 37 % 251) as u8).collect();
        for len in [1usize, 2, 7, 300] {
            let p = &payload[..len];
            for seal in [Seal::Payload, SEAL] {
                let good = seal.crc(40, p);
                for bit in 0..len * 8 {
                    let mut q = p.to_vec();
                    q[bit / 8] ^= 1 << (bit % 8);
                    let syndrome = seal.crc(40, &q) ^ good;
                    assert_eq!(
                        gf2::single_bit(syndrome, len),
                        Some((bit / 8, (bit % 8) as u8)),
                        "len {len} bit {bit}"
                    );
                }
            }
        }
        for seal in [Seal::Payload, SEAL] {
            let bytes = log_sealed(seal, &[b"one", &payload]);
            for bit in 11 * 8..bytes.len() * 8 {
                let mut b = bytes.clone();
                b[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    scan(&b, seal, 0, raw).end,
                    End::Corrupted {
                        offset: 11,
                        next_valid: bytes.len() as u64,
                        reason: ONE_BIT
                    },
                    "{seal:?} bit {bit}"
                );
                // A second flip in the payload: no longer told from a tear.
                let other = (bit + 8 * 97) % (bytes.len() * 8);
                if other / 8 >= 19 && other / 8 != bit / 8 {
                    b[other / 8] ^= 1 << (other % 8);
                    assert!(
                        matches!(scan(&b, seal, 0, raw).end, End::Torn { offset: 11, .. }),
                        "{seal:?} bits {bit} and {other}"
                    );
                }
            }
            // A tear is still a tear: cut short anywhere, or zeroed.
            for cut in 12..bytes.len() {
                assert!(matches!(
                    scan(&bytes[..cut], seal, 0, raw).end,
                    End::Torn { offset: 11, .. }
                ));
            }
            let mut zeroed = bytes.clone();
            zeroed[11..].fill(0);
            assert!(matches!(
                scan(&zeroed, seal, 0, raw).end,
                End::Torn { offset: 11, .. }
            ));
        }
    }

    #[test]
    fn zeros_and_undecodable_tails_are_torn_unless_a_valid_frame_follows() {
        let mut bytes = log(&[b"one"]);
        bytes.extend_from_slice(&[0u8; 1000]);
        assert_eq!(
            scan(&bytes, SEAL, 0, raw).end,
            End::Torn {
                offset: 11,
                bytes: 1000
            }
        );
        // A frame with a valid CRC whose payload the caller refuses is whole: never torn, even
        // last (a tear cannot make a CRC match).
        let bytes = log(&[b"one", b"bad"]);
        let picky = |p: &[u8]| (p != b"bad").then(|| p.to_vec());
        assert_eq!(
            scan(&bytes, SEAL, 0, picky).end,
            End::Corrupted {
                offset: 11,
                next_valid: 22,
                reason: UNDECODABLE
            }
        );
        let bytes = log(&[b"one", b"bad", b"two"]);
        assert!(matches!(
            scan(&bytes, SEAL, 0, picky).end,
            End::Corrupted {
                offset: 11,
                next_valid: 22,
                ..
            }
        ));
    }

    /// A damaged length field hides where the next record starts: the byte-by-byte search still
    /// finds it, however far away and however large the log.
    #[test]
    fn a_damaged_length_is_found_by_the_byte_search() {
        let big = vec![7u8; 3 << 20];
        let mut bytes = log(&[b"head", &big, &big, b"tail"]);
        bytes[12] = 0xff; // the length of the first big record: now over the end
        bytes[13] = 0xff;
        bytes[14] = 0xff;
        bytes[15] = 0x00;
        match scan(&bytes, SEAL, 0, raw).end {
            End::Corrupted {
                offset, next_valid, ..
            } => {
                assert_eq!(offset, 12);
                assert_eq!(next_valid as usize, 12 + 8 + (3 << 20));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    /// Adversarial bytes where nearly every offset looks like the start of a frame that fits:
    /// the search stays fast (no budget, no quadratic CRC work).
    #[test]
    fn many_plausible_lengths_do_not_make_the_search_quadratic() {
        let mut bytes = log(&[b"x"]);
        bytes.extend_from_slice(&[0xffu8; 8]);
        let tail_len = 1usize << 20;
        bytes.extend((0..tail_len).map(|i| if i % 4 == 0 { 1 } else { 0 }));
        let s = scan(&bytes, SEAL, 0, raw);
        assert!(matches!(s.end, End::Torn { offset: 9, .. }), "{:?}", s.end);
    }

    /// The bug this format fixes: the last record, torn by a crash, whose payload holds the
    /// image of a whole frame (user data can be any bytes). Under the first format the image
    /// verifies, so the tear reads as corruption; bound to salt and offset, it is a torn tail.
    #[test]
    fn a_frame_image_inside_a_torn_payload_is_no_frame() {
        for seal in [Seal::Payload, SEAL] {
            let mut payload = vec![0x11u8; 16];
            // Frame images user data could hold: of the first format; under this salt but
            // made for another offset; made for exactly the offset where each lies, under a
            // salt other than the log's (the writer of user data cannot know the log's salt).
            let at = |payload: &Vec<u8>| 11 + 8 + payload.len() as u64;
            payload.extend(encode(Seal::Payload, 0, b"decoy"));
            payload.extend(encode(seal, 0, b"decoy"));
            let here = at(&payload);
            payload.extend(encode(Seal::Bound { salt: 42 }, here, b"decoy"));
            payload.extend([0x22u8; 16]);
            let bytes = log_sealed(seal, &[b"one", &payload]);
            let torn = &bytes[..bytes.len() - 5];
            let end = scan(torn, seal, 0, raw).end;
            match seal {
                // Recorded, not wanted: the first format's weakness, kept for old logs.
                Seal::Payload => assert!(matches!(end, End::Corrupted { .. }), "{end:?}"),
                Seal::Bound { .. } => assert_eq!(
                    end,
                    End::Torn {
                        offset: 11,
                        bytes: torn.len() as u64 - 11
                    }
                ),
            }
        }
    }

    #[test]
    fn a_bound_frame_verifies_only_at_its_offset_under_its_salt() {
        let bytes = log(&[b"one", b"two two"]);
        assert_eq!(scan(&bytes, SEAL, 0, raw).records.len(), 2);
        // Scanned as if the file started elsewhere, or under another salt: nothing verifies.
        for (seal, base) in [(SEAL, 1), (Seal::Bound { salt: 1 }, 0), (Seal::Payload, 0)] {
            let s = scan(&bytes, seal, base, raw);
            assert!(s.records.is_empty(), "{seal:?} at {base}");
            assert!(matches!(s.end, End::Torn { .. }), "{seal:?} at {base}");
        }
        // Offsets in the result are offsets in the file.
        let s = scan(&bytes[11..], SEAL, 11, raw);
        assert_eq!(s.records[0].offset, 11);
        assert_eq!(s.valid_len(), bytes.len() as u64);
        assert_eq!(scan(&bytes[..0], SEAL, 24, raw).valid_len(), 24);
    }

    #[test]
    fn the_first_format_reads_as_before() {
        let bytes = log_sealed(Seal::Payload, &[b"one", b"two two", b"three three three"]);
        let s = scan(&bytes, Seal::Payload, 0, raw);
        assert_eq!(s.end, End::Clean);
        assert_eq!(s.records.len(), 3);
        let mut b = bytes.clone();
        b[9] ^= 4;
        assert!(matches!(
            scan(&b, Seal::Payload, 0, raw).end,
            End::Corrupted { offset: 0, .. }
        ));
        assert_eq!(
            scan(&bytes[..bytes.len() - 1], Seal::Payload, 0, raw).end,
            End::Torn {
                offset: 26,
                bytes: 24
            }
        );
    }
}
