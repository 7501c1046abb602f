"""How often the 95 % intervals of imgasdata.metrics cover the true value (a simulation, not a speed test).

Draws many test sets from a known confusion structure (class sizes fixed, as in a
stratified test set), computes the intervals of :func:`imgasdata.metrics.confusion_intervals`
on each, and prints the share that contains the true population value, with the mean width.
A well-behaved 95 % interval covers about 95 % of the time.

    python benchmarks/interval_coverage.py [--reps 400]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from imgasdata.metrics import _rates, confusion_intervals


def coverage(probabilities, sizes, positive_index, reps, n_boot, rng):
    """Share of ``reps`` simulated test sets whose interval contains the truth, per metric, and mean widths."""
    truth_cm = np.asarray(sizes, float)[:, None] * probabilities
    rates = _rates(truth_cm)
    truth = {"accuracy": np.trace(truth_cm) / truth_cm.sum()}
    for name, i in (("precision", 0), ("recall", 1), ("f1", 2)):
        truth[name] = rates[i][positive_index] if positive_index is not None else rates[i].mean()
    hits, widths = dict.fromkeys(truth, 0), dict.fromkeys(truth, 0.0)
    for r in range(reps):
        cm = np.array([rng.multinomial(n, p) for n, p in zip(sizes, probabilities)])
        iv = confusion_intervals(cm, positive_index, n_boot=n_boot, seed=r)["intervals"]
        for k, t in truth.items():
            hits[k] += iv[k][0] <= t <= iv[k][1]
            widths[k] += iv[k][1] - iv[k][0]
    return {f"{k} covered": hits[k] / reps for k in truth} | {f"{k} width": widths[k] / reps for k in truth}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=400)
    parser.add_argument("--n-boot", type=int, default=500)
    a = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for negatives, positives, recall, false_alarms in ((20, 7, 0.85, 0.05), (20, 7, 0.98, 0.01), (100, 30, 0.8, 0.1)):
        p = np.array([[1 - false_alarms, false_alarms], [1 - recall, recall]])
        rows.append({"task": f"binary, {positives} positives / {negatives} negatives, recall {recall}",
                     **coverage(p, [negatives, positives], 1, a.reps, a.n_boot, rng)})
    for k, per_class, correct in ((4, 2, 0.9), (4, 5, 0.9), (5, 6, 0.8), (4, 20, 0.9), (4, 20, 0.99)):
        p = np.full((k, k), (1 - correct) / (k - 1))
        np.fill_diagonal(p, correct)
        rows.append({"task": f"{k} classes x {per_class} images, {correct:.0%} right (macro)",
                     **coverage(p, [per_class] * k, None, a.reps, a.n_boot, rng)})
    table = pd.DataFrame(rows).set_index("task")
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table[[c for c in table.columns if c.endswith("covered")]].round(3).to_string())
        print()
        print(table[[c for c in table.columns if c.endswith("width")]].round(3).to_string())


if __name__ == "__main__":
    main()
