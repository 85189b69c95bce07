#!/usr/bin/env python3
"""Make the small committed test sets in this folder from the full sets in ../../shared/data.

Each subset takes the FIRST n_base rows of the source's base.fvecs and the FIRST n_query rows
of its query.fvecs (the source rows are already a seeded shuffle, see ../../shared/data/README.md),
with the matching word lines, and recomputes the exact top-100 ground truth over the subset:
cosine distance 1 - cos in float64 from the stored float32 values, ties broken by the smaller id.
Base ids stay the source's row numbers (row i of the subset is row i of the source).

Needs numpy only. Deterministic: the same source files give the same bytes.

    python3 testdata/make_subsets.py                        # from the repo root
    python3 testdata/make_subsets.py --source DIR --out DIR
"""

import argparse
import hashlib
import heapq
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "data"

# (folder written, source folder, base rows, query rows)
SUBSETS = (
    ("words-minilm-4k", "words-minilm", 4_000, 200),
    ("glove50-10k", "glove50", 10_000, 200),
)
K_GT = 100
GT_BATCH = 100  # queries per float64 matrix product
CHECK_QUERIES = 10  # queries re-checked by a plain per-row loop
SIZE_LIMIT = 10_000_000  # bytes, all subsets together (issue 2: "under 10 MB")


# ---------------------------------------------------------------- TEXMEX .fvecs / .ivecs

def read_vecs_head(path, dtype, n):
    """The first n rows of a TEXMEX file (int32 dim, then dim values per row) as an (n, dim) array."""
    with open(path, "rb") as f:
        d = int.from_bytes(f.read(4), "little", signed=True)
    if d <= 0:
        raise ValueError(f"{path}: bad dimension {d}")
    raw = np.fromfile(path, dtype="<i4", count=n * (d + 1))
    if raw.size != n * (d + 1):
        raise ValueError(f"{path}: fewer than {n} rows")
    rec = raw.reshape(n, d + 1)
    if not (rec[:, 0] == d).all():
        raise ValueError(f"{path}: rows do not all have dimension {d}")
    return np.ascontiguousarray(rec[:, 1:]).view(dtype)


def write_vecs(path, arr):
    """Write a 2-D float32 (.fvecs) or int32 (.ivecs) array: per row int32 dim, then dim values."""
    arr = np.asarray(arr)
    dt = {np.dtype(np.float32): "<f4", np.dtype(np.int32): "<i4"}[arr.dtype]
    n, d = arr.shape
    rec = np.empty((n, d + 1), dtype=dt)
    rec.view("<i4")[:, 0] = d
    rec[:, 1:] = arr
    with open(path, "wb") as f:
        f.write(rec.tobytes(order="C"))


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype="<i4")
    d = int(raw[0])
    rec = raw.reshape(-1, d + 1)
    assert (rec[:, 0] == d).all(), f"{path}: inconsistent row dimensions"
    return rec[:, 1:].copy().view(dtype)


def head_lines(path, n):
    with open(path, encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    if len(lines) < n:
        raise ValueError(f"{path}: fewer than {n} lines")
    return lines[:n]


def write_words(path, words):
    for w in words:
        assert w and not any(c.isspace() for c in w), repr(w)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(words) + "\n")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------- exact ground truth
# Same algorithm as ../../shared/data/make.py, so the subsets agree with the full sets.

def unit64(x):
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    assert (n > 0).all(), "zero vector: cosine undefined"
    return x / n


def exact_knn(base, query, k):
    """Exact top-k by cosine distance 1 - cos, in float64; ties broken by the smaller base id."""
    b = unit64(base)
    q = unit64(query)
    ids = np.empty((len(q), k), dtype=np.int32)
    dist = np.empty((len(q), k), dtype=np.float64)
    for s in range(0, len(q), GT_BATCH):
        d = 1.0 - q[s:s + GT_BATCH] @ b.T
        for r in range(d.shape[0]):
            row = d[r]
            kth = np.partition(row, k - 1)[k - 1]
            cand = np.flatnonzero(row <= kth)  # every id that could be in the top k
            order = np.lexsort((cand, row[cand]))  # by distance, then by id
            top = cand[order[:k]]
            ids[s + r], dist[s + r] = top, row[top]
    return ids, dist


def plain_loop_topk(base, q, k):
    """Independent check: one base row at a time, un-normalised dot / (|q| |b|), (d, id) order."""
    q = np.asarray(q, dtype=np.float64)
    nq = float(np.sqrt(np.dot(q, q)))
    b64 = np.asarray(base, dtype=np.float64)
    cands = []
    for i in range(len(b64)):
        v = b64[i]
        cands.append((1.0 - float(np.dot(q, v)) / (nq * float(np.sqrt(np.dot(v, v)))), i))
    return heapq.nsmallest(k, cands)


def check_gt(base, query, ids, dist, source_gt):
    """Assert the ground truth is right; returns a short summary for the log."""
    assert (np.diff(dist, axis=1) >= 0).all(), "distances not non-decreasing"
    assert all(len(set(r)) == len(r) for r in ids.tolist()), "repeated id in a row"
    assert ids.min() >= 0 and ids.max() < len(base)
    # 1. A few queries again, by a plain loop over the rows.
    rng = np.random.default_rng(43)
    picks = rng.choice(len(query), size=min(CHECK_QUERIES, len(query)), replace=False)
    for qi in picks:
        ref = plain_loop_topk(base, query[qi], 10)
        assert [i for _, i in ref] == ids[qi, :10].tolist(), f"query {qi}: plain loop disagrees"
        assert np.allclose([d for d, _ in ref], dist[qi, :10], rtol=0, atol=1e-12)
    # 2. The source's ground truth over the full base, restricted to ids in the subset, must be
    #    a prefix of the subset's ground truth (the subset keeps the source's row numbers).
    agreed = 0
    for qi in range(len(query)):
        kept = [int(i) for i in source_gt[qi] if i < len(base)]
        assert ids[qi, :len(kept)].tolist() == kept, f"query {qi}: disagrees with the source GT"
        agreed += len(kept)
    return f"plain loop agrees on {len(picks)} queries (top 10); source GT agrees on {agreed} ids"


# ---------------------------------------------------------------- one subset

def make_subset(name, src_name, n_base, n_query, source_root, out_root):
    src = source_root / src_name
    out = out_root / name
    out.mkdir(parents=True, exist_ok=True)
    with open(src / "meta.json", encoding="utf-8") as f:
        src_meta = json.load(f)
    if src_meta.get("metric") != "cosine":
        raise ValueError(f"{src}/meta.json: expected metric cosine, got {src_meta.get('metric')!r}")

    base = read_vecs_head(src / "base.fvecs", np.float32, n_base)
    query = read_vecs_head(src / "query.fvecs", np.float32, n_query)
    source_gt = read_vecs_head(src / "gt.ivecs", np.int32, n_query)
    bwords = head_lines(src / "base_words.txt", n_base)
    qwords = head_lines(src / "query_words.txt", n_query)

    ids, dist = exact_knn(base, query, K_GT)
    summary = check_gt(base, query, ids, dist, source_gt)

    write_vecs(out / "base.fvecs", base)
    write_vecs(out / "query.fvecs", query)
    write_vecs(out / "gt.ivecs", ids)
    write_words(out / "base_words.txt", bwords)
    write_words(out / "query_words.txt", qwords)
    meta = {
        "name": name,
        "metric": "cosine",
        "distance": "1 - cos(q, b), computed in float64 from the stored float32 vectors",
        "dim": int(base.shape[1]),
        "n_base": int(n_base),
        "n_query": int(n_query),
        "k_gt": K_GT,
        "normalised": bool(src_meta.get("normalised", False)),
        "ids": "0-based row numbers in base.fvecs (= row numbers in the source); ties broken by smaller id",
        "source": {
            "data_set": f"../shared/data/{src_name}",
            "selection": f"first {n_base} rows of base.fvecs, first {n_query} rows of query.fvecs "
                         "(and the same lines of base_words.txt, query_words.txt)",
            "files": {f: sha256_file(src / f) for f in ("base.fvecs", "query.fvecs", "meta.json")},
            "origin": src_meta.get("source", {}),
        },
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "made_by": "testdata/make_subsets.py",
        "files": ["base.fvecs", "query.fvecs", "gt.ivecs", "base_words.txt", "query_words.txt",
                  "meta.json"],
    }
    with open(out / "meta.json", "w", encoding="utf-8", newline="\n") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")

    # Read every file back.
    assert np.array_equal(read_vecs(out / "base.fvecs", np.float32), base)
    assert np.array_equal(read_vecs(out / "query.fvecs", np.float32), query)
    assert np.array_equal(read_vecs(out / "gt.ivecs", np.int32), ids)
    assert head_lines(out / "base_words.txt", n_base) == bwords
    assert head_lines(out / "query_words.txt", n_query) == qwords
    print(f"{name}: {n_base} x {base.shape[1]} base, {n_query} queries, GT top {K_GT}; {summary}",
          file=sys.stderr)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the full sets")
    ap.add_argument("--out", type=Path, default=HERE, help="folder to write the subsets into")
    args = ap.parse_args()

    total = 0
    for name, src_name, n_base, n_query in SUBSETS:
        out = make_subset(name, src_name, n_base, n_query, args.source, args.out)
        for f in sorted(out.iterdir()):
            total += f.stat().st_size
            print(f"{sha256_file(f)}  {name}/{f.name}  ({f.stat().st_size:,} bytes)")
    print(f"total {total:,} bytes", file=sys.stderr)
    if total >= SIZE_LIMIT:
        sys.exit(f"subsets take {total:,} bytes, over the {SIZE_LIMIT:,} byte limit")


if __name__ == "__main__":
    main()
