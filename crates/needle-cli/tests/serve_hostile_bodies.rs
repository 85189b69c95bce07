//! Request bodies a faulty or hostile client sends `needle serve` (break14): a valid body of each
//! endpoint with one JSON value replaced by a hostile one (a number out of every range, one that
//! overflows `f32` to infinity, a wrong type, a huge or deeply nested array, a vector of the
//! wrong length), or the body's bytes cut, flipped or grown past `--max-body`. Every answer
//! must be a response (the process did not abort, the connection was not dropped); every refusal
//! a typed 4xx JSON error; a refused write changes nothing (the state checksum is the same); and
//! the node still leads and answers afterwards. Random: prints its seed, replays from
//! `NEEDLE_SEED`; `NEEDLE_HOSTILE_CASES` sets the number of cases (default 150).

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use serde_json::{Value, json};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n.max(1)
    }
}

/// (method, path, body, writes): a valid request of each kind with a body.
fn templates() -> Vec<(&'static str, &'static str, Value, bool)> {
    vec![
        (
            "POST",
            "/v1/collections",
            json!({"name": "other", "dimensions": 3, "m": 8, "ef_construction": 40, "ef_search": 20}),
            true,
        ),
        (
            "POST",
            "/v1/collections/items/records",
            json!({"id": "n1", "vector": [0.5, 1.0, 2.0], "metadata": {"n": 7, "k": "a", "t": [1, 2]}}),
            true,
        ),
        (
            "POST",
            "/v1/collections/items/records/batch",
            json!({"records": [
                {"id": "n2", "vector": [1.0, 0.0, 0.0]},
                {"id": "n3", "vector": [0.0, 1.0, 0.0], "metadata": {"n": 3}}
            ]}),
            true,
        ),
        (
            "PATCH",
            "/v1/collections/items/records/r1",
            json!({"vector": [2.0, 2.0, 2.0], "metadata": {"n": 100}}),
            true,
        ),
        (
            "POST",
            "/v1/collections/items/search",
            json!({"vector": [1.0, 0.0, 0.0], "k": 3, "ef": 20, "filter": {"n": {"$gte": 1}}, "include_vectors": true, "score_threshold": 10.0}),
            false,
        ),
        (
            "POST",
            "/v1/collections/items/search",
            json!({"id": "r2", "k": 2, "consistency": "follower"}),
            false,
        ),
        (
            "POST",
            "/v1/collections/items/count",
            json!({"filter": {"k": "a"}}),
            false,
        ),
        (
            "POST",
            "/v1/collections/items/scroll",
            json!({"filter": {"n": {"$lt": 4}}, "limit": 2, "include_vectors": true}),
            false,
        ),
        (
            "POST",
            "/v1/collections/items/records/get",
            json!({"ids": ["r1", "r2", "nope"], "include_vectors": true}),
            false,
        ),
        (
            "POST",
            "/v1/collections/items/records/delete",
            json!({"ids": ["r3"]}),
            true,
        ),
        (
            "POST",
            "/v1/collections/items/delete-by-filter",
            json!({"filter": {"n": {"$gte": 4}}}),
            true,
        ),
        (
            "POST",
            "/v1/collections/items/indexes",
            json!({"path": "n", "kind": "integer"}),
            true,
        ),
        ("POST", "/v1/cluster/leader", json!({"to": 1}), false),
    ]
}

/// Every place a value sits in `v` (JSON pointers), the root included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                pointers(x, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                pointers(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A hostile JSON value, as raw text (some are not representable as a `serde_json::Value`).
fn hostile_value(rng: &mut Rng) -> String {
    match rng.below(16) {
        0 => "null".into(),
        1 => "-1".into(),
        2 => "1e39".into(),  // an f32 infinity
        3 => "1e999".into(), // no f64
        4 => "18446744073709551616".into(),
        5 => "1099511627776".into(),
        6 => "-0.0".into(),
        7 => "\"\"".into(),
        8 => format!("\"{}\"", "x".repeat(100_000)),
        9 => "[]".into(),
        10 => format!("[{}]", vec!["1.0"; 100_000].join(",")),
        11 => format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)),
        12 => format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)),
        13 => "[1.0, 2.0]".into(),
        14 => "{\"$gte\": {\"$lt\": [1e39]}}".into(),
        _ => "true".into(),
    }
}

/// `body` with the value at `pointer` replaced by the raw text `raw`.
fn replace_raw(body: &Value, pointer: &str, raw: &str) -> Vec<u8> {
    const MARK: &str = "\u{1}hostile\u{1}";
    let mut b = body.clone();
    if pointer.is_empty() {
        return raw.as_bytes().to_vec();
    }
    *b.pointer_mut(pointer).expect("a pointer of the body") = Value::String(MARK.into());
    let text = b.to_string();
    let marked = Value::String(MARK.into()).to_string();
    text.replacen(&marked, raw, 1).into_bytes()
}

/// The database's state checksum (a refused write may still take a log index: the state
/// machine refuses some commands when it applies them).
fn state(c: &Cluster, leader: u64) -> Value {
    let s = c.status(leader, true).expect("the node answers its status");
    s["state_checksum"].clone()
}

#[test]
fn hostile_request_bodies_get_a_typed_4xx_and_change_nothing() {
    let seed = needle_testkit::seed("hostile_request_bodies_get_a_typed_4xx_and_change_nothing");
    let cases = needle_testkit::knob("NEEDLE_HOSTILE_CASES", 150);
    let mut rng = Rng(seed);
    let max_body = 1 << 20;
    let c = Cluster::start(1, &["--max-body", &max_body.to_string()]);
    let leader = c.wait_leader(Duration::from_secs(30));
    let n = c.client(leader).with_timeout(Duration::from_secs(30));
    let r = n
        .post(
            "/v1/collections",
            &json!({"name": "items", "dimensions": 3}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let records: Vec<_> = (0..6)
        .map(|i| json!({"id": format!("r{i}"), "vector": [1.0, i as f32, 0.5], "metadata": {"n": i, "k": "a"}}))
        .collect();
    let r = n
        .post(
            "/v1/collections/items/records/batch",
            &json!({ "records": records }),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
    let templates = templates();
    let (mut refused, mut taken) = (0, 0);
    for case in 0..cases {
        let (method, path, body, writes) = &templates[rng.below(templates.len() as u64) as usize];
        let (bytes, what) = match rng.below(8) {
            0 => {
                let mut b = body.to_string().into_bytes();
                let cut = rng.below(b.len() as u64) as usize;
                b.truncate(cut);
                (b, format!("cut at {cut}"))
            }
            1 => {
                let mut b = body.to_string().into_bytes();
                let at = rng.below(b.len() as u64) as usize;
                b[at] ^= 0x80 | (1 << rng.below(7));
                (b, format!("byte {at} flipped"))
            }
            2 => {
                let mut b = body.to_string().into_bytes();
                b.pop();
                b.extend(std::iter::repeat_n(b' ', max_body));
                b.push(b'}');
                (b, "past --max-body".to_string())
            }
            _ => {
                let mut ps = Vec::new();
                pointers(body, String::new(), &mut ps);
                let p = &ps[rng.below(ps.len() as u64) as usize];
                let raw = hostile_value(&mut rng);
                let shown: String = raw.chars().take(40).collect();
                (replace_raw(body, p, &raw), format!("{p:?} = {shown}"))
            }
        };
        let ctx = format!("case {case} (NEEDLE_SEED={seed}): {method} {path} with {what}");
        let before = state(&c, leader);
        let r = n
            .request(method, path, Some(&bytes))
            .unwrap_or_else(|e| panic!("{ctx}: no answer: {e}"));
        assert!(r.status < 500, "{ctx}: {} {}", r.status, r.body);
        if r.is_success() {
            taken += 1;
            continue;
        }
        refused += 1;
        assert!(
            (400..500).contains(&r.status) && r.error_code().is_some(),
            "{ctx}: not a typed error: {} {}",
            r.status,
            r.body
        );
        if *writes {
            assert_eq!(
                state(&c, leader),
                before,
                "{ctx}: a refused write changed the state"
            );
        }
    }
    eprintln!("{refused} refused, {taken} taken of {cases}");
    assert!(refused * 2 > cases, "too few hostile bodies were refused");
    let s = c.status(leader, false).expect("the node still answers");
    assert_eq!(s["role"], "leader");
    let r = n
        .post(
            "/v1/collections/items/search",
            &json!({"vector": [1.0, 0.0, 0.0], "k": 2}),
        )
        .unwrap();
    assert!(r.is_success(), "{r:?}");
}
