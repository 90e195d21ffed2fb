"""Serving without Ray: the token rules and which registry versions are routed where."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_ml.config import load_config
from ray_ml.errors import ConfigError, RegistryError
from ray_ml.registry import Registry
from ray_ml.serve import resolve_routing, serve_token
from ray_ml.serve import serve_spec as _spec
from tests._bundles import make_bundle

pytestmark = pytest.mark.unit


def test_token_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ML_SERVE_TOKEN", raising=False)
    local = load_config("serve", []).serve
    assert serve_token(local) is None  # loopback only: auth may be off
    exposed = load_config("serve", ["serve.host=0.0.0.0"]).serve
    with pytest.raises(
        ConfigError, match=r"RAY_ML_SERVE_TOKEN.*serve.host|serve.host.*RAY_ML_SERVE_TOKEN"
    ):
        serve_token(exposed)
    monkeypatch.setenv("RAY_ML_SERVE_TOKEN", "  ")
    with pytest.raises(ConfigError, match="empty"):
        serve_token(local)
    monkeypatch.setenv("RAY_ML_SERVE_TOKEN", "abc")
    assert serve_token(exposed) == "abc"
    other = load_config("serve", ["serve.token_env=MY_TOKEN"]).serve
    monkeypatch.setenv("MY_TOKEN", "xyz")
    assert serve_token(other) == "xyz"


def test_the_spec_carries_a_digest_not_the_token() -> None:
    spec = _spec(load_config("serve", []), "very-secret")
    assert "very-secret" not in repr(spec.to_dict())
    assert spec.token_sha256 is not None and len(spec.token_sha256) == 64


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("reg")
    reg = Registry(root / "registry")
    b1 = make_bundle(root / "b1", epochs=1)
    b2 = make_bundle(root / "b2", seed=1, epochs=1)
    reg.register(b1, "m", aliases=["production"])
    reg.register(b2, "m", aliases=["candidate"])
    return reg


def _routing(registry: Registry, *overrides: str) -> dict:
    cfg = load_config("serve", ["name=m", f"serve.registry_root={registry.root}", *overrides])
    return resolve_routing(_spec(cfg, None))


def test_routing_follows_aliases(registry: Registry) -> None:
    plain = _routing(registry)
    assert plain["stable"]["version"] == "1" and plain["canary"] is None  # canary_percent=0
    split = _routing(registry, "serve.canary_percent=10")
    assert split["canary"] == {"version": "2", "ref": 2, "percent": 10.0}
    pinned = _routing(registry, "serve.version=2", "serve.canary_percent=10")
    assert pinned["stable"]["version"] == "2" and pinned["canary"] is None
    registry.set_alias("m", "candidate", 1)
    try:
        assert _routing(registry, "serve.canary_percent=10")["canary"] is None  # same version
    finally:
        registry.set_alias("m", "candidate", 2)
    with pytest.raises(RegistryError):
        _routing(registry, "serve.alias=staging")


def test_bundle_mode_needs_no_registry(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "mybundle", epochs=1)
    routing = resolve_routing(_spec(load_config("serve", [f"serve.bundle={bundle}"]), None))
    assert routing["stable"] == {"version": "bundle:mybundle", "ref": str(bundle)}
