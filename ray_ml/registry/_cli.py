"""`ray-ml registry ...`: list, show, register, promote, roll back and audit model versions.

Like every `ray-ml` command, progress goes to stderr and the result is one JSON object on the
last stdout line. `add_registry_parser` plugs the verbs into the `ray-ml` parser; errors are
`RegistryError`s, which the console script turns into a one-line message and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ray_ml.registry._registry import DEFAULT_ROOT, LATEST, Registry

__all__ = ["add_registry_parser"]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.flush()
    print(json.dumps(obj, default=str), flush=True)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _registry(args: argparse.Namespace) -> Registry:
    return Registry(args.root)


def registry_list(args: argparse.Namespace) -> int:
    """Models with their latest version and aliases, or the versions of one model."""
    reg = _registry(args)
    if args.name is None:
        models = []
        for name in reg.list_models():
            versions = reg.list_versions(name)
            models.append(
                {
                    "name": name,
                    "versions": len(versions),
                    "latest": versions[-1].version if versions else None,
                    "aliases": reg.aliases(name),
                }
            )
        _say(f"{len(models)} model(s) in {reg.root}")
        _emit({"root": reg.root, "models": models})
        return 0
    versions = reg.list_versions(args.name)
    _say(f"{len(versions)} version(s) of {args.name} in {reg.root}")
    _emit(
        {
            "root": reg.root,
            "model": args.name,
            "aliases": reg.aliases(args.name),
            "versions": [
                {
                    "version": v.version,
                    "created_at": v.created_at,
                    "model_kind": v.model_kind,
                    "task": v.task,
                    "aliases": list(v.aliases),
                    "metrics": v.metrics,
                }
                for v in versions
            ],
        }
    )
    return 0


def registry_show(args: argparse.Namespace) -> int:
    """Everything about one version (number, alias or `latest`)."""
    _emit(_registry(args).show(args.name, args.ref))
    return 0


def registry_register(args: argparse.Namespace) -> int:
    """Copy a bundle folder in as the next version."""
    reg = _registry(args)
    mv = reg.register(args.bundle, args.name, aliases=args.alias, reason=args.reason)
    _say(f"registered {args.bundle} as {mv.name} version {mv.version} at {mv.path}")
    _emit(mv.to_dict())
    return 0


def registry_promote(args: argparse.Namespace) -> int:
    """Point an alias (default `production`) at a version or another alias's version."""
    change = _registry(args).promote(args.name, args.ref, to=args.to, reason=args.reason)
    if change.changed:
        _say(f"{args.name}: {change.alias} {change.from_version} -> {change.to_version}")
    else:
        _say(f"{args.name}: {change.alias} already points to version {change.to_version}")
    _emit(change.to_dict())
    return 0


def registry_rollback(args: argparse.Namespace) -> int:
    """Point an alias back at its previous version (from the audit log)."""
    change = _registry(args).rollback(args.name, alias=args.alias, reason=args.reason)
    _say(f"{args.name}: rolled {change.alias} back {change.from_version} -> {change.to_version}")
    _emit(change.to_dict())
    return 0


def registry_history(args: argparse.Namespace) -> int:
    """The newest audit entries of a model (or of one of its aliases)."""
    entries = _registry(args).audit(args.name, alias=args.alias)[-args.limit :]
    for e in entries:
        _say(
            f"{e.time} {e.actor} {e.action} {e.alias or '-'} "
            f"{e.from_version} -> {e.to_version} {e.reason}"
        )
    _emit({"model": args.name, "entries": [e.to_dict() for e in entries]})
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, but got {value}")
    return value


def add_registry_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add `registry list|show|register|promote|rollback|history` to the `ray-ml` parser.

    Each verb sets `func` to its handler: `handler(args) -> exit code`.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--root",
        default=DEFAULT_ROOT,
        help=f"registry folder or URI (s3://, gs://, file://); default {DEFAULT_ROOT}",
    )
    registry = subparsers.add_parser(
        "registry", help="list, show, register, promote and roll back model versions"
    )
    verbs = registry.add_subparsers(dest="registry_verb", required=True)

    ls = verbs.add_parser("list", parents=[common], help="models, or the versions of one model")
    ls.add_argument("name", nargs="?", help="a model name (default: list the models)")
    ls.set_defaults(func=registry_list)

    show = verbs.add_parser("show", parents=[common], help="details of one version")
    show.add_argument("name")
    show.add_argument("ref", nargs="?", default=LATEST, help="version, alias or 'latest'")
    show.set_defaults(func=registry_show)

    register = verbs.add_parser(
        "register", parents=[common], help="copy a bundle in as the next version"
    )
    register.add_argument("bundle", help="bundle folder written by training")
    register.add_argument("name", help="model name")
    register.add_argument(
        "--alias", action="append", default=[], help="alias to point at it (repeatable)"
    )
    register.add_argument("--reason", default="", help="kept in the record and the audit log")
    register.set_defaults(func=registry_register)

    promote = verbs.add_parser(
        "promote", parents=[common], help="point an alias at a version, e.g. candidate"
    )
    promote.add_argument("name")
    promote.add_argument("ref", help="version number, alias (e.g. candidate) or 'latest'")
    promote.add_argument("--to", default="production", help="alias to move (default production)")
    promote.add_argument("--reason", default="", help="why, for the audit log")
    promote.set_defaults(func=registry_promote)

    rollback = verbs.add_parser(
        "rollback", parents=[common], help="point an alias back at its previous version"
    )
    rollback.add_argument("name")
    rollback.add_argument("--alias", default="production", help="default production")
    rollback.add_argument("--reason", default="", help="why, for the audit log")
    rollback.set_defaults(func=registry_rollback)

    history = verbs.add_parser("history", parents=[common], help="the audit log of a model")
    history.add_argument("name")
    history.add_argument("--alias", help="only changes of this alias")
    history.add_argument("--limit", type=_positive_int, default=20, help="newest N entries")
    history.set_defaults(func=registry_history)
    return registry
