"""hnswlib's recall@k at several ef for several random seeds (the level draws), on one data set.

Beside `needle-ann --data DIR --seeds 1,2,3 --ef 16,32,64,128`: how much the random levels
alone move each engine's recall at equal ef. Needs hnswlib and numpy (peers.py's venv).

    /tmp/peers-venv/bin/python benches/hnswlib_seeds.py ../shared/data/words-minilm \\
        --seeds 100,1,2,3,4 --ef 16,32,64,128

Prints `seed ef recall@k` lines. One thread, M 16, ef_construction 200 (as peers.py).
"""
import argparse
import json
import os

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
import hnswlib  # noqa: E402


def fvecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy().view(np.float32)


def ivecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].copy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--seeds", default="100")
    ap.add_argument("--ef", default="16,32,64,128")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    base = fvecs(os.path.join(a.data, "base.fvecs"))
    queries = fvecs(os.path.join(a.data, "query.fvecs"))
    gt = ivecs(os.path.join(a.data, "gt.ivecs"))[:, : a.k]
    metric = json.load(open(os.path.join(a.data, "meta.json"))).get("metric", "l2")
    space = {"cosine": "cosine", "l2": "l2", "ip": "ip"}[metric]
    print(f"seed ef recall@{a.k}")
    for seed in [int(s) for s in a.seeds.split(",")]:
        index = hnswlib.Index(space=space, dim=base.shape[1])
        index.init_index(max_elements=len(base), ef_construction=a.efc, M=a.m, random_seed=seed)
        index.set_num_threads(1)
        index.add_items(base, np.arange(len(base)))
        for ef in [int(e) for e in a.ef.split(",")]:
            index.set_ef(max(ef, a.k))
            labels, _ = index.knn_query(queries, k=a.k)
            hits = sum(len(set(labels[i]) & set(gt[i])) for i in range(len(queries)))
            print(f"{seed} {ef} {hits / (len(queries) * a.k):.4f}", flush=True)


if __name__ == "__main__":
    main()
