"""Optuna samplers that Tune can checkpoint.

Tune pickles its searcher at every experiment checkpoint (`OptunaSearch.save`), sampler
included. Optuna 5.1's genetic samplers (NSGA-II) hold a `threading.Lock`, which does not pickle,
so the first checkpoint of a sweep failed and took the sweep down. These subclasses pickle
without their locks and make fresh ones when unpickled; nothing else changes.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

__all__ = ["NSGAIISampler", "TPESampler"]

_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())
_LOCKS_KEY = "_ray_ml_locks"


class _Checkpointable:
    """Pickles without thread locks; unpickling makes new, unheld ones."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        locks = {
            k: isinstance(v, _RLOCK) for k, v in state.items() if isinstance(v, (_LOCK, _RLOCK))
        }
        for name in locks:
            del state[name]
        state[_LOCKS_KEY] = locks
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        locks = state.pop(_LOCKS_KEY, {})
        self.__dict__.update(state)
        for name, reentrant in locks.items():
            setattr(self, name, threading.RLock() if reentrant else threading.Lock())


class NSGAIISampler(_Checkpointable, optuna.samplers.NSGAIISampler):
    """`optuna.samplers.NSGAIISampler` that Tune can checkpoint."""


class TPESampler(_Checkpointable, optuna.samplers.TPESampler):
    """`optuna.samplers.TPESampler` that Tune can checkpoint."""
