"""Fixtures of the controller tests: the operator as a process with its ServiceAccount's
token, and namespaces it watches. The cluster itself comes from tests/fixtures.py."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import config

# Not fixtures (those come from the plugin): names the test modules import from here.
from tests.fixtures import OPERATOR_PREFIX, ROOT, Cluster, fresh_namespace, local_cluster
from tests.kueue import Kueue
from tests.operators import OPERATOR_ACCOUNT, RBAC, Operator

__all__ = ["OPERATOR_ACCOUNT", "RBAC", "ROOT", "Cluster", "Operator", "local_cluster"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test of the test operator shows what the operator logged about the test's
    namespace (CI keeps no logs, and a timed-out wait says nothing of why)."""
    report = yield
    namespace = getattr(item, "funcargs", {}).get("op_namespace")
    operator = getattr(item, "funcargs", {}).get("operator")
    if report.when == "call" and report.failed and namespace and operator:
        lines = [line for line in operator.log().splitlines() if namespace in line]
        report.sections.append((f"operator log about {namespace}", "\n".join(lines[-80:])))
    return report


@pytest.fixture
def op_namespace(cluster: Cluster, operator: Operator) -> Iterator[str]:
    """A fresh namespace enforcing `restricted`, watched by the test operator."""
    yield from fresh_namespace(cluster, OPERATOR_PREFIX)


# What a team gets in its namespace when it may use the operator and nothing more: every verb
# the built-in `edit` role has, on our five kinds only (no ConfigMaps, no RBAC, no pods).
TENANT_ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "Role",
    "metadata": {"name": "tenant"},
    "rules": [
        {
            "apiGroups": ["mlops.seed.dev"],
            "resources": [
                "trainingjobs",
                "models",
                "modeldeployments",
                "datasets",
                "continuoustrainings",
            ],
            "verbs": [
                "get",
                "list",
                "watch",
                "create",
                "update",
                "patch",
                "delete",
                "deletecollection",
            ],
        }
    ],
}


@pytest.fixture
def tenant(cluster: Cluster, op_namespace: str, tmp_path: Path) -> Cluster:
    """The test namespace as one of its team members reaches it: a ServiceAccount with only
    TENANT_ROLE, through its own token."""
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant"}}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "tenant"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": op_namespace}],
    }
    docs = yaml.safe_dump_all([account, TENANT_ROLE, binding])
    cluster.kubectl("apply", "-n", op_namespace, "-f", "-", input=docs)
    kubeconfig = tmp_path / "tenant.kubeconfig"
    local_cluster.service_account_kubeconfig(
        kubeconfig, Path(cluster.kubeconfig), (op_namespace, "tenant")
    )
    return Cluster(str(kubeconfig), config.new_client_from_config(str(kubeconfig)))


@pytest.fixture(scope="session")
def operator(crds: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(crds, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    yield op
    op.stop()
    # kopf only logs some refusals (an Event it could not post): fail the session on any.
    assert not op.forbidden(), "the operator was refused:\n" + "\n".join(op.forbidden())


@pytest.fixture(scope="session")
def kueue(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kueue]:
    """Kueue's manager as a process with its webhooks registered by URL (tests/kueue.py);
    started only for a session with a test that asks for it. Its webhook configurations go
    when the session ends, whatever the tests did; Jobs reach its webhooks only when they
    carry the label kueue.x-k8s.io/queue-name."""
    try:
        bin_dir = local_cluster.build("kueue", cached_only=True)
    except local_cluster.NotBuilt as err:
        pytest.fail(f"{err}\n(`make test` builds it first: make kueue)")
    running = Kueue(cluster, tmp_path_factory.mktemp("kueue"), bin_dir)
    running.start()
    try:
        yield running
    finally:
        running.stop()
