"""Every shipped cluster definition passes Ray's own checks and keeps the project's promises.

Nothing here starts Ray or reaches a cloud: the launcher YAMLs go through the validation `ray up`
runs before any cloud call, the spot preference through Ray's autoscaler v2 scheduler as a pure
function, and the `ray up|down|exec` wrappers only build their commands.
"""

from __future__ import annotations

import copy
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from ray_ml.cluster._launch import (
    check_kuberay_manifest,
    check_launcher_yaml,
    cluster_down,
    cluster_status,
    cluster_up,
    fake_cluster_config,
    image_ray_version,
    ray_version_pinned,
    unfilled_placeholders,
    version_matches_pin,
)
from ray_ml.config import load_config
from ray_ml.errors import ConfigError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHERS = sorted(p.name for p in CLUSTER.glob("*.yaml"))
MANIFESTS = sorted(p.name for p in (CLUSTER / "kuberay").glob("*.yaml"))
# Cloud launcher YAML -> (cost catalog, node_config key naming the machine type).
CLOUDS = {
    "aws.yaml": ("aws_illustrative.yaml", "InstanceType"),
    "gcp.yaml": ("gcp_illustrative.yaml", "machineType"),
}


@cache
def _raw(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CLUSTER / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


@cache
def _prepared(name: str) -> dict[str, Any]:
    return check_launcher_yaml(CLUSTER / name)


def _ray_start(commands: list[str]) -> str:
    starts = [c for c in commands if "ray start" in c]
    assert len(starts) == 1, commands
    return starts[0]


def _is_spot(node_config: dict[str, Any]) -> bool:
    aws = (node_config.get("InstanceMarketOptions") or {}).get("MarketType") == "spot"
    scheduling = node_config.get("scheduling") or {}
    gcp = scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible") is True
    return aws or gcp


# ------------------------------------------------------------------------------ the folder
def test_cluster_folder_has_the_definitions() -> None:
    assert {"aws.yaml", "gcp.yaml", "local.yaml"} <= set(LAUNCHERS)
    assert {
        "raycluster.yaml",
        "rayjob-train.yaml",
        "rayjob-tune.yaml",
        "rayservice.yaml",
    } <= set(MANIFESTS)
    assert (CLUSTER / "Dockerfile").is_file()


# ------------------------------------------------------------------ Ray's own validation
@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_yaml_passes_rays_validation(name: str) -> None:
    config = _prepared(name)
    assert config["head_node_type"] in config["available_node_types"]
    # prepare_config filled the provider defaults `ray up` uses (fake configs come complete).
    assert "cluster_synced_files" in config


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml", "local.yaml"])
def test_typo_in_a_top_level_key_fails_naming_the_file(name: str, tmp_path: Path) -> None:
    text = (CLUSTER / name).read_text()
    assert "\nidle_timeout_minutes:" in text
    bad = tmp_path / f"typo_{name}"
    bad.write_text(text.replace("\nidle_timeout_minutes:", "\nidle_timeout_minute:"))
    with pytest.raises(ConfigError) as info:
        check_launcher_yaml(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "'idle_timeout_minute' was unexpected" in message
    assert "did you mean `idle_timeout_minutes`" in message


def test_typo_inside_a_node_type_names_where(tmp_path: Path) -> None:
    config = copy.deepcopy(_raw("aws.yaml"))
    config["available_node_types"]["cpu_spot"]["min_worker"] = 1
    bad = tmp_path / "aws_bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"at `available_node_types\.cpu_spot`.*min_worker"):
        check_launcher_yaml(bad)


def test_not_a_cluster_config_fails(tmp_path: Path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="list.yaml is not a Ray cluster config"):
        check_launcher_yaml(bad)


# --------------------------------------------------------------- head, token, dashboard
@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_head_runs_no_training(name: str) -> None:
    config = _raw(name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert "--num-cpus=0" in _ray_start(config["head_start_ray_commands"])
    assert not _is_spot(head["node_config"]), "the head must not be a spot instance"
    assert _prepared(name)["available_node_types"][config["head_node_type"]]["max_workers"] == 0


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_every_node_starts_ray_with_token_auth(name: str) -> None:
    config = _prepared(name)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "RAY_AUTH_MODE=token" in _ray_start(config[key]), key
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    # No node type replaces the start or setup commands with ones lacking it.
    for node_type in config["available_node_types"].values():
        assert "worker_start_ray_commands" not in node_type


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_token_comes_from_the_cloud_secret_store(name: str) -> None:
    init = "\n".join(_raw(name)["initialization_commands"])
    fetch = "aws secretsmanager get-secret-value" if name == "aws.yaml" else "gcloud secrets"
    assert fetch in init
    assert "> ~/.ray/auth_token" in init and "umask 077" in init
    mounts = _raw(name)["docker"]["run_options"]
    assert any(m.endswith(":/home/ray/.ray/auth_token:ro") for m in mounts)


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_dashboard_listens_on_loopback_only(name: str) -> None:
    config = _raw(name)
    assert "--dashboard-host=127.0.0.1" in _ray_start(config["head_start_ray_commands"])
    assert "--dashboard-host=0.0.0.0" not in (CLUSTER / name).read_text()


def test_no_token_value_is_committed() -> None:
    # Ray's tokens are 64 hex characters (`secrets.token_hex(32)`); no 32+ hex run belongs here.
    hex_run = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{32,}(?![0-9a-fA-F])")
    files = [p for p in CLUSTER.rglob("*") if p.is_file()] + sorted(
        (REPO / "conf" / "cost").glob("*.yaml")
    )
    assert files
    for path in files:
        text = path.read_text()
        assert not hex_run.search(text), f"{path} holds a token-like hex string"
        assert not re.search(r"RAY_AUTH_TOKEN=\S", text), f"{path} sets a literal token"
        for doc in yaml.safe_load_all(text) if path.suffix == ".yaml" else []:
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), path


# ----------------------------------------------------------- project, storage, versions
@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_project_and_storage_on_every_node(name: str) -> None:
    config = _prepared(name)
    assert config["file_mounts"] == {"~/ray_ml": "."}
    # prepare_config merges setup_commands into both head and worker setup, as `ray up` runs them.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert "pip install -q -e ~/ray_ml" in config[key], key
    assert "-v /mnt/runs:/mnt/runs" in config["docker"]["run_options"]
    assert any(" /mnt/runs" in c and "mount" in c for c in config["initialization_commands"])


def test_ray_version_is_pyprojects_everywhere() -> None:
    import ray

    pin = ray_version_pinned()
    assert pin == "2.60.*"
    assert version_matches_pin(ray.__version__, pin), "the laptop's Ray must match the cluster's"
    images: list[str] = []
    for name in sorted(CLOUDS):
        config = _raw(name)
        images.append(config["docker"]["image"])
        images += [
            t["docker"]["worker_image"]
            for t in config["available_node_types"].values()
            if "docker" in t
        ]
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    images += re.findall(r"rayproject/ray:\S+", dockerfile)
    assert len(images) >= 5
    versions = {image_ray_version(i) for i in images}
    assert len(versions) == 1, images
    (version,) = versions
    assert version is not None and version_matches_pin(version, pin)
    # The KubeRay manifests pin the same exact version (rayVersion and image tags).
    assert f'rayVersion: "{version}"' in (CLUSTER / "kuberay" / "raycluster.yaml").read_text()


def test_version_helpers() -> None:
    assert image_ray_version("rayproject/ray:2.60.0-py311-gpu") == "2.60.0"
    assert image_ray_version("localhost:5000/ray-ml:2.60.1") == "2.60.1"
    assert image_ray_version("rayproject/ray:latest") is None
    assert image_ray_version("rayproject/ray") is None
    assert version_matches_pin("2.60.3", "2.60.*")
    assert not version_matches_pin("2.61.0", "2.60.*")


@pytest.mark.parametrize(
    ("dependency", "error"),
    [("ray[tune]>=2.60", "single `==`"), ("numpy>=1.26", "no `ray` dependency")],
)
def test_ray_pin_must_be_exact(dependency: str, error: str, tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(f'[project]\nname = "x"\ndependencies = ["{dependency}"]\n')
    with pytest.raises(ConfigError, match=re.escape(error)):
        ray_version_pinned(pyproject)


# ------------------------------------------------------------------ cost catalog, spot
def _catalog(file: str) -> dict[str, dict[str, Any]]:
    catalog = yaml.safe_load((REPO / "conf" / "cost" / file).read_text())
    return {n["name"]: n for n in catalog["node_types"]}


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_node_types_are_in_the_cost_catalog(name: str) -> None:
    catalog_file, machine_key = CLOUDS[name]
    catalog = _catalog(catalog_file)
    config = _raw(name)
    for type_name, node_type in config["available_node_types"].items():
        machine = node_type["node_config"][machine_key]
        assert machine in catalog, f"{name}: {type_name} ({machine}) missing from {catalog_file}"
        entry = catalog[machine]
        if type_name == config["head_node_type"]:
            continue  # CPU 0 on purpose: the head's cores are not for tasks
        # Ray's resources are the machine's, so the meter prices what the autoscaler launches.
        assert node_type["resources"].get("CPU") == entry["cpus"], type_name
        assert node_type["resources"].get("GPU", 0) == entry["gpus"], type_name
        if _is_spot(node_type["node_config"]):
            assert 0 < entry["spot_usd_per_hour"] < entry["on_demand_usd_per_hour"]


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_spot_types_have_on_demand_twins(name: str) -> None:
    _, machine_key = CLOUDS[name]
    types = _raw(name)["available_node_types"]
    spot = {n: t for n, t in types.items() if _is_spot(t["node_config"])}
    assert spot, f"{name} has no spot worker types"
    for type_name, node_type in spot.items():
        assert type_name.endswith("_spot")
        twin = types[type_name.removesuffix("_spot") + "_on_demand"]
        assert not _is_spot(twin["node_config"])
        assert twin["resources"] == node_type["resources"]
        assert twin["node_config"][machine_key] == node_type["node_config"][machine_key]
        assert node_type["priority"] > twin.get("priority", 0)
        assert node_type["min_workers"] == twin["min_workers"] == 0


def _v2_worker_types(config: dict[str, Any]) -> dict[str, Any]:
    # The worker node types as autoscaler v2 sees them (AutoscalingConfig.get_node_type_configs),
    # built directly so that fake multi-node configs (no prepare_config) work too. The head is
    # left out: it is running already and never launched, and the simulation has no instances.
    from ray.autoscaler.v2.instance_manager.config import NodeTypeConfig

    return {
        name: NodeTypeConfig(
            name=name,
            min_worker_nodes=t.get("min_workers", 0),
            max_worker_nodes=t.get("max_workers", 0),
            priority=t.get("priority", 0),
            resources=t["resources"],
        )
        for name, t in config["available_node_types"].items()
        if name != config["head_node_type"]
    }


def _launches(
    config: dict[str, Any],
    shape: dict[str, float],
    count: int,
    recovering: dict[str, float] | None = None,
) -> dict[str, int]:
    """What Ray's autoscaler v2 scheduler would launch for `count` bundles of `shape`."""
    from ray.autoscaler.v2.scheduler import ResourceDemandScheduler, SchedulingRequest
    from ray.autoscaler.v2.utils import ResourceRequestUtil
    from ray.core.generated.autoscaler_pb2 import ResourceRequestByCount  # type: ignore[attr-defined]

    request = SchedulingRequest(
        disable_launch_config_check=True,
        node_type_configs=_v2_worker_types(config),
        max_num_nodes=config["max_workers"],
        resource_requests=[
            ResourceRequestByCount(request=ResourceRequestUtil.make(shape), count=count)
        ],
        recoverable_resource_availabilities=recovering or {},
    )
    reply = ResourceDemandScheduler().schedule(request)
    launched: dict[str, int] = {}
    for launch in reply.to_launch:
        launched[launch.instance_type] = launched.get(launch.instance_type, 0) + launch.count
    return launched


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_autoscaler_v2_prefers_spot_and_falls_back_to_on_demand(name: str) -> None:
    from ray.autoscaler.v2.instance_manager.config import AutoscalingConfig

    config = _prepared(name)
    # Ray's own reading of the YAML gives the priorities the simulation below uses.
    parsed = AutoscalingConfig(copy.deepcopy(_raw(name)), skip_content_hash=True)
    priorities = {n: t.priority for n, t in parsed.get_node_type_configs().items()}
    assert priorities["cpu_spot"] > priorities["cpu_on_demand"]
    assert priorities == {n: t.priority for n, t in _v2_worker_types(config).items()} | {
        config["head_node_type"]: 0
    }
    cpus = config["available_node_types"]["cpu_spot"]["resources"]["CPU"]
    spot_max = config["available_node_types"]["cpu_spot"]["max_workers"]
    # Spot first, on-demand for the rest once spot is at max_workers.
    assert _launches(config, {"CPU": cpus}, 2) == {"cpu_spot": 2}
    assert _launches(config, {"CPU": cpus}, spot_max + 2) == {
        "cpu_spot": spot_max,
        "cpu_on_demand": 2,
    }
    # A spot type that recently failed to come up ranks below its on-demand twin until recovered.
    assert _launches(config, {"CPU": cpus}, 2, {"cpu_spot": 0.0}) == {"cpu_on_demand": 2}
    assert _launches(config, {"CPU": cpus}, 2, {"cpu_spot": 1.0}) == {"cpu_spot": 2}
    # GPU bundles get the GPU spot type; CPU bundles never a GPU machine.
    assert _launches(config, {"CPU": 1, "GPU": 1}, 1) == {"gpu_spot": 1}
    assert _launches(config, {"CPU": 1}, 1) == {"cpu_spot": 1}


# ---------------------------------------------------------------- local fake multi-node
def test_local_yaml_is_a_small_fake_cluster() -> None:
    config = _prepared("local.yaml")
    provider = config["provider"]
    assert provider["type"] == "fake_multinode"
    assert provider["use_node_id_as_ip"] is True
    assert provider["disable_node_updaters"] is True
    assert provider["disable_launch_config_check"] is True
    assert "gcs_address" in provider
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head == "ray.head.default"  # the type name the fake provider gives the head
    assert types[head]["max_workers"] == 0
    workers = {n: t for n, t in types.items() if n != head}
    assert workers
    for type_name, node_type in workers.items():
        assert node_type["resources"]["CPU"] in (1, 2), type_name
        assert node_type["min_workers"] == 0, type_name
        assert 2 <= node_type["max_workers"] <= 3, type_name
    assert 0 < config["idle_timeout_minutes"] < 1  # seconds, so tests see nodes go away


def test_local_yaml_shows_the_spot_preference() -> None:
    config = _prepared("local.yaml")
    assert _launches(config, {"CPU": 1}, 1) == {"spot_1cpu": 1}
    assert _launches(config, {"CPU": 1}, 1, {"spot_1cpu": 0.0}) == {"on_demand_1cpu": 1}
    assert _launches(config, {"CPU": 2}, 1) == {"worker_2cpu": 1}


def test_fake_cluster_config_fills_the_gcs_address() -> None:
    config = fake_cluster_config(CLUSTER / "local.yaml", "127.0.0.1:6390")
    assert config["provider"]["gcs_address"] == "127.0.0.1:6390"
    with pytest.raises(ConfigError, match="HOST:PORT"):
        fake_cluster_config(CLUSTER / "local.yaml", "127.0.0.1")
    with pytest.raises(ConfigError, match="not a fake multi-node config"):
        fake_cluster_config(CLUSTER / "aws.yaml", "127.0.0.1:6390")


# ------------------------------------------------------------------------------ KubeRay
@pytest.mark.parametrize("name", MANIFESTS)
def test_kuberay_manifest_passes_the_checks(name: str) -> None:
    docs = check_kuberay_manifest(CLUSTER / "kuberay" / name)
    assert docs


def _ray_docs() -> list[dict[str, Any]]:
    return [
        d
        for name in MANIFESTS
        for d in check_kuberay_manifest(CLUSTER / "kuberay" / name)
        if d["apiVersion"] == "ray.io/v1"
    ]


def test_kuberay_cluster_autoscales_and_keeps_the_head_free() -> None:
    clusters = [d["spec"] for d in _ray_docs() if d["kind"] == "RayCluster"]
    clusters += [d["spec"]["rayClusterConfig"] for d in _ray_docs() if d["kind"] == "RayService"]
    assert clusters
    for spec in clusters:
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        assert spec["authOptions"] == {"mode": "token", "secretName": "ray-ml-auth"}


def test_kuberay_jobs_run_our_jobs_with_valid_overrides() -> None:
    jobs = {d["metadata"]["name"]: d for d in _ray_docs() if d["kind"] == "RayJob"}
    assert set(jobs) >= {"ray-ml-train", "ray-ml-tune"}
    for job in jobs.values():
        python, flag, module, *overrides = shlex.split(job["spec"]["entrypoint"])
        assert (python, flag) == ("python", "-m") and module.startswith("jobs.")
        assert "storage_path=/mnt/runs" in overrides  # absolute and shared, as Ray jobs need
        assert load_config(module.removeprefix("jobs."), overrides).storage_path == "/mnt/runs"


def test_kuberay_service_builds_our_app_from_valid_overrides() -> None:
    import importlib

    (service,) = [d for d in _ray_docs() if d["kind"] == "RayService"]
    assert service["spec"]["upgradeStrategy"]["type"] == "NewCluster"
    serve_cfg = yaml.safe_load(service["spec"]["serveConfigV2"])
    (app,) = serve_cfg["applications"]
    module, _, attr = app["import_path"].partition(":")
    assert app["import_path"] == "ray_ml.serve:app_builder"
    assert callable(getattr(importlib.import_module(module), attr))
    cfg = load_config("serve", app["args"]["overrides"])
    assert cfg.serve.host == "0.0.0.0" and cfg.serve.min_replicas >= 2
    # Beyond loopback the app needs its own token: every pod gets it from a Secret.
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    for group in pods:
        env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
        assert "secretKeyRef" in env[cfg.serve.token_env]["valueFrom"]


def _raycluster() -> dict[str, Any]:
    (doc,) = yaml.safe_load_all((CLUSTER / "kuberay" / "raycluster.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _head_container(doc: dict[str, Any]) -> dict[str, Any]:
    container = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert isinstance(container, dict)
    return container


def _break_api_version(doc: dict[str, Any]) -> None:
    doc["apiVersion"] = "ray.io/v1alpha1"


def _break_image(doc: dict[str, Any]) -> None:
    _head_container(doc)["image"] = "rayproject/ray:2.59.0-py311"


def _break_ray_version(doc: dict[str, Any]) -> None:
    doc["spec"]["rayVersion"] = "2.60"


def _literal_token(doc: dict[str, Any]) -> None:
    for env in _head_container(doc)["env"]:
        if env["name"] == "RAY_AUTH_TOKEN":
            env.pop("valueFrom")
            env["value"] = "not-a-real-token"


def _no_auth_mode(doc: dict[str, Any]) -> None:
    container = doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "RAY_AUTH_MODE"]


def _exposed_head(doc: dict[str, Any]) -> None:
    doc["spec"]["headGroupSpec"]["serviceType"] = "LoadBalancer"


def _other_secret(doc: dict[str, Any]) -> None:
    doc["spec"]["authOptions"]["secretName"] = "somebody-elses"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_break_api_version, "apiVersion must be ray.io/v1"),
        (_break_image, "rayproject/ray:2.59.0-py311"),
        (_break_ray_version, "rayVersion"),
        (_literal_token, "never a literal value"),
        (_no_auth_mode, "RAY_AUTH_MODE must be set to `token`"),
        (_exposed_head, "LoadBalancer would expose the dashboard"),
        (_other_secret, "authOptions"),
    ],
)
def test_kuberay_check_rejects(breakage: Any, message: str, tmp_path: Path) -> None:
    doc = _raycluster()
    breakage(doc)
    bad = tmp_path / "raycluster.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        check_kuberay_manifest(bad)
    assert str(bad) in str(info.value)


def test_kuberay_check_refuses_committed_secrets(tmp_path: Path) -> None:
    bad = tmp_path / "secret.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: ray-ml-auth}\nstringData: {auth_token: x}\n"
    )
    with pytest.raises(ConfigError, match="Secrets must not be committed"):
        check_kuberay_manifest(bad)


# ------------------------------------------------------------------ ray up/down/exec
def test_cluster_up_refuses_placeholders_before_running_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    def no_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("ray up must not run")

    monkeypatch.setattr(subprocess, "run", no_run)
    assert unfilled_placeholders(_raw("aws.yaml")) == ["REPLACE_ME_EFS_ID"]
    with pytest.raises(ConfigError, match="REPLACE_ME_EFS_ID"):
        cluster_up(CLUSTER / "aws.yaml", yes=True)
    with pytest.raises(ConfigError, match="fake multi-node"):
        cluster_up(CLUSTER / "local.yaml", dry_run=True)


def test_cluster_wrappers_build_the_ray_commands() -> None:
    up = cluster_up(
        CLUSTER / "gcp.yaml",
        yes=True,
        no_restart=True,
        cluster_name="team-a",
        extra_args=["--no-config-cache"],
        dry_run=True,
    )
    gcp = str((CLUSTER / "gcp.yaml").resolve())
    assert up["command"][1:] == [
        "up",
        gcp,
        "--yes",
        "--no-restart",
        "--cluster-name",
        "team-a",
        "--no-config-cache",
    ]
    assert Path(up["command"][0]).name == "ray"
    assert up["cwd"] == str(REPO)  # file_mounts "." is the repo
    assert up["env"] == {"RAY_UP_enable_autoscaler_v2": "1"}
    assert up["returncode"] is None

    down = cluster_down(CLUSTER / "gcp.yaml", yes=True, workers_only=True, dry_run=True)
    assert down["command"][1:] == ["down", gcp, "--yes", "--workers-only"]
    assert cluster_down(CLUSTER / "gcp.yaml", dry_run=True)["command"][1:] == ["down", gcp]

    status = cluster_status(CLUSTER / "aws.yaml", dry_run=True)
    aws = str((CLUSTER / "aws.yaml").resolve())
    assert status["command"][1:] == ["exec", aws, "RAY_AUTH_MODE=token ray status"]
