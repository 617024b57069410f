"""tests/e2e reuse the cluster fixtures of tests/integration (one local cluster per session)."""

from tests.integration.conftest import Cluster, cluster, crds, local_cluster, namespace

__all__ = ["Cluster", "cluster", "crds", "local_cluster", "namespace"]
