"""`Kube`: every call the operator makes to the API server.

Everything goes in and out as plain dicts (the JSON the server speaks): builders produce
dicts, controllers pass them through, and nothing pays for the client's model classes.
Missing objects are None, not exceptions. Reads come from the cache (cache.py); a miss is
read from the server. Bodies from the cache are shared: treat them as read-only.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Mapping
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from mlops_operator import GROUP, VERSION
from mlops_operator.builders.versions import LEDGER
from mlops_operator.kube import clock
from mlops_operator.kube.applied import Applied
from mlops_operator.kube.cache import Body, Cache
from mlops_operator.kube.errors import (
    AlreadyExists,
    Conflict,
    NotLeader,
    Refused,
    message_of,
    unless,
)

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML: server-side apply takes it
FIELD_MANAGER = "mlops-operator"
POOL_SIZE = 32
# Every call has a deadline (seconds to connect, to read the answer): a hung connection
# fails the reconcile, which the work queue retries, instead of holding its key forever.
REQUEST_TIMEOUT = (5.0, 30.0)
# Set while the work queue retries a failed reconcile: the object is then read from the
# server, not the cache, so a retry sees what changed (or that the object is gone).
RETRYING: contextvars.ContextVar[bool] = contextvars.ContextVar("retrying", default=False)
# How every call is made: raw JSON back (no model classes), and the deadline above.
CALL: dict[str, Any] = {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}


def _json(response: Any) -> Body:
    loaded: Body = json.loads(response.data)
    return loaded


POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def current_namespace() -> str:
    """The namespace kubectl would use: the pod's own in a pod, else the kubeconfig
    context's, else `default` (for the command-line tools: `dataset`, `lineage`)."""
    try:
        with open(POD_NAMESPACE_FILE) as handle:
            return handle.read().strip() or "default"
    except OSError:
        pass
    try:
        _, context = config.list_kube_config_contexts()
    except (config.ConfigException, OSError):
        return "default"
    return str(((context or {}).get("context") or {}).get("namespace") or "default")


# The plural (the cache's kind) of each built-in kind the serving children use.
PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "NetworkPolicy": "networkpolicies",
}


# Pods are looked up by the Job they belong to.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
KUEUE_JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"  # on the Workload Kueue makes for a Job


class Kube:
    def __init__(self, api: client.ApiClient, fence: Callable[[], bool] | None = None) -> None:
        self._fence = fence
        self.cache = Cache(index={"pods": JOB_NAME_LABEL, "workloads": KUEUE_JOB_UID_LABEL})
        self._ledgers: dict[str, Body | None] = {}
        self._applied = Applied()  # what we last applied to each child
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.autoscaling = client.AutoscalingV2Api(api)
        self.policy = client.PolicyV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        # Server-side apply and delete, by kind, for the serving children.
        self._patch = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "HorizontalPodAutoscaler": self.autoscaling.patch_namespaced_horizontal_pod_autoscaler,
            "PodDisruptionBudget": self.policy.patch_namespaced_pod_disruption_budget,
            "NetworkPolicy": self.networking.patch_namespaced_network_policy,
        }
        self._get = {
            "Deployment": self.apps.read_namespaced_deployment,
            "Service": self.core.read_namespaced_service,
            "HorizontalPodAutoscaler": self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
            "PodDisruptionBudget": self.policy.read_namespaced_pod_disruption_budget,
            "NetworkPolicy": self.networking.read_namespaced_network_policy,
        }
        self._delete = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "HorizontalPodAutoscaler": self.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            "PodDisruptionBudget": self.policy.delete_namespaced_pod_disruption_budget,
            "NetworkPolicy": self.networking.delete_namespaced_network_policy,
        }

    @classmethod
    def connect(cls, fence: Callable[[], bool] | None = None) -> Kube:
        """In a pod: its ServiceAccount; elsewhere: KUBECONFIG or ~/.kube/config. `fence`:
        asked before every write (the leader election's `leading`)."""
        return cls(cls.api_client(), fence)

    @staticmethod
    def api_client() -> client.ApiClient:
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        # One kept-alive connection per handler thread: a smaller pool (the client's default
        # is 5 per core) drops connections under load, and each new one is a TLS handshake.
        configuration.connection_pool_maxsize = POOL_SIZE
        return clock.follow_server_time(client.ApiClient(configuration))

    def _may_write(self) -> None:
        """A replica that is not (or no longer) the leader writes nothing, at once."""
        if self._fence is not None and not self._fence():
            raise NotLeader("this replica does not hold the leader Lease")

    def seen(self, kind: str, event: Mapping[str, object]) -> bool:
        """Feed one watch event ({"type", "object"}) into the cache; returns whether it is
        news to react to (False for the echo of our own latest write)."""
        body = cast(Body, event["object"])
        meta = body["metadata"]
        if event["type"] == "DELETED":
            version = meta.get("resourceVersion", "")
            self.cache.forget(kind, meta.get("namespace") or "", meta["name"], version)
            self._applied.forget((kind, meta.get("namespace") or "", meta["name"]))
            return True
        echo = self.cache.is_echo(kind, body)
        self.cache.observe(kind, body)
        return not echo

    def _read(self, kind: str, namespace: str, name: str, fresh: bool, get: Any) -> Body | None:
        if not fresh:
            cached = self.cache.get(kind, namespace, name)
            if cached is not None:
                return cached
        try:
            body = _json(get())
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        self.cache.observe(kind, body)
        return body

    def _wrote(self, kind: str, response: Any, *, ours: bool = True) -> Body:
        """Store a write's answer; `ours`: its watch event is an echo, to be ignored."""
        body = _json(response)
        self.cache.observe(kind, body, ours=ours)
        return body

    # --- our custom resources -------------------------------------------------

    def get_custom(
        self, plural: str, namespace: str, name: str, *, fresh: bool = False
    ) -> Body | None:
        """The cached object (or, with `fresh` or on a miss, the server's); None for an empty
        name (a GET of no name is the API's LIST: its answer is no object)."""
        if not name:
            return None

        def get() -> Any:
            return self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name, **CALL
            )

        return self._read(plural, namespace, name, fresh or RETRYING.get(), get)

    def list_custom(self, plural: str, namespace: str, *, fresh: bool = False) -> list[Body]:
        """Every object of a kind in a namespace: the cache's (filled by one LIST the first
        time a namespace is asked for), or with `fresh` the server's (which refills it)."""
        if not fresh:
            cached = self.cache.items(plural, namespace)
            if cached is not None:
                return cached
        listed = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, **CALL
        )
        items: list[Body] = _json(listed)["items"]
        self.cache.fill(plural, namespace, items)
        return items

    def create_custom(self, plural: str, body: Body) -> Body:
        """Create one of our objects. Not an echo to ignore: the controller of that kind
        (another than the creator's) must take the new object over. Raises AlreadyExists, or
        Refused when the server rejects the object itself."""
        self._may_write()
        try:
            return self._wrote(
                plural,
                ours=False,
                response=self.custom.create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    body["metadata"]["namespace"],
                    plural,
                    body,
                    field_manager=FIELD_MANAGER,
                    **CALL,
                ),
            )
        except ApiException as err:
            if err.status == 409:
                raise AlreadyExists(body["metadata"]["name"]) from err
            if err.status in (400, 422):
                raise Refused(message_of(err)) from err
            raise

    def patch_custom(self, plural: str, namespace: str, name: str, patch: Body) -> Body:
        """Merge-patch an object's metadata (finalizers); never its spec."""
        self._may_write()
        response = self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
            **CALL,
        )
        return self._wrote(plural, response)

    def delete_custom(self, plural: str, namespace: str, name: str) -> None:
        """Delete one of our objects if present; its children go with it (background GC)."""
        self._may_write()
        with unless(404):
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name,
                propagation_policy="Background", **CALL,
            )  # fmt: skip
        self.cache.forget(plural, namespace, name)

    def patch_status(self, plural: str, body: Body, status: Body) -> None:
        """Merge-patch the status subresource of `body`, computed from that very version of
        it: the patch carries its resourceVersion, so a write based on a stale read (another
        replica's, or one a newer change overtook) is refused with 409 instead of
        overwriting newer state. Then the object is read anew into the cache and the
        caller's reconcile fails and is retried. Never a user's spec."""
        self._may_write()
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        try:
            response = self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
                **CALL,
            )
        except ApiException as err:
            if err.status == 409:
                # Read it anew, so the retry computes from the server's state. (Not a
                # forget: the cache must still list the object while it is re-read.)
                self.get_custom(plural, namespace, name, fresh=True)
                raise Conflict(f"{plural} {namespace}/{name} changed since it was read") from err
            raise
        self._wrote(plural, response)

    # --- the Model version ledger (builders/versions.py) ----------------------------

    def get_ledger(self, namespace: str, *, fresh: bool = False) -> Body | None:
        """The namespace's ledger ConfigMap, as we last wrote or read it (only this operator
        writes it; a stale copy only costs a 409 and a fresh read)."""
        if not fresh and namespace in self._ledgers:
            return self._ledgers[namespace]
        try:
            body = _json(self.core.read_namespaced_config_map(LEDGER, namespace, **CALL))
        except ApiException as err:
            if err.status != 404:
                raise
            body = None
        self._ledgers[namespace] = body
        return body

    def write_ledger(self, body: Body) -> Body:
        """Create the ledger, or replace it if unchanged since read (its resourceVersion);
        Conflict if someone wrote it meanwhile."""
        self._may_write()
        namespace = body["metadata"]["namespace"]
        try:
            if body["metadata"].get("resourceVersion"):
                response = self.core.replace_namespaced_config_map(
                    LEDGER, namespace, body, field_manager=FIELD_MANAGER, **CALL
                )
            else:
                response = self.core.create_namespaced_config_map(
                    namespace, body, field_manager=FIELD_MANAGER, **CALL
                )
        except ApiException as err:
            if err.status == 409:
                self._ledgers.pop(namespace, None)
                raise Conflict(f"the version ledger of {namespace} changed") from err
            raise
        written = _json(response)
        self._ledgers[namespace] = written
        return written

    # --- built-in kinds ----------------------------------------------------------

    def get_job(self, namespace: str, name: str, *, fresh: bool = False) -> Body | None:
        def get() -> Any:
            return self.batch.read_namespaced_job(name, namespace, **CALL)

        return self._read("jobs", namespace, name, fresh, get)

    def create_job(self, body: Body) -> Body:
        self._may_write()
        try:
            return self._wrote(
                "jobs",
                self.batch.create_namespaced_job(
                    body["metadata"]["namespace"],
                    body,
                    field_manager=FIELD_MANAGER,
                    **CALL,
                ),
            )
        except ApiException as err:
            if err.status == 409:
                raise AlreadyExists(body["metadata"]["name"]) from err
            raise

    def patch_job(self, namespace: str, name: str, patch: Body) -> Body:
        self._may_write()
        return self._wrote(
            "jobs",
            self.batch.patch_namespaced_job(
                name,
                namespace,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
                **CALL,
            ),
        )

    def ensure_service(self, body: Body) -> None:
        """Create the Service unless one of that name exists: the watch's cache holds ours,
        so a run's passes do not POST it again and again."""
        meta = body["metadata"]
        if self.cache.get("services", meta["namespace"], meta["name"]) is not None:
            return
        self._may_write()
        with unless(409):
            created = self.core.create_namespaced_service(
                meta["namespace"], body, field_manager=FIELD_MANAGER, **CALL
            )
            self._wrote("services", created)

    def pods_of_job(self, namespace: str, job: str, *, fresh: bool = False) -> list[Body]:
        """The Job's pods: the cache's (fed by the pod watch), or with `fresh` the server's."""
        if not fresh:
            return self.cache.labelled("pods", namespace, job)
        listed = self.core.list_namespaced_pod(
            namespace, label_selector=f"{JOB_NAME_LABEL}={job}", **CALL
        )
        items: list[Body] = _json(listed)["items"]
        for pod in items:
            self.cache.observe("pods", pod)
        return items

    def release_pods(self, namespace: str, job: str) -> None:
        """Forget a finished run's pods: nothing reads them again (their report and exit
        codes are in the TrainingJob's status), and at thousands of runs they would be most
        of the cache. An event about one later brings it back, as any pod."""
        for pod in self.cache.labelled("pods", namespace, job):
            self.cache.forget("pods", namespace, pod["metadata"]["name"])

    def workload_of(self, namespace: str, job_uid: str) -> Body | None:
        """Kueue's Workload of a Job, as the watch last showed it (None before it comes)."""
        found = self.cache.labelled("workloads", namespace, job_uid)
        return found[0] if found else None

    def list_pods(self, namespace: str, selector: str) -> list[Body]:
        """Pods matching a label selector, from the server (for what is not watched)."""
        listed = self.core.list_namespaced_pod(namespace, label_selector=selector, **CALL)
        items: list[Body] = _json(listed)["items"]
        return items

    def get_deployment(self, namespace: str, name: str, selector: str) -> Body | None:
        """One of the Deployments matching `selector` (ours, which the watch feeds into the
        cache): the first time a namespace is asked for, one LIST fills the cache with them,
        so that afterwards a Deployment not in the cache does not exist (no GET for it)."""
        if self.cache.items("deployments", namespace) is None:
            listed = self.apps.list_namespaced_deployment(
                namespace, label_selector=selector, **CALL
            )
            self.cache.fill("deployments", namespace, _json(listed)["items"])
        return self.cache.get("deployments", namespace, name)

    def apply(self, body: Body) -> None:
        """Server-side apply: sets the fields we own, puts them back if edited, leaves the rest.
        Skipped when it would change nothing (applied.py)."""
        self._may_write()
        meta = body["metadata"]
        plural = PLURALS[body["kind"]]
        key = (plural, meta["namespace"], meta["name"])
        if self._applied.unchanged(key, body, self.cache.get(*key)):
            return
        response = self._patch[body["kind"]](
            meta["name"],
            meta["namespace"],
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
            **CALL,
        )
        self._applied.record(key, body, self._wrote(plural, response))

    def child(self, kind: str, namespace: str, name: str, *, cached: bool = False) -> Body | None:
        """A serving child by name: the cache's copy (ours are watched), else, unless only
        the `cached` one is asked for, the server's. The server's is not cached: a name can be
        held by someone else's object, whose changes no watch of ours would follow."""
        found = self.cache.get(PLURALS[kind], namespace, name)
        if found is not None or cached:
            return found
        with unless(404):
            body: Body = _json(self._get[kind](name, namespace, **CALL))
            return body
        return None

    def delete(self, kind: str, namespace: str, name: str, uid: str) -> None:
        """Delete the object of that name if it is still the one with this `uid` (a
        precondition: one re-created meanwhile, perhaps by someone else, is left alone)."""
        self._may_write()
        plural = PLURALS[kind]
        only = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            self._delete[kind](name, namespace, body=only, **CALL)
        except ApiException as err:
            if err.status not in (404, 409):
                raise
        self.cache.forget(plural, namespace, name)
        self._applied.forget((plural, namespace, name))
