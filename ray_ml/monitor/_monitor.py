"""The monitor: the loop after serving, one tick at a time (`python -m jobs.monitor`).

Each tick:

1. **resume**: a retrain the ledger says is `retraining` (the monitor was killed in it) is
   resumed (`tune.resume=true`: Tune's own experiment state and our sweep books carry on, with
   their dollars) before anything else, so one trigger never retrains twice;
2. **data**: files that landed under the file sources of `data.sources` (a prefix receiving new
   partitions) since the last tick are checked against the served model's contract on Ray Data:
   bad rows are quarantined with their reasons under `monitor/quarantine/`, and counted;
3. **serve**: `GET /v1/models` and `/v1/drift` of the app give live quality, drift, the canary's
   state and serving dollars: one line of `monitor/history.jsonl`;
4. **canary**: a candidate in canary is followed in the registry's audit log until the app's
   canary judge promotes or rolls it back, and the reason is copied to the ledger;
5. **triggers**: a new quality alert of the stable version, a new drift alert,
   `monitor.new_data_rows` new rows, or `monitor.schedule_s` since the last retrain. While a
   retrain or canary is in flight, or the month's retraining budget is spent, an alert is
   recorded as skipped with the reason. A retrain that failed is tried again (a `retry`
   trigger) `monitor.retry_after_s` after it ended, up to `monitor.retry_failed` times: the
   alert it answered does not come back by itself;
6. **retrain**: a cost-aware sweep with budget `min(monitor.retrain_budget_usd, what is left of
   monitor.monthly_budget_usd)`, warm-started with the previous sweep's best configs, on the
   data partitions as they are now (the newest `monitor.train_partitions`), the same contract;
   its winner is registered as `candidate` with lineage (trigger, partitions, sweep), which the
   app serves as a canary (`serve.canary_percent`).

Everything the monitor decides is in `monitor/ledger.json` (see `_ledger`), written before the
work it announces.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray_ml._http import http_json
from ray_ml.config import RunConfig
from ray_ml.console import current_console, usd
from ray_ml.errors import RayMLError, SourceError
from ray_ml.monitor._ledger import MonitorLedger, month_of, now_iso
from ray_ml.monitor._triggers import (
    Condition,
    new_data_condition,
    schedule_condition,
    serve_conditions,
)

__all__ = ["Monitor", "run_monitor", "run_monitor_job"]

_NOT_FILES = ("sklearn://", "synthetic://")
MAX_RESUMES = 3  # a retrain killed this many times is given up (it would die again)


def _say(msg: str) -> None:
    current_console().say("monitor", msg)


def _partition_uris(source: str) -> list[str]:
    """The files of one file source now, as sources (URIs keep their scheme)."""
    from ray_ml.data import resolve_files

    try:
        found = resolve_files(source)
    except SourceError as exc:
        if "no such file" in str(exc) or "matched no data files" in str(exc):
            return []  # a landing prefix with nothing in it yet
        raise  # e.g. mixed formats under one prefix: the message says how to fix it
    scheme = source.split("://", 1)[0] + "://" if "://" in source else ""
    if scheme == "file://":
        scheme = ""
    return [f"{scheme}{p}" for p in found.paths]


def _hold_lock(folder: Path) -> Any:
    """An exclusive lock on `folder`, held while the returned file stays open.

    Two monitors of one experiment (a cron tick while the last one still retrains) would both
    resume the same retrain and register twice; the second one stops here instead.
    """
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    f = (folder / ".lock").open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RayMLError(
            f"another monitor ({holder}) is running for this experiment ({folder}). Fix: wait "
            "for it (or stop it) before starting one more; a cron entry should use "
            "`flock -n` or a longer period than one retrain."
        ) from None
    f.truncate(0)
    f.write(f"pid {os.getpid()}")
    f.flush()
    return f


def _quarantine_name(uri: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", uri.split("://", 1)[-1]).strip("_")[-120:]


class Monitor:
    """One experiment's monitor: `tick()` does one pass (see the module docstring).

    Args:
        cfg: The run config of the served experiment (`monitor.*` drives the loop; `serve.*`
            says where the app and the registry are; `data`, `tune`, `cost` make retrains).
        token: The app's bearer token (None: auth off).
    """

    def __init__(self, cfg: RunConfig, token: str | None) -> None:
        from ray_ml.registry import Registry
        from ray_ml.tune import load_space

        self.cfg = cfg
        self.token = token
        self.storage = Path(cfg.storage_path).resolve()
        self.model = cfg.serve.model or cfg.name
        self.url = (cfg.monitor.serve_url or f"http://{cfg.serve.host}:{cfg.serve.port}").rstrip(
            "/"
        )
        self.folder = self.storage / cfg.name / "monitor"
        self._lock = _hold_lock(self.folder)  # one monitor per experiment, for its lifetime
        self.ledger = MonitorLedger(
            self.folder, cfg.name, self.model, cfg.monitor.monthly_budget_usd
        )
        self.registry = Registry(cfg.serve.registry_root)
        self.space = load_space(cfg.tune.space, base=cfg)
        self.contract_path = self._contract_path()
        self.enabled = [str(t) for t in cfg.monitor.triggers]

    # -- setup ------------------------------------------------------------------------------------
    def _contract_path(self) -> str:
        """The contract new partitions and retrains use: `data.contract`, else the one the
        pipeline wrote for the served experiment, else one inferred now (and written)."""
        from ray_ml.data import resolve_contract

        if self.cfg.data.contract:
            return str(Path(self.cfg.data.contract).resolve())
        written = self.storage / self.cfg.name / "data" / "contract.yaml"
        if written.is_file():
            return str(written)
        path = self.folder / "contract.yaml"
        self.folder.mkdir(parents=True, exist_ok=True)
        resolve_contract(
            self.cfg.data.sources, None, label=self.cfg.data.label, infer_to=path
        ).save(path, header="# the contract the monitor checks new partitions against")
        return str(path)

    @property
    def file_sources(self) -> list[str]:
        return [s for s in self.cfg.data.sources if not s.startswith(_NOT_FILES)]

    # -- one tick ---------------------------------------------------------------------------------
    def tick(self) -> dict[str, Any]:
        """One pass; returns what it did (also written to the ledger)."""
        out: dict[str, Any] = {"tick": int(self.ledger.data["ticks"]) + 1}
        flight = self.ledger.in_flight()
        if flight is not None and flight["status"] == "retraining":
            _say(f"resuming the retrain of trigger {flight['id']} (the monitor stopped in it)")
            out["resumed"] = flight["id"]
            self._retrain(flight)
        out["new_partitions"] = self._watch_data()
        models, drift = self._poll_serve()
        out["reachable"] = models is not None
        self._follow_canary(models)
        conditions, cursors = serve_conditions(
            models, drift, self.ledger.data["cursors"], self.enabled
        )
        self.ledger.data["cursors"] = cursors
        m = self.cfg.monitor
        retry = self._due_retry()
        if retry is not None:
            conditions.insert(0, retry)
        for cond in (
            new_data_condition(
                self.ledger.rows_since_last_retrain(), m.new_data_rows, self.enabled
            ),
            schedule_condition(self._since_last_retrain_s(), m.schedule_s, self.enabled),
        ):
            if cond is not None:
                conditions.append(cond)
        if conditions:
            out["trigger"] = self._act(conditions)
        self.ledger.tick_done()
        self.ledger.save()
        return out

    # -- data -------------------------------------------------------------------------------------
    def _watch_data(self) -> int:
        known = self.ledger.partitions
        first = int(self.ledger.data["ticks"]) == 0 and not known
        found = [u for s in self.file_sources for u in _partition_uris(s)]
        new = [u for u in found if u not in known]
        if not new:
            return 0
        if first:
            # What is there when the monitor first looks is what the served model learnt from
            # (the pipeline checked it): the baseline, not new data.
            for uri in new:
                self.ledger.add_partition(uri, {"baseline": True, "rows_ok": None})
            self.ledger.save()
            _say(f"{len(new)} partitions already there: taken as the served model's training data")
            return 0
        from ray_ml.data import Contract, check_sources

        contract = Contract.load(self.contract_path)
        for uri in new:
            quarantine = self.folder / "quarantine" / _quarantine_name(uri)
            try:
                checked = check_sources(
                    [uri],
                    contract,
                    quarantine_dir=str(quarantine),
                    max_reject_rate=1.0,
                    raise_on_failure=False,
                )
            except Exception as exc:  # a file half-written, corrupt or gone: recorded, not fatal
                error = f"{type(exc).__name__}: {str(exc)[:300]}"
                self.ledger.add_partition(
                    uri, {"baseline": False, "rows_ok": 0, "rows_in": None, "error": error}
                )
                self.ledger.save()
                _say(f"new partition {uri} cannot be read ({error}); left out of training")
                continue
            r = checked.report
            self.ledger.add_partition(
                uri,
                {
                    "baseline": False,
                    "rows_in": r.rows_in,
                    "rows_ok": r.rows_ok,
                    "rows_rejected": r.rows_rejected,
                    "reasons": dict(r.reasons),
                    "quarantine": str(quarantine) if r.rows_rejected else None,
                },
            )
            self.ledger.save()
            _say(
                f"new partition {uri}: {r.rows_ok}/{r.rows_in} rows pass the contract"
                + (
                    f", {r.rows_rejected} quarantined ({dict(r.reasons)})"
                    if r.rows_rejected
                    else ""
                )
            )
        return len(new)

    def _training_partitions(self) -> list[str]:
        usable = [
            (p["seen_at"], uri)
            for uri, p in self.ledger.partitions.items()
            if p.get("baseline") or int(p.get("rows_ok") or 0) > 0
        ]
        ordered = [uri for _, uri in sorted(usable)]
        n = self.cfg.monitor.train_partitions
        return ordered[-n:] if n is not None else ordered

    # -- serve ------------------------------------------------------------------------------------
    def _poll_serve(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        try:
            s1, models = http_json(f"{self.url}/v1/models", self.token, timeout=10)
            s2, drift = http_json(f"{self.url}/v1/drift", self.token, timeout=10)
        except (OSError, ValueError) as exc:
            _say(f"the Serve app at {self.url} did not answer ({exc}); serving triggers wait")
            self.ledger.append_history({"at": now_iso(), "time": time.time(), "reachable": False})
            return None, None
        if {s1, s2} & {401, 403}:
            raise RayMLError(
                f"the Serve app at {self.url} refused the monitor ({s1} to /v1/models, {s2} to "
                f"/v1/drift). Fix: export the app's token in ${self.cfg.serve.token_env}."
            )
        if s1 != 200 or s2 != 200:  # e.g. the state replica restarting: look again next tick
            _say(f"the Serve app at {self.url} answered {s1} / {s2}; serving triggers wait")
            self.ledger.append_history({"at": now_iso(), "time": time.time(), "reachable": False})
            return None, None
        self.ledger.append_history(
            {
                "at": now_iso(),
                "time": time.time(),
                "reachable": True,
                "stable": models.get("stable"),
                "canary": models.get("canary"),
                "live_quality": {
                    v: {k: e.get(k) for k in ("n_labels", "alert", "metrics")}
                    for v, e in (models.get("live_quality") or {}).items()
                },
                "drift": {
                    f: r.get("psi")
                    for f, r in (drift.get("features") or {}).items()
                    if r.get("psi") is not None
                },
                "serving_cost": models.get("serving_cost"),
            }
        )
        return models, drift

    def _follow_canary(self, models: dict[str, Any] | None) -> None:
        """A candidate in canary: its fate, from the registry's audit log (the app's judge
        writes its decision there with the reason; a person's promote or rollback counts too)."""
        flight = self.ledger.in_flight()
        if flight is None or flight["status"] != "canary":
            return
        retrain = self.ledger.retrain_of(flight["id"])
        assert retrain is not None
        version = int(retrain["version"])
        served_alias = self.cfg.serve.alias or "production"
        for entry in self.registry.audit(self.model):
            promoted = (
                entry.action == "promote"
                and entry.to_version == version
                and entry.alias == served_alias
            )
            dropped = (
                entry.action in ("delete_alias", "set_alias", "rollback")
                and entry.alias == "candidate"
                and entry.from_version == version
                and entry.to_version != version
            )
            if promoted or dropped:
                action = "promote" if promoted else "rollback"
                reason = entry.reason
                if entry.action == "set_alias":  # another registration took `candidate`
                    reason = f"replaced as candidate by v{entry.to_version}: {entry.reason}"
                retrain["canary"] = {"action": action, "reason": reason, "at": entry.time}
                status = "promoted" if promoted else "rolled_back"
                self.ledger.set_status(flight["id"], status, reason)
                self.ledger.save()
                _say(f"candidate v{version} {status.replace('_', ' ')}: {reason}")
                self._refresh_report()
                return
        waited = (datetime.now(UTC) - datetime.fromisoformat(retrain["ended_at"])).total_seconds()
        timeout = self.cfg.monitor.canary_timeout_s
        if waited > timeout:
            # No decision (no traffic, no feedback, or the app serves something else): the
            # monitor takes the candidate back rather than hold every later trigger forever.
            why = (
                f"monitor: canary of v{version} undecided after {waited:.0f} s "
                f"(monitor.canary_timeout_s={timeout:g})"
            )
            if self.registry.aliases(self.model).get("candidate") == version:
                self.registry.delete_alias(self.model, "candidate", reason=why)
            retrain["canary"] = {"action": "rollback", "reason": why, "at": now_iso()}
            self.ledger.set_status(flight["id"], "rolled_back", why)
            self.ledger.save()
            _say(why)
            return
        if models is not None and models.get("canary") is not None:
            stats = models.get("canary_stats") or {}
            n = (stats.get("canary") or {}).get("requests")
            _say(f"candidate v{version} in canary: {n} requests so far, judge undecided")

    # -- triggers ---------------------------------------------------------------------------------
    def _since_last_retrain_s(self) -> float:
        last = self.ledger.last_retrain()
        since = last["started_at"] if last else self.ledger.data["started_at"]
        return (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()

    def _due_retry(self) -> Condition | None:
        """A retry of the last retrain when it failed, its cooldown is over and its trigger
        has retries left (standing: a retry the month's budget or a flight holds back waits)."""
        m = self.cfg.monitor
        last = self.ledger.last_retrain()
        if last is None or m.retry_failed == 0:
            return None
        failed = self.ledger.trigger(last["trigger"])
        if failed["status"] != "failed" or not last.get("ended_at"):
            return None
        origin = str(failed.get("retry_of") or failed["id"])
        tried = sum(1 for t in self.ledger.triggers if t.get("retry_of") == origin)
        if tried >= m.retry_failed:
            return None
        waited = (datetime.now(UTC) - datetime.fromisoformat(last["ended_at"])).total_seconds()
        if waited < m.retry_after_s:
            return None
        detail = (
            f"attempt {tried + 2} for {origin} ({self.ledger.trigger(origin)['kind']}), "
            f"{waited:.0f} s after {failed['id']} failed: {failed.get('reason', '')[:200]}"
        )
        return Condition("retry", detail, edge=False, retry_of=origin)

    def _act(self, conditions: list[Condition]) -> str | None:
        """Record one trigger for this tick's conditions and retrain on it, unless the
        retrain would overlap another or overspend the month (then an alert is skipped)."""
        first = conditions[0]
        detail = "; ".join(f"{c.kind}: {c.detail}" for c in conditions)
        why_not = None
        flight = self.ledger.in_flight()
        month = month_of(now_iso())
        left = self.cfg.monitor.monthly_budget_usd - self.ledger.spent(month)
        if flight is not None:
            why_not = f"trigger {flight['id']} is still in flight ({flight['status']})"
        elif left <= 0:
            why_not = (
                f"the retraining budget of {month} is spent ({usd(self.ledger.spent(month))} of "
                f"monitor.monthly_budget_usd={usd(self.cfg.monitor.monthly_budget_usd)})"
            )
        if why_not is not None:
            if not any(c.edge for c in conditions):
                return None  # a standing condition: looked at again next tick
            trigger = self.ledger.add_trigger(first.kind, detail)
            self.ledger.set_status(trigger["id"], "skipped", why_not)
            self.ledger.save()
            _say(f"trigger {trigger['id']} ({detail}) skipped: {why_not}")
            return str(trigger["id"])
        trigger = self.ledger.add_trigger(first.kind, detail)
        if first.retry_of is not None:
            trigger["retry_of"] = first.retry_of
        _say(f"trigger {trigger['id']}: {detail}")
        self._retrain(trigger)
        return str(trigger["id"])

    # -- retrain ----------------------------------------------------------------------------------
    def _previous_leaderboard(self) -> Path:
        from ray_ml.tune import SweepLayout

        for r in reversed(self.ledger.retrains):
            board = SweepLayout(self.storage, r["run"]).leaderboard
            if board.is_file():
                return board
        return SweepLayout(self.storage, self.cfg.name).leaderboard

    def _retrain(self, trigger: dict[str, Any]) -> None:
        from ray_ml.tune import SweepLayout, warm_start_points

        m = self.cfg.monitor
        retrain = self.ledger.retrain_of(trigger["id"])
        resume = retrain is not None
        if retrain is None:
            # The ledger's own id in the name: a fresh ledger never reuses an old run's folders.
            run = f"{self.cfg.name}-retrain-{self.ledger.data['id']}-{trigger['id']}"
            month = month_of(now_iso())
            left = m.monthly_budget_usd - self.ledger.spent(month)
            samples = m.retrain_num_samples or self.cfg.tune.num_samples
            # At least one trial of the retrain explores beyond the previous sweep's best.
            k = min(m.warm_start, samples - 1)
            warm = warm_start_points(self._previous_leaderboard(), self.space, k)
            retrain = {
                "trigger": trigger["id"],
                "run": run,
                "sweep": SweepLayout(self.storage, run).sweep_name,
                "started_at": now_iso(),
                "ended_at": None,
                "budget_usd": round(min(m.retrain_budget_usd, left), 6),
                "cost_usd": None,
                "trials": None,
                "version": None,
                "warm_start": len(warm),
                "warm_configs": warm,
                "partitions": self._training_partitions(),
                "resumes": 0,
                "canary": None,
            }
            self.ledger.retrains.append(retrain)
        else:
            if int(retrain["resumes"]) >= MAX_RESUMES:
                retrain["ended_at"] = now_iso()
                self._book_books(retrain)
                self.ledger.set_status(
                    trigger["id"],
                    "failed",
                    f"the retrain was interrupted {MAX_RESUMES + 1} times (killed or out of "
                    f"memory?); given up. See {self.storage / retrain['run'] / 'logs'}.",
                )
                self.ledger.save()
                _say(f"retrain for {trigger['id']} given up after {MAX_RESUMES} resumes")
                return
            retrain["resumes"] = int(retrain["resumes"]) + 1
        self.ledger.set_status(trigger["id"], "retraining")
        self.ledger.save()  # before the sweep: a kill from here on resumes this retrain
        _say(
            f"retraining for {trigger['id']} ({trigger['kind']}): sweep {retrain['sweep']}, "
            f"budget {usd(retrain['budget_usd'])}, {len(retrain['partitions'])} partitions, "
            f"{retrain['warm_start']} warm-start configs"
        )
        summary = self._registered_already(retrain) if resume else None
        if summary is None:
            try:
                summary = self._sweep(trigger, retrain, resume)
            except Exception as exc:  # the monitor lives on; the ledger says what failed
                retrain["ended_at"] = now_iso()
                self._book_books(retrain)  # what the trials spent before it failed
                self.ledger.set_status(
                    trigger["id"], "failed", f"{type(exc).__name__}: {str(exc)[:500]}"
                )
                self.ledger.save()
                _say(f"retrain for {trigger['id']} failed: {type(exc).__name__}: {exc}")
                return
        self._settle(trigger, retrain, summary)

    def _registered_already(self, retrain: dict[str, Any]) -> dict[str, Any] | None:
        """The winner a killed monitor's sweep registered before the ledger heard of it."""
        from ray_ml.tune import SweepLayout, registered_reason

        prefix = registered_reason(retrain["sweep"])
        for v in self.registry.list_versions(self.model):
            if v.reason.startswith(prefix):
                layout = SweepLayout(self.storage, retrain["run"])
                summary: dict[str, Any] = (
                    json.loads(layout.summary.read_text()) if layout.summary.is_file() else {}
                )
                if summary.get("cost_usd") is None:  # killed before the summary: the books
                    summary["cost_usd"] = self._books_usd(retrain["run"])
                summary["registered"] = {"model": self.model, "version": v.version}
                if self.registry.aliases(self.model).get("candidate") != v.version:
                    # Killed between publishing the version and pointing `candidate` at it.
                    self.registry.set_alias(self.model, "candidate", v.version, reason=v.reason)
                return summary
        return None

    def _books_usd(self, run: str) -> float | None:
        """What a sweep's trials were billed, from its books on disk (None without books)."""
        from ray_ml.cost import CostMeter, PriceCatalog
        from ray_ml.tune import SweepLayout

        state = SweepLayout(self.storage, run).state
        if not state.is_file():
            return None
        snapshot = json.loads(state.read_text())["meter"]
        meter = CostMeter.restore(PriceCatalog.from_config(self.cfg.cost), snapshot)
        return round(meter.total().billed_usd, 6)

    def _book_books(self, retrain: dict[str, Any]) -> None:
        """Book a retrain that ended without a summary at what its books say it spent."""
        cost = self._books_usd(retrain["run"])
        if cost is not None and retrain.get("cost_usd") is None:
            retrain["cost_usd"] = cost
            self.ledger.book(cost, retrain["started_at"])

    def _sweep(self, trigger: dict[str, Any], retrain: dict[str, Any], resume: bool) -> Any:
        from ray_ml.tune import run_sweep

        cfg = self.cfg
        t = cfg.tune
        files = set(self.file_sources)
        sources = [s for s in cfg.data.sources if s not in files] + list(retrain["partitions"])
        run_cfg = dataclasses.replace(
            cfg,
            name=retrain["run"],
            data=dataclasses.replace(cfg.data, sources=sources, contract=self.contract_path),
            tune=dataclasses.replace(
                t,
                budget_usd=retrain["budget_usd"],
                num_samples=cfg.monitor.retrain_num_samples or t.num_samples,
                resume=resume,
            ),
            serve=dataclasses.replace(cfg.serve, model=self.model),
        )
        lineage = {
            "monitor": {
                "experiment": cfg.name,
                "trigger": {k: trigger[k] for k in ("id", "kind", "at", "detail")},
                "partitions": list(retrain["partitions"]),
                "warm_start": retrain["warm_start"],
            }
        }
        return run_sweep(
            run_cfg, space=self.space, warm_start=retrain["warm_configs"], lineage=lineage
        )

    def _settle(self, trigger: dict[str, Any], retrain: dict[str, Any], summary: Any) -> None:
        retrain["ended_at"] = now_iso()
        cost = summary.get("cost_usd")
        if cost is not None:
            cost = round(float(cost) + float(summary.get("winner_cost_usd") or 0.0), 6)
            self.ledger.book(cost, retrain["started_at"])
        retrain["cost_usd"] = cost
        retrain["trials"] = summary.get("trials")
        retrain["stop_reason"] = summary.get("stop_reason")
        if not summary.get("registered"):
            self.ledger.set_status(trigger["id"], "no_winner", str(summary.get("why")))
            self.ledger.save()
            _say(f"retrain for {trigger['id']} found no winner: {summary.get('why')}")
            return
        version = int(summary["registered"]["version"])
        retrain["version"] = version
        s = self.cfg.serve
        if s.canary_percent > 0 and s.alias is not None and s.version is None and not s.bundle:
            status, why = "canary", f"v{version} serves {s.canary_percent:g}% of traffic"
        else:
            status, why = (
                "registered",
                (
                    f"v{version} is `candidate`; serve.canary_percent=0, so it waits for "
                    f"`ray-ml registry promote {self.model} {version}`"
                ),
            )
        self.ledger.set_status(trigger["id"], status, why)
        self.ledger.save()
        _say(
            f"retrain for {trigger['id']}: v{version} registered as candidate "
            f"({retrain['trials']} trials, {usd(cost or 0.0)}); {why}"
        )
        self._refresh_report()

    def _refresh_report(self) -> None:
        from ray_ml.report import build_report

        try:
            build_report(self.storage, self.cfg.name)
        except RayMLError as exc:  # no report inputs yet: the ledger still has it all
            _say(f"report not rebuilt: {exc}")

    def summary(self) -> dict[str, Any]:
        statuses = [t["status"] for t in self.ledger.triggers]
        month = month_of(now_iso())
        return {
            "job": "monitor",
            "name": self.cfg.name,
            "model": self.model,
            "ticks": self.ledger.data["ticks"],
            "partitions": len(self.ledger.partitions),
            "triggers": {s: statuses.count(s) for s in sorted(set(statuses))},
            "retrains": len(self.ledger.retrains),
            "retrain_usd_this_month": self.ledger.spent(month),
            "monthly_budget_usd": self.cfg.monitor.monthly_budget_usd,
            "ledger": str(self.ledger.path),
        }


def run_monitor(cfg: RunConfig) -> dict[str, Any]:
    """Tick every `monitor.poll_s` until `monitor.max_ticks` or SIGINT/SIGTERM (which stop after
    the tick in progress; a monitor killed at once resumes its retrain on the next start)."""
    from ray_ml.serve import serve_token

    monitor = Monitor(cfg, serve_token(cfg.serve))
    _say(
        f"{cfg.name}: watching {monitor.url} and {len(monitor.file_sources)} file sources; "
        f"ledger {monitor.ledger.path}"
    )
    stop = threading.Event()
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        n = 0
        while not stop.is_set():
            monitor.tick()
            n += 1
            if cfg.monitor.max_ticks is not None and n >= cfg.monitor.max_ticks:
                break
            stop.wait(cfg.monitor.poll_s)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return monitor.summary()


def run_monitor_job(cfg: RunConfig) -> dict[str, Any]:
    """`python -m jobs.monitor`: embedded (or joined) Ray, then `run_monitor`."""
    from ray_ml.cluster import start_ray, stop_ray

    # Train V2 under Tune frees trial placement groups through the State API (the dashboard).
    handle = start_ray(cfg.cluster, include_dashboard=True)
    try:
        return run_monitor(cfg)
    finally:
        stop_ray(handle)
