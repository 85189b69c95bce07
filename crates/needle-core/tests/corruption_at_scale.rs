//! Corruption at scale: a 12 MB log of nine records (a collection, then eight batches of
//! 1,000 × 384-dimension vectors). A bit flipped anywhere in a record is
//! `Corrupted` naming that record's offset, and the failed open changes no byte; in the last
//! record too (a whole record one bit off is rot, not a torn write). Truncations at record boundaries and inside records are a torn tail
//! only at the end, never corruption.

mod common;

use std::path::Path;

use common::Rng;
use needle_core::disk::{Disk, SimDisk, frame};
use needle_core::{CollectionConfig, Database, DatabaseOptions, Error, LogCheck, Record};

const PATH: &str = "/big/b.needle";
const WAL: &str = "/big/b.needle-wal";
/// The log's header (format 2): magic, version, generation, salt, checksum.
const HEADER: usize = 32;

/// How the log's frames are checksummed: bound to the salt in its header.
fn seal_of(wal: &[u8]) -> frame::Seal {
    frame::Seal::Bound {
        salt: u64::from_le_bytes(wal[20..28].try_into().unwrap()),
    }
}

fn build() -> (SimDisk, Vec<u8>, Vec<usize>) {
    let sim = SimDisk::new(11);
    sim.create_dir_all(Path::new("/big")).unwrap();
    let db = Database::open_on(sim.shared(), PATH, DatabaseOptions::default()).unwrap();
    let cheap = CollectionConfig {
        m: 4,
        ef_construction: 8,
        ..Default::default()
    };
    db.create_collection_with_config("c", 384, cheap).unwrap();
    let mut rng = Rng(5);
    for b in 0..8 {
        let batch = (0..1000)
            .map(|i| {
                let v = (0..384).map(|_| rng.f32() - 0.5).collect();
                Record::new(format!("{b}-{i}"), v, None)
            })
            .collect();
        db.insert_batch("c", batch).unwrap();
    }
    drop(db);
    let wal = sim.files()[Path::new(WAL)].clone();
    let mut starts = Vec::new();
    let mut pos = HEADER;
    while pos < wal.len() {
        starts.push(pos);
        pos += 8 + u32::from_le_bytes(wal[pos..pos + 4].try_into().unwrap()) as usize;
    }
    assert!(wal.len() > 10 << 20, "log of {} bytes", wal.len());
    assert_eq!(starts.len(), 9);
    (sim, wal, starts)
}

#[test]
fn a_bit_flipped_in_any_record_is_found_and_nothing_is_cut() {
    let seed = common::seed("a_bit_flipped_in_any_record_is_found_and_nothing_is_cut");
    let mut rng = Rng(seed);
    let (sim, wal, starts) = build();
    let last = *starts.last().unwrap();
    let mut checked = 0;
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(wal.len());
        // The length field, the checksum, and two places in the payload.
        let picks = [
            start + rng.below(4) as usize,
            start + 4 + rng.below(4) as usize,
            start + 8 + rng.below((end - start - 8) as u64) as usize,
            end - 1,
        ];
        for at in picks {
            let bit = rng.below(8);
            let mut damaged = wal.clone();
            damaged[at] ^= 1 << bit;
            sim.put_file(Path::new(WAL), &damaged);
            let before = sim.files();
            // Every record, the last one too: a whole last record one bit off is rot, not a
            // torn write (`frame::ONE_BIT`), so nothing is cut there either.
            match Database::open_on(sim.shared(), PATH, DatabaseOptions::default()) {
                Err(Error::Corrupted { file, offset, .. }) => {
                    assert_eq!(file, Path::new(WAL));
                    assert_eq!(offset as usize, start, "byte {at} bit {bit} (record {i})");
                }
                Err(e) => panic!("byte {at} bit {bit} (record {i}): {e}"),
                Ok(_) => panic!("byte {at} bit {bit} (record {i}): opened, cutting records"),
            }
            let mut after = sim.files();
            after.retain(|p, _| !p.ends_with("b.needle-lock"));
            let mut before = before;
            before.retain(|p, _| !p.ends_with("b.needle-lock"));
            assert!(after == before, "byte {at}: a refused open changed a file");
            if start == last {
                let r = Database::check_on(sim.shared(), PATH).unwrap();
                assert!(
                    matches!(r.log, LogCheck::Corrupted { offset, .. } if offset as usize == last),
                    "byte {at} in the last record: {:?}",
                    r.log
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 36);
}

#[test]
fn truncations_are_a_torn_tail_only_at_the_end() {
    let (sim, wal, starts) = build();
    let body = &wal[HEADER..];
    let seal = seal_of(&wal);
    let mut cuts: Vec<usize> = starts.clone();
    cuts.extend(starts.iter().map(|s| s + 3)); // inside a length field
    cuts.extend(starts.iter().map(|s| s + 100)); // inside a payload
    cuts.push(wal.len() - 1);
    cuts.push(wal.len());
    for cut in cuts {
        let s = frame::scan(&body[..cut - HEADER], seal, HEADER as u64, |p: &[u8]| {
            Some(p.len())
        });
        let whole = starts.iter().filter(|&&st| st < cut).count()
            - usize::from(!starts.contains(&cut) && cut != wal.len());
        assert_eq!(s.records.len(), whole, "cut at {cut}");
        match s.end {
            frame::End::Clean => assert!(starts.contains(&cut) || cut == wal.len()),
            frame::End::Torn { offset, bytes } => {
                assert_eq!((offset + bytes) as usize, cut, "cut at {cut}");
            }
            frame::End::Corrupted { .. } => panic!("a cut at {cut} read as corruption"),
        }
    }
    // And through the database, at two cuts.
    for cut in [starts[5] + 1000, starts[8] + 8] {
        sim.put_file(Path::new(WAL), &wal[..cut]);
        let r = Database::check_on(sim.shared(), PATH).unwrap();
        let last_whole = *starts.iter().rfind(|&&s| s < cut).unwrap();
        assert_eq!(
            r.log,
            LogCheck::TornTail {
                offset: last_whole as u64,
                bytes: (cut - last_whole) as u64
            }
        );
    }
}
