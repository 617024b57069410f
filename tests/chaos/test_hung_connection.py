"""A connection to the API server that stops answering in the middle of a reconcile: the
call times out, the key is retried on a new connection, and the run registers once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.fixtures import Cluster
from tests.integration.test_trainingjob import trainingjob
from tests.k8s import apply, events, status
from tests.operators import Operator
from tests.polling import until

from .conftest import PREFIX
from .proxy import HangingProxy
from .registry import all_registered, assert_registered_once


@pytest.fixture
def proxied(crds: Cluster, tmp_path: Path) -> Iterator[tuple[Operator, HangingProxy]]:
    server = yaml.safe_load(Path(crds.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    address = urlparse(server)
    proxy = HangingProxy((address.hostname or "127.0.0.1", address.port or 443))
    # No Lease: its renewals every 2 s would be the first to send, and take the hang.
    operator = Operator(crds, tmp_path / "operator.log", watch=f"{PREFIX}-*",
                        args=["--no-leader-elect"],
                        server=f"https://127.0.0.1:{proxy.port}")  # fmt: skip
    operator.start()
    yield operator, proxy
    operator.stop()
    proxy.close()


def test_a_hung_call_is_retried_after_its_timeout(
    crds: Cluster,
    chaos_namespace: str,  # before the operator starts: its first LIST finds the namespace
    proxied: tuple[Operator, HangingProxy],
    record: Callable[..., Any],
) -> None:
    operator, proxy = proxied
    ns = chaos_namespace
    apply(crds, ns, trainingjob("warm"))  # the operator's connections are open and in use
    until(lambda: all_registered(crds, ns, ["warm"]), 60, "the first run registered",
          explain=lambda: operator.log()[-3000:])  # fmt: skip
    # Quiet first, so that the next request sent is our reconcile's: kopf has posted the
    # first run's Events and the Model controller has written the Model's status.
    until(lambda: ("Normal", "ModelRegistered") in events(crds, ns, "warm"), 60, "its Events")
    until(lambda: status(crds, ns, "mdl", "iris-v1").get("conditions"), 60, "the Model's status")
    proxy.hang_next()
    created = time.monotonic()
    apply(crds, ns, trainingjob("hung"))
    until(lambda: all_registered(crds, ns, ["warm", "hung"]), 120, "the second run registered")
    took = time.monotonic() - created
    assert proxy.hung == 1
    retried = [line for line in operator.log().splitlines()
               if "'hung')" in line and "failed (1 in a row)" in line]  # fmt: skip
    assert retried, operator.log()[-3000:]
    assert "timed out" in retried[0]
    assert_registered_once(crds, ns, "iris", ["warm", "hung"])
    assert operator.exited() is None
    record(registered_after_s=round(took, 1))
