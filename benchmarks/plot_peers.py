"""Plot the CSV written by ``bench_peers.py --csv`` into a PNG for the docs.

Two rows (Gaussian, binary tasks) of four panels: the score on held-out rows
of the training tasks and the fit time against the number of training tasks
(generated data), then the new tasks' score and the time to get a new task's
model against the number k of its rows, at one size (``--groups``).
Measurements that did not finish (time-outs, skipped refits) are absent from
the plot; the tables of the docs say which. Score axes stop 0.35 below the
best score: the per-task fits of one or two rows fall below them.

Run: ``python benchmarks/plot_peers.py [--csv doc/_static/peers.csv]
[--out doc/_static/peers.png]`` (needs matplotlib only).
"""

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

DOC_STATIC = Path(__file__).resolve().parents[1] / "doc" / "_static"
METRICS = {"gaussian": "R²", "binary": "ROC AUC"}


def read(path):
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for key in ("n_groups", "repeat", "k"):
            row[key] = int(row[key])
        for key in ("score", "score2", "seconds"):
            row[key] = float(row[key])
    return [r for r in rows if r["status"] == "ok" and r["dataset"] != "school"]


def style(method):
    """Colour by tool, marker by variant, so that 13 lines stay readable."""
    if method.startswith("skmeta"):
        shades = {"defaults": "#9ecae1", "prior=full,": "#08519c",
                  "prior=full": "#3182bd", "prior=diagonal": "#6baed6"}
        colour = next(c for key, c in shades.items() if key in method)
        return dict(color=colour, marker="o", linestyle="-")
    if "MixedLM" in method or "BayesMixedGLM" in method:
        return dict(color="#31a354" if "slopes" in method else "#a1d99b",
                    marker="s", linestyle="-")
    if "GPBoost" in method:
        colour = "#e6550d" if "coefficients" in method else "#fdae6b"
        return dict(color=colour, marker="^",
                    linestyle=":" if "no refit" in method else "-")
    if "LightGBM" in method:
        return dict(color="#de2d26", marker="D", linestyle="-")
    return dict(color="#636363" if "pooled" in method else "#bdbdbd",
                marker="x", linestyle="--")


def legend_name(method):
    """One legend entry for a tool used in both families."""
    for specific in ("Ridge", "LogisticRegression"):
        if method.startswith((f"pooled {specific}", f"{specific} per task")):
            return method.replace(specific, "base estimator")
    for specific in ("MixedLM,", "BinomialBayesMixedGLM,"):
        method = method.replace(
            specific, "MixedLM (Gaussian) / BinomialBayesMixedGLM (binary),")
    return method


def mean_by(rows, key, value):
    table = defaultdict(lambda: defaultdict(list))
    for r in rows:
        table[r["method"]][r[key]].append(r[value])
    return {m: sorted((x, float(np.median(v) if value == "seconds" else np.mean(v)))
                      for x, v in points.items()) for m, points in table.items()}


def plot(rows, groups, out):
    families = [f for f in ("gaussian", "binary")
                if any(r["family"] == f for r in rows)]
    fig, axes = plt.subplots(len(families), 4, figsize=(17, 4.2 * len(families)),
                             squeeze=False)
    handles = {}
    for axrow, family in zip(axes, families):
        fits = [r for r in rows if r["family"] == family and r["phase"] == "fit"]
        new = [r for r in rows if r["family"] == family and r["phase"] == "adapt"
               and r["n_groups"] == groups]
        panels = [
            (mean_by(fits, "n_groups", "score"), "training tasks",
             f"{METRICS[family]}, held-out rows", False),
            (mean_by(fits, "n_groups", "seconds"), "training tasks", "fit time (s)",
             True),
            (mean_by(new, "k", "score"), "rows of the new task (k)",
             f"{METRICS[family]}, new tasks", False),
            (mean_by([r for r in new if np.isfinite(r["seconds"])], "k", "seconds"),
             "rows of the new task (k)", "time to a new task's model (s)", True),
        ]
        for ax, (lines, xlabel, ylabel, logy) in zip(axrow, panels):
            for method, points in lines.items():
                x, y = zip(*points)
                (line,) = ax.plot(x, y, **style(method))
                handles.setdefault(legend_name(method), line)
            ax.set_xscale("log")
            if logy:
                ax.set_yscale("log")
            else:
                # per-task fits of one or two rows score far below the rest
                values = [v for points in lines.values() for _, v in points]
                if values:
                    top = max(values)
                    ax.set_ylim(max(min(values), top - 0.35) - 0.01, top + 0.01)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.grid(True, which="major", alpha=0.3)
        axrow[0].set_title(f"{family} tasks: fit", loc="left")
        axrow[2].set_title(f"{family} tasks: new tasks, {groups:,} training tasks",
                           loc="left")
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=3,
               fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.015 * len(handles) / 3, 1, 1))
    fig.savefig(out, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", default=str(DOC_STATIC / "peers.csv"))
    parser.add_argument("--out", default=str(DOC_STATIC / "peers.png"))
    parser.add_argument("--groups", type=int, default=1_000,
                        help="training-task count of the new-task panels")
    args = parser.parse_args(argv)
    plot(read(args.csv), args.groups, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
