"""The operator's ServiceAccount: least privilege, as installed from manifests/rbac.

Every controller test already runs the operator with this account's token (see the
`operator` fixture), which shows the rules are enough; these show they are no more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_operator.builders.versions import LEDGER

from .conftest import OPERATOR_ACCOUNT, RBAC, Cluster, Operator

NAMESPACE, ACCOUNT = OPERATOR_ACCOUNT
AS = f"--as=system:serviceaccount:{NAMESPACE}:{ACCOUNT}"


def rules() -> list[dict[str, Any]]:
    role: dict[str, Any] = yaml.safe_load((RBAC / "clusterrole.yaml").read_text())
    return list(role["rules"])


def can_i(cluster: Cluster, verb: str, resource: str, namespace: str | None = None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    proc = cluster.kubectl("auth", "can-i", verb, resource, AS, *where, check=False)
    assert proc.stdout.strip() in {"yes", "no"}, proc.stderr
    return proc.stdout.strip() == "yes"


def test_rules_name_every_verb_and_resource_and_no_secrets() -> None:
    for rule in rules():
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert not {"secrets", "serviceaccounts/token"} & set(rule["resources"])
        if "configmaps" in rule["resources"]:
            # The Model version ledger only: read and replaced by name; created once.
            assert rule.get("resourceNames") == [LEDGER] or rule["verbs"] == ["create"], rule
        assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
        if "mlops.seed.dev" in rule["apiGroups"]:
            # Users own their Models, ModelDeployments, Datasets and ContinuousTrainings; the
            # operator never replaces or deletes one. TrainingJobs may be deleted: the runs a
            # ContinuousTraining made and owns (history limits, Replace); that it never deletes
            # anyone else's is tested in test_continuous_training.py.
            if rule["resources"] == ["trainingjobs"]:
                assert rule["verbs"] == ["create", "delete"], rule
                continue
            assert not {"update", "delete"} & set(rule["verbs"]) or all(
                r.endswith("/finalizers") for r in rule["resources"]
            ), rule


@pytest.mark.parametrize("verb", ["get", "list", "watch"])
def test_the_account_cannot_read_secrets(operator: Operator, verb: str) -> None:
    assert not can_i(operator.cluster, verb, "secrets")
    assert not can_i(operator.cluster, verb, "secrets", "kube-system")


def test_a_secrets_request_with_the_account_token_is_forbidden(
    operator: Operator, op_namespace: str, tmp_path: Path
) -> None:
    """A real request with the token the test operator runs with, not only a review."""
    cluster = operator.cluster
    cluster.kubectl("create", "secret", "generic", "s3-creds", "-n", op_namespace,
                    "--from-literal=key=hunter2")  # fmt: skip
    as_operator = Cluster(kubeconfig=str(operator.kubeconfig), api=cluster.api)
    for args in (["get", "secret", "s3-creds"], ["get", "secrets"]):
        proc = as_operator.kubectl(*args, "-n", op_namespace, check=False)
        assert proc.returncode != 0
        assert "Forbidden" in proc.stderr, proc.stderr
        assert ACCOUNT in proc.stderr
    # The same token may do what the operator does.
    assert as_operator.kubectl("get", "trainingjobs", "-n", op_namespace).returncode == 0


def test_the_account_may_do_exactly_what_the_rules_grant(operator: Operator) -> None:
    cluster = operator.cluster
    for rule in rules():
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                name = f"{resource.split('/')[0]}.{group}" if group else resource.split("/")[0]
                if rule.get("resourceNames"):
                    name += f"/{rule['resourceNames'][0]}"
                sub = ["--subresource", resource.split("/")[1]] if "/" in resource else []
                for verb in rule["verbs"]:
                    proc = cluster.kubectl("auth", "can-i", verb, name, *sub, AS,
                                           "--all-namespaces", check=False)  # fmt: skip
                    assert proc.stdout.strip() == "yes", (verb, resource, group)
    # A sample of what the operator never does.
    denied = [
        ("update", "trainingjobs.mlops.seed.dev"),  # it patches status, never replaces spec
        ("patch", "trainingjobs.mlops.seed.dev"),  # nor annotates: kopf keeps no state on it
        ("patch", "modeldeployments.mlops.seed.dev"),
        ("delete", "models.mlops.seed.dev"),  # deleting a TrainingJob keeps its Models
        ("delete", "datasets.mlops.seed.dev"),
        ("create", "datasets.mlops.seed.dev"),  # pipelines register them, with their account
        ("update", "continuoustrainings.mlops.seed.dev"),
        ("delete", "continuoustrainings.mlops.seed.dev"),
        ("delete", "jobs.batch"),  # the garbage collector deletes children
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("get", "configmaps"),  # only the version ledger, by name
        ("update", "configmaps"),
        ("create", "serviceaccounts/token"),
    ]
    for verb, resource in denied:
        assert not can_i(cluster, verb, resource), (verb, resource)
