//! The planner's per-query bitmaps: plain `Vec<u64>` over the slots (what needle-core uses)
//! against `roaring::RoaringBitmap`, on the shapes of `filtered.py`'s cases at 200,000 slots
//! (glove50): posting lists of one value (0.1 %), ten values (1 %), a thousand values of a range
//! (10 %), and an `$and` of a 15 % list with a 30 % range (4.6 %). Measured per case: building
//! the bitmap from the sorted posting lists, 2,000 membership tests at random slots (what a
//! filtered walk does), and iterating the set slots in order (what an exact pass does).
//!
//! `cargo bench -p needle-benches --bench bitmaps`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use roaring::RoaringBitmap;

const SLOTS: usize = 200_000;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// `values` posting lists partitioning the slots at random (each slot in one list), sorted.
fn partition(rng: &mut Rng, values: usize) -> Vec<Vec<u32>> {
    let mut lists = vec![Vec::new(); values];
    for s in 0..SLOTS as u32 {
        lists[rng.below(values as u64) as usize].push(s);
    }
    lists
}

fn plain(lists: &[&Vec<u32>]) -> Vec<u64> {
    let mut b = vec![0u64; SLOTS.div_ceil(64)];
    for list in lists {
        for &s in *list {
            b[s as usize / 64] |= 1 << (s % 64);
        }
    }
    b
}

fn roaring(lists: &[&Vec<u32>]) -> RoaringBitmap {
    // One list: from its sorted slots; several: inserted one by one (a union of one bitmap per
    // list is far slower: 17 ms for lt_10%'s thousand lists).
    match lists {
        [one] => RoaringBitmap::from_sorted_iter(one.iter().copied()).expect("a sorted list"),
        _ => {
            let mut acc = RoaringBitmap::new();
            for list in lists {
                acc.extend(list.iter().copied());
            }
            acc
        }
    }
}

fn plain_contains(b: &[u64], s: u32) -> bool {
    b[s as usize / 64] & (1 << (s % 64)) != 0
}

fn plain_iter(b: &[u64]) -> impl Iterator<Item = u32> + '_ {
    b.iter().enumerate().flat_map(|(w, &word)| {
        let mut word = word;
        std::iter::from_fn(move || {
            (word != 0).then(|| {
                let bit = word.trailing_zeros();
                word &= word - 1;
                (w * 64) as u32 + bit
            })
        })
    })
}

fn bitmaps(c: &mut Criterion) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let tenants = partition(&mut rng, 1000);
    let prices = partition(&mut rng, 10_000);
    let langs = partition(&mut rng, 7);
    let years = partition(&mut rng, 36);
    // (case, lists ORed per part; the parts are ANDed)
    let cases: Vec<(&str, Vec<Vec<&Vec<u32>>>)> = vec![
        ("eq_0.1%", vec![vec![&tenants[7]]]),
        ("in_1%", vec![tenants[10..20].iter().collect()]),
        ("lt_10%", vec![prices[..1000].iter().collect()]),
        (
            "and_4.6%",
            vec![vec![&langs[1]], years[25..36].iter().collect()],
        ),
    ];
    let probes: Vec<u32> = (0..2000).map(|_| rng.below(SLOTS as u64) as u32).collect();

    let mut group = c.benchmark_group("bitmaps");
    for (name, parts) in &cases {
        group.bench_with_input(BenchmarkId::new("build/plain", name), parts, |b, parts| {
            b.iter(|| {
                let mut acc = plain(&parts[0]);
                for p in &parts[1..] {
                    let next = plain(p);
                    acc.iter_mut().zip(&next).for_each(|(x, y)| *x &= y);
                }
                black_box(acc)
            })
        });
        group.bench_with_input(
            BenchmarkId::new("build/roaring", name),
            parts,
            |b, parts| {
                b.iter(|| {
                    let mut acc = roaring(&parts[0]);
                    for p in &parts[1..] {
                        acc &= roaring(p);
                    }
                    black_box(acc)
                })
            },
        );
        let mut p = plain(&parts[0]);
        let mut r = roaring(&parts[0]);
        for part in &parts[1..] {
            let next = plain(part);
            p.iter_mut().zip(&next).for_each(|(x, y)| *x &= y);
            r &= roaring(part);
        }
        assert!(plain_iter(&p).eq(r.iter()), "{name}: the same slots");
        group.bench_function(BenchmarkId::new("contains/plain", name), |b| {
            b.iter(|| probes.iter().filter(|&&s| plain_contains(&p, s)).count())
        });
        group.bench_function(BenchmarkId::new("contains/roaring", name), |b| {
            b.iter(|| probes.iter().filter(|&&s| r.contains(s)).count())
        });
        group.bench_function(BenchmarkId::new("iter/plain", name), |b| {
            b.iter(|| plain_iter(&p).fold(0u64, |a, s| a.wrapping_add(s as u64)))
        });
        group.bench_function(BenchmarkId::new("iter/roaring", name), |b| {
            b.iter(|| r.iter().fold(0u64, |a, s| a.wrapping_add(s as u64)))
        });
        eprintln!(
            "{name}: {} slots; plain {} bytes, roaring {} bytes",
            r.len(),
            p.len() * 8,
            r.serialized_size()
        );
    }
    group.finish();
}

criterion_group!(benches, bitmaps);
criterion_main!(benches);
