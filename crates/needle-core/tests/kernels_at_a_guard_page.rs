//! The int8 kernels (one code, and runs of codes) never read past the bytes they are given:
//! the codes and the query are placed so that their last byte is the last byte of a mapped
//! page, with a `PROT_NONE` page after it, so any over-read faults (the test process dies).
//! Every kernel set this CPU runs (what `NEEDLE_SIMD` can force), run lengths 0..=64, code
//! lengths 1..=130 and 384/768, strides packed, odd and the codes' 64-byte block stride
//! (break11). Random bytes; replays with `NEEDLE_SEED`.
#![cfg(unix)]

use needle_core::__private::{dot_i8_scalar, int8_kernels_available, l2_i8_scalar};

/// `len` bytes whose last one is the last byte before a `PROT_NONE` page (unmapped on drop).
struct Guarded {
    base: *mut libc::c_void,
    total: usize,
    data: *mut i8,
    len: usize,
}

impl Guarded {
    fn new(len: usize) -> Self {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let body = len.div_ceil(page).max(1) * page;
        let total = body + page;
        // SAFETY: an anonymous private mapping, checked below; the guard page is inside it.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(base, libc::MAP_FAILED, "mmap");
            let guard = base.cast::<u8>().add(body);
            assert_eq!(
                libc::mprotect(guard.cast(), page, libc::PROT_NONE),
                0,
                "mprotect"
            );
            Guarded {
                base,
                total,
                data: guard.sub(len).cast(),
                len,
            }
        }
    }

    fn slice(&mut self) -> &mut [i8] {
        // SAFETY: `len` bytes inside the readable, writable part of the mapping.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base, self.total) };
    }
}

fn fill(rng: &mut u64, out: &mut [i8]) {
    for x in out {
        *rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *x = (*rng >> 56) as u8 as i8;
    }
}

#[test]
fn run_kernels_read_nothing_past_the_last_code() {
    let mut rng = needle_testkit::seed("run_kernels_read_nothing_past_the_last_code");
    let lens: Vec<usize> = (1..=130).chain([383, 384, 768]).collect();
    for k in int8_kernels_available() {
        for &len in &lens {
            let mut q = Guarded::new(len);
            fill(&mut rng, q.slice());
            let q = q.slice().to_vec();
            // The query itself also ends at a guard page.
            let mut gq = Guarded::new(len);
            gq.slice().copy_from_slice(&q);
            for stride in [len, len + 5, (len + 8).div_ceil(64) * 64] {
                let runs: Vec<usize> = if len <= 130 {
                    (0..=64).collect()
                } else {
                    vec![0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64]
                };
                for n in runs {
                    let bytes = if n == 0 { 0 } else { (n - 1) * stride + len };
                    let mut codes = Guarded::new(bytes);
                    fill(&mut rng, codes.slice());
                    let codes_s = codes.slice();
                    let mut got = vec![0x5a5a_5a5a; n];
                    (k.dot_run)(gq.slice(), codes_s, stride, &mut got);
                    let want: Vec<i32> = (0..n)
                        .map(|j| dot_i8_scalar(&q, &codes_s[j * stride..j * stride + len]))
                        .collect();
                    assert_eq!(got, want, "{} run: len {len} stride {stride} n {n}", k.name);
                }
            }
        }
    }
}

#[test]
fn one_code_kernels_read_nothing_past_either_operand() {
    let mut rng = needle_testkit::seed("one_code_kernels_read_nothing_past_either_operand");
    for k in int8_kernels_available() {
        for len in (0..=200).chain([383, 384, 385, 768, 1536]) {
            let (mut a, mut b) = (Guarded::new(len), Guarded::new(len));
            fill(&mut rng, a.slice());
            fill(&mut rng, b.slice());
            let (av, bv) = (a.slice().to_vec(), b.slice().to_vec());
            let (a, b) = (a.slice(), b.slice());
            assert_eq!(
                (k.dot)(a, b),
                dot_i8_scalar(&av, &bv),
                "{} dot {len}",
                k.name
            );
            assert_eq!((k.l2)(a, b), l2_i8_scalar(&av, &bv), "{} l2 {len}", k.name);
        }
    }
}
