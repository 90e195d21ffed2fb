"""Ray Tune sweeps: scheduling overhead, and a live comparison of search methods under one budget.

`overhead`: N one-second trials (no training), K at a time, on the embedded Ray; reported as
wall time over the theoretical minimum N*1s/K (target <= 1.3).

`compare`: the same search space, rung settings (ASHA grace 1, reduction 2, max_t = epochs),
2 CPUs per trial and dollar budget for random+FIFO, random+ASHA, Optuna TPE+ASHA and the
cost-aware searcher+ASHA, each over the given seeds, on real Ray Train trials (breast cancer MLP).
Reported per method and seed: best validation loss at the budget, dollars spent, trials, pruned,
and whether the target loss was reached.

`trials`: a sweep of real one-worker trials through `run_sweep` (each trains in its own
trial process) against the same training loop (ray_ml's, same data, configs, checkpoints and
reports, one CPU per trial, two at a time) in a plain Ray Tune function trainable, in one run:
what the sweep's own machinery (books, budget gate, scheduler wrapper) costs per trial. Both are
metered the same way: held seconds from Tune's trial start to its end x the catalog's price.
Reported: median per-trial fixed overhead (held seconds minus the trial's own epoch seconds)
and the ratio of total billed dollars (targets: <= 2 s; <= 1.2x).

    python -m benchmarks.bench_tune overhead --trials 200 --concurrency 2
    python -m benchmarks.bench_tune compare --seeds 0 1 2 --budget 0.002
    python -m benchmarks.bench_tune trials --trials 16 --epochs 6
Results go to benchmarks/results/bench_tune_<part>.json (and bench_tune_compare.png).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import environment

RESULTS = Path(__file__).parent / "results"
METHODS = {
    "random+fifo": ("random", "fifo"),
    "random+asha": ("random", "asha"),
    "tpe+asha": ("optuna_tpe", "asha"),
    "cost_aware+asha": ("cost_aware", "asha"),
}


def _sleep_trial(config: dict[str, Any]) -> dict[str, Any]:
    time.sleep(1.0)
    return {"score": config["x"]}


def overhead(trials: int, concurrency: int, reuse_actors: bool) -> dict[str, Any]:
    from ray import tune

    from ray_ml.cluster import start_ray

    start_ray(num_cpus=concurrency, object_store_mb=300)
    t0 = time.perf_counter()
    tuner = tune.Tuner(
        tune.with_resources(_sleep_trial, {"cpu": 1}),
        param_space={"x": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(
            num_samples=trials, max_concurrent_trials=concurrency, reuse_actors=reuse_actors
        ),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(), name="overhead", verbose=0),
    )
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    minimum = trials * 1.0 / concurrency
    return {
        "trials": trials,
        "concurrency": concurrency,
        "reuse_actors": reuse_actors,
        "errors": grid.num_errors,
        "wall_s": wall,
        "theoretical_min_s": minimum,
        "ratio": wall / minimum,
        "target": "<= 1.3",
    }


def compare(
    seeds: list[int], budget: float, samples: int, epochs: int, target: float
) -> dict[str, Any]:
    from ray_ml.cluster import start_ray
    from ray_ml.config import load_config
    from ray_ml.data import prepare_data
    from ray_ml.tune import run_sweep

    out: dict[str, Any] = {}
    storage = Path(tempfile.mkdtemp(prefix="bench_tune_"))
    base = [
        "experiment=demo",
        f"storage_path={storage}",
        "scaling.num_workers=1",
        f"train.epochs={epochs}",
        f"tune.max_t={epochs}",
        "tune.grace_period=1",
        "tune.reduction_factor=2",
        f"tune.num_samples={samples}",
        f"tune.budget_usd={budget}",
        "train.early_stopping_patience=0",
        "tune.max_concurrent_trials=2",
    ]
    start_ray(load_config("tune", base).cluster, include_dashboard=True)
    prepared = None
    for name, (searcher, scheduler) in METHODS.items():
        runs = []
        for seed in seeds:
            cfg = load_config(
                "tune",
                [
                    *base,
                    f"name=b-{name.replace('+', '-')}-{seed}",
                    f"seed={seed}",
                    f"tune.searcher={searcher}",
                    f"tune.scheduler={scheduler}",
                ],
            )
            prepared = prepared or prepare_data(cfg.data, 0, storage / "data")
            t0 = time.perf_counter()
            summary = run_sweep(cfg, prepared=prepared)
            best = summary["best"]["val_loss"] if summary["best"] else None
            curve = _spend_curve(storage / "tune" / f"{cfg.name}-sweep")
            runs.append(
                {
                    "seed": seed,
                    "best_val_loss": best,
                    "cost_usd": summary["cost_usd"],
                    "trials": summary["trials"],
                    "pruned": summary["pruned"],
                    "reached_target": best is not None and best <= target,
                    "usd_to_target": next((usd for usd, v in curve if v <= target), None),
                    "curve": curve,
                    "wall_s": time.perf_counter() - t0,
                }
            )
        out[name] = runs
    return {
        "budget_usd": budget,
        "target_val_loss": target,
        "samples": samples,
        "epochs": epochs,
        "summary": _summarize(out),
        "methods": out,
    }


def _plain_trial(config: dict[str, Any], *, cfg: Any, prepared: Any, inputs: Any) -> None:
    """The baseline: ray_ml's own training loop in a plain Tune function trainable.

    Same loop, data, checkpoints and reports as a ray_ml trial; none of the sweep's books,
    budget gate, scheduler wrapper or per-trial config handling.
    """
    from ray_ml.train import FitInputs, TrialSession, class_counts, loop_spec, run_loop, train_parts
    from ray_ml.tune import apply_params

    trial_cfg = apply_params(cfg, config)
    counts = class_counts(prepared, train_parts(prepared))
    spec = loop_spec(trial_cfg, prepared, train_rows=inputs.spec.train_rows, counts=counts)
    session = TrialSession({"train": inputs.train, "validation": inputs.validation})
    run_loop(FitInputs(spec, inputs.train, inputs.validation), session)


def _held_callback() -> Any:
    from ray import tune

    class Held(tune.Callback):
        """Held seconds per trial, from Tune's start to its end (what ray_ml's meter bills)."""

        def __init__(self) -> None:
            self.start: dict[str, float] = {}
            self.held: dict[str, float] = {}

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.start[trial.trial_id] = time.time()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.held[trial.trial_id] = time.time() - self.start[trial.trial_id]

    return Held()


def _epoch_seconds(exp_dir: Path) -> dict[str, float]:
    """Trial id -> the sum of its reported `epoch_s` (Tune's own result files)."""
    out: dict[str, float] = {}
    for path in exp_dir.glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            out[rows[0]["trial_id"]] = sum(float(r.get("epoch_s", 0.0)) for r in rows)
    return out


def trials(n: int, epochs: int) -> dict[str, Any]:
    """`run_sweep` on one-worker trials vs a plain Tune function trainable; see the docstring."""
    import statistics

    import pyarrow.parquet as pq
    from ray import tune

    from ray_ml.cluster import start_ray
    from ray_ml.config import load_config
    from ray_ml.cost import PriceCatalog
    from ray_ml.data import prepare_data
    from ray_ml.train import fit_inputs
    from ray_ml.tune import SearchSpace, run_sweep

    storage = Path(tempfile.mkdtemp(prefix="bench_tune_trials_"))
    batch = 64
    cfg = load_config(
        "tune",
        [
            "experiment=demo",
            f"storage_path={storage}",
            "name=bench-trials",
            "cost=aws_illustrative",
            "scaling.num_workers=1",
            f"train.epochs={epochs}",
            f"tune.max_t={epochs}",
            f"train.batch_size={batch}",
            "train.lr=0.001",
            "train.weight_decay=0.0001",
            "train.lr_schedule=none",
            "train.early_stopping_patience=0",
            "model.hidden_sizes=[64]",
            "tune.searcher=random",
            "tune.scheduler=fifo",
            "tune.budget_usd=null",
            "tune.num_samples=1",
            "tune.max_concurrent_trials=2",
        ],
    )
    start_ray(cfg.cluster, num_cpus=2, include_dashboard=True)
    rate = PriceCatalog.from_config(cfg.cost).price_of({"CPU": 1.0})
    prepared = prepare_data(cfg.data, cfg.seed, storage / "data")
    # The same configs for both: the seed is the only tuned key.
    space = SearchSpace.from_dict({"params": {"seed": {"grid": list(range(n))}}}, base=cfg)

    t0 = time.perf_counter()
    summary = run_sweep(cfg, prepared=prepared, space=space)
    ours_wall = time.perf_counter() - t0
    board = pq.read_table(summary["leaderboard"]).to_pylist()
    ours_epochs = _epoch_seconds(storage / "tune" / "bench-trials-sweep")
    ours_overhead = [r["wall_s"] - ours_epochs.get(r["trial_id"], 0.0) for r in board]

    inputs = fit_inputs(cfg, prepared, prepared.splits.train, prepared.splits.validation)
    held = _held_callback()
    t0 = time.perf_counter()
    tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_plain_trial, cfg=cfg, prepared=prepared, inputs=inputs),
            {"cpu": 1},
        ),
        param_space={"seed": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(storage / "plain"), name="plain", verbose=0, callbacks=[held]
        ),
    ).fit()
    plain_wall = time.perf_counter() - t0
    plain_epochs = _epoch_seconds(storage / "plain" / "plain")
    plain_overhead = [h - plain_epochs.get(t, 0.0) for t, h in held.held.items()]
    plain_usd = sum(held.held.values()) * rate / 3600
    ours = {
        "trials": len(board),
        "statuses": summary["status_counts"],
        "cost_usd": summary["cost_usd"],
        "median_fixed_overhead_s": statistics.median(ours_overhead),
        "median_held_s": statistics.median(r["wall_s"] for r in board),
        "median_epoch_total_s": statistics.median(ours_epochs.values()),
        "sweep_wall_s": ours_wall,
        "best_val_loss": summary["best"]["val_loss"] if summary["best"] else None,
    }
    plain = {
        "trials": len(held.held),
        "cost_usd": plain_usd,
        "median_fixed_overhead_s": statistics.median(plain_overhead),
        "median_held_s": statistics.median(held.held.values()),
        "median_epoch_total_s": statistics.median(plain_epochs.values()),
        "sweep_wall_s": plain_wall,
    }
    ratio = ours["cost_usd"] / plain_usd
    return {
        "trials_per_sweep": n,
        "epochs": epochs,
        "usd_per_cpu_hour": rate,
        "ray_ml": ours,
        "plain_tune": plain,
        "dollars_ratio": ratio,
        "targets": {
            "median_fixed_overhead_s": {
                "value": ours["median_fixed_overhead_s"],
                "target": "<= 2.0",
                "met": ours["median_fixed_overhead_s"] <= 2.0,
            },
            "dollars_ratio": {"value": ratio, "target": "<= 1.2", "met": ratio <= 1.2},
        },
    }


def _spend_curve(exp_dir: Path, metric: str = "val_loss") -> list[tuple[float, float]]:
    """(sweep dollars so far, best metric so far) after every report of every trial, in time order.

    Each report carries its trial's billed dollars so far (`cost_usd`); the sweep's spend at a
    report is the sum of every trial's latest figure then.
    """
    events = []
    for path in exp_dir.glob("*/result.json"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if metric in r and "cost_usd" in r:
                events.append((r["timestamp"], r["trial_id"], r["cost_usd"], r[metric]))
    events.sort()
    latest: dict[str, float] = {}
    best = float("inf")
    curve = []
    for _, trial_id, usd, value in events:
        latest[trial_id] = usd
        best = min(best, value)
        curve.append((round(sum(latest.values()), 6), best))
    return curve


def _summarize(methods: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per method over seeds: mean/min/max best loss, seeds reaching the target, mean dollars."""
    out = {}
    for name, runs in methods.items():
        best = [r["best_val_loss"] for r in runs if r["best_val_loss"] is not None]
        to_target = [r["usd_to_target"] for r in runs if r["usd_to_target"] is not None]
        out[name] = {
            "seeds": len(runs),
            "best_val_loss_mean": sum(best) / len(best) if best else None,
            "best_val_loss_min": min(best, default=None),
            "best_val_loss_max": max(best, default=None),
            "reached_target": f"{len(to_target)}/{len(runs)}",
            "usd_to_target_mean": sum(to_target) / len(to_target) if to_target else None,
            "cost_usd_mean": sum(r["cost_usd"] for r in runs) / len(runs),
        }
    return out


def plot(result: dict[str, Any], path: Path) -> None:
    """Best validation loss against dollars spent, one line per method and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = dict(zip(result["methods"], plt.get_cmap("tab10").colors, strict=False))
    for name, runs in result["methods"].items():
        for i, run in enumerate(runs):
            if not run["curve"]:
                continue
            usd, best = zip(*run["curve"], strict=True)
            ax.step(
                usd,
                best,
                where="post",
                color=colors[name],
                alpha=0.8,
                label=name if i == 0 else None,
            )
    ax.axhline(result["target_val_loss"], color="grey", ls="--", lw=1, label="target")
    ax.axvline(result["budget_usd"], color="black", ls=":", lw=1, label="budget")
    ax.set_xlabel("sweep spend (USD, illustrative prices)")
    ax.set_ylabel("best validation loss so far")
    ax.set_yscale("log")
    ax.set_title(
        f"Search methods under one budget ({len(next(iter(result['methods'].values())))} seeds)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    o = sub.add_parser("overhead")
    o.add_argument("--trials", type=int, default=200)
    o.add_argument("--concurrency", type=int, default=2)
    o.add_argument(
        "--no-reuse-actors", dest="reuse_actors", action="store_false", help="a new actor per trial"
    )
    tr = sub.add_parser("trials")
    tr.add_argument("--trials", type=int, default=16)
    tr.add_argument("--epochs", type=int, default=6)
    c = sub.add_parser("compare")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--budget", type=float, default=0.002)
    c.add_argument("--samples", type=int, default=10)
    c.add_argument("--epochs", type=int, default=3)
    c.add_argument("--target", type=float, default=0.12)
    args = ap.parse_args()
    os.environ.setdefault("RAY_ML_PROGRESS", "0")
    if args.part == "overhead":
        result = overhead(args.trials, args.concurrency, args.reuse_actors)
    elif args.part == "trials":
        result = trials(args.trials, args.epochs)
    else:
        result = compare(args.seeds, args.budget, args.samples, args.epochs, args.target)
    result.update(
        {
            "benchmark": f"bench_tune {args.part}",
            "command": "python -m benchmarks.bench_tune " + " ".join(sys.argv[1:]),
            **environment(("ray", "optuna", "torch")),
        }
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"bench_tune_{args.part}.json").write_text(
        json.dumps(result, indent=2, default=str) + "\n"
    )
    if args.part == "compare":
        plot(result, RESULTS / "bench_tune_compare.png")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k in ("ratio", "wall_s", "summary", "targets")},
            default=str,
        )
    )


if __name__ == "__main__":
    main()
