"""Helpers for running Hydra's own plugin test suites (hydra.test_utils) inside our session."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

from hydra.core.singleton import Singleton
from hydra.version import VersionBase, __compat_version__


@contextlib.contextmanager
def hydra_as_in_a_fresh_process() -> Iterator[None]:
    """Hydra's singletons as a new process has them, restored afterwards.

    Hydra's suites compose without a `version_base`, so they expect Hydra's compatibility
    defaults (1.1: a job changes into its output dir, which `verify_dir_outputs` relies on).
    Hydra runs each plugin's suite in a process of its own; here an earlier test that composed
    with `version_base="1.3"` would have left that set for the whole session.
    """
    state = copy.deepcopy(Singleton.get_state())
    VersionBase.instance().setbase(__compat_version__)
    try:
        yield
    finally:
        Singleton.set_state(state)
