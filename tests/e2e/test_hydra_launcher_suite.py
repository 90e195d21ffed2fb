"""Hydra's own launcher suites against `hydra/launcher=ray_jobs` on a real local Ray head
(`ray start --head`, token auth, isolated ports): `LauncherTestSuite` and `IntegrationTestSuite`.

Their tasks are Python functions, so the launcher runs in `mode=task`: each job is a Ray job that
runs the pickled task with Hydra's `run_job`, on the head's machine, which is this one. Without a
head, tests/unit/test_hydra_launcher_suite.py runs the same suite on a stand-in Jobs API.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

from tests._hydra_suite import hydra_as_in_a_fresh_process
from tests._ray_head import Head, ray_head

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 25 Ray jobs on a real head


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    with ray_head() as h:
        yield h


@pytest.fixture(autouse=True)
def jobs_api_of_the_head(head: Head, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # From the environment, not overrides, so that the token lands in no .hydra/ file; the
    # integration suite's app processes inherit both.
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", head.url)
    monkeypatch.setenv("RAY_AUTH_TOKEN", head.token)
    with hydra_as_in_a_fresh_process():
        yield


@pytest.mark.parametrize(
    ("launcher_name", "overrides"), [("ray_jobs", ["hydra.launcher.mode=task"])]
)
class TestRayJobsLauncherOnAHead(LauncherTestSuite):
    """Hydra's launcher test suite, unchanged."""


@pytest.mark.parametrize(
    ("task_launcher_cfg", "extra_flags"),
    [
        (
            {},
            [
                "-m",
                "hydra/launcher=ray_jobs",
                "hydra.launcher.mode=task",
                "hydra/job_logging=disabled",
            ],
        )
    ],
)
class TestRayJobsLauncherIntegrationOnAHead(IntegrationTestSuite):
    """Hydra's integration suite, unchanged: real `@hydra.main` apps in their own processes."""
