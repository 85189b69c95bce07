#!/usr/bin/env python3
"""Plots a filtered.py --json run: QPS per case (log scale) for every engine, one figure per
data set, with recall@10 printed above each bar. Usage:

    python benches/plot_filtered.py RUN.json [RUN2.json ...] --out docs/img
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="docs/img")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for path in args.runs:
        run = json.load(open(path))
        for ds in run["datasets"]:
            cases = [c["name"] for c in ds["cases"]]
            engines = [e for e, v in ds["engines"].items() if not v.get("error")]
            width = 0.8 / max(1, len(engines))
            fig, ax = plt.subplots(figsize=(11, 4.5))
            for i, e in enumerate(engines):
                rows = {r["name"]: r for r in ds["engines"][e]["rows"]}
                xs, qps, rec = [], [], []
                for j, c in enumerate(cases):
                    r = rows.get(c, {})
                    if r.get("qps"):
                        xs.append(j + (i - (len(engines) - 1) / 2) * width)
                        qps.append(r["qps"])
                        rec.append(r.get("recall"))
                bars = ax.bar(xs, qps, width, label=e)
                for b, rc in zip(bars, rec):
                    if rc is not None:
                        ax.text(b.get_x() + b.get_width() / 2, b.get_height(), f"{rc:.2f}",
                                ha="center", va="bottom", fontsize=6, rotation=90)
            ax.set_yscale("log")
            ax.set_xticks(range(len(cases)))
            ax.set_xticklabels(cases)
            ax.set_ylabel("QPS (one thread, log)")
            ax.set_title(f"{ds['name']}: filtered search, ef {run['params']['ef']}, "
                         f"k {run['params']['k']} (recall@10 above bars)")
            ax.legend(fontsize=8)
            fig.tight_layout()
            out = os.path.join(args.out, f"filtered-{ds['name']}.png")
            fig.savefig(out, dpi=110)
            print("wrote", out)


if __name__ == "__main__":
    main()
