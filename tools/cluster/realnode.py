"""The real node: a kubelet with containerd, runc and a CNI bridge beside the kwok nodes.

cluster.py starts it after the control plane, if this machine can run containers (root,
Linux namespaces); otherwise it says why in one line and the cluster stays kwok-only.
The node is `realnode-0`, labelled `mlops.seed.dev/node=real` and tainted
`mlops.seed.dev/real-node=true:NoSchedule`, so only pods that ask for it land there.

NetworkPolicy is enforced here by kube-network-policies (SIG Network's enforcer, patched for
this kernel: see tools/versions.env), run as a process beside the kubelet: the first packet
of each connection to or from a pod goes through its nfqueue. Traffic from root on the host
(the kubelet's probes, an operator run as a host process) is exempt, as upstream has it.

What it changes on the host, and `stop` undoes: the bridge `rn0` (pod network 10.88.0.0/24,
made by the CNI bridge plugin), kube-proxy's and the kubelet's iptables chains, our chain
MLOPS-NODE (pods may reach this host and each other, nothing beyond it), the enforcer's
nftables table `kube-network-policies`, the sysctls
`net.ipv4.ip_forward` and `net.ipv4.conf.all.route_localnet`, the kubelet's cgroups, and the
mounts and network namespaces of its pods. Everything else lives in .cluster/node/.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

NAME = "realnode-0"
LABEL = ("mlops.seed.dev/node", "real")
TAINT = "mlops.seed.dev/real-node=true:NoSchedule"
POD_CIDR = "10.88.0.0/24"
BRIDGE = "rn0"
CLUSTER_DNS = "10.0.0.10"
CHAIN = "MLOPS-NODE"
KUBELET_PORT = 10250
ENFORCER = "kube-network-policies"  # the process, its nftables table and its RBAC user
PROCESSES = ("containerd", "kubelet", "kube-proxy", ENFORCER)
SYSCTLS = ("net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet")


def _log(message: str) -> None:
    print(f"[node] {message}", file=sys.stderr, flush=True)


def _run(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]


def unavailable() -> str | None:
    """Why this machine cannot run the real node, or None if it can."""
    if os.environ.get("MLOPS_REAL_NODE", "1") == "0":
        return "MLOPS_REAL_NODE=0"
    if sys.platform != "linux":
        return f"it needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "it needs root (containerd, runc, network namespaces, iptables)"
    namespaces = ("unshare", "--net", "--mount", "true")
    if shutil.which("unshare") and _run(*namespaces, check=False).returncode:
        return "this machine cannot create network and mount namespaces"
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", KUBELET_PORT)) == 0:
            return f"port {KUBELET_PORT} is taken (another cluster's real node, or a kubelet)"
    return None


def ensure_host_packages(packages: list[str]) -> None:
    """runc, the CNI plugins, iptables, conntrack, buildah, debootstrap, from Debian."""
    missing = [p for p in packages if _run("dpkg", "-s", p, check=False).returncode]
    if not missing:
        return
    _log(f"installing Debian packages: {' '.join(missing)} (once per machine, about a minute)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)


def host_ip() -> str:
    """The address of the interface the default route uses: the node's InternalIP."""
    routes = json.loads(_run("ip", "-j", "route", "get", "192.0.2.255").stdout)
    return str(routes[0]["prefsrc"])


class RealNode:
    """Configuration, processes and teardown of the node, all under `state`."""

    def __init__(self, state: Path, pki: Path, kube_bin: Path, node_bin: Path) -> None:
        self.state = state
        self.pki = pki  # kwokctl's cluster CA (ca.crt, ca.key) and admin credentials
        self.kube_bin = kube_bin
        self.node_bin = node_bin
        self.logs = state / "logs"
        self.sock = state / "containerd" / "containerd.sock"

    # --- configuration ----------------------------------------------------------------

    def _cert(self, name: str, subject: str, usage: str, sans: str = "") -> None:
        key, csr, crt = (self.state / "pki" / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.state / "pki" / f"{name}.ext"
        ext.write_text(
            f"extendedKeyUsage={usage}\nkeyUsage=digitalSignature,keyEncipherment\n"
            + (f"subjectAltName={sans}\n" if sans else "")
        )
        _run(
            "openssl",
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-subj",
            subject,
            "-out",
            str(csr),
        )
        _run(
            "openssl",
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(self.pki / "ca.crt"),
            "-CAkey",
            str(self.pki / "ca.key"),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            str(ext),
            "-out",
            str(crt),
        )

    def _kubeconfig(self, name: str, server: str) -> Path:
        path = self.state / f"{name}.kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": server,
                        "certificate-authority": str(self.pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "client-certificate": str(self.state / "pki" / f"{name}.crt"),
                        "client-key": str(self.state / "pki" / f"{name}.key"),
                    },
                }
            ],
            "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def configure(self, server: str) -> None:
        """Write every config file and certificate the node's processes read."""
        ip = host_ip()
        for sub in ("pki", "logs", "containerd", "cni/net.d", "cni/ipam", "kubelet/root"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        self._cert("kubelet", f"/O=system:nodes/CN=system:node:{NAME}", "clientAuth")
        self._cert(
            "kubelet-serving", f"/CN={NAME}", "serverAuth", f"DNS:{NAME},IP:{ip},IP:127.0.0.1"
        )
        self._cert("kube-proxy", "/CN=system:kube-proxy", "clientAuth")
        self._cert(ENFORCER, f"/CN=system:{ENFORCER}", "clientAuth")  # realnode/ grants it
        self._kubeconfig("kubelet", server)
        self._kubeconfig("kube-proxy", server)
        self._kubeconfig(ENFORCER, server)
        ctr = self.state / "containerd"
        (ctr / "config.toml").write_text(f"""\
version = 3
root = "{ctr}/root"
state = "{ctr}/state"
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{ctr}/debug.sock"
[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = "{ctr}/opt"
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'localhost/pause:1'
  [plugins.'io.containerd.cri.v1.runtime']
    # root here may lack CAP_SYS_RESOURCE: without this every sandbox fails in runc.
    restrict_oom_score_adj = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '{self.state}/cni/net.d'
""")
        # No ipMasq: pods reach this host (the API server) and each other, never beyond.
        conflist = {
            "cniVersion": "1.0.0",
            "name": "realnode",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(self.state / "cni" / "ipam"),
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                }
            ],
        }
        (self.state / "cni" / "net.d" / "10-realnode.conflist").write_text(json.dumps(conflist))
        # Pods of dnsPolicy Default (CoreDNS) get this: no upstream resolver.
        (self.state / "resolv.conf").write_text(f"nameserver {CLUSTER_DNS}\n")
        pki = self.state / "pki"
        kubelet = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # these machines are cgroup v1
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "address": "0.0.0.0",
            "port": KUBELET_PORT,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local",
            "clusterDNS": [CLUSTER_DNS],
            "resolvConf": str(self.state / "resolv.conf"),
            "podCIDR": POD_CIDR,
            "maxPods": 50,
            "serializeImagePulls": False,
            "evictionHard": {"memory.available": "100Mi"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "podLogsDir": str(self.state / "kubelet" / "pod-logs"),
        }
        (self.state / "kubelet-config.yaml").write_text(yaml.safe_dump(kubelet))
        proxy = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(self.state / "kube-proxy.kubeconfig")},
            "hostnameOverride": NAME,
            "clusterCIDR": POD_CIDR,
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
            "conntrack": {"maxPerCore": 0},
        }
        (self.state / "kube-proxy-config.yaml").write_text(yaml.safe_dump(proxy))
        (self.state / "ip").write_text(ip)

    # --- processes ----------------------------------------------------------------------

    def _start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        (self.state / f"{name}.pid").write_text(str(proc.pid))

    def _wait(self, what: str, ready: Callable[[], bool], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s; see {self.logs}")
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            str(self.node_bin / "ctr"),
            "--address",
            str(self.sock),
            "-n",
            "k8s.io",
            *args,
            check=check,
        )

    def start(self) -> None:
        """Host settings, containerd, kubelet, kube-proxy, the NetworkPolicy enforcer."""
        saved = self.state / "sysctls.json"
        if not saved.exists():
            values = {k: _run("sysctl", "-n", k).stdout.strip() for k in SYSCTLS}
            saved.write_text(json.dumps(values))
        _run("sysctl", "-w", "net.ipv4.ip_forward=1")
        _isolate()
        path = f"{self.node_bin}:{os.environ.get('PATH', '')}"  # our runc shim first
        self._start(
            "containerd",
            str(self.node_bin / "containerd"),
            "--config",
            str(self.state / "containerd" / "config.toml"),
            env={"PATH": path},
        )
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0)
        ip = (self.state / "ip").read_text()
        kubelet = self.kube_bin / "kubelet"
        self._start(
            "kubelet",
            str(kubelet),
            f"--config={self.state / 'kubelet-config.yaml'}",
            f"--kubeconfig={self.state / 'kubelet.kubeconfig'}",
            f"--root-dir={self.state / 'kubelet' / 'root'}",
            f"--cert-dir={self.state / 'kubelet' / 'pki'}",
            f"--hostname-override={NAME}",
            f"--node-ip={ip}",
            f"--node-labels={LABEL[0]}={LABEL[1]}",
            f"--register-with-taints={TAINT}",
            "--v=1",
            env={"PATH": path},
        )
        self._start(
            "kube-proxy",
            str(self.kube_bin / "kube-proxy"),
            f"--config={self.state / 'kube-proxy-config.yaml'}",
            "--v=1",
        )
        self._start(
            ENFORCER,
            str(self.node_bin / ENFORCER),
            f"--kubeconfig={self.state / f'{ENFORCER}.kubeconfig'}",
            f"--hostname-override={NAME}",
            "--disable-nri",  # pod IPs from the API server only, not also through containerd
            "--netfilter-bug-1766-fix=false",  # fixed in kernels 6.12 and later
            "--metrics-bind-address=127.0.0.1:0",
            "--v=1",
        )

    def import_new(self, archives: list[Path]) -> None:
        """Load image archives into containerd, each once (a rebuilt image is a new archive)."""
        done = self.state / "imported"
        imported = set(done.read_text().split()) if done.exists() else set()
        for archive in archives:
            if str(archive) not in imported:
                _log(f"loading image {archive.name}")
                self.ctr("images", "import", str(archive))
                imported.add(str(archive))
        done.write_text("\n".join(sorted(imported)))

    def wait_enforcing(self) -> None:
        """Until the enforcer has synced its caches and installed its table (its RBAC is one
        of the addons, applied after it starts: it retries with backoff until then)."""
        table = ("nft", "list", "table", "inet", ENFORCER)
        self._wait(ENFORCER, lambda: _run(*table, check=False).returncode == 0, timeout_s=120)

    def running(self) -> bool:
        return all(_alive(self.state / f"{n}.pid") for n in PROCESSES)

    # --- teardown -----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the processes and undo every host change; safe to run twice, or after a crash."""
        for name in (ENFORCER, "kube-proxy", "kubelet"):
            _terminate(self.state / f"{name}.pid")
        if self.sock.exists() and _alive(self.state / "containerd.pid"):
            # Sandboxes and containers outlive the kubelet: stop them through containerd.
            tasks = self.ctr("tasks", "list", "-q", check=False).stdout.split()
            for task in tasks:
                self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            for task in tasks:
                self.ctr("tasks", "delete", "-f", task, check=False)
            for container in self.ctr("containers", "list", "-q", check=False).stdout.split():
                self.ctr("containers", "delete", container, check=False)
        _terminate(self.state / "containerd.pid")
        _kill_leftover_shims(self.state)
        cleanup_host(self.state)


def _alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False


def _terminate(pidfile: Path, timeout_s: float = 15) -> None:
    if not _alive(pidfile):
        return
    pid = int(pidfile.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pidfile) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _kill_leftover_shims(state: Path) -> None:
    """containerd's shims run in their own sessions; any still serving our state die here."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim" in cmdline and str(state) in cmdline.replace("\0", " "):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return _run("iptables", "-w", *args, check=False)


def _isolate() -> None:
    """Pods may talk to this host and to each other; anything else they send is dropped."""
    cidr = str(ipaddress.ip_network(POD_CIDR))
    _iptables("-N", CHAIN)
    _iptables("-F", CHAIN)
    _iptables("-A", CHAIN, "-s", cidr, "-d", cidr, "-j", "RETURN")
    _iptables("-A", CHAIN, "-s", cidr, "-j", "DROP")
    if _iptables("-C", "FORWARD", "-j", CHAIN).returncode:
        _iptables("-I", "FORWARD", "1", "-j", CHAIN)


def cleanup_host(state: Path) -> None:
    """Undo what the node did to the host: mounts, netns, chains, bridge, cgroups, sysctls."""
    root = str(state)
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(root)), key=len, reverse=True):
        _run("umount", "-l", mount, check=False)
    for netns in Path("/var/run/netns").glob("cni-*") if Path("/var/run/netns").exists() else []:
        _run("ip", "netns", "delete", netns.name, check=False)
    _iptables("-D", "FORWARD", "-j", CHAIN)
    _iptables("-F", CHAIN)
    _iptables("-X", CHAIN)
    _flush_kube_chains()
    _run("nft", "delete", "table", "inet", ENFORCER, check=False)
    _run("ip", "link", "delete", BRIDGE, check=False)
    for controller in Path("/sys/fs/cgroup").iterdir() if Path("/sys/fs/cgroup").exists() else []:
        kubepods = controller / "kubepods"
        if kubepods.is_dir():
            for d in sorted(kubepods.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if d.is_dir():
                    with contextlib.suppress(OSError):
                        d.rmdir()
            with contextlib.suppress(OSError):
                kubepods.rmdir()
    saved = state / "sysctls.json"
    if saved.exists():
        for key, value in json.loads(saved.read_text()).items():
            _run("sysctl", "-w", f"{key}={value}", check=False)
        saved.unlink()


def _flush_kube_chains() -> None:
    """kube-proxy's and the kubelet's chains (KUBE-*), in every table, and the jumps to them."""
    for table in ("filter", "nat", "mangle"):
        rules = _iptables("-t", table, "-S").stdout.splitlines()
        for rule in rules:
            parts = shlex.split(rule)
            if parts[:1] == ["-A"] and "KUBE-" in rule and not parts[1].startswith("KUBE-"):
                _iptables("-t", table, "-D", *parts[1:])
        chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
        for chain in chains:
            _iptables("-t", table, "-F", chain)
        for chain in chains:
            _iptables("-t", table, "-X", chain)
