"""Kueue as a real process against the test cluster, with its webhooks reached by URL.

The manager binary, its CRDs and its webhook manifests come from one module zip
(`tools/cluster/build.sh kueue`, KUEUE_VERSION). The API server of the local cluster is a
process on this host (kwokctl's binary runtime), so it cannot reach a Service in the cluster:
Kueue serves its webhooks on 127.0.0.1 with a certificate for that address, signed by a CA
made here, and the webhook configurations, derived from Kueue's own
config/components/webhook/manifests.yaml, name that URL and carry the CA instead of a
`service:`. Kueue's internal certificate management (which would write a Secret and patch
the configurations of its Deployment) is off. See docs/development.md, "Kueue in the tests".

Only one Kueue may run against a cluster at a time: the webhook configurations have fixed
names, and two managers would both admit the same Workloads.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures import Cluster, local_cluster, stop_process

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CONFIG_API = "config.kueue.x-k8s.io/v1beta2"
# The webhooks kept from Kueue's manifests: those for batch/v1 Jobs (the one integration
# enabled) and for Kueue's own objects. The rest serve integrations that are off (pods,
# Deployments, StatefulSets, Kubeflow, Ray, JobSet, ...); with failurePolicy Fail they would
# put every Pod create of the cluster behind this test process.
KEPT_GROUPS = frozenset({"batch", "kueue.x-k8s.io"})
# Fixed names, so a session killed before its stop() is replaced by the next start().
CONFIGURATION_NAMES = {
    "MutatingWebhookConfiguration": "mlops-tests-kueue-mutating",
    "ValidatingWebhookConfiguration": "mlops-tests-kueue-validating",
}
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlops-tests-kueue"}
# Jobs reach Kueue's webhooks only when they name a LocalQueue: with manageJobsWithoutQueueName
# false those are the only Jobs Kueue manages, and no other Job of the cluster (other tests run
# at the same time) then depends on this process being up.
JOB_SELECTOR = {"matchExpressions": [{"key": QUEUE_LABEL, "operator": "Exists"}]}


def webhook_configurations(manifests: str, base_url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's Mutating/ValidatingWebhookConfiguration (the documents of its
    config/components/webhook/manifests.yaml) with each `clientConfig.service` replaced by
    `base_url` + the service's path and `ca_bundle` (base64 PEM), keeping the webhooks whose
    rules are all in KEPT_GROUPS; those for Jobs get JOB_SELECTOR."""
    out = []
    for doc in yaml.safe_load_all(manifests):
        if not doc:
            continue
        kept = []
        for hook in doc["webhooks"]:
            groups = {group for rule in hook["rules"] for group in rule["apiGroups"]}
            if not groups <= KEPT_GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook = {**hook, "clientConfig": {"url": base_url + path, "caBundle": ca_bundle}}
            if "batch" in groups:
                hook["objectSelector"] = JOB_SELECTOR
            kept.append(hook)
        out.append(
            {
                "apiVersion": doc["apiVersion"],
                "kind": doc["kind"],
                "metadata": {"name": CONFIGURATION_NAMES[doc["kind"]], "labels": MANAGED_BY},
                "webhooks": kept,
            }
        )
    return out


def make_certificates(directory: Path) -> bytes:
    """A CA and a serving certificate for 127.0.0.1 it signed (tls.crt, tls.key: the names
    controller-runtime's webhook server reads from its certDir), with openssl; the CA's PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.cnf").write_text(
        "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ca\n"
        "[dn]\nCN = mlops tests: Kueue webhook CA\n"
        "[ca]\nbasicConstraints = critical, CA:TRUE\n"
        "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
    )
    (directory / "serving.ext").write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
         "-config", "ca.cnf"],
        ["req", "-new", *ec, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "7", "-extfile", "serving.ext", "-out", "tls.crt"],
    ):  # fmt: skip
        subprocess.run(["openssl", *command], cwd=directory, check=True, capture_output=True)
    return (directory / "ca.crt").read_bytes()


class Kueue:
    """Kueue's manager as a process (`kueue --kubeconfig --config`) with the cluster admin's
    kubeconfig; `start()` installs the CRDs, runs it and registers its webhooks, `stop()`
    removes the webhooks first and then ends the process. The CRDs stay installed."""

    def __init__(self, cluster: Cluster, workdir: Path, bin_dir: Path | None = None) -> None:
        self.cluster = cluster
        self.workdir = workdir
        # Never a cold build under a test timeout: `make binaries` builds it first.
        self.bin_dir = bin_dir or local_cluster.build("kueue", cached_only=True)
        self.log_path = workdir / "kueue.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.webhook_url = ""
        self.ready_url = ""

    def start(self) -> None:
        try:
            self._install_crds()
            ca = make_certificates(self.workdir / "certs")
            for _ in range(3):
                if self._launch():
                    break
            else:
                raise AssertionError(f"no free ports for Kueue:\n{self.log()[-3000:]}")
            self._register_webhooks(base64.b64encode(ca).decode())
            self._wait_webhooks_served()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Webhooks first (with failurePolicy Fail they would refuse every labelled Job and
        Kueue object once the process is gone), then SIGTERM, then SIGKILL."""
        try:
            self.cluster.kubectl(
                "delete", "--ignore-not-found", "--wait=true",
                *(f"{kind.lower()}/{name}" for kind, name in CONFIGURATION_NAMES.items()),
            )  # fmt: skip
        finally:
            stop_process(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _install_crds(self) -> None:
        files = sorted((self.bin_dir / "crds").glob("*.yaml"))
        names = [f"crd/{yaml.safe_load(f.read_text())['metadata']['name']}" for f in files]
        self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=mlops-tests-kueue",
            *(f"--filename={f}" for f in files),
        )  # fmt: skip
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)

    def _config(self, webhook_port: int, metrics_port: int, health_port: int) -> Path:
        config = {
            "apiVersion": CONFIG_API,
            "kind": "Configuration",
            "manageJobsWithoutQueueName": False,
            # No Secret, no patching of webhook configurations: the certificate is ours.
            "internalCertManagement": {"enable": False},
            "webhook": {
                "host": "127.0.0.1",
                "port": webhook_port,
                "certDir": str(self.workdir / "certs"),
            },
            "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
            "leaderElection": {"leaderElect": False},
            "clientConnection": {"qps": 50, "burst": 100},
            "integrations": {"frameworks": ["batch/job"]},
            # The visibility API is an aggregated API server (another port, an APIService
            # the local API server would have to reach): not needed here.
            "featureGates": {"VisibilityOnDemand": False},
        }
        path = self.workdir / "kueue-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _launch(self) -> bool:
        """Run the manager until /readyz answers (which waits for its webhook server); False
        if a port we picked was taken meanwhile: try others."""
        ports = [local_cluster.free_port() for _ in range(3)]
        config = self._config(*ports)
        self.webhook_url = f"https://127.0.0.1:{ports[0]}"
        self.ready_url = f"http://127.0.0.1:{ports[2]}/readyz"
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        command = [str(self.bin_dir / "kueue"), f"--kubeconfig={self.cluster.kubeconfig}",
                   f"--config={config}"]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self._with_metrics_certificate(command), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log()[start:]:
                    return False
                raise AssertionError(
                    f"kueue exited with {self.proc.returncode}:\n{self.log()[start:][-5000:]}"
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2):
                    return True
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        raise AssertionError(f"{self.ready_url} never answered:\n{self.log()[start:][-5000:]}")

    def _with_metrics_certificate(self, command: list[str]) -> list[str]:
        """`command` run where /etc/kueue/metrics/certs holds our serving certificate.

        With internal certificate management off, Kueue v0.17 reads its metrics endpoint's
        certificate from that fixed path (cmd/kueue/main.go; its Deployment mounts a Secret
        there) and exits without it. Rather than write into the host's /etc, the process gets
        a view of its own: in a new user and mount namespace (unprivileged users may make
        them), /etc is an overlay of the host's /etc and a directory here holding the
        certificate. Same network namespace: its ports are on this host's 127.0.0.1; and it
        is still the one process (unshare and sh exec it), so signals reach it directly.
        """
        upper = self.workdir / "etc" / "upper"
        metrics_certs = upper / "kueue" / "metrics" / "certs"
        metrics_certs.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            shutil.copyfile(self.workdir / "certs" / name, metrics_certs / name)
        work = self.workdir / "etc" / "work"
        work.mkdir(exist_ok=True)
        assert not set(f"{upper}{work}") & set(",:"), "overlayfs options cannot hold , or :"
        mount = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc'
        return [
            "unshare", "--user", "--map-root-user", "--mount", "--propagation=private",
            "sh", "-c", f'{mount} && shift 2 && exec "$@"', "sh", str(upper), str(work),
            *command,
        ]  # fmt: skip

    def _register_webhooks(self, ca_bundle: str) -> None:
        manifests = (self.bin_dir / "webhook" / "manifests.yaml").read_text()
        configurations = webhook_configurations(manifests, self.webhook_url, ca_bundle)
        self.cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=mlops-tests-kueue",
            "-f", "-", input=yaml.safe_dump_all(configurations),
        )  # fmt: skip

    def _wait_webhooks_served(self, timeout_s: float = 60) -> None:
        """Until the API server calls Kueue's Job webhook: a server-side dry run of a Job
        that names a queue comes back suspended (Kueue's defaulting) once the API server
        has loaded the configuration and reaches the URL with the CA."""
        probe = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "kueue-webhook-probe", "labels": {QUEUE_LABEL: "probe"}},
            "spec": {
                "suspend": False,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "main", "image": "registry.example/app:1"}],
                    }
                },
            },
        }
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            proc = self.cluster.kubectl(
                "create", "--dry-run=server", "-n", "default", "-o", "json", "-f", "-",
                input=json.dumps(probe), check=False,
            )  # fmt: skip
            if proc.returncode == 0 and json.loads(proc.stdout)["spec"].get("suspend"):
                return
            last = proc.stderr or "the Job came back unsuspended"
            time.sleep(0.3)
        raise AssertionError(f"Kueue's webhooks were never served: {last}\n{self.log()[-3000:]}")
