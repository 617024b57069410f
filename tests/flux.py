"""Flux for real: source-controller and kustomize-controller, built from their Go modules
(`build.sh flux`), run as processes against the local cluster with the admin credentials,
beside the Git server of tests/gitserver.py.

They run as a Flux installation's controllers do, minus their Deployments (the API server is a
local process here, and nothing in the cluster needs to reach them): source-controller clones
the repository and serves its artifact on a local port it advertises; kustomize-controller
downloads it from there, applies it and runs its health checks (kstatus) on what it applied.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures import Cluster, local_cluster, stop_process

NAMESPACE = "flux-system"  # where the GitRepository and Kustomization objects live
CONTROLLERS = ("source-controller", "kustomize-controller")


class Flux:
    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.bin = local_cluster.build("flux", cached_only=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f",
                             str(self.bin / "crds"))  # fmt: skip
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd",
                             "gitrepositories.source.toolkit.fluxcd.io",
                             "kustomizations.kustomize.toolkit.fluxcd.io")  # fmt: skip
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
        storage = local_cluster.free_port()
        (self.workdir / "artifacts").mkdir(exist_ok=True)
        self._run("source-controller", [
            f"--storage-path={self.workdir / 'artifacts'}",
            f"--storage-addr=127.0.0.1:{storage}",
            f"--storage-adv-addr=127.0.0.1:{storage}",
        ])  # fmt: skip
        self._run("kustomize-controller", [])

    def _run(self, name: str, args: list[str]) -> None:
        health, metrics = local_cluster.free_port(), local_cluster.free_port()
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [str(self.bin / name), f"--health-addr=127.0.0.1:{health}",
             f"--metrics-addr=127.0.0.1:{metrics}", "--events-addr=", "--log-level=debug",
             "--watch-all-namespaces=true", "--concurrent=4", *args],
            env={"KUBECONFIG": self.cluster.kubeconfig, "RUNTIME_NAMESPACE": NAMESPACE,
                 "PATH": "/usr/bin:/bin", "HOME": str(self.workdir)},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.procs[name] = proc
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}:\n{self.log(name)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"{name} never ready:\n{self.log(name)}"
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


def git_repository(name: str, url: str) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"url": url, "interval": "1m", "ref": {"branch": "main"}, "timeout": "30s"},
    }


def kustomization(name: str, path: str, target: str, **spec: Any) -> dict[str, Any]:
    """`wait: true` over `path`, applied into the namespace `target`: Ready only when every
    object it applied is Current by kstatus, Failed when one is."""
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "interval": "1m",
            "retryInterval": "5s",
            "sourceRef": {"kind": "GitRepository", "name": name},
            "path": path,
            "targetNamespace": target,
            "prune": True,
            "wait": True,
            "timeout": "3m",
            **spec,
        },
    }


def reconcile_now(cluster: Cluster, kind: str, name: str) -> None:
    """What `flux reconcile` does: the requestedAt annotation makes the controller act now."""
    stamp = f"reconcile.fluxcd.io/requestedAt={time.time_ns()}"
    cluster.kubectl("annotate", "-n", NAMESPACE, "--overwrite", kind, name, stamp)
