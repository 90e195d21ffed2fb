"""A small synthetic experiment on disk with every input `ray_ml.report` reads.

Five trials: two completed (one on spot with a preemption's waste), two pruned and one stopped
by the budget; a data summary with reject reasons; a drift report. One config value holds a
`<script>` tag to check escaping. The numbers are returned so tests compare against them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

T0 = 1_800_000_000.0
XSS = "<script>alert('x')</script>"
METRIC = "val_loss"

# trial_id, status, pricing, curve, billed, waste, start offset, end offset, config
TRIALS: list[dict[str, Any]] = [
    {
        "trial_id": "a1b2c_00000",
        "status": "completed",
        "pricing": "on_demand",
        "curve": [0.62, 0.45, 0.36, 0.31],
        "billed": 0.012,
        "waste": 0.0,
        "start": 0.0,
        "end": 120.0,
        "config": {"train.lr": 0.01, "model.hidden_sizes": "[64]", "model.norm": "batch"},
    },
    {
        "trial_id": "a1b2c_00001",
        "status": "pruned",
        "pricing": "on_demand",
        "curve": [0.71],
        "billed": 0.003,
        "waste": 0.0,
        "start": 5.0,
        "end": 35.0,
        "config": {"train.lr": 0.3, "model.hidden_sizes": "[32]", "model.norm": XSS},
    },
    {
        "trial_id": "a1b2c_00002",
        "status": "completed",
        "pricing": "spot",
        "curve": [0.55, 0.38, 0.29, 0.25],
        "billed": 0.010,
        "waste": 0.004,
        "start": 40.0,
        "end": 200.0,
        "config": {"train.lr": 0.003, "model.hidden_sizes": "[128, 64]", "model.norm": "none"},
    },
    {
        "trial_id": "a1b2c_00003",
        "status": "pruned",
        "pricing": "on_demand",
        "curve": [0.66, 0.57],
        "billed": 0.005,
        "waste": 0.0,
        "start": 130.0,
        "end": 190.0,
        "config": {"train.lr": 0.1, "model.hidden_sizes": "[64]", "model.norm": "none"},
    },
    {
        "trial_id": "a1b2c_00004",
        "status": "budget_stopped",
        "pricing": "on_demand",
        "curve": [0.5, 0.41, 0.33],
        "billed": 0.008,
        "waste": 0.0,
        "start": 195.0,
        "end": 260.0,
        "config": {"train.lr": 0.005, "model.hidden_sizes": "[256]", "model.norm": "batch"},
    },
]
BUDGET = 0.04
TOTAL = round(sum(t["billed"] for t in TRIALS), 6)  # 0.038
WASTE = round(sum(t["waste"] for t in TRIALS), 6)  # 0.004
BEST = TRIALS[2]
REASONS = {"age:range": 7, "income:not_null": 3, "city:category": 1}
DRIFT_FEATURES = {
    "age": {"psi": 0.41, "p_value": 0.0001, "drifted": True, "rows": 500},
    "income": {"psi": 0.05, "p_value": 0.6, "drifted": False, "rows": 500},
    "city": {"psi": 0.12, "p_value": 0.2, "drifted": False, "rows": 480},
    "rare": {"psi": None, "p_value": None, "drifted": False, "rows": 3},
}
# Sections that draw at least one plot, and how many, in the full fixture.
PLOTS = {
    "pareto": 1,
    "learning_curves": 1,
    "spend": 1,
    "cost_breakdown": 1,
    "data": 2,
    "drift": 1,
}


def _leaderboard_table(layout: str) -> pa.Table:
    """Rows the way `ray_ml.tune.Leaderboard.to_parquet` writes them (flat), or with `config`
    and `metrics` struct columns (struct)."""
    eligible = [t for t in TRIALS if t["status"] in ("completed", "budget_stopped")]
    ranks = {
        t["trial_id"]: i + 1 for i, t in enumerate(sorted(eligible, key=lambda t: t["curve"][-1]))
    }
    rows = []
    for t in TRIALS:
        row: dict[str, Any] = {
            "rank": ranks.get(t["trial_id"]),
            "trial_id": t["trial_id"],
            "status": t["status"],
        }
        common = {
            "cost_usd": t["billed"],
            "algorithmic_cost_usd": 0.0,
            "waste_usd": t["waste"],
            "wall_s": t["end"] - t["start"],
            "latency_ms": None,
            "iterations": len(t["curve"]),
            "pruned_at_rung": len(t["curve"]) if t["status"] == "pruned" else None,
        }
        if layout == "flat":
            row[METRIC] = t["curve"][-1]
            row["pareto"] = t["trial_id"] in ("a1b2c_00002",)
            row.update(common)
            row.update(t["config"])
        else:
            row.update(common)
            row["config"] = t["config"]
            row["metrics"] = {METRIC: t["curve"][-1], "val_accuracy": 0.9}
            row["checkpoint"] = f"/ckpt/{t['trial_id']}" if t["status"] != "pruned" else None
        rows.append(row)
    table = pa.Table.from_pylist(rows)
    meta = {b"ray_ml.leaderboard": json.dumps({"metric": METRIC, "mode": "min"}).encode()}
    return table.replace_schema_metadata(meta)


def make_experiment(
    storage: Path,
    name: str = "exp",
    *,
    layout: str = "flat",
    drift: bool = True,
    data: bool = True,
) -> dict[str, Any]:
    """Write the experiment `name` under `storage`.

    Args:
        storage: The storage folder (created).
        name: The experiment name.
        layout: `flat` (the real leaderboard layout) or `struct` (config/metrics structs).
        drift: Write `<name>/serve/drift.json`.
        data: Write `<name>/data/summary.json`.

    Returns:
        The expected numbers: total, waste, budget, best, trials, pruned, plots per section.
    """
    sweep = storage / f"{name}-sweep"
    sweep.mkdir(parents=True, exist_ok=True)
    pq.write_table(_leaderboard_table(layout), sweep / "leaderboard.parquet")

    costs = []
    for t in TRIALS:
        costs.append(
            {
                "trial_id": t["trial_id"],
                "status": t["status"],
                "node_type": "m7i.xlarge",
                "pricing": t["pricing"],
                "resources": {"CPU": 1.0},
                "usd_per_hour": 0.0504 if t["pricing"] == "on_demand" else 0.0202,
                "started_at": T0 + t["start"],
                "ended_at": T0 + t["end"],
                "held_s": t["end"] - t["start"],
                "cpu_seconds": None,
                "billed_usd": t["billed"],
                "algorithmic_usd": 0.0,
                "waste_usd": t["waste"],
                "lost_s": 40.0 if t["waste"] else 0.0,
                "restarts": 1 if t["waste"] else 0,
            }
        )
    (sweep / "sweep_state.json").write_text(
        json.dumps({"records": {}, "costs": costs, "prior_usd": 0.0})
    )

    summary = {
        "job": "tune",
        "name": name,
        "best": {
            "trial_id": BEST["trial_id"],
            "config": BEST["config"],
            METRIC: BEST["curve"][-1],
            "rule": f"best {METRIC}={BEST['curve'][-1]} (min) of 3 eligible trials",
        },
        "cost_usd": TOTAL,
        "waste_usd": WASTE,
        "budget_usd": BUDGET,
        "stop_reason": "`tune.budget_usd` reached: spent $0.038 of $0.04.",
        "trials": len(TRIALS),
        "pruned": 2,
        "status_counts": {"budget_stopped": 1, "completed": 2, "pruned": 2},
        "pareto": [{"trial_id": BEST["trial_id"], METRIC: 0.25, "cost_usd": 0.010}],
        "winner_metrics": {
            "validation": {"accuracy": 0.91, "roc_auc": 0.97, "confusion_matrix": [[1, 2]]},
            "test": {"accuracy": 0.9, "roc_auc": float("nan")},
        },
        "bundle": "/tmp/bundle",
        "registered": {"model": name, "version": 3, "alias": "candidate"},
        "prices": {"illustrative": True, "read_on": ["2026-11-01"], "pricing": "on_demand"},
        "wall_s": 275.5,
    }
    (sweep / "summary.json").write_text(json.dumps(summary, indent=2))

    tune_dir = storage / "tune" / f"{name}-sweep"
    for i, t in enumerate(TRIALS):
        folder = tune_dir / f"train_driver_fn_{t['trial_id']}_{i}_lr={t['config']['train.lr']}"
        folder.mkdir(parents=True, exist_ok=True)
        n = len(t["curve"])
        lines = []
        for k, value in enumerate(t["curve"]):
            frac = (k + 1) / n
            lines.append(
                json.dumps(
                    {
                        "trial_id": t["trial_id"],
                        "training_iteration": k + 1,
                        "timestamp": int(T0 + t["start"] + frac * (t["end"] - t["start"]) - 2),
                        METRIC: value,
                        "cost_usd": round(t["billed"] * frac * 0.95, 6),
                        "config": t["config"],
                    }
                )
            )
        (folder / "result.json").write_text("\n".join(lines) + "\n")
    # A folder of an earlier run with the same name, and a line cut short by a kill.
    stale = tune_dir / "train_driver_fn_zzzzz_00000_0"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "result.json").write_text(
        json.dumps({"trial_id": "zzzzz_00000", "training_iteration": 1, METRIC: 9.0}) + "\n"
    )
    first = next(tune_dir.glob("train_driver_fn_a1b2c_00000_*"))
    with (first / "result.json").open("a") as f:
        f.write('{"trial_id": "a1b2c_00000", "training_iter')

    if data:
        data_dir = storage / name / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "summary.json").write_text(
            json.dumps(
                {
                    "job": "data",
                    "name": name,
                    "fingerprint": "0123456789abcdef",
                    "sources": ["synthetic://fixture"],
                    "rows_in": 1000,
                    "rows_ok": 989,
                    "rows_rejected": 11,
                    "reasons": REASONS,
                    "max_reject_rate": 0.05,
                    "quarantine": str(data_dir / "quarantine"),
                    "reject_rate": 0.011,
                    "passed": True,
                    "splits": {
                        "train": {
                            "rows": 692,
                            "fraction": 0.7,
                            "class_fraction": {"0": 0.37, "1": 0.63},
                        },
                        "validation": {
                            "rows": 148,
                            "fraction": 0.15,
                            "class_fraction": {"0": 0.38, "1": 0.62},
                        },
                        "test": {
                            "rows": 149,
                            "fraction": 0.15,
                            "class_fraction": {"0": 0.37, "1": 0.63},
                        },
                    },
                    "features": 3,
                }
            )
        )
    if drift:
        serve_dir = storage / name / "serve"
        serve_dir.mkdir(parents=True, exist_ok=True)
        (serve_dir / "drift.json").write_text(
            json.dumps(
                {
                    "window_rows": 500,
                    "threshold": 0.2,
                    "features": DRIFT_FEATURES,
                    "drifted": ["age"],
                    "max_psi": 0.41,
                    "alerts": ["feature age drifted: psi=0.41 > 0.2"],
                }
            )
        )
    plots = dict(PLOTS)
    if not drift:
        plots.pop("drift")
    if not data:
        plots.pop("data")
    return {
        "storage": storage,
        "name": name,
        "total_usd": TOTAL,
        "waste_usd": WASTE,
        "budget_usd": BUDGET,
        "best_trial": BEST["trial_id"],
        "best_value": BEST["curve"][-1],
        "trials": len(TRIALS),
        "pruned": 2,
        "plots": plots,
    }
