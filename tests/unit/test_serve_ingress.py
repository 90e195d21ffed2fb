"""The environment a serving Ray starts with for each `serve.ingress`."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ray_ml.config import ServeIngress, load_config
from ray_ml.errors import ConfigError
from ray_ml.serve import _ingress, ingress_env

pytestmark = pytest.mark.unit


def test_haproxy_is_the_default_and_gets_private_ports_and_files() -> None:
    assert load_config("serve", []).serve.ingress is ServeIngress.haproxy
    env = ingress_env(ServeIngress.haproxy)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    ports = [int(env[k]) for k in env if k.endswith("_PORT")]
    assert len(ports) == 4 and len(set(ports)) == 4  # none of Ray's fixed 8500/9500/9101/8404
    assert not {8500, 9500, 9101, 8404} & set(ports)
    state = Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    assert state.is_dir() and Path(env["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent == state
    assert ingress_env(ServeIngress.haproxy)["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] != str(state)


def test_the_private_haproxy_folder_is_removed_when_the_process_exits() -> None:
    # A process that served through HAProxy leaves no ray_ml_haproxy_* folder behind in /tmp.
    code = (
        "from ray_ml.config import ServeIngress\n"
        "from ray_ml.serve import ingress_env\n"
        "env = ingress_env(ServeIngress.haproxy)\n"
        "state = env['RAY_SERVE_HAPROXY_SERVER_STATE_BASE']\n"
        "open(env['RAY_SERVE_HAPROXY_CONFIG_FILE_LOC'], 'w').write('global')\n"
        "print(state)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    state = Path(out.stdout.strip().splitlines()[-1])
    assert state.name.startswith("ray_ml_haproxy_")
    assert not state.exists()


def test_proxy_needs_nothing_and_a_missing_binary_falls_back_with_a_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert ingress_env(ServeIngress.proxy) == {}
    monkeypatch.setattr(_ingress, "haproxy_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger=_ingress.__name__):
        assert ingress_env(ServeIngress.haproxy) == {}
    assert "serve.ingress=proxy" in caplog.text and "RAY_SERVE_HAPROXY_BINARY_PATH" in caplog.text


def test_an_unknown_ingress_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"serve.ingress.*haproxy, proxy"):
        load_config("serve", ["serve.ingress=direct"])
