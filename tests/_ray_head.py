"""Helpers for tests of real Ray services (polling, free ports) and a real Ray head: `ray start --head` on free ports, its own temp dir, token auth.

Stopped by killing only its own processes (those naming its temp dir), never `ray stop`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)


def free_port() -> int:
    return free_ports(1)[0]


def until(check: Any, timeout_s: float = 30.0, every_s: float = 0.25) -> Any:
    """Poll `check()` until it returns something truthy (returned); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last value {value!r})")
        time.sleep(every_s)


def ports_and_worker_range(n: int, span: int) -> tuple[list[int], int]:
    """`n` free ports and the start of a worker-port range `[lo, lo + span]` holding none of them.

    `ray start` exits 1 when its worker port range covers one of its other ports; random free
    ports did that now and then (seen: a GCS port inside the worker range).
    """
    for _ in range(100):
        *ports, lo = free_ports(n + 1)
        if lo + span < 65536 and not any(lo <= p <= lo + span for p in ports):
            return ports, lo
    raise RuntimeError(f"no worker port range of {span} ports clear of {n} free ports")


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(int(s.getsockname()[1]))
    for s in socks:
        s.close()
    return ports


class Head:
    def __init__(
        self, url: str, token: str, env: dict[str, str], temp_dir: str, ports: dict[str, int]
    ) -> None:
        self.url = url
        self.token = token
        self.env = env
        self.temp_dir = temp_dir
        self.ports = ports
        self.auth = {"Authorization": f"Bearer {token}"}

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, capture_output=True, text=True, cwd=REPO, env=self.env, timeout=timeout
        )

    def processes(self) -> list[psutil.Process]:
        """Every process of this Ray (its command line names the head's temp dir)."""
        return [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(self.temp_dir in part for part in (p.info["cmdline"] or []))
        ]


@contextlib.contextmanager
def ray_head(
    num_cpus: int = 2,
    autoscaling_config: str | Path | None = None,
    env_extra: dict[str, str] | None = None,
) -> Iterator[Head]:
    """Start a head (with the real autoscaler over fake local nodes when a config is given);
    `env_extra` reaches every process of it, job drivers included."""
    temp_dir = tempfile.mkdtemp(prefix="rmh", dir="/tmp")  # short: Ray's socket paths are limited
    (gcs, dash, agent, client, metrics, runtime_env_agent), lo = ports_and_worker_range(6, 200)
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_ML_PROGRESS": "0",
        **(env_extra or {}),
    }
    env.pop("RAY_ADDRESS", None)
    extra: list[str] = []
    if autoscaling_config is not None:
        from ray_ml.cluster._launch import fake_cluster_config

        config = fake_cluster_config(autoscaling_config, f"127.0.0.1:{gcs}")
        path = Path(temp_dir) / "autoscaling.json"
        path.write_text(json.dumps(config))
        extra.append(f"--autoscaling-config={path}")
        env.update({"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
    ports = {"gcs": gcs, "dashboard": dash, "client": client, "agent": agent}
    try:
        subprocess.run(
            [
                f"{VENV_BIN}/ray",
                "start",
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={gcs}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={dash}",
                f"--dashboard-agent-listen-port={agent}",
                f"--ray-client-server-port={client}",
                f"--metrics-export-port={metrics}",
                f"--runtime-env-agent-port={runtime_env_agent}",
                f"--min-worker-port={lo}",
                f"--max-worker-port={lo + 200}",
                f"--temp-dir={temp_dir}",
                f"--num-cpus={num_cpus}",
                "--object-store-memory=300000000",
                "--disable-usage-stats",
                *extra,
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
        )
        url = f"http://127.0.0.1:{dash}"
        head = Head(url, token, env, temp_dir, ports)
        # The dashboard agent needs a few seconds before the Jobs API accepts submissions.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/api/jobs/", headers=head.auth, timeout=5).ok:
                    break
            time.sleep(1)
        time.sleep(3)
        yield head
    finally:
        mine = Head("", "", {}, temp_dir, {}).processes()
        for p in mine:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(mine, timeout=30)


@contextlib.contextmanager
def worker_node(head: Head, num_cpus: int = 1) -> Iterator[None]:
    """A second node joined to `head` (`ray start --address`), stopped by its own PIDs after."""
    before = {p.pid for p in psutil.process_iter()}
    ports, lo = ports_and_worker_range(5, 50)
    subprocess.run(
        [
            f"{VENV_BIN}/ray",
            "start",
            f"--address=127.0.0.1:{head.ports['gcs']}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            "--object-store-memory=100000000",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--metrics-export-port={ports[3]}",
            f"--runtime-env-agent-port={ports[4]}",
            f"--min-worker-port={lo}",
            f"--max-worker-port={lo + 50}",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
        env=head.env,
        timeout=120,
    )
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid not in before and "ray" in " ".join(p.info["cmdline"] or [])
    ]
    try:
        auth = head.auth
        until(
            lambda: (
                sum(
                    1
                    for n in requests.get(
                        f"{head.url}/api/v0/nodes", headers=auth, timeout=10
                    ).json()["data"]["result"]["result"]
                    if n["state"] == "ALIVE"
                )
                >= 2
            ),
            timeout_s=60,
        )
        yield
    finally:
        for p in mine:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(mine, timeout=30)
