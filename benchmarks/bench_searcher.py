"""The cost-aware searcher's time per suggestion at N finished trials: the GP hyperparameter
search warm-started from the previous suggestion's optimum (the default) against a cold start
from the defaults (the state's optima dropped before each suggestion), side by side.

    python -m benchmarks.bench_searcher            # 200 trials, 10 timed suggestions each
Writes benchmarks/results/bench_searcher.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks._common import environment
from ray_ml.tune import CostAwareSearcher, load_space

RESULTS = Path(__file__).parent / "results" / "bench_searcher.json"


def _seconds_per_suggestion(trials: int, timed: int, cold: bool) -> float:
    searcher = CostAwareSearcher(load_space("mlp"), "val_loss", "min", budget_usd=1e9, seed=0)
    rng = np.random.default_rng(0)
    total = 0.0
    for i in range(trials + timed):
        if cold:
            searcher._thetas.clear()
        t = time.perf_counter()
        searcher.suggest(f"t{i}")
        if i >= trials:
            total += time.perf_counter() - t
        result = {"val_loss": float(rng.random()), "cost_usd": float(rng.random())}
        searcher.on_trial_complete(f"t{i}", result)
    return total / timed


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--timed", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    warm = _seconds_per_suggestion(args.trials, args.timed, cold=False)
    cold = _seconds_per_suggestion(args.trials, args.timed, cold=True)
    out = {
        "benchmark": "bench_searcher",
        "command": "python -m benchmarks.bench_searcher "
        + f"--trials {args.trials} --timed {args.timed}",
        **environment(("ray", "scikit-learn", "numpy")),
        "trials": args.trials,
        "warm_s_per_suggestion": warm,
        "cold_s_per_suggestion": cold,
        "cold_over_warm": cold / warm,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("warm_s_per_suggestion", "cold_s_per_suggestion")}))


if __name__ == "__main__":
    main()
