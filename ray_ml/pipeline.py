"""The whole pipeline as one job: data -> sweep -> winner -> registry -> serve -> smoke -> report.

`python -m jobs.pipeline experiment=NAME` / `ray-ml run ...`:

1. **data**: check, quarantine, split and fit preprocessing (`prepare_data`), artefacts under
   `<storage>/<name>/data/`;
2. **sweep**: the cost-aware Tune sweep (`run_sweep`), whose winner is retrained at full
   fidelity, bundled and registered as `candidate`;
3. **promote**: the first model of a name becomes `production` too; later ones stay `candidate`
   (served as a canary when `serve.canary_percent > 0`);
4. **serve**: the Serve app on `serve.host:serve.port`;
5. **smoke**: real requests over HTTP with held-out test rows; the drift report is saved;
6. **report**: `<storage>/<name>/report/index.html` (+ report.json).

Progress goes to stderr (one line per stage, Tune's trial table and a spend line during the
sweep). The last stdout line is the JSON summary.

Each finished stage is recorded in `<storage>/<name>/pipeline/state.json` together with a hash of
the config. Rerunning the same command after a crash resumes: finished stages are skipped, an
interrupted sweep continues from Tune's experiment state (finished trials are not rerun). A
finished pipeline, or a changed config, starts over.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ray_ml._http import http_json
from ray_ml.config import RunConfig, run_config_to_dict
from ray_ml.console import current_console, usd
from ray_ml.errors import RayMLError

__all__ = ["run_pipeline"]

STAGES = ("data", "sweep", "promote", "serve", "smoke", "report")


def _say(msg: str) -> None:
    current_console().say("pipeline", msg)


def _config_hash(cfg: RunConfig) -> str:
    plain = run_config_to_dict(cfg)
    plain["tune"].pop("resume", None)
    plain["train"].pop("resume", None)
    plain.pop("verbose", None)  # how much the console shows is not part of the run
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _State:
    """`state.json`: which stages finished, with their outputs, for one config hash."""

    def __init__(self, path: Path, config_hash: str) -> None:
        self.path = path
        old = json.loads(path.read_text()) if path.exists() else {}
        self.resumed = bool(
            old.get("config_hash") == config_hash and old.get("status") == "running"
        )
        self.data: dict[str, Any] = (
            old if self.resumed else {"config_hash": config_hash, "status": "running", "stages": {}}
        )

    def done(self, stage: str) -> dict[str, Any] | None:
        out: dict[str, Any] | None = self.data["stages"].get(stage)
        return out

    def mark(self, stage: str, out: dict[str, Any]) -> None:
        self.data["stages"][stage] = out
        self._write()

    def started(self, stage: str) -> bool:
        return stage in self.data.get("started", [])

    def start(self, stage: str) -> None:
        self.data.setdefault("started", [])
        if stage not in self.data["started"]:
            self.data["started"].append(stage)
        self._write()

    def finish(self) -> None:
        self.data["status"] = "done"
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)


def _smoke_rows(prepared: Any, n: int = 5) -> list[dict[str, Any]]:
    """Held-out test rows as a client would send them (contract columns, label included)."""
    rows = prepared.splits.test.take(n)
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]


def _smoke(url: str, token: str | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    status, answer = http_json(f"{url}/v1/predict", token, {"rows": rows})
    latency_ms = (time.perf_counter() - t0) * 1000.0
    if status != 200:
        raise RayMLError(
            f"smoke request to {url}/v1/predict answered {status}: {answer}. The model was "
            "registered and deployed, but does not serve its own test rows; see the Serve logs."
        )
    return {
        "status": status,
        "rows": len(rows),
        "predictions": answer["predictions"],
        "model_version": answer["model_version"],
        "latency_ms": round(latency_ms, 2),
    }


def run_pipeline(cfg: RunConfig) -> dict[str, Any]:
    """Run (or resume) the whole pipeline; see the module docstring."""
    from ray import serve

    from ray_ml.cluster import start_ray, stop_ray
    from ray_ml.data import prepare_data, write_data_artifacts
    from ray_ml.registry import Registry
    from ray_ml.report import build_report
    from ray_ml.serve import deploy, ingress_env, serve_token
    from ray_ml.tune import load_space, run_sweep

    t0 = time.perf_counter()
    storage = Path(cfg.storage_path).resolve()
    run_dir = storage / cfg.name
    state = _State(run_dir / "pipeline" / "state.json", _config_hash(cfg))
    token = serve_token(cfg.serve)  # config errors before Ray starts
    space = load_space(cfg.tune.space, base=cfg)
    _say(
        f"{cfg.name}: {'resuming' if state.resumed else 'starting'}; outputs under {run_dir} "
        f"(stages: {' -> '.join(STAGES)})"
    )
    # The dashboard serves the State API that Train V2 under Tune needs to free placement groups.
    handle = start_ray(
        cfg.cluster, env=lambda: ingress_env(cfg.serve.ingress), include_dashboard=True
    )
    deployed = False
    try:
        # 1. data (needed by an unfinished sweep, even when its own stage is done)
        prepared = None
        if state.done("sweep") is None:
            _say("stage 1/6 data: check, quarantine, split, fit preprocessing")
            t = time.perf_counter()
            prepared = prepare_data(cfg.data, cfg.seed, run_dir / "data")
            summary = write_data_artifacts(cfg, prepared, run_dir / "data", time.perf_counter() - t)
            state.mark(
                "data",
                {
                    **{
                        k: summary.get(k)
                        for k in (
                            "rows_in",
                            "rows_ok",
                            "rows_rejected",
                            "reasons",
                            "warnings",
                            "fingerprint",
                        )
                    },
                    "contract": str(run_dir / "data" / "contract.yaml"),
                    "smoke_rows": _smoke_rows(prepared),
                },
            )
            _say(
                f"data: {summary['rows_ok']}/{summary['rows_in']} rows ok, "
                f"{summary['rows_rejected']} quarantined"
            )
        else:
            _say("stage 1/6 data: done before, skipped")
        data_out = state.done("data") or {}

        # 2. sweep -> winner retrained, bundled, registered as candidate
        sweep = state.done("sweep")
        if sweep is None:
            resume = state.started("sweep")
            _say(
                f"stage 2/6 sweep: {'resuming the interrupted sweep' if resume else 'searching'}"
                f" ({cfg.tune.searcher} + {cfg.tune.scheduler}, {cfg.tune.num_samples} trials, "
                + (f"budget ${cfg.tune.budget_usd})" if cfg.tune.budget_usd else "no budget)")
            )
            state.start("sweep")
            sweep_cfg = dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, resume=resume))
            sweep = run_sweep(sweep_cfg, prepared=prepared, space=space)
            if sweep.get("best") is None:
                raise RayMLError(
                    f"the sweep ended without a winner: {sweep.get('why')}. Raise "
                    "`tune.budget_usd` or lower `tune.num_samples`/`train.epochs`."
                )
            state.mark("sweep", {**sweep, "resumed": resume})
        else:
            _say("stage 2/6 sweep: done before, skipped")
        _say(
            f"sweep: best {cfg.tune.metric}={sweep['best'][cfg.tune.metric]:.4g}, "
            f"{sweep['trials']} trials ({sweep['pruned']} pruned), {usd(sweep['cost_usd'])} spent"
        )

        # 3. promote: the first model of this name goes to production
        registry = Registry(cfg.serve.registry_root)
        model = cfg.serve.model or cfg.name
        version = int(sweep["registered"]["version"])
        promote = state.done("promote")
        if promote is None:
            aliases = registry.aliases(model)
            if "production" not in aliases:
                registry.promote(
                    model, version, to="production", reason=f"pipeline {cfg.name}: first model"
                )
                promote = {"production": version, "candidate": version, "promoted": True}
            else:
                promote = {
                    "production": aliases["production"],
                    "candidate": version,
                    "promoted": False,
                }
            state.mark("promote", promote)
        _say(
            f"stage 3/6 registry: {model} v{version} is candidate; production is "
            f"v{promote['production']}"
        )

        # 4. serve (always redeployed: a crash took the old app with it)
        _say(f"stage 4/6 serve: deploying {model} on {cfg.serve.host}:{cfg.serve.port}")
        serve_cfg = dataclasses.replace(
            cfg, serve=dataclasses.replace(cfg.serve, alias="production", version=None, bundle=None)
        )
        info = deploy(serve_cfg, token=token)
        deployed = True
        state.mark("serve", info)

        # 5. smoke requests; keep the drift report of what they sent
        _say(f"stage 5/6 smoke: POST {info['url']}/v1/predict")
        smoke = _smoke(info["url"], token, data_out.get("smoke_rows") or [])
        serve_dir = run_dir / "serve"
        serve_dir.mkdir(parents=True, exist_ok=True)
        time.sleep(1.0)  # one flush period of the replicas' monitors
        status, drift = http_json(f"{info['url']}/v1/drift", token)
        if status == 200:
            (serve_dir / "drift.json").write_text(json.dumps(drift, indent=2))
        state.mark("smoke", smoke)

        # 6. report
        _say("stage 6/6 report")
        report = build_report(storage, cfg.name)
        state.mark("report", {"path": str(report)})
        state.finish()
        summary = {
            "job": "pipeline",
            "name": cfg.name,
            "resumed": state.resumed,
            "best": sweep["best"],
            "data": {k: v for k, v in data_out.items() if k != "smoke_rows"},
            "cost_usd": sweep["cost_usd"],
            "budget_usd": sweep.get("budget_usd"),
            "trials": sweep["trials"],
            "pruned": sweep["pruned"],
            "bundle": sweep["bundle"],
            "registered": {"model": model, "version": version, **promote},
            "endpoint": f"{info['url']}/v1/predict",
            "smoke": {k: v for k, v in smoke.items() if k != "predictions"},
            "report": str(report),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        _say(f"done in {summary['wall_s']} s; report: {report}")
        if cfg.serve.keep_serving:
            print(json.dumps({"event": "ready", "url": info["url"]}), flush=True)
            _say(f"serving at {summary['endpoint']} until Ctrl-C (serve.keep_serving=true)")
            _wait_for_signal()
        return summary
    finally:
        # On an embedded Ray the app goes with it; on a cluster it keeps serving after the job.
        if deployed and handle.owned:
            try:
                serve.delete(cfg.serve.app_name)
                serve.shutdown()
            except Exception as exc:  # shutting down: report, do not mask the real error
                _say(f"warning: Serve shutdown failed: {exc}")
        stop_ray(handle)


def _wait_for_signal() -> None:
    import signal
    import threading

    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
