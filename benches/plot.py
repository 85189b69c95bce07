#!/usr/bin/env python3
"""Draw a recall-QPS plot per data set from the --json output of ../shared/bench/peers.py.

One PNG per data set, one line per engine: recall@k on x, single-thread queries per second on
y (log scale), one point per ef. Up and to the right is better. The recall drawn is the one
peers.py's tables use (recomputed from the returned ids where the reported one was wrong).

    python3 benches/plot.py /tmp/peers-run.json                  # PNGs beside the JSON file
    python3 benches/plot.py /tmp/peers-run.json --out docs/img   # or into a folder

Needs matplotlib (`pip install matplotlib`).
"""

import argparse
import json
import sys
from pathlib import Path

LEVELS = (0.90, 0.95, 0.99)  # the recall levels peers.py summarises


def recall_of(row):
    return row["recall_checked"] if row.get("recall_mismatch") else row["recall"]


def plot_dataset(plt, run, ds, rows, out, min_recall):
    params = run.get("params", {})
    machine = run.get("machine", {})
    k = params.get("k", 10)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    engines = sorted({r["engine"] for r in rows}, key=lambda e: (e != "needle", e))
    for engine in engines:
        pts = sorted(((recall_of(r), r["qps"], r["ef"]) for r in rows if r["engine"] == engine),
                     key=lambda p: p[2])
        pts = [p for p in pts if p[0] >= min_recall] or pts
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        style = {"linewidth": 2.4, "zorder": 3} if engine == "needle" else {"linewidth": 1.4}
        ax.plot(xs, ys, marker="o", markersize=4, label=engine, **style)
        for x, y, ef in pts:
            ax.annotate(str(ef), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                        alpha=0.6)
    for level in LEVELS:
        ax.axvline(level, color="grey", linewidth=0.6, linestyle=":")
    ax.set_yscale("log")
    ax.set_xlabel(f"recall@{k}")
    ax.set_ylabel("queries per second, 1 thread (log)")
    meta = ds or {}
    title = f"{meta.get('name', '?')}: {meta.get('n', '?'):,} x {meta.get('dim', '?')}, " \
            f"{meta.get('metric', '?')}" if ds else "?"
    ax.set_title(title + f"  (M={params.get('M', '?')}, efC={params.get('ef_construction', '?')})")
    fig.text(0.01, 0.01,
             f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} CPUs; "
             f"load {run.get('load_start', '?')} -> {run.get('load_end', '?')}; "
             "labels: ef; higher and further right is better",
             fontsize=7, alpha=0.7)
    ax.grid(True, which="both", linewidth=0.3, alpha=0.5)
    ax.legend()
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a JSON file written by peers.py --json")
    ap.add_argument("--out", type=Path, help="folder for the PNGs (default: beside the JSON)")
    ap.add_argument("--prefix", default="recall-qps",
                    help="file name prefix: PREFIX-<data set>.png (default: recall-qps)")
    ap.add_argument("--min-recall", type=float, default=0.5,
                    help="leave out points below this recall (default 0.5)")
    args = ap.parse_args()

    try:
        import matplotlib
    except ImportError:
        sys.exit("plot.py needs matplotlib: pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(args.run, encoding="utf-8") as f:
        run = json.load(f)
    rows = run.get("rows", [])
    if not rows:
        sys.exit(f"{args.run}: no rows (did every engine fail?)")
    out_dir = args.out or args.run.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name = {d["name"]: d for d in run.get("datasets", [])}
    for name in dict.fromkeys(r["dataset"] for r in rows):
        path = out_dir / f"{args.prefix}-{name}.png"
        plot_dataset(plt, run, by_name.get(name), [r for r in rows if r["dataset"] == name],
                     path, args.min_recall)
        print(path)


if __name__ == "__main__":
    main()
