"""Ray jobs from a laptop: `ray-ml submit JOB [overrides]` and `ray-ml jobs status|logs|stop|list`.

Everything goes through Ray's Jobs API (`JobSubmissionClient`) of the cluster's dashboard, with
the cluster token sent as `Authorization: Bearer` (Ray 2.60 turns token auth on by default). The
token is `--token`, else `$RAY_AUTH_TOKEN`, else the file `$RAY_AUTH_TOKEN_PATH`, else
`~/.ray/auth_token` (where `ray start` and `ray get-auth-token --generate` put it).

A job runs `python -m jobs.NAME overrides...` in a runtime environment whose working directory is
this repository (uploaded without `.venv`, `.git`, `runs` and caches), so the cluster needs the
project's dependencies installed (the `cluster/` definitions do that) but not its code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ray_ml.errors import ConfigError, RayMLError

__all__ = [
    "DEFAULT_EXCLUDES",
    "job_client",
    "job_summary",
    "resolve_token",
    "submit_job",
    "wait_for_job",
]

DEFAULT_EXCLUDES = [
    ".venv",
    ".git",
    "runs",
    "**/__pycache__",
    "*.egg-info",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "benchmarks/results",
]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def resolve_token(explicit: str | None = None) -> str | None:
    """The cluster token: explicit, `$RAY_AUTH_TOKEN`, `$RAY_AUTH_TOKEN_PATH`, `~/.ray/auth_token`."""
    if explicit:
        return explicit.strip()
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if path.is_file():
        return path.read_text().strip() or None
    return None


def _address(address: str | None) -> str:
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ConfigError(
            "no cluster to talk to: pass --address http://HEAD:8265 (the dashboard / Jobs API), "
            "or set RAY_ADDRESS. For a cluster from `ray up`, run `ray dashboard CONFIG` first "
            "and use http://127.0.0.1:8265."
        )
    if "://" not in address:
        address = f"http://{address}"
    return address


def job_client(address: str | None = None, token: str | None = None) -> Any:
    """A `JobSubmissionClient` for the cluster at `address`, sending its token.

    Raises:
        RayMLError: The cluster cannot be reached, or refuses the token (401/403).
    """
    from ray.job_submission import JobSubmissionClient

    url = _address(address)
    tok = resolve_token(token)
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    try:
        return JobSubmissionClient(url, headers=headers)
    except Exception as exc:
        raise _client_error(url, tok, exc) from None


def _client_error(url: str, token: str | None, exc: Exception) -> RayMLError:
    text = str(exc)
    if "401" in text or "403" in text or "Unauthorized" in text or "uthentication" in text:
        how = (
            "the token sent was refused"
            if token
            else "no token was found (--token, $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, "
            "~/.ray/auth_token)"
        )
        return RayMLError(
            f"the Jobs API at {url} refused the request: {how}. Get the cluster's token "
            "(`ray get-auth-token` on the head) and pass it with --token or $RAY_AUTH_TOKEN."
        )
    return RayMLError(
        f"cannot reach the Jobs API at {url}: {text.splitlines()[0][:300] if text else type(exc).__name__}. "
        "Check the address (the dashboard port, 8265 by default) and that the head is up."
    )


def submit_job(
    job: str,
    overrides: list[str],
    *,
    address: str | None = None,
    token: str | None = None,
    working_dir: str | Path = ".",
    excludes: list[str] | None = None,
    env_vars: dict[str, str] | None = None,
    submission_id: str | None = None,
    upload: bool = True,
) -> str:
    """Submit `python -m jobs.<job> <overrides>`; returns the submission id.

    With `upload=False` the job runs the project installed on the cluster's nodes (as the
    `cluster/` definitions install it) instead of an uploaded copy of `working_dir`.

    Raises:
        ConfigError: `job` is not a module in `jobs/` of `working_dir`.
        RayMLError: The cluster cannot be reached or refuses the token.
    """
    root = Path(working_dir).resolve()
    if not (root / "jobs" / f"{job}.py").is_file():
        known = sorted(p.stem for p in (root / "jobs").glob("*.py") if p.stem != "__init__")
        raise ConfigError(f"unknown job {job!r}: no jobs/{job}.py under {root}. Jobs: {known}.")
    client = job_client(address, token)
    entrypoint = shlex.join(["python", "-m", f"jobs.{job}", *overrides])
    runtime_env: dict[str, Any] = {"env_vars": {"RAY_ML_PROGRESS": "0", **(env_vars or {})}}
    if upload:
        runtime_env["working_dir"] = str(root)
        runtime_env["excludes"] = list(excludes if excludes is not None else DEFAULT_EXCLUDES)
    try:
        return str(
            client.submit_job(
                entrypoint=entrypoint, runtime_env=runtime_env, submission_id=submission_id
            )
        )
    except Exception as exc:
        raise _client_error(_address(address), resolve_token(token), exc) from None


def job_summary(logs: str) -> dict[str, Any] | None:
    """The job's summary: the last log line that is a JSON object."""
    for line in reversed(logs.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def wait_for_job(
    client: Any, submission_id: str, *, follow: bool = True, timeout_s: float | None = None
) -> dict[str, Any]:
    """Stream the job's logs to stderr (when `follow`) until it ends; its status and summary.

    Returns:
        `{"submission_id", "status", "exit_code", "summary", "message"}`; `exit_code` is the
        driver's exit code when Ray knows it, else 0 for SUCCEEDED and 1 otherwise.
    """
    if follow:

        async def tail() -> None:
            async for chunk in client.tail_job_logs(submission_id):
                sys.stderr.write(chunk)
                sys.stderr.flush()

        with contextlib.suppress(TimeoutError):
            asyncio.run(asyncio.wait_for(tail(), timeout_s))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = client.get_job_info(submission_id)
        status = str(getattr(info.status, "value", info.status))
        if status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            break
        time.sleep(0.5)
    code = getattr(info, "driver_exit_code", None)
    if code is None:
        code = 0 if status == "SUCCEEDED" else 1
    return {
        "submission_id": submission_id,
        "status": status,
        "exit_code": int(code),
        "summary": job_summary(client.get_job_logs(submission_id)),
        "message": info.message,
    }
