"""Leader election with a Lease (coordination.k8s.io/v1), as client-go's leaderelection does.

Several replicas run; one holds the Lease and reconciles, the others wait. The holder renews
the Lease every `retry` seconds. A standby takes the Lease over once it has seen it unchanged
for `lease` seconds (by its own clock, so clocks need not agree), with a compare-and-swap on
the Lease's resourceVersion, so two standbys never both win. A holder that could not renew
for `renew_deadline` seconds (< `lease`) counts itself as no longer leading at once:
`leading()` turns False, every write of ours is refused (kube/client.py asks it), and the
process stops; its successor can only take over after `lease` seconds, when this one has
long stopped writing.

Why not kopf's peering: it pauses by priority (equal priorities freeze every replica), its
keep-alive is 60 s, it needs a CRD of its own, and it is not a Lease that other tools read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

LEASE_SECONDS = 10.0
RENEW_DEADLINE_SECONDS = 7.0
RETRY_SECONDS = 2.0
TIMEOUT = (2.0, 4.0)  # each Lease call: less than a renew period, so a hung one cannot block


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElection:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease: float = LEASE_SECONDS,
        renew_deadline: float = RENEW_DEADLINE_SECONDS,
        retry: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if renew_deadline >= lease:
            raise ValueError("a holder must stop leading before a standby may start")
        self._api = api
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease, self.renew_deadline, self.retry = lease, renew_deadline, retry
        self._clock = clock
        self._renewed_at: float | None = None  # our clock, at our last successful renew
        self._observed: tuple[str, float] | None = None  # (holder's record, when it changed)

    def leading(self) -> bool:
        """Whether we hold the Lease now, counted from our last renew (conservatively)."""
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.renew_deadline

    @property
    def longest_round(self) -> float:
        """How long one renew round can last: the wait, a read and a replace at their timeouts."""
        return self.retry + 2 * sum(TIMEOUT)

    def acquire(self, stop: threading.Event) -> bool:
        """Block until we hold the Lease (True), or `stop` is set (False)."""
        while not stop.is_set():
            try:
                if self._try(acquiring=True):
                    log.info("leader election: %s holds Lease %s/%s",
                             self.identity, self.namespace, self.name)  # fmt: skip
                    return True
            except Exception as err:  # the API server being away is normal here: try again
                log.warning("leader election: cannot take the Lease yet (%s)", _short(err))
            stop.wait(self.retry)
        return False

    def keep(self, stop: threading.Event, lost: Callable[[], None]) -> None:
        """Renew every `retry` seconds until `stop`; call `lost` once leading() turns False."""
        while not stop.wait(self.retry):
            try:
                self._try(acquiring=False)
            except Exception as err:
                log.warning("leader election: renewing the Lease failed (%s)", _short(err))
            if not self.leading():
                log.error("leader election: Lease %s/%s lost; stopping", self.namespace, self.name)
                lost()
                return

    def release(self) -> None:
        """Give the Lease up (on a clean shutdown), so a standby takes over at once.

        Even past our renew deadline: if the Lease still names us, no one took it over, and
        the compare-and-swap below cannot undo a successor's write.
        """
        if self._renewed_at is None:
            return  # never held, or released already
        self._renewed_at = None  # no more writes from here on
        try:
            lease = self._read()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"] |= {"holderIdentity": None, "leaseDurationSeconds": 1}
            self._replace(lease)
            log.info("leader election: released Lease %s/%s", self.namespace, self.name)
        except Exception as err:
            log.warning("leader election: releasing the Lease failed (%s)", _short(err))

    # --- one round --------------------------------------------------------------------

    def _try(self, *, acquiring: bool) -> bool:
        started = self._clock()
        lease = self._read()
        if lease is None:
            self._create()
            self._renewed_at = started
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = f"{holder}/{spec.get('renewTime')}/{lease['metadata']['resourceVersion']}"
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, started)
        if holder == self.identity:
            if not acquiring and self._renewed_at is None:
                return False  # released: never take it back by renewing
            spec["renewTime"] = _now()
        else:
            duration = float(spec.get("leaseDurationSeconds") or self.lease)
            if holder and started - self._observed[1] <= duration:
                return False  # someone holds it and renews it
            spec |= {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease),
                "acquireTime": _now(),
                "renewTime": _now(),
                "leaseTransitions": int(spec.get("leaseTransitions") or 0) + 1,
            }
        lease["spec"] = spec
        self._replace(lease)  # a compare-and-swap: 409 if someone else wrote it first
        self._renewed_at = started
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            lease = self.coordination.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=TIMEOUT
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        body: dict[str, Any] = self._api.sanitize_for_serialization(lease)
        return body

    def _create(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": int(self.lease),
                "acquireTime": _now(),
                "renewTime": _now(),
                "leaseTransitions": 0,
            },
        }
        self.coordination.create_namespaced_lease(self.namespace, body, _request_timeout=TIMEOUT)

    def _replace(self, lease: dict[str, Any]) -> None:
        self.coordination.replace_namespaced_lease(
            self.name, self.namespace, lease, _request_timeout=TIMEOUT
        )


def _short(err: Exception) -> str:
    status = getattr(err, "status", None)
    return f"{status} {getattr(err, 'reason', '')}" if status else f"{type(err).__name__}: {err}"
