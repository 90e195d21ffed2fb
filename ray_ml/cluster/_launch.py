"""Cluster definitions in `cluster/`: offline checks, and `ray up|down|exec` wrappers.

`check_launcher_yaml` runs on a cluster-launcher YAML the validation `ray up` runs before it
touches a cloud (`ray.autoscaler._private.commands._bootstrap_config`): `prepare_config` (fills
the provider's `defaults.yaml`, merges setup commands, per-type worker bounds) then
`validate_config` (Ray's JSON schema plus its cross-field checks). Both are offline; the cloud
calls of `ray up` (boto3 / googleapiclient: resource autodetection and `bootstrap_config`) come
after them and are not run here. Fake multi-node configs (`cluster/local.yaml`) skip
`prepare_config`, which reads an `example.yaml` the Ray wheel does not ship: they are complete
and go to `validate_config` as they are.

`check_kuberay_manifest` checks KubeRay manifests for what a Kubernetes dry run cannot see: the
Ray version of every image and `rayVersion` against pyproject.toml's pin, and the cluster token
wired from a Secret into every Ray container.

The `cluster_*` wrappers build and run the Ray CLI commands; they run nothing in tests
(`dry_run=True` returns the command).
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from ray_ml.errors import ConfigError

__all__ = [
    "PLACEHOLDER_RE",
    "check_kuberay_manifest",
    "check_launcher_yaml",
    "cluster_down",
    "cluster_status",
    "cluster_up",
    "fake_cluster_config",
    "image_ray_version",
    "ray_version_pinned",
    "unfilled_placeholders",
    "version_matches_pin",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = REPO_ROOT / "pyproject.toml"

# Values a user must fill in before `ray up` / `kubectl apply` (bucket, project, file system...).
PLACEHOLDER_RE = re.compile(r"REPLACE_ME_[A-Z0-9_]+")
_FAKE_PROVIDERS = {"fake_multinode", "fake_multinode_docker"}
_RAY_KINDS = {"RayCluster", "RayJob", "RayService"}
_RAY_API_VERSION = "ray.io/v1"
# Plain Kubernetes objects the manifests may carry next to the Ray resources.
_CORE_KINDS = {("v1", "PersistentVolumeClaim"), ("v1", "ServiceAccount")}
_VERSION_RE = re.compile(r"^(\d+\.\d+\.\d+)")


# ------------------------------------------------------------------------------- versions
def ray_version_pinned(pyproject: str | Path | None = None) -> str:
    """The Ray version pyproject.toml pins, without the operator: `2.60.*` for `ray[...]==2.60.*`.

    Args:
        pyproject: The pyproject.toml to read; default the repository's.

    Raises:
        ConfigError: No `ray` dependency, or one not pinned with `==` (a cluster needs one Ray:
            every node, image and the laptop must agree).
    """
    from packaging.requirements import InvalidRequirement, Requirement

    path = Path(pyproject) if pyproject is not None else PYPROJECT
    try:
        deps = tomllib.loads(path.read_text())["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read [project].dependencies of {path}: {exc}.") from None
    for dep in deps:
        try:
            req = Requirement(dep)
        except InvalidRequirement:
            continue
        if req.name.lower() != "ray":
            continue
        pins = [s for s in req.specifier if s.operator == "=="]
        if len(pins) != 1 or len(req.specifier) != 1:
            raise ConfigError(
                f"the ray dependency in {path} must be pinned with a single `==`, but got "
                f"{dep!r}. Fix: write e.g. `ray[train,tune,serve,data]==2.60.*`."
            )
        return pins[0].version
    raise ConfigError(f"no `ray` dependency in [project].dependencies of {path}.")


def version_matches_pin(version: str, pin: str) -> bool:
    """Whether an exact `version` (e.g. `2.60.0`) satisfies `==pin` (e.g. `2.60.*`)."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(f"=={pin}").contains(version)
    except InvalidSpecifier:
        return False


def image_ray_version(image: str) -> str | None:
    """The Ray version a Ray image tag starts with: `2.60.0` for `rayproject/ray:2.60.0-py311`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _VERSION_RE.match(last.rsplit(":", 1)[1])
    return match.group(1) if match else None


# ------------------------------------------------------------------------ launcher YAMLs
def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read cluster config {path}: {exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}.") from None


def _ray_error(path: Path, exc: BaseException) -> ConfigError:
    where = ""
    error_path = getattr(exc, "absolute_path", None)  # jsonschema.ValidationError
    if error_path:
        where = " at `" + ".".join(str(p) for p in error_path) + "`"
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    fix = "compare with Ray's schema (ray/autoscaler/ray-schema.json) and cluster/*.yaml."
    known = (getattr(exc, "schema", None) or {}).get("properties") or {}
    for unexpected in re.findall(r"'([^']+)' was unexpected", message):
        close = difflib.get_close_matches(unexpected, list(known), n=1)
        if close:
            fix = f"did you mean `{close[0]}` instead of `{unexpected}`?"
    return ConfigError(
        f"{path}: Ray's cluster config validation (what `ray up` runs first) failed{where}: "
        f"{message}. Fix: {fix}"
    )


def check_launcher_yaml(path: str | Path) -> dict[str, Any]:
    """Load a cluster-launcher YAML and run Ray's own validation on it, as `ray up` does.

    Cloud configs go through `prepare_config` then `validate_config`; fake multi-node configs
    through `validate_config` only (see the module docstring). Nothing reaches a cloud.

    Args:
        path: The YAML, e.g. `cluster/aws.yaml`.

    Returns:
        The config as Ray would use it (defaults filled for cloud providers).

    Raises:
        ConfigError: The file is unreadable, not a mapping, or Ray rejects it; the message names
            the file, where in it, and Ray's reason.
    """
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    path = Path(path)
    raw = _load_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("provider"), dict):
        raise ConfigError(
            f"{path} is not a Ray cluster config: it must be a mapping with a `provider` "
            "mapping (type: aws | gcp | fake_multinode ...)."
        )
    try:
        if raw["provider"].get("type") in _FAKE_PROVIDERS:
            config = copy.deepcopy(raw)
        else:
            config = prepare_config(copy.deepcopy(raw))
        validate_config(config)
    except (
        jsonschema.ValidationError,  # the schema: unknown keys, wrong types
        AssertionError,  # Ray's docker and min/max-workers checks assert
        KeyError,
        NotImplementedError,  # an unknown provider type
        RuntimeError,
        TypeError,
        ValueError,  # Ray's cross-field checks (head_node_type, sum of min_workers)
    ) as exc:
        raise _ray_error(path, exc) from None
    return dict(config)


def unfilled_placeholders(config: Any) -> list[str]:
    """The distinct `REPLACE_ME_*` placeholders left anywhere in a config, sorted."""
    found: set[str] = set()
    for value in _walk_values(config):
        if isinstance(value, str):
            found.update(PLACEHOLDER_RE.findall(value))
    return sorted(found)


def _walk_values(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield key
            yield from _walk_values(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _walk_values(item)
    else:
        yield obj


def fake_cluster_config(path: str | Path, gcs_address: str) -> dict[str, Any]:
    """A fake multi-node config (`cluster/local.yaml`) with the head's GCS address filled in.

    Args:
        path: The YAML.
        gcs_address: The head's `127.0.0.1:PORT`; without it the fake nodes try port 6379.

    Returns:
        The validated config, ready to `json.dump` for `ray start --autoscaling-config`.

    Raises:
        ConfigError: The YAML is not a fake multi-node config, the address is not HOST:PORT,
            or Ray rejects the config.
    """
    host, sep, port = gcs_address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"gcs_address must be HOST:PORT, but got gcs_address={gcs_address!r}. "
            "Fix: pass the head's address, e.g. 127.0.0.1:6380."
        )
    config = check_launcher_yaml(path)
    if config["provider"].get("type") not in _FAKE_PROVIDERS:
        raise ConfigError(
            f"{path} is not a fake multi-node config (provider.type="
            f"{config['provider'].get('type')!r}); use cluster/local.yaml."
        )
    config["provider"]["gcs_address"] = gcs_address
    return config


# ----------------------------------------------------------------------- KubeRay manifests
def _fail(path: Path, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {message}")


def _pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(where, pod spec, is a Ray pod) for every pod template of a Ray resource."""
    spec = doc.get("spec") or {}
    kind = doc["kind"]
    cluster_specs: list[tuple[str, Any]] = []
    if kind == "RayCluster":
        cluster_specs.append(("spec", spec))
    elif kind == "RayJob":
        if spec.get("rayClusterSpec") is not None:
            cluster_specs.append(("spec.rayClusterSpec", spec["rayClusterSpec"]))
        submitter = spec.get("submitterPodTemplate")
        if submitter is not None:
            yield "spec.submitterPodTemplate", (submitter or {}).get("spec") or {}, False
    elif kind == "RayService":
        cluster_specs.append(("spec.rayClusterConfig", spec.get("rayClusterConfig") or {}))
    for where, cluster in cluster_specs:
        head = (cluster or {}).get("headGroupSpec") or {}
        yield f"{where}.headGroupSpec", (head.get("template") or {}).get("spec") or {}, True
        for i, group in enumerate((cluster or {}).get("workerGroupSpecs") or []):
            name = group.get("groupName", i)
            template = group.get("template") or {}
            yield f"{where}.workerGroupSpecs[{name}]", template.get("spec") or {}, True


def _cluster_specs(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = doc.get("spec") or {}
    if doc["kind"] == "RayCluster":
        return [("spec", spec)]
    if doc["kind"] == "RayJob" and spec.get("rayClusterSpec") is not None:
        return [("spec.rayClusterSpec", spec["rayClusterSpec"] or {})]
    if doc["kind"] == "RayService":
        return [("spec.rayClusterConfig", spec.get("rayClusterConfig") or {})]
    return []


def _images(obj: Any, where: str) -> Iterator[tuple[str, str]]:
    """(where, image) for every container image and the autoscaler image override."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                for c in value:
                    if isinstance(c, dict) and "image" in c:
                        yield f"{where}.{key}[{c.get('name', '?')}]", str(c["image"])
            elif key == "autoscalerOptions" and isinstance(value, dict) and "image" in value:
                yield f"{where}.autoscalerOptions", str(value["image"])
            if key not in ("containers", "initContainers"):
                yield from _images(value, f"{where}.{key}")
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _images(item, f"{where}[{i}]")


def _token_secret(path: Path, where: str, container: dict[str, Any]) -> str:
    """The Secret the container's RAY_AUTH_TOKEN comes from; fails unless wired right."""
    env = {e.get("name"): e for e in container.get("env") or [] if isinstance(e, dict)}
    name = container.get("name", "?")
    mode = env.get("RAY_AUTH_MODE", {})
    if mode.get("value") != "token":
        raise _fail(
            path,
            f"{where}.containers[{name}]",
            f"RAY_AUTH_MODE must be set to `token`, but got {mode.get('value')!r}. Fix: add "
            "`- {name: RAY_AUTH_MODE, value: token}` to its env (Ray 2.60 does not default to "
            "it on Kubernetes).",
        )
    token = env.get("RAY_AUTH_TOKEN", {})
    ref = (token.get("valueFrom") or {}).get("secretKeyRef") or {}
    if "value" in token or not ref.get("name") or not ref.get("key"):
        raise _fail(
            path,
            f"{where}.containers[{name}]",
            "RAY_AUTH_TOKEN must come from a Secret (`valueFrom.secretKeyRef` with name and "
            "key), never a literal value. Fix: `kubectl create secret generic ray-ml-auth "
            '--from-literal=auth_token="$(openssl rand -hex 32)"` and reference it.',
        )
    return str(ref["name"])


def _check_ray_doc(path: Path, where: str, doc: dict[str, Any], pin: str) -> None:
    kind = doc["kind"]
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise _fail(path, where, "`spec` must be a mapping.")

    # One exact Ray version: rayVersion and every image tag, all satisfying pyproject's pin.
    versions: dict[str, str] = {}
    for cwhere, cluster in _cluster_specs(doc):
        rv = str(cluster.get("rayVersion", ""))
        if not _VERSION_RE.fullmatch(rv) or not version_matches_pin(rv, pin):
            raise _fail(
                path,
                f"{where}.{cwhere}.rayVersion",
                f"must be an exact Ray version matching pyproject.toml's ray=={pin}, but got "
                f"{cluster.get('rayVersion')!r}. Fix: set it to the version of the images' tags, "
                "quoted.",
            )
        versions[f"{cwhere}.rayVersion"] = rv
        head = cluster.get("headGroupSpec") or {}
        if str(head.get("serviceType", "ClusterIP")) in {"LoadBalancer", "NodePort"}:
            raise _fail(
                path,
                f"{where}.{cwhere}.headGroupSpec.serviceType",
                f"{head['serviceType']} would expose the dashboard and Jobs API beyond the "
                "cluster. Fix: keep ClusterIP and use `kubectl port-forward`.",
            )
    for iwhere, image in _images(spec, f"{where}.spec"):
        version = image_ray_version(image)
        if version is None or not version_matches_pin(version, pin):
            raise _fail(
                path,
                iwhere,
                f"image {image!r} must be tagged with a Ray version matching pyproject.toml's "
                f"ray=={pin} (e.g. `...:2.60.0-py311`). Fix: build cluster/Dockerfile with that "
                "tag.",
            )
        versions[iwhere] = version
    if len(set(versions.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in sorted(versions.items()))
        raise _fail(path, where, f"mixes Ray versions ({listed}); every node must run one.")

    # The cluster token from one Secret, in every Ray container and the job submitter.
    secrets: set[str] = set()
    for pwhere, pod, is_ray in _pod_specs(doc):
        containers = pod.get("containers") or []
        if not containers:
            raise _fail(path, f"{where}.{pwhere}", "has no containers.")
        # KubeRay runs Ray in the first container; a submitter's every container may call Ray.
        for container in containers[:1] if is_ray else containers:
            secrets.add(_token_secret(path, f"{where}.{pwhere}", container))
    if len(secrets) > 1:
        raise _fail(path, where, f"RAY_AUTH_TOKEN comes from several Secrets ({sorted(secrets)}).")
    for cwhere, cluster in _cluster_specs(doc):
        auth = cluster.get("authOptions")
        if auth is None:
            continue
        if auth.get("mode") != "token" or (
            auth.get("secretName") is not None and {auth["secretName"]} != secrets
        ):
            raise _fail(
                path,
                f"{where}.{cwhere}.authOptions",
                f"must be `mode: token` with secretName {sorted(secrets)} (the Secret of the "
                f"containers' RAY_AUTH_TOKEN), but got {auth!r}.",
            )

    if kind == "RayJob":
        if not str(spec.get("entrypoint", "")).strip():
            raise _fail(path, f"{where}.spec.entrypoint", "must be the job's command.")
        if spec.get("rayClusterSpec") is None and not spec.get("clusterSelector"):
            raise _fail(path, f"{where}.spec", "needs a rayClusterSpec or a clusterSelector.")
    if kind == "RayService":
        _check_serve_config(path, where, spec.get("serveConfigV2"))


def _check_serve_config(path: Path, where: str, text: Any) -> None:
    where = f"{where}.spec.serveConfigV2"
    if not isinstance(text, str):
        raise _fail(path, where, "must be a Serve config as a YAML string (`|` block).")
    try:
        serve_cfg = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fail(path, where, f"is not valid YAML: {exc}.") from None
    apps = serve_cfg.get("applications") if isinstance(serve_cfg, dict) else None
    if not isinstance(apps, list) or not apps:
        raise _fail(path, where, "must list `applications`.")
    for app in apps:
        name = app.get("name", "?") if isinstance(app, dict) else "?"
        if not isinstance(app, dict) or not app.get("import_path"):
            raise _fail(path, f"{where}.applications[{name}]", "needs an import_path.")
        overrides = (app.get("args") or {}).get("overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise _fail(
                path,
                f"{where}.applications[{name}].args.overrides",
                f"must be a list of `key=value` strings, but got {overrides!r}.",
            )


def check_kuberay_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Parse every YAML document of a KubeRay manifest and check it against the project.

    Checks: `kind`/`apiVersion` (Ray resources are `ray.io/v1`; besides them only a
    PersistentVolumeClaim or ServiceAccount; never a Secret), `rayVersion` and every image tag pin
    one Ray version matching pyproject.toml, the head Service is not exposed, every Ray container
    (and a RayJob's submitter) has `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN` from a Secret, and a
    RayService's `serveConfigV2` lists applications with import paths and string overrides.

    Args:
        path: The manifest, e.g. `cluster/kuberay/raycluster.yaml`.

    Returns:
        The documents, in file order (empty documents skipped).

    Raises:
        ConfigError: A check failed; the message names the file, the document and the field.
    """
    path = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}.") from None
    if not docs:
        raise ConfigError(f"{path} has no YAML documents.")
    pin = ray_version_pinned()
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
            raise ConfigError(f"{path}: document {i} must be a mapping with kind and apiVersion.")
        kind, api = str(doc["kind"]), str(doc["apiVersion"])
        name = (doc.get("metadata") or {}).get("name", "?")
        where = f"document {i} ({kind} {name})"
        if kind == "Secret":
            raise _fail(
                path,
                where,
                "Secrets must not be committed. Fix: create it with `kubectl create secret "
                "generic ...` and reference it by name.",
            )
        if kind in _RAY_KINDS:
            if api != _RAY_API_VERSION:
                raise _fail(
                    path,
                    where,
                    f"apiVersion must be {_RAY_API_VERSION} for {kind}, but got {api!r}.",
                )
            _check_ray_doc(path, where, doc, pin)
        elif (api, kind) not in _CORE_KINDS:
            allowed = ", ".join(sorted(_RAY_KINDS)) + ", " + ", ".join(k for _, k in _CORE_KINDS)
            raise _fail(
                path, where, f"unexpected kind {kind!r} (apiVersion {api!r}); expected {allowed}."
            )
    return docs


# ---------------------------------------------------------------------- ray up/down/exec
def _ray_executable() -> str:
    # The `ray` of this environment first: the laptop's Ray must match the cluster's.
    local = Path(sys.executable).with_name("ray")
    if local.is_file():
        return str(local)
    found = shutil.which("ray")
    if found is None:
        raise ConfigError(
            "the `ray` command is not installed in this environment. Fix: "
            "`pip install 'ray[default]==<pyproject's version>'` (the cluster launcher is in "
            "ray[default])."
        )
    return found


def _project_root(yaml_path: Path) -> Path:
    # `file_mounts` name "." (the repo): `ray up` must run from the folder with pyproject.toml.
    for parent in yaml_path.resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def _run(
    args: list[str], yaml_path: Path, dry_run: bool, env: dict[str, str] | None = None
) -> dict[str, Any]:
    command = [_ray_executable(), *args]
    cwd = _project_root(yaml_path)
    result: dict[str, Any] = {
        "command": command,
        "cwd": str(cwd),
        "env": dict(env or {}),
        "returncode": None,
    }
    if dry_run:
        return result
    proc = subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, check=False)
    result["returncode"] = proc.returncode
    return result


def _cloud_config(yaml_path: str | Path, allow_placeholders: bool) -> Path:
    path = Path(yaml_path)
    config = check_launcher_yaml(path)
    if config["provider"].get("type") in _FAKE_PROVIDERS:
        raise ConfigError(
            f"{path} is a fake multi-node config: it runs under a local `ray start` (see its "
            "header), not `ray up`."
        )
    left = unfilled_placeholders(config)
    if left and not allow_placeholders:
        raise ConfigError(
            f"{path} still has placeholders: {', '.join(left)}. Fix: replace them with your "
            "values (the file's header says what each one is)."
        )
    return path


def cluster_up(
    yaml_path: str | Path,
    *,
    yes: bool = False,
    no_restart: bool = False,
    restart_only: bool = False,
    cluster_name: str | None = None,
    extra_args: Sequence[str] = (),
    allow_placeholders: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """`ray up YAML` after the offline checks, with the v2 autoscaler the YAMLs rely on.

    Args:
        yaml_path: A cloud launcher YAML, e.g. `cluster/aws.yaml`.
        yes: Pass `--yes` (no confirmation prompt).
        no_restart: Pass `--no-restart` (update files and autoscaler config, keep Ray running).
        restart_only: Pass `--restart-only` (skip setup commands).
        cluster_name: Pass `--cluster-name`.
        extra_args: Further `ray up` arguments, passed through.
        allow_placeholders: Run even with `REPLACE_ME_*` values left (for a dry run).
        dry_run: Return the command without running it.

    Returns:
        `{"command", "cwd", "env", "returncode"}` (`env`: variables set on top of this
        process's); `returncode` is None on a dry run.

    Raises:
        ConfigError: Ray rejects the YAML, it is a fake multi-node config, or placeholders are
            left.
    """
    path = _cloud_config(yaml_path, allow_placeholders or dry_run)
    args = ["up", str(path.resolve())]
    args += ["--yes"] if yes else []
    args += ["--no-restart"] if no_restart else []
    args += ["--restart-only"] if restart_only else []
    args += ["--cluster-name", cluster_name] if cluster_name else []
    # The spot-first `priority` of the YAMLs is read by autoscaler v2, `ray up`'s default since
    # Ray 2.50; say so explicitly so an exported 0 elsewhere cannot switch it off silently.
    env = {"RAY_UP_enable_autoscaler_v2": "1"}
    return _run([*args, *extra_args], path, dry_run, env)


def cluster_down(
    yaml_path: str | Path,
    *,
    yes: bool = False,
    workers_only: bool = False,
    keep_min_workers: bool = False,
    cluster_name: str | None = None,
    extra_args: Sequence[str] = (),
    dry_run: bool = False,
) -> dict[str, Any]:
    """`ray down YAML`: terminate the cluster (or only its workers).

    Args:
        yaml_path: The launcher YAML the cluster was started with.
        yes: Pass `--yes`.
        workers_only: Pass `--workers-only`.
        keep_min_workers: Pass `--keep-min-workers`.
        cluster_name: Pass `--cluster-name`.
        extra_args: Further `ray down` arguments, passed through.
        dry_run: Return the command without running it.

    Returns:
        `{"command", "cwd", "env", "returncode"}` (`env`: variables set on top of this
        process's); `returncode` is None on a dry run.
    """
    path = _cloud_config(yaml_path, allow_placeholders=True)
    args = ["down", str(path.resolve())]
    args += ["--yes"] if yes else []
    args += ["--workers-only"] if workers_only else []
    args += ["--keep-min-workers"] if keep_min_workers else []
    args += ["--cluster-name", cluster_name] if cluster_name else []
    return _run([*args, *extra_args], path, dry_run)


def cluster_status(
    yaml_path: str | Path,
    *,
    cluster_name: str | None = None,
    extra_args: Sequence[str] = (),
    dry_run: bool = False,
) -> dict[str, Any]:
    """`ray status` on the head, through `ray exec YAML` (with the token mode it needs).

    Args:
        yaml_path: The launcher YAML the cluster was started with.
        cluster_name: Pass `--cluster-name`.
        extra_args: Further `ray exec` arguments, passed through.
        dry_run: Return the command without running it.

    Returns:
        `{"command", "cwd", "env", "returncode"}` (`env`: variables set on top of this
        process's); `returncode` is None on a dry run.
    """
    path = _cloud_config(yaml_path, allow_placeholders=True)
    args = ["exec", str(path.resolve()), "RAY_AUTH_MODE=token ray status"]
    args += ["--cluster-name", cluster_name] if cluster_name else []
    return _run([*args, *extra_args], path, dry_run)
