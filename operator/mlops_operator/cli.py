"""Command-line entry point: `mlops-operator run` and friends."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

import kopf

# Importing the package registers its handlers with kopf's default registry.
import mlops_operator.controllers  # noqa: F401


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    namespaces = args.namespace or []
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            liveness_endpoint=f"http://{args.liveness_host}:{args.liveness_port}/healthz",
            standalone=args.standalone,
        )
    )
    return 0


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
        help="skip kopf peering (only one operator replica may run)",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
