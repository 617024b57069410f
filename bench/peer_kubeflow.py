"""A peer on the same cluster under the same load: Kubeflow's training operator (v1).

Builds github.com/kubeflow/training-operator from the Go module proxy (tools/cluster/build.sh
kubeflow, version pinned in tools/versions.env), installs its CRDs, and runs it as a process
against the local cluster, watching only a fresh namespace and reconciling only PyTorchJobs.
Then, with one client clock:
  baseline:       N plain Jobs created directly (training_latency.baseline), in a
                  namespace nobody watches: how fast anything can appear on this cluster;
  apply -> pod:   N PyTorchJobs (one Master replica each, created in a burst by the same number
                  of threads) from each create request to its first pod in a watch;
  succeeded:      until every PyTorchJob has the condition Succeeded (kwok plays each pod 1 s).
Also the peer's peak RSS, CPU seconds and API requests (client-go's counter on its metrics
endpoint). Writes a table and bench/results/peer_kubeflow.json.

    .venv/bin/python bench/peer_kubeflow.py --n 200   # `make bench` runs it for each N

The operator runs as it ships (manifests/base/deployment.yaml: one controller thread, client
rate limit 20 QPS / burst 30) unless --peer-arg says otherwise, e.g.
--peer-arg=--controller-threads=8 --peer-arg=--kube-api-qps=300. What a process outside a pod
needs: a Secret and a ValidatingWebhookConfiguration (without webhooks) for its certificate
rotator, and the certificate files the kubelet would mount from that Secret, which this script
writes. So the PyTorchJob validating webhook is not called on create.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    ROOT,
    Recorder,
    latencies,
    local_cluster,
    machine,
    proc_usage,
    row,
    scratch_namespace,
    wait_until,
    watch_objects,
)
from kubernetes import client, config, watch
from training_latency import baseline

MODULE = "github.com/kubeflow/training-operator"
KF_GROUP, KF_VERSION = "kubeflow.org", "v1"
JOB_LABEL = "training.kubeflow.org/job-name"
# Fixed in the operator (pkg/cert): the rotator's Secret and webhook configuration, and the
# directory where it expects the kubelet to mount that Secret.
CERT_SECRET = "training-operator-webhook-cert"
WEBHOOK_CONFIG = "validator.training-operator.kubeflow.org"
CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")


def build() -> Path:
    """The training-operator binary's directory (built once, cached like the control plane)."""
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "cluster" / "build.sh"), "kubeflow"],
        check=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


def pytorchjob(name: str) -> dict[str, Any]:
    """One Master replica, the same image, restart policy and simulated 1 s as the baseline."""
    pod = {
        "metadata": {"annotations": {"sim.mlops.seed.dev/duration": "1s"}},
        "spec": {"containers": [{"name": "pytorch", "image": "registry.example/train:1"}]},
    }
    master = {"replicas": 1, "restartPolicy": "Never", "template": pod}
    return {
        "apiVersion": f"{KF_GROUP}/{KF_VERSION}",
        "kind": "PyTorchJob",
        "metadata": {"name": name},
        "spec": {"pytorchReplicaSpecs": {"Master": master}},
    }


@dataclass
class PeerRun:
    api: client.ApiClient
    ns: str
    proc: subprocess.Popen[bytes]
    args: list[str]
    metrics_url: str

    def api_requests(self) -> Counter[str]:
        """Requests the peer made, by "METHOD code", from client-go's own counter
        (rest_client_requests_total on its metrics endpoint): it has no ServiceAccount here,
        so the audit log does not see it."""
        counts: Counter[str] = Counter()
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("rest_client_requests_total{"):
                    labels, value = line[len("rest_client_requests_total{") :].rsplit("} ", 1)
                    pairs = dict(kv.split("=", 1) for kv in labels.split(","))
                    what = f"{pairs['method'].strip(chr(34))} {pairs['code'].strip(chr(34))}"
                    counts[what] += int(float(value))
        return counts


def _mount_certs(api: client.ApiClient, ns: str, proc: subprocess.Popen[bytes]) -> None:
    """Do the kubelet's part: write the Secret the rotator fills into the certificate dir."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 60
    while True:
        data = core.read_namespaced_secret(CERT_SECRET, ns).data or {}
        if "tls.crt" in data and "tls.key" in data:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"training-operator exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError("the certificate rotator never filled its Secret")
        time.sleep(0.2)
    CERT_DIR.mkdir(parents=True, exist_ok=True)
    for key, value in data.items():
        (CERT_DIR / key).write_bytes(base64.b64decode(value))


def _wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None:
            raise RuntimeError(f"training-operator exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{text!r} never appeared in {log}")
        time.sleep(0.2)


@contextmanager
def peer_namespace(log_path: Path, extra_args: list[str]) -> Iterator[PeerRun]:
    """The local cluster with Kubeflow's CRDs, a fresh namespace, and the training operator
    (admin kubeconfig) watching only it."""
    local_cluster.up()
    bin_dir = build()
    kubeconfig = str(local_cluster.KUBECONFIG)
    crds = str(bin_dir / "crds")
    local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    local_cluster.kubectl("wait", "--for=condition=Established", "crd/pytorchjobs.kubeflow.org")
    api = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api)
    with scratch_namespace(api, "bench-kubeflow") as ns:
        local_cluster.kubectl("wait", "-n", ns, "--for=create", "serviceaccount/default")
        core.create_namespaced_secret(ns, {"metadata": {"name": CERT_SECRET}})
        admission = client.AdmissionregistrationV1Api(api)
        admission.delete_collection_validating_webhook_configuration(
            field_selector=f"metadata.name={WEBHOOK_CONFIG}"
        )
        admission.create_validating_webhook_configuration({"metadata": {"name": WEBHOOK_CONFIG}})
        for stale in CERT_DIR.glob("*"):
            stale.unlink()
        probe, metrics = local_cluster.free_port(), local_cluster.free_port()
        webhook = local_cluster.free_port()
        args = [
            f"--namespace={ns}",
            "--enable-scheme=pytorchjob",
            "--leader-elect=false",
            "--gang-scheduler-name=",
            f"--health-probe-bind-address=127.0.0.1:{probe}",
            f"--metrics-bind-address=127.0.0.1:{metrics}",
            f"--webhook-server-port={webhook}",
            *extra_args,
        ]
        env = {**os.environ, "KUBECONFIG": kubeconfig, "MY_POD_NAMESPACE": ns}
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                [str(bin_dir / "training-operator"), *args],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                _mount_certs(api, ns, proc)
                local_cluster.wait_healthy(f"http://127.0.0.1:{probe}/readyz", proc, 120)
                # Its controllers start after the certificates: wait for the PyTorchJob one.
                _wait_for_log(log_path, '"controller": "pytorchjob-controller", "worker', proc, 60)
                yield PeerRun(api, ns, proc, args, f"http://127.0.0.1:{metrics}/metrics")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                admission.delete_validating_webhook_configuration(WEBHOOK_CONFIG)
                for written in CERT_DIR.glob("*"):
                    written.unlink()


def watch_pods(api: client.ApiClient, ns: str, seen: Any, stop: threading.Event) -> None:
    """Call `seen(pod)` for every pod watch event in `ns`, as plain dicts (cheap to decode)."""
    stream = watch.Watch()
    list_pods = client.CoreV1Api(api).list_namespaced_pod
    for event in stream.stream(list_pods, ns, timeout_seconds=3600, deserialize=False):
        seen(event["object"])
        if stop.is_set():
            stream.stop()


def run(n: int, concurrency: int, out: Path, extra_args: list[str]) -> dict[str, Any]:
    applied, pods, succeeded = Recorder(), Recorder(), Recorder()
    stop = threading.Event()
    with (
        peer_namespace(out.with_suffix(".peer.log"), extra_args) as peer,
        scratch_namespace(peer.api, "bench-baseline") as baseline_ns,
    ):
        # The limit first, in the same run, so the ratio holds on a noisy machine.
        limit = baseline(peer.api, baseline_ns, n, concurrency)

        def pod_seen(pod: dict[str, Any]) -> None:
            job = (pod["metadata"].get("labels") or {}).get(JOB_LABEL)
            if job:
                pods.mark(job)

        def job_seen(job: dict[str, Any]) -> None:
            conditions = (job.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Succeeded" and c["status"] == "True" for c in conditions):
                succeeded.mark(job["metadata"]["name"])

        threading.Thread(target=watch_pods, args=(peer.api, peer.ns, pod_seen, stop),
                         daemon=True).start()  # fmt: skip
        threading.Thread(target=watch_objects, daemon=True,
                         args=(peer.api, KF_GROUP, KF_VERSION, peer.ns, "pytorchjobs", job_seen,
                               stop)).start()  # fmt: skip
        custom = client.CustomObjectsApi(peer.api)
        names = [f"pt-{i:05d}" for i in range(n)]
        start = time.monotonic()

        def create(name: str) -> None:
            applied.mark(name)
            custom.create_namespaced_custom_object(KF_GROUP, KF_VERSION, peer.ns, "pytorchjobs",
                                                   pytorchjob(name))  # fmt: skip

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(create, names))
        applied_all = time.monotonic() - start
        wait_until(lambda: len(pods.seen) >= n, peer.proc, 600 + n)
        all_children = max(pods.seen.values()) - start
        wait_until(lambda: len(succeeded.seen) >= n, peer.proc, 600 + n)
        stop.set()
        rss_mb, cpu_s = proc_usage(peer.proc.pid)
        requests = peer.api_requests()
        # What the children are, checked once at the end: scheduled on kwok nodes, finished.
        core = client.CoreV1Api(peer.api)
        listed = core.list_namespaced_pod(peer.ns, label_selector=JOB_LABEL).items
        services = core.list_namespaced_service(peer.ns, label_selector=JOB_LABEL).items
        children = {
            "pods": len(listed),
            "pods_on_kwok_nodes": sum((p.spec.node_name or "").startswith("kwok-") for p in listed),
            "pods_succeeded": sum(p.status.phase == "Succeeded" for p in listed),
            "services": len(services),
        }
    result = {
        **machine(),
        "peer": f"{MODULE} {local_cluster.pinned_versions()['KUBEFLOW_TRAINING_OPERATOR_VERSION']}",
        "peer_args": peer.args[1:],  # without the namespace's random name
        "n": n,
        "concurrency": concurrency,
        "apply_all_s": round(applied_all, 2),
        "baseline_all_s": round(limit, 2),
        "peer_all_children_s": round(all_children, 2),
        "ratio": round(limit / all_children, 3),
        "succeeded_all_s": round(max(succeeded.seen.values()) - start, 2),
        "apply_to_pod_s": latencies(applied, pods),
        "apply_to_succeeded_s": latencies(applied, succeeded),
        "peer_peak_rss_mb": round(rss_mb, 1),
        "peer_cpu_s": round(cpu_s, 1),
        "peer_cpu_ms_per_job": round(1000 * cpu_s / n, 1),
        # All of its requests since it started, including its startup's few.
        "peer_api_requests_per_job": round(sum(requests.values()) / n, 2),
        "peer_api_requests": dict(requests.most_common()),
        "children": children,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict[str, Any]) -> str:
    kids = result["children"]
    return "\n".join(
        [
            f"N={result['n']} PyTorchJobs ({result['peer']}), created in a burst by "
            f"{result['concurrency']} threads",
            row("apply -> pod", result["apply_to_pod_s"]),
            row("apply -> Succeeded", result["apply_to_succeeded_s"]),
            f"  all {result['n']} first pods exist after {result['peer_all_children_s']}s; "
            f"all Succeeded after {result['succeeded_all_s']}s",
            f"  baseline: {result['n']} Jobs created directly exist after "
            f"{result['baseline_all_s']}s; throughput ratio {result['ratio']:.2f} "
            "(1.0 = the limit)",
            f"  peer: peak RSS {result['peer_peak_rss_mb']} MB, CPU {result['peer_cpu_s']} s "
            f"({result['peer_cpu_ms_per_job']} ms per PyTorchJob)",
            f"  peer API requests per PyTorchJob: {result['peer_api_requests_per_job']}",
            *(
                f"    {count / result['n']:6.2f}  {what}"
                for what, count in result["peer_api_requests"].items()
            ),
            f"  children: {kids['pods']} pods ({kids['pods_on_kwok_nodes']} on kwok nodes, "
            f"{kids['pods_succeeded']} Succeeded), {kids['services']} Services",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8, help="burst: creating threads")
    parser.add_argument("--peer-arg", action="append", default=[],
                        help="extra training-operator flag (repeatable)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "peer_kubeflow.json"
    )
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = run(args.n, args.concurrency, args.out, args.peer_arg)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
