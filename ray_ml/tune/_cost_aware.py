"""A cost-aware Bayesian searcher for Ray Tune: expected improvement per (cooled) dollar.

The method follows CArBO (Lee et al., 2020, "Cost-aware Bayesian Optimization"), with the
low-cost start of CFO/BlendSearch (Wu et al., 2021):

1. **A cheap initial design.** The first `n_initial` suggestions form a Latin hypercube whose
   *cost-driving* parameters span only the cheap half of their range, the others their whole
   range (every suggestion after them is random in the same way until two trials have reported
   the metric, as happens when many run at once). Which parameters drive
   cost, and in which direction, comes from a table of hints (`DEFAULT_COST_HINTS`:
   `train.epochs`, `model.num_boost_round`, `model.max_depth`, `model.hidden_sizes` by the sum of
   its widths, `train.batch_size` with bigger = cheaper per epoch, ...), which `cost_hints`
   extends or overrides. A hint is a prior only: once trials report their cost, a model of the
   observed cost takes over. (Search-space YAML files cannot carry the hints: their format allows
   only `params` and `conditional`.)
2. **Two surrogates, refitted on every suggestion** (scikit-learn Gaussian processes, Matern 5/2
   with one length scale per feature plus a noise term): one for the metric, one for the log of
   the cost. Each fit's hyperparameter search starts at the previous suggestion's optimum (saved
   with the state), which makes a suggestion several times cheaper at 200 trials
   (`python -m benchmarks.bench_searcher`). A config becomes a vector in [0, 1]^d: range
   parameters by their position in the range (log-scaled for log kinds, and for integers with a
   cost hint, such as epochs, whose effect on quality is roughly a power law), `choice`/`grid`
   parameters one-hot. The metric model fits normal scores of the metric's ranks (a Gaussian
   copula), so one diverged trial cannot flatten the rest of the surface and any metric scale
   works.
3. **Cost-cooled acquisition.** `n_candidates` configs (three quarters uniform over the space, a
   quarter small steps around the three best trials) are scored by
   `EI(x) / predicted_cost(x) ** alpha` with `alpha = max(0, 1 - spent / budget_usd)`: early on,
   improvement per dollar; as the budget runs out, plain expected improvement, so the last
   dollars buy the best model rather than the cheapest experiment. With `horizon_trials` (the
   sweep's `num_samples`), alpha cools with the trials suggested too, by whichever of the two
   runs out first: a sweep of cheap trials that would reach its last trial with most of the
   budget unspent stops trading quality for cheapness. With neither, alpha stays 1. Trials
   still running count with the worst observed metric ("constant liar"), so concurrent
   suggestions spread out instead of piling on one point.

Trials stopped early by the scheduler (ASHA, ...) reach `on_trial_complete` like finished ones:
Tune marks a scheduler stop `done` too, so the searcher cannot tell them apart, and does not
need to. Their last reported metric is their label: it is what the scheduler judged them on,
and, for a metric that improves with training, a pessimistic one, which steers the search away
from configs the scheduler cut. Their billed cost, partial, is their cost label: under early
stopping, a partial bill is what evaluating such a config really costs, and what the budget
pays. Failed trials (`error=True`) add what they billed to the spend but teach the metric model
nothing.

No new trial is refused when the budget is spent: ending the sweep is the budget stopper's job.
A `grid` parameter is searched like a `choice`; grids are not enumerated. State saves as JSON
(`save`/`restore`, `get_state`/`set_state`), never pickle, so a resumed sweep keeps its history.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain
from scipy.stats import norm, rankdata

from ray_ml._json import finite_number
from ray_ml.config import SortMode
from ray_ml.errors import ConfigError
from ray_ml.tune._space import DomainKind, Param, SearchSpace, _encode, _plain, _unwrap

__all__ = ["DEFAULT_COST_HINTS", "CostAwareSearcher"]

logger = logging.getLogger(__name__)

# +1: the bigger the value, the costlier a trial; -1: the bigger, the cheaper.
DEFAULT_COST_HINTS: dict[str, float] = {
    "train.epochs": 1.0,
    "model.num_boost_round": 1.0,
    "model.max_depth": 1.0,  # a tree costs up to 2**depth nodes
    "model.hidden_sizes": 1.0,  # by the sum of the widths
    "train.batch_size": -1.0,  # fewer, fuller steps per epoch
    "scaling.num_workers": 1.0,  # billed per worker; the speed-up is below linear
    "train.early_stopping_patience": 1.0,
}
_STATE_VERSION = 1
_CHEAP_FRACTION = 0.5  # the initial design draws cost-driving params from this cheap share
_LOCAL_SHARE = 0.25  # candidates stepped from the best trials, the rest uniform
_LOCAL_TOP = 3  # how many of the best trials candidates step from
_LOCAL_STEP = 0.1  # step size in [0, 1] position units
_LOCAL_SWITCH = 0.2  # chance a local candidate changes a choice parameter
_XI = 0.01  # EI's exploration margin, in standard deviations of the observed metric
_MIN_COST = 1e-9  # a zero bill (a trial that never started) must not divide by zero


# ------------------------------------------------------------------------------- one param
@dataclass(frozen=True)
class _Dim:
    """How one parameter is sampled, stepped and turned into features."""

    param: Param
    cost_sign: float  # 0 when no hint

    @property
    def is_choice(self) -> bool:
        return self.param.kind in (DomainKind.choice, DomainKind.grid)

    @property
    def width(self) -> int:
        return len(self.param.values) if self.is_choice else 1

    @property
    def encoded(self) -> list[Any]:
        return [_encode(v) for v in self.param.values]

    # -- range kinds: a position p in [0, 1) maps to a value
    def _range(self) -> tuple[float, float, bool]:
        p = self.param
        assert p.low is not None and p.high is not None  # range kinds always have bounds
        log = p.kind in (DomainKind.loguniform, DomainKind.qloguniform)
        low, high = (math.log(p.low), math.log(p.high)) if log else (float(p.low), float(p.high))
        return low, high, log

    def _from_position(self, pos: float) -> Any:
        p = self.param
        pos = min(max(pos, 0.0), 1.0)
        if p.kind is DomainKind.integer:
            ilow, ihigh = int(p.low), int(p.high)  # type: ignore[arg-type]
            return min(ilow + int(pos * (ihigh - ilow + 1)), ihigh)
        low, high, log = self._range()
        value = low + pos * (high - low)
        value = math.exp(value) if log else value
        if p.q:
            lo, hi = math.ceil(p.low / p.q - 1e-9), math.floor(p.high / p.q + 1e-9)  # type: ignore[operator]
            k = min(max(round(value / p.q), lo), hi)
            value = float(f"{k * p.q:.12g}")  # 0.35, not 0.35000000000000003
        return min(max(value, float(p.low)), float(p.high))  # type: ignore[arg-type]

    def _position(self, value: Any) -> float:
        p = self.param
        if p.kind is DomainKind.integer:
            n = int(p.high) - int(p.low) + 1  # type: ignore[arg-type]
            return (int(value) - int(p.low) + 0.5) / n  # type: ignore[arg-type]  # bin centre
        low, high, log = self._range()
        x = math.log(max(float(value), 1e-300)) if log else float(value)
        return min(max((x - low) / (high - low), 0.0), 1.0)

    # -- choices: ordered by size for the cost hint
    def _index(self, value: Any) -> int | None:
        value = _unwrap(value)
        for i, v in enumerate(self.param.values):
            if value == _encode(v) or value == _plain(v) or value == v:
                return i
        return None

    def _cheap_indices(self) -> list[int]:
        def size(i: int) -> float:
            v = _plain(self.param.values[i])
            if isinstance(v, bool):
                return float(v)
            if isinstance(v, int | float):
                return float(v)
            if isinstance(v, list) and all(isinstance(x, int | float) for x in v):
                return float(sum(v))
            return float(i)

        order = sorted(range(len(self.param.values)), key=lambda i: (size(i), i))
        if self.cost_sign < 0:
            order.reverse()
        return order[: max(1, math.ceil(len(order) * _CHEAP_FRACTION))]

    # -- the three operations the searcher needs
    def at(self, u: float, cheap: bool) -> Any:
        """The value at quantile `u` in [0, 1) of the range, or of its cheap part."""
        cheap = cheap and self.cost_sign != 0
        if self.is_choice:
            pool = self._cheap_indices() if cheap else list(range(len(self.param.values)))
            return self.encoded[pool[min(int(u * len(pool)), len(pool) - 1)]]
        if cheap:
            u *= _CHEAP_FRACTION
            u = u if self.cost_sign > 0 else 1.0 - u
        return self._from_position(u)

    def sample(self, rng: np.random.Generator, cheap: bool) -> Any:
        return self.at(float(rng.random()), cheap)

    def step(self, value: Any, rng: np.random.Generator) -> Any:
        if self.is_choice:
            if rng.random() < _LOCAL_SWITCH:
                return self.encoded[int(rng.integers(len(self.param.values)))]
            return value
        return self._from_position(self._position(value) + float(rng.normal(0.0, _LOCAL_STEP)))

    def features(self, value: Any) -> list[float]:
        if self.is_choice:
            out = [0.0] * self.width
            i = self._index(value)
            if i is not None:
                out[i] = 1.0
            return out
        p = self.param
        if p.kind is DomainKind.integer:
            low, high = int(p.low), int(p.high)  # type: ignore[arg-type]
            if high == low:
                return [0.5]
            if self.cost_sign > 0 and low >= 1:
                # Epochs, rounds, depth: quality follows them roughly as a power law (1 -> 2
                # epochs matters more than 40 -> 41), so the model sees them on a log scale.
                return [math.log(int(value) / low) / math.log(high / low)]
            return [(int(value) - low) / (high - low)]
        return [self._position(value)]

    def contains(self, value: Any) -> bool:
        if self.is_choice:
            return self._index(value) is not None
        p = self.param
        if p.kind is DomainKind.integer and not (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            return False
        return float(p.low) <= float(value) <= float(p.high)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- searcher
class CostAwareSearcher(Searcher):
    """Suggest trial configs by expected improvement per cost-cooled dollar (see the module doc).

    Args:
        space: The search space; suggestions set every key of it.
        metric: The reported metric to optimize, e.g. `val_loss`.
        mode: `min` or `max`.
        budget_usd: The sweep's budget; cost cooling reaches plain EI when it is spent. None:
            cool over `horizon_trials`, or not at all.
        cost_key: Result key holding the trial's billed dollars. Results without it teach the
            cost model nothing and do not count toward the spend.
        n_initial: Suggestions from the cheap initial design before the models take over.
        n_candidates: Random candidates scored per suggestion.
        seed: Seed; the same seed, space and results give the same suggestions.
        cost_hints: Extra or overriding cost hints, key -> +1 (bigger costs more) or -1 (bigger
            is cheaper), 0 to drop a default hint; keys must be in `space`.
        horizon_trials: Cool alpha from 1 to 0 over this many suggested trials (e.g.
            `tune.num_samples`); with `budget_usd` too, whichever runs out first cools it.
        points_to_evaluate: Configs to try first, before the initial design (a warm start from
            an earlier sweep's best), each giving every key of `space`.

    Raises:
        ConfigError: An argument out of range, naming it and the fix.

    Example:
        >>> from ray_ml.tune import load_space
        >>> searcher = CostAwareSearcher(load_space("mlp"), "val_loss", "min", budget_usd=5.0)
        >>> config = searcher.suggest("t1")
        >>> searcher.on_trial_complete("t1", {"val_loss": 0.4, "cost_usd": 0.02})
    """

    def __init__(
        self,
        space: SearchSpace,
        metric: str,
        mode: SortMode | str,
        budget_usd: float | None = None,
        cost_key: str = "cost_usd",
        n_initial: int = 4,
        n_candidates: int = 512,
        seed: int = 0,
        *,
        cost_hints: Mapping[str, float] | None = None,
        horizon_trials: int | None = None,
        points_to_evaluate: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        mode = _check_mode(mode)
        if not isinstance(metric, str) or not metric:
            raise ConfigError(
                f"`metric` must be a non-empty metric name, but got metric={metric!r}. Fix: "
                "pass `tune.metric`, e.g. val_loss."
            )
        if budget_usd is not None and not (
            isinstance(budget_usd, int | float) and math.isfinite(budget_usd) and budget_usd > 0
        ):
            raise ConfigError(
                f"`budget_usd` must be positive or None, but got budget_usd={budget_usd!r}. "
                "Fix: pass `tune.budget_usd`, e.g. 5.0, or None."
            )
        for name, value, least in (
            ("n_initial", n_initial, 0),
            ("n_candidates", n_candidates, 1),
            ("horizon_trials", horizon_trials, 1),
        ):
            if value is None and name == "horizon_trials":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(
                    f"`{name}` must be an integer >= {least}, but got {name}={value!r}. Fix: "
                    f"pass a whole number of at least {least}."
                )
        if not space.params:
            raise ConfigError(
                f"search space {space.name!r} has no parameters. Fix: list some under `params`."
            )
        hints = dict(DEFAULT_COST_HINTS)
        for key, sign in (cost_hints or {}).items():
            if key not in space.params:
                raise ConfigError(
                    f"`cost_hints` names `{key}`, which search space {space.name!r} does not "
                    f"tune. Fix: use one of {', '.join(space.keys)}."
                )
            if (
                isinstance(sign, bool)
                or not isinstance(sign, int | float)
                or sign not in (-1, 0, 1)
            ):
                raise ConfigError(
                    f"`cost_hints[{key!r}]` must be 1, -1 or 0, but got {sign!r}. Fix: 1 when "
                    "bigger costs more, -1 when bigger is cheaper, 0 for no hint."
                )
            hints[key] = float(sign)
        super().__init__(metric=metric, mode=mode.value)
        # The base class types its copies as optional; these are always set.
        self._metric_key: str = metric
        self._mode_key: str = mode.value
        self._space = space
        self._dims = [_Dim(p, hints.get(p.key, 0.0)) for p in space.params.values()]
        self._budget_usd = None if budget_usd is None else float(budget_usd)
        self._cost_key = cost_key
        self._n_initial = n_initial
        self._n_candidates = n_candidates
        self._seed = int(seed)
        self._horizon = horizon_trials
        # Warm start: these configs (encoded as `to_tune` encodes) are suggested first.
        self._points = [dict(p) for p in points_to_evaluate]
        for point in self._points:
            if set(point) != set(space.params):
                raise ConfigError(
                    f"`points_to_evaluate` must give every key of search space "
                    f"{space.name!r} ({sorted(space.params)}), but got {sorted(point)}. Fix: "
                    "pass configs of this space, e.g. a previous sweep's leaderboard rows."
                )
        self._n_suggested = 0
        self._pending: dict[str, dict[str, Any]] = {}  # trial id -> config
        self._last: dict[str, dict[str, Any]] = {}  # trial id -> latest interim result
        # Finished trials: trial_id, config, value (metric), cost, iterations, error.
        self._history: list[dict[str, Any]] = []
        # Model -> its GP's last optimized hyperparameters (log scale); see `_fit_warm`.
        self._thetas: dict[str, list[float]] = {}

    # --------------------------------------------------------------------- Tune's API
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any
    ) -> bool:
        """Accept Tune's metric, mode and `param_space`; check they agree with the searcher's.

        Returns:
            True.

        Raises:
            ConfigError: A different metric or mode, or a `param_space` domain for a key the
                space does not tune (Tune would hand it to trials unresolved).
        """
        if metric and metric != self._metric_key:
            raise ConfigError(
                f"the cost-aware searcher optimizes `{self._metric_key}`, but Tune was given "
                f"metric={metric!r}. Fix: build both from `tune.metric`."
            )
        if mode and mode != self._mode_key:
            raise ConfigError(
                f"the cost-aware searcher uses mode={self._mode_key!r}, but Tune was given "
                f"mode={mode!r}. Fix: build both from `tune.mode`."
            )
        unknown = [k for k in _domain_keys(config or {}) if k not in self._space.params]
        if unknown:
            raise ConfigError(
                f"`param_space` samples {', '.join(unknown)}, which search space "
                f"{self._space.name!r} does not tune, so the cost-aware searcher would leave "
                "them unresolved. Fix: add them to the space YAML, or pass constants there."
            )
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next config: dotted key -> value, encoded as `SearchSpace.to_tune()` encodes."""
        # One generator per suggestion, seeded by its number: suggestions replay exactly after
        # `restore`, with no generator state to carry.
        rng = np.random.default_rng([self._seed, self._n_suggested])
        observed = [h for h in self._history if h["value"] is not None]
        warm = len(self._points)
        if self._n_suggested < warm:
            config = dict(self._points[self._n_suggested])
        elif self._n_suggested - warm < self._n_initial:
            config = self._initial_design(self._n_suggested - warm)
        elif len(observed) < 2:
            config = self._sample(rng, cheap=True)
        else:
            config = self._acquire(rng, observed)
        self._n_suggested += 1
        self._pending[trial_id] = config
        return dict(config)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Remember the latest result, in case the trial ends without one."""
        self._last[trial_id] = _slim(result, self._metric_key, self._cost_key)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Record a finished trial: completed, pruned (same treatment) or failed."""
        config = self._pending.pop(trial_id, None)
        last = self._last.pop(trial_id, None)
        data = _slim(result, self._metric_key, self._cost_key) if result else last
        if config is None and result:
            config = self._config_from_result(result)
        if config is None or data is None:
            # Never started (removed while pending), or not suggested by this searcher and
            # carrying no config: nothing to learn.
            return
        value = None if error else finite_number(data.get(self._metric_key))
        cost = finite_number(data.get(self._cost_key))
        if value is None and not error:
            logger.warning(
                "trial %s finished without reporting %r; the cost-aware searcher ignores its "
                "quality",
                trial_id,
                self._metric_key,
            )
        self._history.append(
            {
                "trial_id": trial_id,
                "config": config,
                "value": value,
                "cost": cost,
                "iterations": data.get("training_iteration"),
                "error": bool(error),
            }
        )

    # --------------------------------------------------------------------- state
    @property
    def spent_usd(self) -> float:
        """Dollars billed by finished trials (failed ones included)."""
        return float(sum(h["cost"] for h in self._history if h["cost"] is not None))

    @property
    def alpha(self) -> float:
        """The cost exponent now: 1 (improvement per dollar) cooling to 0 (plain EI).

        It cools with whichever runs out first: the budget (dollars billed so far) or the
        trial horizon (trials suggested so far). A sweep of cheap trials that will reach
        `num_samples` with most of its budget left must stop paying for cheapness.
        """
        used = []
        if self._budget_usd is not None:
            used.append(self.spent_usd / self._budget_usd)
        if self._horizon is not None:
            used.append(self._n_suggested / self._horizon)
        return max(0.0, 1.0 - max(used)) if used else 1.0

    @property
    def history(self) -> list[dict[str, Any]]:
        """Finished trials: trial_id, config, value, cost, iterations, error (copies)."""
        return [dict(h, config=dict(h["config"])) for h in self._history]

    def get_state(self) -> dict[str, Any]:
        """Everything needed to carry on, as JSON-ready data."""
        return {
            "version": _STATE_VERSION,
            "space": self._space.to_dict(),
            "metric": self._metric_key,
            "mode": self._mode_key,
            "seed": self._seed,
            "n_suggested": self._n_suggested,
            "pending": self._pending,
            "last": self._last,
            "history": self._history,
            "thetas": self._thetas,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Carry on from `get_state()`'s data; the searcher's own settings stay.

        Raises:
            ConfigError: The state is of another version, search space, metric or mode.
        """
        if state.get("version") != _STATE_VERSION:
            raise ConfigError(
                f"cost-aware searcher state has version {state.get('version')!r}, expected "
                f"{_STATE_VERSION}. Fix: start the sweep afresh (tune.resume=false)."
            )
        for name, mine in (
            ("space", self._space.to_dict()),
            ("metric", self._metric_key),
            ("mode", self._mode_key),
        ):
            if state.get(name) != mine:
                raise ConfigError(
                    f"cost-aware searcher state was saved with another {name} "
                    f"({state.get(name)!r}, now {mine!r}). Fix: resume with the same search "
                    "space, metric and mode, or start afresh (tune.resume=false)."
                )
        self._seed = int(state["seed"])
        self._n_suggested = int(state["n_suggested"])
        self._pending = {str(k): dict(v) for k, v in state["pending"].items()}
        self._last = {str(k): dict(v) for k, v in state["last"].items()}
        self._history = [dict(h) for h in state["history"]]
        self._thetas = {
            str(k): [float(v) for v in theta] for k, theta in state.get("thetas", {}).items()
        }

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON (Tune names the file `*.pkl`; the content is JSON)."""
        Path(checkpoint_path).write_text(json.dumps(self.get_state(), allow_nan=False))

    def restore(self, checkpoint_path: str) -> None:
        """Read a state written by `save`.

        Raises:
            ConfigError: The file is not such a state, or does not match (see `set_state`).
        """
        path = Path(checkpoint_path)
        try:
            state = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(
                f"cannot read cost-aware searcher state from {str(path)!r}: {exc}. Fix: point "
                "at a file written by `CostAwareSearcher.save`, or start afresh."
            ) from None
        if not isinstance(state, dict):
            raise ConfigError(
                f"{str(path)!r} holds no cost-aware searcher state. Fix: start afresh."
            )
        self.set_state(state)

    # --------------------------------------------------------------------- internals
    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether `config` sets every key of the space to a value inside its domain."""
        return set(config) == set(self._space.params) and all(
            d.contains(config[d.param.key]) for d in self._dims
        )

    def _sample(self, rng: np.random.Generator, cheap: bool) -> dict[str, Any]:
        return {d.param.key: d.sample(rng, cheap) for d in self._dims}

    def _initial_design(self, i: int) -> dict[str, Any]:
        # A Latin hypercube over the n_initial points: each parameter's range (the cheap part,
        # for cost-driving ones) is cut into n_initial strata and every stratum is used once,
        # so four points cannot all land in one corner of the learning rate by chance.
        n = self._n_initial
        rng = np.random.default_rng([self._seed, 1 << 32])  # the same for every i
        strata = [rng.permutation(n) for _ in self._dims]
        jitter = rng.random((n, len(self._dims)))
        return {
            d.param.key: d.at((strata[j][i] + jitter[i, j]) / n, cheap=True)
            for j, d in enumerate(self._dims)
        }

    def _features(self, config: Mapping[str, Any]) -> list[float]:
        out: list[float] = []
        for d in self._dims:
            out.extend(d.features(config[d.param.key]))
        return out

    def _config_from_result(self, result: Mapping[str, Any]) -> dict[str, Any] | None:
        # Tune flattens results with "/", so a trial's config arrives as "config/train.lr".
        nested = result.get("config")
        flat = dict(nested) if isinstance(nested, Mapping) else {}
        flat.update({k[7:]: v for k, v in result.items() if k.startswith("config/")})
        config = {k: _unwrap(flat[k]) for k in self._space.params if k in flat}
        return config if self.contains(config) else None

    def _acquire(self, rng: np.random.Generator, observed: list[dict[str, Any]]) -> dict[str, Any]:
        sign = 1.0 if self._mode_key == "min" else -1.0  # the models minimize sign * metric
        x_obs = np.array([self._features(h["config"]) for h in observed])
        # The model sees normal scores of the ranks, not raw values: one diverged trial (a loss of
        # 1e6) or a steep learning curve then no longer flattens the rest of the surface, and
        # the same settings work for any metric's scale (the Gaussian copula of Salinas et al.,
        # 2020). EI is taken on that scale; the transform keeps the order, so the best stays best.
        y_obs = _normal_scores(np.array([sign * h["value"] for h in observed]))
        # Constant liar: running trials count as the worst result so far.
        pending = [self._features(c) for c in self._pending.values()]
        x_fit = np.vstack([x_obs, np.array(pending)]) if pending else x_obs
        y_fit = np.concatenate([y_obs, np.full(len(pending), y_obs.max())])

        candidates = self._candidates(rng, observed, sign)
        x_cand = np.array([self._features(c) for c in candidates])
        mu, sd = _predict(self._fit_warm("metric", x_fit, y_fit), x_cand)
        spread = float(y_obs.std()) or 1.0
        improve = y_obs.min() - mu - _XI * spread
        z = improve / np.maximum(sd, 1e-12)
        ei = np.where(sd > 1e-12, improve * norm.cdf(z) + sd * norm.pdf(z), np.maximum(improve, 0))
        score = np.log(np.maximum(ei, 1e-300))

        alpha = self.alpha
        costed = [h for h in self._history if h["cost"] is not None]
        if alpha > 0 and len(costed) >= 2:
            x_cost = np.array([self._features(h["config"]) for h in costed])
            log_cost = np.log(np.maximum([h["cost"] for h in costed], _MIN_COST))
            log_pred, _ = _predict(self._fit_warm("cost", x_cost, log_cost), x_cand)
            score = score - alpha * log_pred  # log(EI / cost ** alpha)
        return candidates[int(np.argmax(score))]

    def _fit_warm(self, model: str, x: np.ndarray, y: np.ndarray) -> Any:
        """A GP of `model` (metric or cost) on (x, y), its hyperparameters optimized from the
        previous suggestion's optimum.

        Maximizing the marginal likelihood is nearly all of a suggestion's time, and one trial
        more barely moves its optimum, so L-BFGS started there stops much sooner
        (`python -m benchmarks.bench_searcher` times both starts). The optimum is part of the
        saved state, so a restored searcher starts where the uninterrupted one would, and
        suggests the same.
        """
        gp = _fit(x, y, self._thetas.get(model))
        self._thetas[model] = [float(v) for v in gp.kernel_.theta]
        return gp

    def _candidates(
        self, rng: np.random.Generator, observed: list[dict[str, Any]], sign: float
    ) -> list[dict[str, Any]]:
        n_local = int(self._n_candidates * _LOCAL_SHARE)
        out = [self._sample(rng, cheap=False) for _ in range(self._n_candidates - n_local)]
        best = sorted(observed, key=lambda h: sign * h["value"])[:_LOCAL_TOP]
        for i in range(n_local):
            base = best[i % len(best)]["config"]
            out.append({d.param.key: d.step(base[d.param.key], rng) for d in self._dims})
        return out


# ------------------------------------------------------------------------------- helpers
def _check_mode(mode: SortMode | str) -> SortMode:
    try:
        return SortMode(mode)
    except ValueError:
        raise ConfigError(
            f"`mode` must be one of min, max, but got mode={mode!r}. Fix: pass `tune.mode`."
        ) from None


def _slim(result: Mapping[str, Any] | None, metric: str, cost_key: str) -> dict[str, Any]:
    # Only what the searcher uses, as plain JSON-ready numbers.
    out: dict[str, Any] = {}
    for key in (metric, cost_key, "training_iteration"):
        value = finite_number((result or {}).get(key))
        if value is not None:
            out[key] = int(value) if key == "training_iteration" else value
    return out


def _normal_scores(y: np.ndarray) -> np.ndarray:
    return np.asarray(norm.ppf((rankdata(y) - 0.5) / len(y)), dtype=float)


def _domain_keys(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Domain) or (isinstance(value, Mapping) and "grid_search" in value):
            keys.append(name)
        elif isinstance(value, Mapping):
            keys.extend(_domain_keys(value, f"{name}."))
    return keys


def _fit(x: np.ndarray, y: np.ndarray, start: Sequence[float] | None = None) -> Any:
    """A Gaussian process fitted to (x, y): a Matern 5/2 kernel with one length scale per
    feature plus a noise term, its hyperparameters maximizing the marginal likelihood from
    `start` (log scale, as `kernel.theta`; None: the defaults below)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
    from threadpoolctl import threadpool_limits

    d = x.shape[1]
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(
        length_scale=np.full(d, 0.5), length_scale_bounds=(1e-2, 1e2), nu=2.5
    ) + WhiteKernel(1e-3, (1e-6, 1.0))
    if start is not None and len(start) == len(kernel.theta):
        bounds = kernel.bounds
        kernel = kernel.clone_with_theta(np.clip(np.asarray(start), bounds[:, 0], bounds[:, 1]))
    # Deterministic: one L-BFGS run from the same start (no random restarts).
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=0)
    # The matrices are tiny: BLAS threads only add overhead, and contend with the trials
    # running on the driver's machine (3x slower on 2 busy cores).
    with threadpool_limits(1), warnings.catch_warnings():
        # Few points often put a length scale at its bound; the fit is still usable.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, y)
    return gp


def _predict(gp: Any, x_new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fitted process's mean and standard deviation at `x_new`."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        mean, std = gp.predict(x_new, return_std=True)
    return np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
