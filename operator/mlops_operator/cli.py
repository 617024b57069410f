"""Command-line entry point: `mlops-operator run` and friends."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import kopf
from pydantic import ValidationError

# Importing the package registers its handlers with kopf's default registry.
from mlops_operator import (
    controllers,
    crdgen,
    health,
    lineage,
    logging_setup,
    metrics,
    registration,
    storage,
)
from mlops_operator.api import describe_errors
from mlops_operator.kube import Kube
from mlops_operator.leader import LeaderElection


def _run(args: argparse.Namespace) -> int:
    logging_setup.configure(args.log_format, args.verbose)
    if args.resync_seconds is not None:
        os.environ[controllers.RESYNC_ENV] = str(args.resync_seconds)
    if args.metrics_port:
        metrics.serve(args.metrics_port, args.metrics_host)
    namespaces = args.namespace or []
    # kopf runs in a thread of its own and stops when `stop` is set, which a plain signal
    # handler in the main thread does. Run in the main thread, kopf would take SIGTERM
    # through asyncio's wakeup socket, which thousands of handler-thread completions can
    # fill under load; the signal is then lost and the pod would only die by SIGKILL.
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    liveness = (args.liveness_host, args.liveness_port)
    election = None
    if args.leader_elect:
        election = LeaderElection(
            Kube.api_client(), args.lease_namespace, args.lease_name, _identity()
        )
        # A standby is alive too: its kubelet must not restart it while it waits.
        with health.serve_while_waiting(*liveness):
            if not election.acquire(stop):
                return 0
    lost = threading.Event()  # the Lease, or a watch stream: exit 1, to be started again

    def lose() -> None:
        lost.set()
        stop.set()

    # Renewed until kopf has stopped, not only until `stop`: its handlers may write while it
    # drains, and a drain longer than the renew deadline would leave nothing to release.
    drained = threading.Event()
    keeper = None
    if election is not None:
        keeper = threading.Thread(
            target=election.keep, args=(drained, lose), name="lease", daemon=True
        )
        keeper.start()
    failed: list[BaseException] = []

    def operate() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    clusterwide=not namespaces,
                    namespaces=namespaces,
                    liveness_endpoint=f"http://{liveness[0]}:{liveness[1]}/healthz",
                    standalone=True,  # one replica reconciles: the Lease decides which
                    stop_flag=stop,
                    memo=kopf.Memo(
                        fence=election.leading if election else None,
                        namespaces=namespaces,
                        restart=lose,
                    ),
                )
            )
        except BaseException as err:  # reported by the main thread, as its exit code
            failed.append(err)

    operator = threading.Thread(target=operate, name="kopf")
    operator.start()
    while operator.is_alive():
        operator.join(timeout=1.0)
    drained.set()
    if election is not None and keeper is not None:
        keeper.join(timeout=election.longest_round)  # a renew in flight ends
        election.release()
    if failed:
        raise failed[0]
    # Lost the Lease or a watch: exit non-zero, so the kubelet starts this replica again.
    return 1 if lost.is_set() else 0


def _identity() -> str:
    """This replica's name in the Lease: the pod's (HOSTNAME) and a random suffix, so that a
    restarted process is never mistaken for the one before it."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def _crds(args: argparse.Namespace) -> int:
    out = Path(args.out)
    files = crdgen.generated_files(out, Path(args.docs))
    if not args.check:
        crdgen.write(files)
        return 0
    diffs = crdgen.differences(files, out)
    sys.stdout.writelines(diffs)
    if diffs:
        print("generated files are out of date: run `make crds`", file=sys.stderr)
    return 1 if diffs else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    # 0.0.0.0: the kubelet probes the pod from outside its network namespace.
    run.add_argument("--liveness-host", default="0.0.0.0")
    run.add_argument("--liveness-port", type=int, default=8080)
    run.add_argument(
        "--standalone",
        action="store_true",
        help="(kept for compatibility: kopf peering is always off; the Lease elects the leader)",
    )
    run.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reconcile only while holding the Lease, so replicas take over from each other"
        " (default on; --no-leader-elect for a single process in development)",
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE") or "mlops-system",
        help="namespace of the leader Lease (default: $POD_NAMESPACE, else mlops-system)",
    )
    run.add_argument("--lease-name", default="mlops-operator", help="name of the leader Lease")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics on this port at /metrics (default 0: off)",
    )
    run.add_argument("--metrics-host", default="0.0.0.0")
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per line, for log collectors",
    )
    run.add_argument(
        "--resync-seconds",
        type=float,
        default=None,
        help="reconcile every known object again this often, whatever the watches said"
        " (default 300)",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    crds = sub.add_parser("crds", help="generate crds/*.yaml and docs/api.md from the API models")
    crds.add_argument("--out", default="crds", help="directory of the CRD files")
    crds.add_argument("--docs", default="docs/api.md", help="path of the API reference")
    crds.add_argument(
        "--check",
        action="store_true",
        help="write nothing; print a diff and fail if the files differ from the models",
    )
    crds.set_defaults(func=_crds)

    fetch = sub.add_parser(
        "storage-init", help="fetch a model artifact (file or directory) into a directory"
    )
    fetch.add_argument("source", help="s3://, gs://, https:// URI or a local (PVC) path")
    fetch.add_argument("destination", help="directory the runtime reads the model from")
    fetch.add_argument("--reference", help="the Model's reference profile, fetched too")
    fetch.add_argument("--reference-digest", help="its digest, checked (sha256:<hex>)")
    fetch.add_argument("--reference-dir", help="where the monitor reads it")
    fetch.set_defaults(func=_storage_init)

    monitor = sub.add_parser(
        "monitor",
        help="the serving pod's monitor: a proxy in front of the runtime that bins V2"
        " inference traffic against the model's reference profile",
    )
    monitor.add_argument("--upstream", required=True, help="the runtime: http://127.0.0.1:PORT")
    monitor.add_argument(
        "--reference",
        help="path of the reference.json (without: requests, errors and latency only)",
    )
    monitor.add_argument("--listen", default="0.0.0.0:8080", help="HOST:PORT traffic comes to")
    monitor.add_argument("--admin", default="0.0.0.0:8089", help="HOST:PORT of /metrics, /drift")
    monitor.add_argument("--model", default=os.environ.get("MLOPS_MODEL_NAME", ""))
    monitor.add_argument("--model-version", default=os.environ.get("MLOPS_MODEL_VERSION", ""))
    monitor.add_argument(
        "--upstream-timeout", type=float, default=60.0, help="seconds a runtime may take"
    )
    monitor.add_argument(
        "--deployment",
        default=os.environ.get("MLOPS_MODEL_DEPLOYMENT", ""),
        help="the ModelDeployment, named in each /drift answer",
    )
    monitor.add_argument(
        "--pod", default=os.environ.get("POD_NAME", ""), help="this pod, named in each answer"
    )
    monitor.add_argument(
        "--max-request-bytes",
        type=int,
        help="a larger request body is refused (413); default 64 MiB",
    )
    monitor.add_argument(
        "--max-binned-bytes",
        type=int,
        help="a larger body passes through unbinned; default 4 MiB",
    )
    monitor.add_argument(
        "--max-rows-per-request",
        type=int,
        help="rows of one request binned at most; default 100",
    )
    monitor.set_defaults(func=_monitor)

    dataset = sub.add_parser("dataset", help="register Dataset versions from a data pipeline")
    verbs = dataset.add_subparsers(dest="verb", required=True)
    register = verbs.add_parser(
        "register", help="digest the data at URI and register it as the next version"
    )
    _dataset_arguments(register)
    register.set_defaults(func=_dataset_register)
    watch = verbs.add_parser(
        "watch",
        help="register a new version only when the data at URI changed (for a CronJob;"
        " --interval to keep watching)",
    )
    _dataset_arguments(watch)
    watch.add_argument(
        "--interval",
        type=float,
        default=0,
        help="look again every this many seconds (default 0: look once and exit)",
    )
    watch.set_defaults(func=_dataset_watch)
    lineage.add_parser(sub)
    return parser


def _dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "uri", help="the data: one object or a prefix (s3://, gs://, https://, path)"
    )
    parser.add_argument("--name", required=True, help="the dataset's name (spec.datasetName)")
    parser.add_argument("-n", "--namespace", help="default: the current context's namespace")
    parser.add_argument("--format", help="csv, parquet, jsonl...; default: from the file names")
    parser.add_argument("--rows", type=int, help="number of rows")
    parser.add_argument("--schema", help="columns: name:type,name:type (or a JSON list)")
    parser.add_argument("--description")
    parser.add_argument("--code-revision", help="revision of the code that produced the data")
    parser.add_argument("--image", help="the image that produced the data")
    parser.add_argument("--source-uri", help="where the data was derived from")
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="a label (repeatable)"
    )


def _register_once(args: argparse.Namespace) -> int:
    try:
        labels = dict(item.split("=", 1) for item in args.label)
        lineage = {
            key: value
            for key, value in (
                ("codeRevision", args.code_revision),
                ("image", args.image),
                ("sourceUri", args.source_uri),
            )
            if value
        }
        result = registration.register_dataset(
            args.uri,
            name=args.name,
            namespace=args.namespace,
            format=args.format,
            rows=args.rows,
            schema=registration.parse_schema(args.schema) if args.schema else None,
            lineage=lineage,
            description=args.description,
            labels=labels,
        )
    except ValidationError as err:  # what the Dataset's schema refuses, field by field
        print(f"cannot register {args.uri}: {'; '.join(describe_errors(err))}", file=sys.stderr)
        return 1
    except Exception as err:  # one clear line for the pipeline's log, and a failed exit
        print(f"cannot register {args.uri}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    verb = "registered" if result.created else "unchanged: the newest version is"
    print(f"dataset {args.name}: {verb} {result.name}")
    return 0


def _dataset_register(args: argparse.Namespace) -> int:
    return _register_once(args)


def _dataset_watch(args: argparse.Namespace) -> int:
    while True:
        status = _register_once(args)
        if args.interval <= 0:
            return status
        time.sleep(args.interval)  # the watcher's own polling period


def _monitor(args: argparse.Namespace) -> int:
    from mlops_operator.api.reference import ReferenceProfile
    from mlops_operator.monitoring import server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        reference = (
            ReferenceProfile.model_validate_json(Path(args.reference).read_bytes())
            if args.reference
            else None
        )
        listen, admin = _host_port(args.listen), _host_port(args.admin)
    except (OSError, ValueError) as err:
        print(f"monitor: cannot start: {err}", file=sys.stderr)
        return 2
    settings = server.Settings(
        upstream=args.upstream.rstrip("/"),
        reference=reference,
        model=args.model,
        version=args.model_version,
        deployment=args.deployment,
        pod=args.pod,
        upstream_timeout=args.upstream_timeout,
        # Unset: the monitor's own defaults.
        **{
            key: getattr(args, key)
            for key in ("max_request_bytes", "max_binned_bytes", "max_rows_per_request")
            if getattr(args, key) is not None
        },
    )

    async def until_stopped() -> None:
        task = asyncio.ensure_future(server.serve(settings, listen, admin))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(until_stopped())
    return 0


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r}: expected HOST:PORT")
    return host or "0.0.0.0", int(port)


def _storage_init(args: argparse.Namespace) -> int:
    source = args.source
    try:
        fetched = storage.fetch(source, args.destination)
        if args.reference:
            source = args.reference
            fetched.append(
                storage.fetch_reference(source, args.reference_digest, args.reference_dir)
            )
    except Exception as err:  # any failure: one clear line where the operator reads it
        message = storage.failure_message(source, err)
        print(message, file=sys.stderr)
        storage.write_termination_message(message)
        return 1
    for path in fetched:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
