"""How often each live figure's 95 % interval (`models.metrics.classification_metrics`) holds the true value,
and what the figures cost on a cohort of 1M leads. Simulated cohorts, no database::

    python -m benchmarks.coverage                        # 1,000 and 10,000 leads, 1,000 cohorts each
    python -m benchmarks.coverage --sizes 1000 --cohorts 200 --cost-size 0

A lead's latent intent ``x`` is standard normal; it converts with probability ``expit(-3.6 + 1.1 x)`` (about
4 %); the model scores ``expit(-3.4 + x)`` (ranks right, a little miscalibrated). The true value of each figure
is the figure on one population of ``--population`` leads. Prints one JSON object; ``--out FILE`` writes it too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from models.metrics import classification_metrics

FIGURES = ("roc_auc", "pr_auc", "top_decile_lift", "top20_capture", "brier", "ece")


def cohort(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` leads: who converted, and the model's scores."""
    x = rng.standard_normal(n)
    converted = (rng.random(n) < expit(-3.6 + 1.1 * x)).astype(np.int64)
    return converted, expit(-3.4 + x)


def coverage(*, sizes: list[int], cohorts: int, population: int, seed: int) -> dict[str, Any]:
    """Per size, the share of ``cohorts`` simulated cohorts whose interval holds the population's figure, the
    intervals' mean width, and the figure's mean (against the truth: its bias)."""
    rng = np.random.default_rng(seed)
    truth = classification_metrics(*cohort(rng, population))
    out: dict[str, Any] = {"truth": {k: truth[k] for k in FIGURES}, "sizes": {}}
    for n in sizes:
        hits = dict.fromkeys(FIGURES, 0)
        width = dict.fromkeys(FIGURES, 0.0)
        total = dict.fromkeys(FIGURES, 0.0)
        for _ in range(cohorts):
            m = classification_metrics(*cohort(rng, n))
            for k in FIGURES:
                ci = m[f"{k}_ci"]
                total[k] += m[k] or 0.0
                if ci is not None:
                    hits[k] += ci[0] <= truth[k] <= ci[1]
                    width[k] += ci[1] - ci[0]
        out["sizes"][str(n)] = {
            k: {"coverage": hits[k] / cohorts, "mean_width": width[k] / cohorts, "mean": total[k] / cohorts}
            for k in FIGURES
        }
    return out


def cost(*, size: int, repeat: int, seed: int) -> dict[str, float]:
    """Seconds for `classification_metrics` on one cohort of ``size`` leads (every figure and interval)."""
    y, p = cohort(np.random.default_rng(seed), size)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        classification_metrics(y, p)
        times.append(time.perf_counter() - t0)
    return {"size": size, "median_s": float(np.median(times)), "min_s": min(times)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="Cohort sizes, comma-separated.")
    parser.add_argument("--cohorts", type=int, default=1_000, help="Simulated cohorts per size.")
    parser.add_argument("--population", type=int, default=4_000_000, help="Leads the true values come from.")
    parser.add_argument("--cost-size", type=int, default=1_000_000, help="Cohort size to time (0: skip).")
    parser.add_argument("--repeat", type=int, default=3, help="Timings of the cost cohort.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=None, help="Also write the JSON here.")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    result = coverage(sizes=sizes, cohorts=args.cohorts, population=args.population, seed=args.seed)
    result |= {"cohorts": args.cohorts, "seed": args.seed}
    if args.cost_size:
        result["cost"] = cost(size=args.cost_size, repeat=args.repeat, seed=args.seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
