"""Stop and start the local control plane's processes one at a time, for the fault
tests (tests/chaos): the API server or etcd gone for a minute, as when a control-plane node
reboots.

kwokctl's binary runtime runs each component as a plain process: its pid in
`<cluster>/pids/<name>.pid`, its binary and arguments in `<cluster>/kwok.yaml`, its output
in `<cluster>/logs/<name>.log`. `start` runs it again exactly so, and writes the pid where
`kwokctl delete cluster` looks for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from cluster import NAME, STATE, is_up

CLUSTER = STATE / "kwok" / "clusters" / NAME


class Component:
    def __init__(self, name: str, root: Path = CLUSTER) -> None:
        self.name = name
        self.root = root

    @property
    def _pid_file(self) -> Path:
        return self.root / "pids" / f"{self.name}.pid"

    def pid(self) -> int | None:
        """The running process, or None."""
        try:
            pid = int(self._pid_file.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def _config(self) -> dict[str, Any]:
        docs = yaml.safe_load_all((self.root / "kwok.yaml").read_text())
        for doc in docs:
            for component in (doc or {}).get("components") or []:
                if component["name"] == self.name:
                    return dict(component)
        raise KeyError(f"no component {self.name} in {self.root / 'kwok.yaml'}")

    def kill(self, timeout_s: float = 30) -> None:
        """SIGKILL, as a power cut would; returns once the process is gone."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} (pid {pid}) did not die")
            time.sleep(0.05)

    def start(self) -> None:
        """Run the component again as kwokctl ran it (no-op if it runs)."""
        if self.pid() is not None:
            return
        config = self._config()
        log = (self.root / "logs" / f"{self.name}.log").open("ab")
        proc = subprocess.Popen(
            [config["binary"], *config.get("args", [])],
            cwd=config.get("workDir") or self.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives whoever started it, as kwokctl's do
        )
        self._pid_file.write_text(str(proc.pid))


def _alive(pid: int) -> bool:
    # Reap it if it was our own child (a component we started), else it stays a zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_api_ready(timeout_s: float = 120) -> None:
    """Until the API server answers /readyz (etcd reachable, informers synced)."""
    deadline = time.monotonic() + timeout_s
    while not is_up():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API server was not ready within {timeout_s:.0f}s")
        time.sleep(0.2)
