//! The CRC-framed record log shared by the database's write-ahead log and needle-raft's log:
//! how a record is framed, and how a log's bytes are read back — the records, and how the log
//! ends (cleanly, in a torn tail, or in corruption).
//!
//! A frame is `len: u32 LE | crc32c(payload): u32 LE | payload`, with `1 ≤ len ≤ MAX_PAYLOAD`
//! (an empty payload is never valid, so zeroed bytes are never a record). Knows nothing of
//! what the payloads mean: the caller passes a decoder, and a frame is *valid* when its CRC
//! matches and its payload decodes.
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
//! use needle_core::disk::frame::{self, End};
//!
//! let mut log = Vec::new();
//! frame::encode_into(&mut log, b"first");
//! frame::encode_into(&mut log, b"second");
//! let torn = log.len() - 3;
//! let scan = frame::scan(&log[..torn], |p| Some(p.to_vec()));
//! assert_eq!(scan.records.len(), 1);
//! assert_eq!(scan.end, End::Torn { offset: 13, bytes: torn as u64 - 13 });
//!
//! log[9] ^= 1; // a bit flipped in the first record, with a valid one after it
//! let scan = frame::scan(&log, |p| Some(p.to_vec()));
//! assert!(matches!(scan.end, End::Corrupted { offset: 0, .. }));
//! ```

/// Bytes before each payload: its length and its CRC-32C.
pub const HEADER: usize = 8;
/// The largest payload a frame may carry (1 GiB).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// Appends the frame of `payload` to `out`.
///
/// # Panics
/// If `payload` is empty or longer than [`MAX_PAYLOAD`]: callers check sizes first (a frame
/// that could not be read back must never be written).
pub fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    assert!(
        !payload.is_empty() && payload.len() <= MAX_PAYLOAD,
        "frame payload of {} bytes: callers keep payloads in 1..=MAX_PAYLOAD",
        payload.len()
    );
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The frame of `payload` (see [`encode_into`]).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, payload);
    out
}

/// The reason of [`End::Corrupted`] for a whole frame — its checksum matches — whose payload the
/// decoder refuses (written by a newer build, or by a bug). A tear cannot make a checksum match,
/// so such a frame is an acknowledged write: it is corruption wherever it is, even last.
pub const UNDECODABLE: &str = "a whole frame (its checksum matches) whose payload does not decode";

/// One valid frame: where it starts and what its payload decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// Offset of the frame (its length field) in the scanned bytes.
    pub offset: u64,
    /// Offset just past the frame: where the next one starts.
    pub end: u64,
    /// The decoded payload.
    pub value: T,
}

/// How a log ends.
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
    /// The valid frames before the end, in order.
    pub records: Vec<Record<T>>,
    /// How the log ends, after the last record.
    pub end: End,
}

impl<T> Scan<T> {
    /// Bytes up to the end of the last valid record (where a torn tail starts).
    pub fn valid_len(&self) -> u64 {
        self.records.last().map_or(0, |r| r.end)
    }
}

/// Reads the frames of `bytes` from offset 0, decoding each payload with `decode` (`None`: the
/// payload is not a record, which counts as a bad frame like a CRC mismatch).
pub fn scan<T>(bytes: &[u8], decode: impl Fn(&[u8]) -> Option<T>) -> Scan<T> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        match frame_at(bytes, pos, &decode) {
            Ok((value, next)) => {
                records.push(Record {
                    offset: pos as u64,
                    end: next as u64,
                    value,
                });
                pos = next;
            }
            Err(reason) if reason == UNDECODABLE => {
                // Its checksum matches: a whole write, which no tear makes. Never torn.
                let next = pos + HEADER + plausible_len(bytes, pos).unwrap_or(0);
                return Scan {
                    records,
                    end: End::Corrupted {
                        offset: pos as u64,
                        next_valid: next as u64,
                        reason,
                    },
                };
            }
            Err(reason) => {
                let end = match valid_frame_after(bytes, pos, &decode) {
                    Some(next_valid) => End::Corrupted {
                        offset: pos as u64,
                        next_valid: next_valid as u64,
                        reason,
                    },
                    None => End::Torn {
                        offset: pos as u64,
                        bytes: (bytes.len() - pos) as u64,
                    },
                };
                return Scan { records, end };
            }
        }
    }
    Scan {
        records,
        end: End::Clean,
    }
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
    if crc32c::crc32c(payload) != crc {
        return Err("frame checksum mismatch");
    }
    let value = decode(payload).ok_or(UNDECODABLE)?;
    Ok((value, pos + HEADER + len))
}

/// Where the first valid frame after a bad one at `bad` starts, if there is one: first where
/// the bad frame's length says the next one starts, then every later offset.
fn valid_frame_after<T>(
    bytes: &[u8],
    bad: usize,
    decode: &impl Fn(&[u8]) -> Option<T>,
) -> Option<usize> {
    if let Some(len) = plausible_len(bytes, bad) {
        let next = bad + HEADER + len;
        if frame_at(bytes, next, decode).is_ok() {
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
        for (&(at, len), &crc) in candidates.iter().zip(&crcs) {
            let stored =
                u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
            if crc == stored && decode(&bytes[at + HEADER..at + HEADER + len]).is_some() {
                return Some(at);
            }
        }
    }
    None
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

    fn log(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_into(&mut out, p);
        }
        out
    }

    #[test]
    fn clean_log_reads_back() {
        let bytes = log(&[b"a", b"bc", b"def"]);
        let s = scan(&bytes, raw);
        assert_eq!(s.end, End::Clean);
        let values: Vec<_> = s.records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(values, vec![b"a".to_vec(), b"bc".to_vec(), b"def".to_vec()]);
        assert_eq!(s.valid_len(), bytes.len() as u64);
        assert_eq!(scan(&[], raw).end, End::Clean);
    }

    #[test]
    fn every_cut_is_a_torn_tail_at_the_last_whole_record() {
        let bytes = log(&[b"one", b"two two", b"three three three"]);
        let ends = [0usize, 11, 26, bytes.len()];
        for cut in 0..=bytes.len() {
            let s = scan(&bytes[..cut], raw);
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
    fn every_bit_flip_before_the_last_record_is_corruption() {
        let bytes = log(&[b"one", b"two two", b"three three three"]);
        let last = 26;
        for bit in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            let s = scan(&b, raw);
            if bit / 8 < last {
                assert!(
                    matches!(s.end, End::Corrupted { offset, .. } if offset as usize <= bit / 8),
                    "bit {bit}: {:?}",
                    s.end
                );
            } else {
                assert_eq!(
                    s.end,
                    End::Torn {
                        offset: last as u64,
                        bytes: (bytes.len() - last) as u64
                    },
                    "bit {bit}"
                );
            }
        }
    }

    #[test]
    fn zeros_and_undecodable_tails_are_torn_unless_a_valid_frame_follows() {
        let mut bytes = log(&[b"one"]);
        bytes.extend_from_slice(&[0u8; 1000]);
        assert_eq!(
            scan(&bytes, raw).end,
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
            scan(&bytes, picky).end,
            End::Corrupted {
                offset: 11,
                next_valid: 22,
                reason: UNDECODABLE
            }
        );
        let bytes = log(&[b"one", b"bad", b"two"]);
        assert!(matches!(
            scan(&bytes, picky).end,
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
        match scan(&bytes, raw).end {
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
        let s = scan(&bytes, raw);
        assert!(matches!(s.end, End::Torn { offset: 9, .. }), "{:?}", s.end);
    }
}
