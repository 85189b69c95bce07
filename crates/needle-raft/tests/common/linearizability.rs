//! A Wing–Gong–Lowe linearizability checker for one read/write register (one key): a depth-first
//! search over the orders the history allows, memoised on (set of linearized operations, register
//! value) as in Lowe's "Testing for linearizability" (2017). A write whose outcome is unknown
//! (timed out, leadership lost) has no return time: it may take effect at any point after its
//! call, or never.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Write(u64),
    Read(Option<u64>),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub op: Op,
    /// When the call was made (any monotonic unit).
    pub call: u64,
    /// When it returned; `None` for a write that may or may not have happened.
    pub ret: Option<u64>,
}

/// Checks that the history of one register, starting empty, is linearizable.
pub fn check_register(history: &[Event]) -> Result<(), String> {
    let mut events: Vec<Event> = history.to_vec();
    events.sort_by_key(|e| e.call);
    let required = events.iter().filter(|e| e.ret.is_some()).count();
    let words = events.len().div_ceil(64).max(1);
    let mut done = vec![0u64; words];
    let mut memo = HashSet::new();
    if search(&events, &mut done, None, required, &mut memo) {
        Ok(())
    } else {
        Err(format!(
            "history of {} operations is not linearizable: {events:#?}",
            events.len()
        ))
    }
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

fn flip(done: &mut [u64], i: usize) {
    done[i / 64] ^= 1 << (i % 64);
}

fn search(
    events: &[Event],
    done: &mut Vec<u64>,
    state: Option<u64>,
    remaining: usize,
    memo: &mut HashSet<(Vec<u64>, Option<u64>)>,
) -> bool {
    if remaining == 0 {
        return true;
    }
    if memo.contains(&(done.clone(), state)) {
        return false;
    }
    // Only an operation called before every pending operation's return can go next.
    let min_ret = events
        .iter()
        .enumerate()
        .filter(|(i, e)| !is_done(done, *i) && e.ret.is_some())
        .filter_map(|(_, e)| e.ret)
        .min()
        .unwrap_or(u64::MAX);
    for i in 0..events.len() {
        let e = &events[i];
        if e.call > min_ret {
            break;
        }
        if is_done(done, i) {
            continue;
        }
        let next = match &e.op {
            Op::Write(v) => Some(*v),
            Op::Read(v) if *v == state => state,
            Op::Read(_) => continue,
        };
        flip(done, i);
        let left = remaining - usize::from(e.ret.is_some());
        if search(events, done, next, left, memo) {
            return true;
        }
        flip(done, i);
    }
    memo.insert((done.clone(), state));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(op: Op, call: u64, ret: Option<u64>) -> Event {
        Event { op, call, ret }
    }

    #[test]
    fn accepts_and_rejects_the_classics() {
        // Sequential write then read.
        assert!(
            check_register(&[
                ev(Op::Write(1), 0, Some(1)),
                ev(Op::Read(Some(1)), 2, Some(3))
            ])
            .is_ok()
        );
        // A stale read after a completed write is not linearizable.
        assert!(
            check_register(&[ev(Op::Write(1), 0, Some(1)), ev(Op::Read(None), 2, Some(3))])
                .is_err()
        );
        // Concurrent: either order.
        assert!(
            check_register(&[ev(Op::Write(1), 0, Some(5)), ev(Op::Read(None), 1, Some(2))]).is_ok()
        );
        // A maybe-write may be seen later, or never.
        assert!(
            check_register(&[
                ev(Op::Write(7), 0, None),
                ev(Op::Read(Some(7)), 10, Some(11))
            ])
            .is_ok()
        );
        assert!(
            check_register(&[ev(Op::Write(7), 0, None), ev(Op::Read(None), 10, Some(11))]).is_ok()
        );
        // But not un-seen once seen.
        assert!(
            check_register(&[
                ev(Op::Write(7), 0, None),
                ev(Op::Read(Some(7)), 10, Some(11)),
                ev(Op::Read(None), 12, Some(13)),
            ])
            .is_err()
        );
        // A value never written cannot be read.
        assert!(check_register(&[ev(Op::Read(Some(3)), 0, Some(1))]).is_err());
    }
}
