"""The one place that talks to the API server.

Everything goes in and out as plain dicts (the JSON the server speaks):
builders produce dicts, controllers pass them through, and nothing pays for
the client's model classes. Missing objects are None, not exceptions.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ConflictException, NotFoundException

from mlops_operator import GROUP, VERSION

Body = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: server-side apply takes it
FIELD_MANAGER = "mlops-operator"


class AlreadyExists(Exception):
    """Creating an object whose name is taken."""


def _json(response: Any) -> Body:
    loaded: Body = json.loads(response.data)
    return loaded


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.policy = client.PolicyV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        # Server-side apply and delete, by kind, for the serving children.
        self._patch = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "HorizontalPodAutoscaler": self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            "PodDisruptionBudget": self.policy.patch_namespaced_pod_disruption_budget,
        }
        self._delete = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "HorizontalPodAutoscaler": self.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            "PodDisruptionBudget": self.policy.delete_namespaced_pod_disruption_budget,
        }

    @classmethod
    def connect(cls) -> Kube:
        """In a pod: its ServiceAccount; elsewhere: KUBECONFIG or ~/.kube/config."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return cls(client.ApiClient(configuration))

    # --- our custom resources -------------------------------------------------

    def get_custom(self, plural: str, namespace: str, name: str) -> Body | None:
        try:
            return _json(
                self.custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, _preload_content=False
                )
            )
        except NotFoundException:
            return None

    def list_custom(self, plural: str, namespace: str, selector: str) -> list[Body]:
        listed = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=selector, _preload_content=False
        )
        items: list[Body] = _json(listed)["items"]
        return items

    def create_custom(self, plural: str, body: Body) -> Body:
        try:
            return _json(
                self.custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    body["metadata"]["namespace"],
                    plural,
                    body,
                    field_manager=FIELD_MANAGER,
                    _preload_content=False,
                )
            )
        except ConflictException as err:
            raise AlreadyExists(body["metadata"]["name"]) from err

    def patch_custom(self, plural: str, namespace: str, name: str, patch: Body) -> None:
        """Merge-patch an object's metadata (finalizers); never its spec."""
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )

    def patch_status(self, plural: str, namespace: str, name: str, status: Body) -> None:
        """Merge-patch the status subresource; the operator never writes a user's spec."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"status": status},
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )

    # --- built-in kinds ----------------------------------------------------------

    def get_job(self, namespace: str, name: str) -> Body | None:
        try:
            return _json(self.batch.read_namespaced_job(name, namespace, _preload_content=False))
        except NotFoundException:
            return None

    def create_job(self, body: Body) -> Body:
        try:
            return _json(
                self.batch.create_namespaced_job(
                    body["metadata"]["namespace"],
                    body,  # type: ignore[arg-type]  # the client sends a dict body as it is
                    field_manager=FIELD_MANAGER,
                    _preload_content=False,
                )
            )
        except ConflictException as err:
            raise AlreadyExists(body["metadata"]["name"]) from err

    def patch_job(self, namespace: str, name: str, patch: Body) -> None:
        self.batch.patch_namespaced_job(
            name,
            namespace,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
            _preload_content=False,
        )

    def ensure_service(self, body: Body) -> None:
        """Create the Service unless one of that name exists."""
        with contextlib.suppress(ConflictException):
            self.core.create_namespaced_service(
                body["metadata"]["namespace"],
                body,  # type: ignore[arg-type]  # the client sends a dict body as it is
                field_manager=FIELD_MANAGER,
                _preload_content=False,
            )

    def list_pods(self, namespace: str, selector: str) -> list[Body]:
        listed = self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False
        )
        items: list[Body] = _json(listed)["items"]
        return items

    def get_deployment(self, namespace: str, name: str) -> Body | None:
        try:
            return _json(
                self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
            )
        except NotFoundException:
            return None

    def apply(self, body: Body) -> None:
        """Server-side apply: sets the fields we own, puts them back if edited, leaves the rest."""
        meta = body["metadata"]
        self._patch[body["kind"]](
            meta["name"],
            meta["namespace"],
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
            _preload_content=False,
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete if present."""
        with contextlib.suppress(NotFoundException):
            self._delete[kind](name, namespace, _preload_content=False)
