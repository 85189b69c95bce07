//! The state machine's input: [`ReplicatedCommand`], wrapped with a [`RequestId`] in the bytes of a
//! Raft entry, and how a committed command is applied to the database (deterministically, at
//! most once per request id inside the dedup window). Knows no threads and no network.

use std::collections::{HashMap, HashSet, VecDeque};

use needle_core::{CollectionConfig, Database, Filter, Quantization, Record};
use serde::{Deserialize, Serialize};

use crate::error::{NeedleError, Result};
use crate::storage::Reader;

/// Identifies one write across retries: the state machine applies a command at most once per id
/// (among the entries of the last `dedup_window` log indexes). `client` is chosen by whoever
/// issues writes (a node uses its id and a random number); `seq` grows per write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId {
    /// Who issued the request.
    pub client: u64,
    /// The request's number, unique per client.
    pub seq: u64,
}

/// One record of a batch insert. `metadata` is a JSON object encoded as bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The record's id.
    pub id: String,
    /// The vector.
    pub vector: Vec<f32>,
    /// JSON bytes of the metadata object (see [`ReplicatedCommand::json`]).
    pub metadata: Option<Vec<u8>>,
}

/// A write, as replicated through the Raft log and applied on every node. Encoded with bincode 2;
/// metadata travels as JSON bytes (bincode cannot carry a `serde_json::Value` itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplicatedCommand {
    /// Creates a collection. A config with a quantization travels as
    /// [`CreateCollectionQuantized`](Self::CreateCollectionQuantized) (the encoding of this
    /// variant is frozen, so older entries decode); decoding gives this variant back.
    CreateCollection {
        name: String,
        dimensions: usize,
        #[serde(with = "config_v1")]
        config: Option<CollectionConfig>,
    },
    /// Inserts (or replaces) one record.
    Insert {
        collection: String,
        id: String,
        vector: Vec<f32>,
        metadata: Option<Vec<u8>>,
    },
    /// Inserts many records, all or nothing: one Raft entry, one apply.
    InsertBatch {
        collection: String,
        records: Vec<BatchRecord>,
    },
    /// Updates a record's vector and/or metadata.
    Update {
        collection: String,
        id: String,
        vector: Option<Vec<f32>>,
        metadata: Option<Vec<u8>>,
    },
    /// Deletes a record.
    Delete { collection: String, id: String },
    /// Rebuilds a collection densely.
    Compact { collection: String },
    /// Drops a collection.
    DropCollection { name: String },
    // New variants go last: bincode numbers variants in order, and old entries must decode.
    /// Declares a payload index; `kind` is an [`IndexKind`](needle_core::IndexKind) name.
    CreateIndex {
        collection: String,
        path: String,
        kind: String,
    },
    /// Drops a payload index.
    DropIndex { collection: String, path: String },
    /// Deletes every record matching a filter (JSON bytes), evaluated at apply time: the same
    /// state on every node, so the same records.
    DeleteByFilter { collection: String, filter: Vec<u8> },
    /// Deletes the records with these ids (absent ones are skipped).
    DeleteMany {
        collection: String,
        ids: Vec<String>,
    },
    /// The encoding of a [`CreateCollection`](Self::CreateCollection) whose config names a
    /// quantization (`"sq8"`); [`ReplicatedCommand::decode`] turns it back into one.
    CreateCollectionQuantized {
        name: String,
        dimensions: usize,
        #[serde(with = "config_v1")]
        config: Option<CollectionConfig>,
        quantization: String,
    },
    /// Declares a payload index with options [`CreateIndex`](Self::CreateIndex) lacks:
    /// `value_graphs: false` (see `needle_core::IndexOptions`).
    CreateIndexWithOptions {
        collection: String,
        path: String,
        kind: String,
        value_graphs: bool,
    },
}

/// `CollectionConfig` as entries encoded it before it had `quantization`: the fields and their
/// order are frozen, so older entries decode. The quantization travels beside it.
mod config_v1 {
    use needle_core::{CollectionConfig, Distance, Quantization};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct ConfigV1 {
        distance: Distance,
        m: usize,
        ef_construction: usize,
        ef_search: usize,
        seed: u64,
    }

    pub fn serialize<S: Serializer>(
        config: &Option<CollectionConfig>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        config
            .as_ref()
            .map(|c| ConfigV1 {
                distance: c.distance,
                m: c.m,
                ef_construction: c.ef_construction,
                ef_search: c.ef_search,
                seed: c.seed,
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<CollectionConfig>, D::Error> {
        Ok(
            Option::<ConfigV1>::deserialize(d)?.map(|c| CollectionConfig {
                distance: c.distance,
                m: c.m,
                ef_construction: c.ef_construction,
                ef_search: c.ef_search,
                seed: c.seed,
                quantization: Quantization::None,
            }),
        )
    }
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
}

/// The highest `max_entry_bytes` a configuration may set, and the largest command
/// [`ReplicatedCommand::decode`] accepts.
pub(crate) const MAX_ENTRY_BYTES_CAP: u64 = 256 << 20;
const MAX_DECODE_BYTES: usize = MAX_ENTRY_BYTES_CAP as usize;

/// Decodes with a bincode byte limit of `LIMIT`. bincode counts the sizes that lengths *claim*
/// against it before allocating (a string's length is allocated at once), so a short entry with
/// a huge length is refused instead of aborting the process on allocation.
fn decode_limited<const LIMIT: usize>(bytes: &[u8]) -> Result<(ReplicatedCommand, usize)> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
        .map_err(|e| NeedleError::invalid_message(format!("command does not decode: {e}")))
}

impl ReplicatedCommand {
    /// JSON bytes of a metadata value, as the commands carry it.
    pub fn json(value: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(value).expect("serialising a serde_json::Value cannot fail")
    }

    /// Encodes the command with bincode 2.
    pub fn encode(&self) -> Vec<u8> {
        let quantized = match self {
            ReplicatedCommand::CreateCollection {
                name,
                dimensions,
                config: Some(c),
            } if c.quantization != Quantization::None => {
                Some(ReplicatedCommand::CreateCollectionQuantized {
                    name: name.clone(),
                    dimensions: *dimensions,
                    config: Some(c.clone()),
                    quantization: c.quantization.name().to_string(),
                })
            }
            _ => None,
        };
        bincode::serde::encode_to_vec(quantized.as_ref().unwrap_or(self), bincode_config())
            .expect("bincode encoding of a ReplicatedCommand into a Vec cannot fail")
    }

    /// Decodes bytes made by [`ReplicatedCommand::encode`]. Untrusted input is safe: what the
    /// encoding may claim is bounded by its own length (see below), not only by the bytes a
    /// length field names.
    pub fn decode(bytes: &[u8]) -> Result<ReplicatedCommand> {
        // A well-formed command claims at most 8 bytes per encoded byte (a varint `usize` or
        // `u64` of one byte claims 8), so a limit of 8 × its length never refuses a valid one.
        // The limit depends on the bytes alone, so every node decodes an entry alike. bincode's
        // limit is a const, hence the tiers (each a factor of 16 apart).
        let claim = bytes.len().saturating_mul(8).max(64);
        let (cmd, used) = match claim {
            0..=0x1_0000 => decode_limited::<0x1_0000>(bytes)?,
            0x1_0001..=0x10_0000 => decode_limited::<0x10_0000>(bytes)?,
            0x10_0001..=0x100_0000 => decode_limited::<0x100_0000>(bytes)?,
            0x100_0001..=0x1000_0000 => decode_limited::<0x1000_0000>(bytes)?,
            _ if bytes.len() <= MAX_DECODE_BYTES => decode_limited::<0x8000_0000>(bytes)?,
            _ => {
                return Err(NeedleError::invalid_message(format!(
                    "a {} byte command is over the {MAX_DECODE_BYTES} byte decode limit",
                    bytes.len()
                )));
            }
        };
        if used != bytes.len() {
            return Err(NeedleError::invalid_message(
                "trailing bytes after a command",
            ));
        }
        if let ReplicatedCommand::CreateCollectionQuantized {
            name,
            dimensions,
            config,
            quantization,
        } = cmd
        {
            let q = Quantization::from_name(&quantization).ok_or_else(|| {
                NeedleError::invalid_message(format!("unknown quantization {quantization:?}"))
            })?;
            let mut config = config.unwrap_or_default();
            config.quantization = q;
            return Ok(ReplicatedCommand::CreateCollection {
                name,
                dimensions,
                config: Some(config),
            });
        }
        Ok(cmd)
    }

    /// Applies the command to `db`; for a delete, returns whether the record was there, for the
    /// deletes of many, whether any was (true for every other command). Deterministic: the same command on the same state gives the same
    /// result and the same bytes on every node.
    pub(crate) fn apply(&self, db: &Database) -> needle_core::Result<u64> {
        match self {
            ReplicatedCommand::CreateCollection {
                name,
                dimensions,
                config,
            } => match config {
                Some(c) => db.create_collection_with_config(name, *dimensions, c.clone()),
                None => db.create_collection(name, *dimensions),
            },
            ReplicatedCommand::CreateCollectionQuantized {
                name,
                dimensions,
                config,
                quantization,
            } => {
                let mut config = config.clone().unwrap_or_default();
                config.quantization = Quantization::from_name(quantization).ok_or_else(|| {
                    needle_core::Error::InvalidConfig {
                        reason: format!("unknown quantization {quantization:?}"),
                    }
                })?;
                db.create_collection_with_config(name, *dimensions, config)
            }
            ReplicatedCommand::Insert {
                collection,
                id,
                vector,
                metadata,
            } => db.insert(
                collection,
                id,
                vector.clone(),
                parse_metadata(collection, id, metadata)?,
            ),
            ReplicatedCommand::InsertBatch {
                collection,
                records,
            } => {
                let mut recs = Vec::with_capacity(records.len());
                for r in records {
                    recs.push(Record {
                        id: r.id.clone(),
                        vector: r.vector.clone(),
                        metadata: parse_metadata(collection, &r.id, &r.metadata)?,
                    });
                }
                db.insert_batch(collection, recs)
            }
            ReplicatedCommand::Update {
                collection,
                id,
                vector,
                metadata,
            } => db.update(
                collection,
                id,
                vector.clone(),
                parse_metadata(collection, id, metadata)?,
            ),
            ReplicatedCommand::Delete { collection, id } => {
                return db.delete(collection, id).map(u64::from);
            }
            ReplicatedCommand::Compact { collection } => db.compact(collection),
            ReplicatedCommand::DropCollection { name } => db.drop_collection(name),
            ReplicatedCommand::CreateIndex {
                collection,
                path,
                kind,
            } => db.create_index(collection, path, kind.parse()?),
            ReplicatedCommand::CreateIndexWithOptions {
                collection,
                path,
                kind,
                value_graphs,
            } => db.create_index_with(
                collection,
                path,
                kind.parse()?,
                needle_core::IndexOptions::new().value_graphs(*value_graphs),
            ),
            ReplicatedCommand::DropIndex { collection, path } => db.drop_index(collection, path),
            ReplicatedCommand::DeleteByFilter { collection, filter } => {
                return Ok(db.delete_by_filter(collection, &parse_filter(filter)?)? as u64);
            }
            ReplicatedCommand::DeleteMany { collection, ids } => {
                return Ok(db.delete_many(collection, ids)? as u64);
            }
        }
        .map(|()| 1)
    }
}

/// The filter of a `DeleteByFilter` command.
pub(crate) fn parse_filter(bytes: &[u8]) -> needle_core::Result<Filter> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| needle_core::Error::InvalidFilter {
            path: String::new(),
            reason: format!("filter bytes are not JSON: {e}"),
        })?;
    Filter::parse(&json)
}

fn parse_metadata(
    collection: &str,
    id: &str,
    bytes: &Option<Vec<u8>>,
) -> needle_core::Result<Option<serde_json::Value>> {
    match bytes {
        None => Ok(None),
        Some(b) => {
            serde_json::from_slice(b)
                .map(Some)
                .map_err(|e| needle_core::Error::InvalidMetadata {
                    collection: collection.to_string(),
                    id: id.to_string(),
                    reason: format!("metadata bytes are not JSON: {e}"),
                })
        }
    }
}

/// The bytes of a normal Raft entry: `client u64 | seq u64 | command`.
pub(crate) fn encode_entry(id: RequestId, cmd: &ReplicatedCommand) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&id.client.to_le_bytes());
    b.extend_from_slice(&id.seq.to_le_bytes());
    b.extend_from_slice(&cmd.encode());
    b
}

/// The request id of a normal entry's bytes (without decoding the command).
pub(crate) fn entry_request_id(data: &[u8]) -> Option<RequestId> {
    let mut r = Reader::new(data);
    Some(RequestId {
        client: r.u64()?,
        seq: r.u64()?,
    })
}

pub(crate) fn decode_entry(data: &[u8]) -> Result<(RequestId, ReplicatedCommand)> {
    let id = entry_request_id(data)
        .ok_or_else(|| NeedleError::invalid_message("entry shorter than a request id"))?;
    Ok((id, ReplicatedCommand::decode(&data[16..])?))
}

/// The request ids of the entries of the last `span` log indexes: a retry of one of them is not
/// applied again. Built only from the log (and snapshots), so it is identical on every node.
/// Each id also keeps its first apply's outcome when this node knows it (it applied the entry,
/// or a snapshot carried it), so that a retry is answered with that outcome (issue 10, item 2).
#[derive(Debug, Clone, Default)]
pub(crate) struct DedupWindow {
    span: u64,
    entries: VecDeque<(u64, RequestId)>,
    ids: HashSet<RequestId>,
    outcomes: HashMap<RequestId, Outcome>,
}

/// How the first apply of a request id ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Applied; the apply's answer (for a delete, 1 if the record was there, else 0; for a
    /// delete by filter or by ids, the records deleted; 1 for the other commands).
    Applied(u64),
    /// The state machine rejected the command: its error, as text.
    Rejected(String),
}

impl DedupWindow {
    pub(crate) fn new(span: u64) -> Self {
        DedupWindow {
            span,
            ..Default::default()
        }
    }

    pub(crate) fn contains(&self, id: &RequestId) -> bool {
        self.ids.contains(id)
    }

    /// The first outcome of `id`, when known.
    pub(crate) fn outcome(&self, id: &RequestId) -> Option<&Outcome> {
        self.outcomes.get(id)
    }

    /// Records the entry at `index` with the outcome of its first apply.
    pub(crate) fn record_outcome(&mut self, index: u64, id: RequestId, outcome: Outcome) {
        if !self.ids.contains(&id) {
            self.outcomes.insert(id, outcome);
        }
        self.record(index, id);
    }

    /// Records the entry at `index` and forgets those that fell out of the window.
    pub(crate) fn record(&mut self, index: u64, id: RequestId) {
        if self.ids.insert(id) {
            self.entries.push_back((index, id));
        }
        let floor = index.saturating_sub(self.span);
        while let Some(&(i, old)) = self.entries.front() {
            if i > floor {
                break;
            }
            self.entries.pop_front();
            self.ids.remove(&old);
            self.outcomes.remove(&old);
        }
    }

    /// Appends the known outcomes (a section older readers never wrote: optional on decode).
    pub(crate) fn encode_outcomes(&self, out: &mut Vec<u8>) {
        let known: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(_, id)| self.outcomes.get(id).map(|o| (id, o)))
            .collect();
        out.extend_from_slice(&(known.len() as u32).to_le_bytes());
        for (id, o) in known {
            out.extend_from_slice(&id.client.to_le_bytes());
            out.extend_from_slice(&id.seq.to_le_bytes());
            match o {
                // 0 and 1 as one byte (what older nodes wrote), other counts as 3 + a u64.
                Outcome::Applied(n @ (0 | 1)) => out.push(*n as u8),
                Outcome::Applied(n) => {
                    out.push(3);
                    out.extend_from_slice(&n.to_le_bytes());
                }
                Outcome::Rejected(reason) => {
                    out.push(2);
                    out.extend_from_slice(&(reason.len() as u32).to_le_bytes());
                    out.extend_from_slice(reason.as_bytes());
                }
            }
        }
    }

    pub(crate) fn decode_outcomes(&mut self, r: &mut Reader<'_>) -> Option<()> {
        let n = r.u32()?;
        for _ in 0..n {
            let id = RequestId {
                client: r.u64()?,
                seq: r.u64()?,
            };
            let o = match r.u8()? {
                0 => Outcome::Applied(0),
                1 => Outcome::Applied(1),
                3 => Outcome::Applied(r.u64()?),
                2 => Outcome::Rejected(String::from_utf8(r.bytes()?.to_vec()).ok()?),
                _ => return None,
            };
            if self.ids.contains(&id) {
                self.outcomes.insert(id, o);
            }
        }
        Some(())
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (i, id) in &self.entries {
            out.extend_from_slice(&i.to_le_bytes());
            out.extend_from_slice(&id.client.to_le_bytes());
            out.extend_from_slice(&id.seq.to_le_bytes());
        }
    }

    /// The inverse of [`DedupWindow::encode`]. `None` unless the indexes ascend and the ids are
    /// distinct, as `record` keeps them: with an id twice, forgetting the older copy would
    /// forget the id while the newer is still in the window (a retry applied twice here and
    /// refused on the other nodes); out of order, `record` would forget the wrong ones.
    pub(crate) fn decode(span: u64, r: &mut Reader<'_>) -> Option<DedupWindow> {
        let mut w = DedupWindow::new(span);
        let n = r.u32()?;
        for _ in 0..n {
            let i = r.u64()?;
            let id = RequestId {
                client: r.u64()?,
                seq: r.u64()?,
            };
            if w.entries.back().is_some_and(|&(last, _)| last >= i) || !w.ids.insert(id) {
                return None;
            }
            w.entries.push_back((i, id));
        }
        Some(w)
    }

    /// The index of the newest entry in the window.
    pub(crate) fn newest(&self) -> Option<u64> {
        self.entries.back().map(|&(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcomes a snapshot header carries: 0 and 1 as the one byte older nodes wrote, a
    /// larger count (a delete by filter) whole.
    /// A window whose bytes decode but that `record` could never have made: an id twice, an
    /// index repeated or going back. Each is refused; the window it was made from decodes.
    #[test]
    fn a_window_with_a_repeated_id_or_index_out_of_order_is_refused() {
        let id = |seq| RequestId { client: 9, seq };
        let encoded = |entries: &[(u64, RequestId)]| {
            let mut w = DedupWindow::new(100);
            w.entries = entries.iter().copied().collect();
            let mut b = Vec::new();
            w.encode(&mut b);
            b
        };
        let decodes = |b: &[u8]| DedupWindow::decode(100, &mut Reader::new(b)).is_some();
        assert!(decodes(&encoded(&[(3, id(1)), (5, id(2)), (6, id(3))])));
        for bad in [
            [(3, id(1)), (5, id(2)), (6, id(1))],
            [(3, id(1)), (5, id(2)), (5, id(3))],
            [(3, id(1)), (5, id(2)), (4, id(3))],
        ] {
            assert!(!decodes(&encoded(&bad)), "{bad:?} decoded");
        }
    }

    #[test]
    fn applied_counts_round_trip_in_the_outcome_section() {
        let mut w = DedupWindow::new(100);
        let ids: Vec<RequestId> = (0..4).map(|seq| RequestId { client: 9, seq }).collect();
        let outcomes = [
            Outcome::Applied(0),
            Outcome::Applied(1),
            Outcome::Applied(12_487),
            Outcome::Rejected("no".into()),
        ];
        for (i, (id, o)) in ids.iter().zip(&outcomes).enumerate() {
            w.record_outcome(i as u64 + 1, *id, o.clone());
        }
        let mut b = Vec::new();
        w.encode(&mut b);
        w.encode_outcomes(&mut b);
        let mut r = Reader::new(&b);
        let mut back = DedupWindow::decode(100, &mut r).unwrap();
        back.decode_outcomes(&mut r).unwrap();
        for (id, o) in ids.iter().zip(&outcomes) {
            assert_eq!(back.outcome(id), Some(o));
        }
    }

    #[test]
    fn command_round_trips_with_metadata_bytes() {
        let cmd = ReplicatedCommand::InsertBatch {
            collection: "c".into(),
            records: vec![BatchRecord {
                id: "a".into(),
                vector: vec![1.0, 2.5],
                metadata: Some(ReplicatedCommand::json(&serde_json::json!({"k": [1, "x"]}))),
            }],
        };
        let id = RequestId { client: 7, seq: 9 };
        let (id2, cmd2) = decode_entry(&encode_entry(id, &cmd)).unwrap();
        assert_eq!((id, cmd), (id2, cmd2));
        assert!(ReplicatedCommand::decode(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_short_command_claiming_a_huge_length_is_refused_without_allocating() {
        // Variant 6 (DropCollection), then a string length of u64::MAX - 1 (varint 0xfd + 8
        // bytes): without a limit bincode allocates that many bytes and the process aborts.
        let mut evil = vec![6u8, 0xfd];
        evil.extend_from_slice(&(u64::MAX - 1).to_le_bytes());
        assert!(ReplicatedCommand::decode(&evil).is_err());
        // 1 GiB claimed by 10 bytes: refused too (the limit scales with the input's length).
        let mut evil = vec![6u8, 0xfc];
        evil.extend_from_slice(&(1u32 << 30).to_le_bytes());
        evil.extend_from_slice(b"abcd");
        assert!(ReplicatedCommand::decode(&evil).is_err());
        let id = RequestId { client: 1, seq: 1 };
        let mut entry = encode_entry(
            id,
            &ReplicatedCommand::Compact {
                collection: "c".into(),
            },
        );
        entry.truncate(16);
        entry.extend_from_slice(&evil);
        assert!(decode_entry(&entry).is_err());
    }

    #[test]
    fn large_valid_commands_decode_at_every_tier() {
        // Claims up to 8x the encoded bytes (one-byte varints decode as 8-byte integers).
        for n in [0usize, 10, 5_000, 100_000, 600_000] {
            let cmd = ReplicatedCommand::InsertBatch {
                collection: "c".into(),
                records: (0..n / 10)
                    .map(|i| BatchRecord {
                        id: i.to_string(),
                        vector: vec![i as f32; 2],
                        metadata: Some(b"{}".to_vec()),
                    })
                    .collect(),
            };
            assert_eq!(ReplicatedCommand::decode(&cmd.encode()).unwrap(), cmd);
            let dims = ReplicatedCommand::CreateCollection {
                name: "x".repeat(n),
                dimensions: 7,
                config: None,
            };
            assert_eq!(ReplicatedCommand::decode(&dims.encode()).unwrap(), dims);
        }
    }

    /// A quantized config round-trips; a plain one encodes exactly as before `quantization`
    /// existed (bincode 2's standard varint layout of the five old fields, written out by
    /// hand), so older entries decode.
    #[test]
    fn create_collection_with_quantization_round_trips_and_old_bytes_decode() {
        let plain = ReplicatedCommand::CreateCollection {
            name: "c".into(),
            dimensions: 3,
            config: Some(CollectionConfig::default()),
        };
        let old_bytes: &[u8] = &[
            // variant 0, name "c", 3 dims, Some, cosine, m 16, efc 200, ef 64, seed (u64 marker 253)
            0, 1, 99, 3, 1, 0, 16, 200, 64, 253, 101, 108, 100, 101, 101, 110, 0, 0,
        ];
        assert_eq!(plain.encode(), old_bytes);
        assert_eq!(ReplicatedCommand::decode(old_bytes).unwrap(), plain);
        let sq8 = ReplicatedCommand::CreateCollection {
            name: "c".into(),
            dimensions: 3,
            config: Some(CollectionConfig {
                quantization: Quantization::Sq8,
                ..CollectionConfig::default()
            }),
        };
        assert_ne!(sq8.encode(), old_bytes);
        assert_eq!(ReplicatedCommand::decode(&sq8.encode()).unwrap(), sq8);
        let db = Database::in_memory();
        ReplicatedCommand::decode(&sq8.encode())
            .unwrap()
            .apply(&db)
            .unwrap();
        assert_eq!(
            db.collection_info("c").unwrap().config.quantization,
            Quantization::Sq8
        );
    }

    #[test]
    fn dedup_window_forgets_by_index() {
        let mut w = DedupWindow::new(3);
        let id = |s| RequestId { client: 1, seq: s };
        w.record(1, id(1));
        w.record(2, id(2));
        assert!(w.contains(&id(1)));
        w.record(4, id(4));
        assert!(!w.contains(&id(1)));
        assert!(w.contains(&id(2)));
        let mut b = Vec::new();
        w.encode(&mut b);
        let w2 = DedupWindow::decode(3, &mut Reader::new(&b)).unwrap();
        assert!(w2.contains(&id(2)) && w2.contains(&id(4)) && !w2.contains(&id(1)));
    }
}
