"""The `ray-ml` console script.

Every command prints human-readable progress on stderr and, as the last line of stdout, one JSON
object with its result, so scripts can do `ray-ml ... | tail -n 1 | jq`. Errors a user can fix
exit non-zero with a one-line message naming the problem and the fix, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray_ml.errors import RayMLError, RejectRateExceeded
from ray_ml.registry import add_registry_parser

__all__ = ["main"]


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.flush()
    print(json.dumps(obj, default=str), flush=True)


# -- data -------------------------------------------------------------------------------------------
def _data_check(args: argparse.Namespace) -> int:
    from ray_ml.cluster import start_ray, stop_ray
    from ray_ml.data import check_sources, fingerprint, resolve_contract

    contract = resolve_contract(args.sources, args.contract)
    handle = start_ray(num_cpus=args.num_cpus, object_store_mb=args.object_store_mb)
    try:
        checked = check_sources(
            args.sources,
            contract,
            merge=args.merge,
            join_key=args.join_key,
            quarantine_dir=args.quarantine,
            max_reject_rate=args.max_reject_rate,
            num_blocks=args.num_blocks,
            raise_on_failure=False,
        )
    finally:
        stop_ray(handle)
    report = checked.report
    summary = {**report.to_dict(), "fingerprint": fingerprint(report.digest, contract, {})}
    warning = report.warning_message()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if not report.passed:
        print(f"error: {report.failure_message()}", file=sys.stderr)
        _emit(summary)
        return RejectRateExceeded.exit_code
    _emit(summary)
    return 0


def _data_infer(args: argparse.Namespace) -> int:
    from ray_ml.data import Task, infer_contract, read_sample

    table = read_sample(args.source, rows=args.sample_rows)
    contract = infer_contract(
        table,
        name=args.name or "dataset",
        label=args.label,
        task=Task(args.task) if args.task else None,
        max_categories=args.max_categories,
    )
    header = (
        f"# Data contract inferred by `ray-ml data infer {args.source}` from {table.num_rows} rows.\n"
        "# Review it. `expect:` holds what the sample showed (ranges widened by 10% of their span,\n"
        "# the categories seen): rows outside it are counted as warnings, not rejected; add\n"
        "# `strict: true` to an `expect:` to reject them, or move min/max out of it to make a rule.\n"
        "# `role: id` marks key columns: never a feature, never range-checked. A column is\n"
        "# nullable when the sample had a null. Use with `ray-ml data check SOURCE --contract FILE`.\n"
    )
    sys.stdout.write(contract.to_yaml(header))
    return 0


# -- train / predict -------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    from ray_ml._entry import with_console
    from ray_ml.config import load_config
    from ray_ml.train import run_train_job

    _emit(with_console(load_config("train", args.overrides), run_train_job))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from ray_ml._entry import with_console
    from ray_ml.config import load_config
    from ray_ml.tune import run_tune_job

    overrides = list(args.overrides) + (["tune.resume=true"] if args.resume else [])
    _emit(with_console(load_config("tune", overrides), run_tune_job))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ray_ml.cluster import start_ray, stop_ray
    from ray_ml.train import batch_predict

    handle = start_ray(num_cpus=args.num_cpus, object_store_mb=args.object_store_mb)
    try:
        _emit(batch_predict(args.bundle, args.sources, args.out, concurrency=args.concurrency))
    finally:
        stop_ray(handle)
    return 0


def _submit(args: argparse.Namespace) -> int:
    from ray_ml.cluster import job_client, submit_job, wait_for_job

    env: dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"error: --env wants KEY=VALUE, got {item!r}.", file=sys.stderr)
            return 2
        env[key] = value
    sid = submit_job(
        args.job,
        list(args.overrides),
        address=args.address,
        token=args.token,
        working_dir=args.working_dir,
        env_vars=env,
        submission_id=args.submission_id,
        upload=not args.no_upload,
    )
    print(f"submitted {sid}", file=sys.stderr, flush=True)
    if args.no_wait:
        _emit({"submission_id": sid, "status": "PENDING"})
        return 0
    result = wait_for_job(job_client(args.address, args.token), sid)
    _emit(result)
    return int(result["exit_code"])


def _jobs(args: argparse.Namespace) -> int:
    from ray_ml.cluster import job_client, job_summary, wait_for_job

    client = job_client(args.address, args.token)
    if args.jobs_verb == "list":
        _emit(
            {
                "jobs": [
                    {
                        "submission_id": j.submission_id,
                        "status": str(getattr(j.status, "value", j.status)),
                        "entrypoint": j.entrypoint,
                    }
                    for j in client.list_jobs()
                ]
            }
        )
    elif args.jobs_verb == "status":
        info = client.get_job_info(args.submission_id)
        _emit(
            {
                "submission_id": args.submission_id,
                "status": str(getattr(info.status, "value", info.status)),
                "exit_code": getattr(info, "driver_exit_code", None),
                "message": info.message,
                "summary": job_summary(client.get_job_logs(args.submission_id)),
            }
        )
    elif args.jobs_verb == "logs":
        if args.follow:
            _emit(wait_for_job(client, args.submission_id))
        else:
            sys.stdout.write(client.get_job_logs(args.submission_id))
    else:  # stop
        _emit({"submission_id": args.submission_id, "stopped": client.stop_job(args.submission_id)})
    return 0


def _report(args: argparse.Namespace) -> int:
    from ray_ml.report import build_report

    index = build_report(args.storage_path, args.name, out_dir=args.out)
    print(f"report: {index}", file=sys.stderr)
    _emit({"report": str(index), "json": str(index.parent / "report.json")})
    return 0


def _run(args: argparse.Namespace) -> int:
    from ray_ml._entry import with_console
    from ray_ml.config import load_config
    from ray_ml.pipeline import run_pipeline

    cfg = load_config("pipeline", _run_overrides(args))
    _emit(with_console(cfg, run_pipeline))
    return 0


def _run_overrides(args: argparse.Namespace) -> list[str]:
    """`ray-ml run [SOURCE ...] [--label L] [-v] [KEY=VALUE ...]` as Hydra overrides.

    A word without `=` is a data source (a file, glob or URI): the pipeline then runs on it,
    named after the first one, with a contract inferred from a sample unless data.contract is
    given.
    """
    from ray_ml.data import source_name

    sources = [w for w in args.overrides if "=" not in w]
    overrides = [w for w in args.overrides if "=" in w]
    keys = {w.split("=", 1)[0].lstrip("+~") for w in overrides}
    extra: list[str] = []
    if sources:
        resolved = [s if "://" in s else str(Path(s).expanduser().resolve()) for s in sources]
        extra.append("data.sources=[" + ",".join(_quoted(s) for s in resolved) + "]")
        if "name" not in keys:
            extra.append(f"name={source_name(sources[0])}")
    if args.label:
        extra.append(f"data.label={_quoted(args.label)}")
    if args.verbose:
        extra.append("verbose=true")
    return extra + overrides


def _quoted(value: str) -> str:
    """A Hydra override value taken literally (commas, brackets and spaces included)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _serve(args: argparse.Namespace) -> int:
    from ray_ml.config import load_config
    from ray_ml.serve import run_serve_job, serve_config

    overrides = list(args.overrides)
    if args.bundle:
        overrides.append(f"serve.bundle={Path(args.bundle).resolve()}")
    if args.alias:
        overrides.append(f"serve.alias={args.alias}")
    if args.version:
        overrides.append(f"serve.version={args.version}")
    cfg = load_config("serve", overrides)
    if args.emit_config:
        import yaml

        Path(args.emit_config).write_text(
            "# Deploy with Ray's CLI: serve deploy "
            + args.emit_config
            + "\n"
            + yaml.safe_dump(serve_config(cfg, overrides), sort_keys=False)
        )
        _emit({"serve_config": args.emit_config})
        return 0
    _emit(run_serve_job(cfg))
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from ray_ml._entry import with_console
    from ray_ml.config import load_config
    from ray_ml.monitor import run_monitor_job

    overrides = list(args.overrides)
    if args.once:
        overrides.append("monitor.max_ticks=1")
    cfg = load_config("monitor", overrides)
    _emit(with_console(cfg, run_monitor_job))
    return 0


# -- cluster ----------------------------------------------------------------------------------------
def _cluster(args: argparse.Namespace) -> int:
    from ray_ml.cluster import (
        check_kuberay_manifest,
        check_launcher_yaml,
        cluster_down,
        cluster_status,
        cluster_up,
        unfilled_placeholders,
    )
    from ray_ml.errors import ConfigError

    if args.cluster_verb == "check":
        import yaml

        checked = []
        for path in args.configs:
            if not Path(path).is_file():
                raise ConfigError(f"no such file: {path}.")
            try:
                first = next(iter(yaml.safe_load_all(Path(path).read_text())), None)
            except yaml.YAMLError:
                first = None  # the check below reports the YAML error with the file's name
            if isinstance(first, dict) and "apiVersion" in first:
                docs = check_kuberay_manifest(path)
                kind = "kuberay"
            else:
                docs = [check_launcher_yaml(path)]
                kind = "launcher"
            checked.append(
                {"path": path, "kind": kind, "placeholders": unfilled_placeholders(docs)}
            )
            print(f"ok {path} ({kind})", file=sys.stderr)
        _emit({"checked": checked})
        return 0
    common: dict[str, Any] = {
        "cluster_name": args.cluster_name,
        "extra_args": list(args.ray_args),
        "dry_run": args.dry_run,
    }
    if args.cluster_verb == "up":
        result = cluster_up(
            args.config,
            yes=args.yes,
            no_restart=args.no_restart,
            restart_only=args.restart_only,
            **common,
        )
    elif args.cluster_verb == "down":
        result = cluster_down(
            args.config,
            yes=args.yes,
            workers_only=args.workers_only,
            keep_min_workers=args.keep_min_workers,
            **common,
        )
    else:
        result = cluster_status(args.config, **common)
    _emit(result)
    return int(result["returncode"] or 0)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ray-ml", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="check sources against a contract, infer contracts")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)

    check = data_verbs.add_parser("check", help="validate sources; quarantine bad rows")
    check.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="path, glob, URI, sklearn://NAME or synthetic://...",
    )
    check.add_argument(
        "--contract", help="contract YAML (bundled/synthetic sources bring their own)"
    )
    check.add_argument(
        "--quarantine", help="directory for rejected rows (Parquet with _reject_reason)"
    )
    check.add_argument(
        "--max-reject-rate",
        type=float,
        default=0.05,
        help="fail (exit 2) above this fraction (default 0.05)",
    )
    check.add_argument("--merge", choices=["union", "join"], default="union")
    check.add_argument("--join-key", help="key column for --merge join")
    check.add_argument("--num-blocks", type=int, help="read parallelism override")
    check.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all)")
    check.add_argument("--object-store-mb", type=int, default=1024)
    check.set_defaults(func=_data_check)

    infer = data_verbs.add_parser(
        "infer", help="print a contract YAML inferred from a clean sample"
    )
    infer.add_argument("source", metavar="SOURCE")
    infer.add_argument(
        "--label", help="label column (default: target/label/y/class, else the last)"
    )
    infer.add_argument("--task", choices=["binary", "multiclass", "regression"])
    infer.add_argument("--name", help="dataset name in the contract")
    infer.add_argument("--sample-rows", type=int, default=100_000)
    infer.add_argument("--max-categories", type=int, default=50)
    infer.set_defaults(func=_data_infer)

    train = verbs.add_parser(
        "train", help="train a model (same config and overrides as python -m jobs.train)"
    )
    train.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. experiment=demo model=xgboost"
    )
    train.set_defaults(func=_train)

    tune = verbs.add_parser(
        "tune", help="cost-aware sweep (same config and overrides as python -m jobs.tune)"
    )
    tune.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. experiment=demo tune.budget_usd=0.5"
    )
    tune.add_argument(
        "--resume", action="store_true", help="continue the interrupted sweep of the same name"
    )
    tune.set_defaults(func=_tune)

    predict = verbs.add_parser("predict", help="batch inference of a bundle over sources")
    predict.add_argument("bundle", metavar="BUNDLE", help="model bundle directory")
    predict.add_argument("sources", nargs="+", metavar="SOURCE")
    predict.add_argument(
        "--out", required=True, help="output directory (predictions/ and rejected/)"
    )
    predict.add_argument("--concurrency", type=int, default=1, help="predictor actors")
    predict.add_argument("--num-cpus", type=int, help="CPUs of the embedded Ray (default: all)")
    predict.add_argument("--object-store-mb", type=int, default=1024)
    predict.set_defaults(func=_predict)

    def cluster_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--address",
            help="Jobs API of the cluster, e.g. http://127.0.0.1:8265 (default: $RAY_ADDRESS)",
        )
        p.add_argument(
            "--token",
            help="cluster token (default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)",
        )

    submit = verbs.add_parser(
        "submit", help="run python -m jobs.JOB on a Ray cluster through the Jobs API"
    )
    submit.add_argument(
        "job", metavar="JOB", help="a module of jobs/: data, train, tune, serve, pipeline"
    )
    submit.add_argument("overrides", nargs="*", help="Hydra overrides for the job")
    cluster_args(submit)
    submit.add_argument("--working-dir", default=".", help="uploaded as the job's working dir")
    submit.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    submit.add_argument("--submission-id", help="choose the job's id")
    submit.add_argument(
        "--no-upload",
        action="store_true",
        help="run the project installed on the cluster instead of uploading --working-dir",
    )
    submit.add_argument(
        "--no-wait", action="store_true", help="return after submitting (see `ray-ml jobs`)"
    )
    submit.set_defaults(func=_submit)

    jobs = verbs.add_parser("jobs", help="list jobs, show status or logs, stop a job")
    jobs_verbs = jobs.add_subparsers(dest="jobs_verb", required=True)
    jobs_list = jobs_verbs.add_parser("list")
    cluster_args(jobs_list)
    for verb in ("status", "logs", "stop"):
        p = jobs_verbs.add_parser(verb)
        p.add_argument("submission_id", metavar="ID")
        cluster_args(p)
        if verb == "logs":
            p.add_argument("--follow", action="store_true", help="stream until the job ends")
    jobs.set_defaults(func=_jobs)

    run = verbs.add_parser(
        "run",
        help="the whole pipeline: data, sweep, registry, serve, smoke test, report "
        "(same config as python -m jobs.pipeline)",
    )
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="SOURCE|KEY=VALUE",
        help="data files to run on (path/to/data.csv: a contract is inferred) and Hydra "
        "overrides, e.g. experiment=demo",
    )
    run.add_argument("--label", help="the label column of the data files")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="Ray's own output on the console too"
    )
    run.set_defaults(func=_run)

    serve = verbs.add_parser(
        "serve",
        help="serve a model over HTTP until Ctrl-C (same config as python -m jobs.serve)",
    )
    what = serve.add_mutually_exclusive_group()
    what.add_argument("--bundle", help="serve this bundle directory (no registry)")
    what.add_argument("--alias", help="serve this registry alias (default: production)")
    what.add_argument("--version", help="serve this registry version")
    serve.add_argument(
        "--emit-config",
        metavar="FILE",
        help="write a Serve config file for `serve deploy FILE` instead of serving",
    )
    serve.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. name=demo serve.port=8080"
    )
    serve.set_defaults(func=_serve)

    monitor = verbs.add_parser(
        "monitor",
        help="watch a served model and its data; retrain on a trigger, canary the winner "
        "(same config as python -m jobs.monitor)",
    )
    monitor.add_argument("--once", action="store_true", help="one tick, then exit")
    monitor.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. experiment=demo monitor.poll_s=10"
    )
    monitor.set_defaults(func=_monitor)

    report = verbs.add_parser(
        "report", help="write an experiment's HTML report (plots inline) and report.json"
    )
    report.add_argument("name", metavar="NAME", help="experiment name (the jobs' `name`)")
    report.add_argument(
        "--storage-path", default="runs", help="the jobs' storage_path (default: runs)"
    )
    report.add_argument("--out", help="output folder (default: STORAGE_PATH/NAME/report)")
    report.set_defaults(func=_report)

    cluster = verbs.add_parser(
        "cluster", help="start, stop or inspect a Ray cluster from cluster/*.yaml (ray up/down)"
    )
    cluster_verbs = cluster.add_subparsers(dest="cluster_verb", required=True)
    for verb, text in (
        ("up", "validate, then `ray up` (spot-first autoscaler v2)"),
        ("down", "`ray down`: terminate the cluster"),
        ("status", "`ray status` on the head, through `ray exec`"),
    ):
        p = cluster_verbs.add_parser(verb, help=text)
        p.add_argument("config", metavar="CONFIG", help="launcher YAML, e.g. cluster/aws.yaml")
        p.add_argument("--cluster-name", help="override cluster_name of the YAML")
        p.add_argument("--dry-run", action="store_true", help="print the ray command only")
        p.add_argument(
            "--ray-arg",
            dest="ray_args",
            action="append",
            default=[],
            metavar="ARG",
            help="passed on to ray, e.g. --ray-arg=--no-config-cache (repeatable)",
        )
        if verb in ("up", "down"):
            p.add_argument("--yes", "-y", action="store_true", help="no confirmation prompt")
        if verb == "up":
            p.add_argument("--no-restart", action="store_true")
            p.add_argument("--restart-only", action="store_true")
        if verb == "down":
            p.add_argument("--workers-only", action="store_true")
            p.add_argument("--keep-min-workers", action="store_true")
    check_cfg = cluster_verbs.add_parser(
        "check", help="Ray's own validation of launcher YAMLs, checks of KubeRay manifests"
    )
    check_cfg.add_argument("configs", nargs="+", metavar="CONFIG")
    cluster.set_defaults(func=_cluster)

    add_registry_parser(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Overrides after an option (`run data.csv --label y debug=tiny`) land here.
        if not hasattr(args, "overrides") or any(w.startswith("-") for w in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    if (
        getattr(args, "max_reject_rate", 0.0) is not None
        and not 0 <= getattr(args, "max_reject_rate", 0.0) <= 1
    ):
        print(
            f"error: --max-reject-rate must be in [0, 1], but got {args.max_reject_rate}.",
            file=sys.stderr,
        )
        return 2
    try:
        return int(args.func(args))
    except RayMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
