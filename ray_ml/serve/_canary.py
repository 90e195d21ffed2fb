"""The canary judge: promote or roll back a canary version from its errors, latency and live
quality.

The state deployment feeds it the per-request samples that replicas flush (`record_delta` of a
`MetricsDelta.drain()` result), hands it the live-quality comparison of the canary with the
stable version on the same window (`LiveQuality.compare`) and acts on its first decision. Pure
Python: no Ray, no torch.
"""

from __future__ import annotations

import enum
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CANARY",
    "MAX_LATENCY_SAMPLES",
    "ROLES",
    "STABLE",
    "CanaryAction",
    "CanaryDecision",
    "CanaryJudge",
]

STABLE = "stable"
CANARY = "canary"
ROLES = (STABLE, CANARY)
MAX_LATENCY_SAMPLES = 10_000  # latency samples kept per role by the canary judge
_EARLY_MIN_REQUESTS = 10  # canary requests before an early rollback on errors
_MIN_STABLE_FOR_LATENCY = 20  # stable requests before latencies are compared


class CanaryAction(enum.StrEnum):
    PROMOTE = "promote"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class CanaryDecision:
    """What to do with the canary, and why.

    Attributes:
        action: `promote` or `rollback` (a str enum: compares equal to the plain string).
        reason: One human-readable line with the numbers behind the decision.
    """

    action: CanaryAction
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action.value, "reason": self.reason}


class _RoleStats:
    __slots__ = ("errors", "latencies", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=MAX_LATENCY_SAMPLES)

    def percentiles(self, *qs: float) -> list[float | None]:
        if not self.latencies:
            return [None] * len(qs)
        values: list[float | None] = np.percentile(
            np.fromiter(self.latencies, np.float64), qs
        ).tolist()
        return values

    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class CanaryJudge:
    """Decides whether a canary version is promoted or rolled back (state side).

    Requests count as errors when `ok` is false (the service passes `status < 500`: client
    errors are not the model's fault). Latencies of all requests, failed ones included, are kept
    (the newest 10,000 per role) for the p95 comparison.

    `decide()` answers None until the canary has `min_requests` requests, then:

    * rollback when the canary error rate exceeds `max_error_rate`;
    * rollback when the canary p95 latency exceeds `max_latency_ratio` times the stable p95
      (only compared once stable has at least 20 requests; before that latency is not judged);
    * promote otherwise.

    With live quality (`decide(quality=LiveQuality.compare(...))`, both versions labelled on the
    same window): rollback when the canary's primary metric is worse than the stable one's by
    more than `max_quality_drop`, checked after the error rate and before latency. With
    `min_labels > 0` the judge waits (answers None) until both versions have that many labels;
    with 0 it judges quality only when the comparison names a winner, and otherwise says that
    quality was not compared.

    Early rollback: from the canary's 10th request on, once its errors alone exceed
    `max_error_rate * min_requests` (so the error rate at `min_requests` must exceed the bound
    whatever the remaining requests do), it is rolled back without waiting.

    The first decision is final until `reset()`: later requests do not re-judge it, so the
    controller acts exactly once per canary.

    Args:
        min_requests: Canary requests needed before promoting.
        max_error_rate: Highest acceptable canary error rate, in [0, 1].
        max_latency_ratio: Highest acceptable canary p95 / stable p95.
        min_labels: Feedback labels each version needs before the canary is judged (0: do
            not wait for feedback).
        max_quality_drop: How much worse the canary's live primary metric may be.

    Raises:
        ValueError: A bad argument.
    """

    def __init__(
        self,
        min_requests: int,
        max_error_rate: float,
        max_latency_ratio: float,
        min_labels: int = 0,
        max_quality_drop: float = 0.02,
    ) -> None:
        if int(min_requests) < 1:
            raise ValueError(f"min_requests must be positive, but got min_requests={min_requests}.")
        if not 0.0 <= max_error_rate <= 1.0:
            raise ValueError(
                f"max_error_rate must be in [0, 1], but got max_error_rate={max_error_rate}."
            )
        if not (max_latency_ratio > 0 and math.isfinite(max_latency_ratio)):
            raise ValueError(
                "max_latency_ratio must be a positive number, but got "
                f"max_latency_ratio={max_latency_ratio}."
            )
        if int(min_labels) < 0:
            raise ValueError(f"min_labels must be >= 0, but got min_labels={min_labels}.")
        if not (max_quality_drop >= 0 and math.isfinite(max_quality_drop)):
            raise ValueError(
                "max_quality_drop must be a finite number >= 0, but got "
                f"max_quality_drop={max_quality_drop}."
            )
        self.min_labels = int(min_labels)
        self.max_quality_drop = float(max_quality_drop)
        self.min_requests = int(min_requests)
        self.max_error_rate = float(max_error_rate)
        self.max_latency_ratio = float(max_latency_ratio)
        self._lock = threading.Lock()
        self._roles = {role: _RoleStats() for role in ROLES}
        self._decision: CanaryDecision | None = None

    def _role(self, role: str) -> _RoleStats:
        stats = self._roles.get(role)
        if stats is None:
            raise ValueError(f"role must be one of {list(ROLES)}, but got role={role!r}.")
        return stats

    def record(self, role: str, ok: bool, latency_s: float) -> None:
        """Record one request of `role` ("stable" or "canary")."""
        self.record_many(role, [ok], [latency_s])

    def record_many(self, role: str, oks: Sequence[bool], latencies: Sequence[float]) -> None:
        """Record several requests of `role`; `oks[i]` and `latencies[i]` describe request i.

        Raises:
            ValueError: Unknown role, or the two lists differ in length.
        """
        stats = self._role(role)
        if len(oks) != len(latencies):
            raise ValueError(
                f"record_many: oks has {len(oks)} entries but latencies has {len(latencies)}; "
                "pass one of each per request."
            )
        with self._lock:
            stats.requests += len(oks)
            stats.errors += sum(1 for ok in oks if not ok)
            stats.latencies.extend(float(x) for x in latencies)

    def record_delta(
        self, delta: Mapping[str, Any], versions: Mapping[str, str | None] | None = None
    ) -> None:
        """Record the per-request samples of a `MetricsDelta.drain()` result.

        Args:
            delta: The drained delta.
            versions: The version each role is judged for (e.g. `{"stable": "1", "canary":
                "2"}`); samples of other versions (requests of a previous canary that finished
                after the routing changed) are left out. None keeps every sample.
        """
        for role, s in delta.get("samples", {}).items():
            oks, lats = s["ok"], s["latency_s"]
            if versions is not None and "version" in s:
                want = versions.get(role)
                keep = [i for i, v in enumerate(s["version"]) if v == want]
                oks, lats = [oks[i] for i in keep], [lats[i] for i in keep]
            if oks:
                self.record_many(role, oks, lats)

    @property
    def needs_quality(self) -> bool:
        """Whether `decide` would look at live quality now (the canary has `min_requests`)."""
        with self._lock:
            return self._decision is None and self._roles[CANARY].requests >= self.min_requests

    @property
    def decision(self) -> CanaryDecision | None:
        """The decision taken so far (None while undecided)."""
        return self._decision

    def decide(self, quality: Mapping[str, Any] | None = None) -> CanaryDecision | None:
        """Judge the canary; None while it has too few requests (or labels). See the class
        docstring.

        Args:
            quality: `LiveQuality.compare(canary, stable, since=<canary start>)`, or None
                without feedback.
        """
        with self._lock:
            if self._decision is None:
                self._decision = self._judge(quality)
            return self._decision

    def _quality_verdict(
        self, quality: Mapping[str, Any] | None
    ) -> tuple[bool, CanaryDecision | None, str]:
        """(wait for more labels, a rollback, the text for a promote's reason)."""
        labelled = (
            None
            if quality is None
            else min(int(quality["candidate"]["n_labels"]), int(quality["production"]["n_labels"]))
        )
        if self.min_labels > 0 and (
            quality is None
            or labelled is None
            or labelled < self.min_labels
            or quality.get("difference") is None
        ):
            return True, None, ""
        if quality is None or quality.get("better") is None or quality.get("difference") is None:
            return False, None, "live quality not compared (too few feedback labels)"
        primary = str(quality["primary"])
        c, p = quality["candidate"], quality["production"]
        cv, pv = c["metrics"][primary], p["metrics"][primary]
        diff = float(quality["difference"])
        worse = -diff if quality["higher_is_better"] else diff
        text = (
            f"canary {primary} {cv:.4g} vs stable {pv:.4g} on the same window "
            f"({c['n_labels']} / {p['n_labels']} labelled rows)"
        )
        if worse > self.max_quality_drop:
            return (
                False,
                CanaryDecision(
                    CanaryAction.ROLLBACK,
                    f"{text}: {worse:.4g} worse > {self.max_quality_drop:g}",
                ),
                "",
            )
        return False, None, f"{text}: not worse by more than {self.max_quality_drop:g}"

    def _judge(self, quality: Mapping[str, Any] | None = None) -> CanaryDecision | None:
        canary, stable = self._roles[CANARY], self._roles[STABLE]
        n, errors = canary.requests, canary.errors
        rate_text = f"canary error rate {canary.error_rate():.1%} ({errors}/{n})"
        budget = self.max_error_rate * self.min_requests
        if _EARLY_MIN_REQUESTS <= n < self.min_requests and errors > budget:
            return CanaryDecision(
                CanaryAction.ROLLBACK,
                f"{rate_text}: {errors} errors already exceed {self.max_error_rate:.1%} of "
                f"min_requests={self.min_requests} ({budget:g}); rolled back early",
            )
        if n < self.min_requests:
            return None
        if canary.error_rate() > self.max_error_rate:
            return CanaryDecision(CanaryAction.ROLLBACK, f"{rate_text} > {self.max_error_rate:.1%}")
        wait, rollback, quality_text = self._quality_verdict(quality)
        if wait:
            return None
        if rollback is not None:
            return rollback
        rate_ok = f"{rate_text} <= {self.max_error_rate:.1%}; {quality_text}"
        if stable.requests < _MIN_STABLE_FOR_LATENCY:
            return CanaryDecision(
                CanaryAction.PROMOTE,
                f"{rate_ok}; latency not compared (stable has {stable.requests} < "
                f"{_MIN_STABLE_FOR_LATENCY} requests)",
            )
        (c95,), (s95,) = canary.percentiles(95), stable.percentiles(95)
        assert c95 is not None and s95 is not None
        limit = self.max_latency_ratio * s95
        latency_text = (
            f"canary p95 latency {c95 * 1e3:.1f} ms {{op}} {self.max_latency_ratio:g} x "
            f"stable p95 {s95 * 1e3:.1f} ms"
        )
        if c95 > limit:
            return CanaryDecision(CanaryAction.ROLLBACK, latency_text.format(op=">"))
        return CanaryDecision(CanaryAction.PROMOTE, f"{rate_ok} and {latency_text.format(op='<=')}")

    def stats(self) -> dict[str, Any]:
        """Counts, error rates and p50/p95 latency (seconds, None without samples) per role."""
        with self._lock:
            out: dict[str, Any] = {}
            for role, s in self._roles.items():
                p50, p95 = s.percentiles(50, 95)
                out[role] = {
                    "requests": s.requests,
                    "errors": s.errors,
                    "error_rate": s.error_rate(),
                    "p50_s": p50,
                    "p95_s": p95,
                }
            out["decision"] = None if self._decision is None else self._decision.to_dict()
            return out

    def reset(self) -> None:
        """Forget everything, for a new canary."""
        with self._lock:
            self._roles = {role: _RoleStats() for role in ROLES}
            self._decision = None
