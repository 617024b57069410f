"""The proxy in front of a serving runtime: passes every request through unchanged and, for
V2 inference calls, bins the inputs and outputs against the reference profile.

Two listeners: `--listen` (the pod's serving port, what the Service sends traffic to) and
`--admin` (/metrics for Prometheus, /drift for the operator, /healthz).

What a caller sends never sets the monitor's memory: a body or answer over the binning cap,
or of unknown size, streams through; a body over `max_request_bytes` is refused (413); only
bodies and answers under
`max_binned_bytes` are kept, and read in a worker thread after the answer has gone, within
a budget of pending bytes; one request's rows in the window are capped. Latency is the
runtime's own: from the request's last byte to the answer's first, so a slow upload is not
counted against the model. What is not binned is counted by why
(`mlops_monitor_unparsed_requests_total{reason}`). The threat model: docs/serving.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, hdrs, web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from mlops_operator.api.modeldeployment import Monitoring
from mlops_operator.api.reference import ReferenceProfile
from mlops_operator.monitoring import v2
from mlops_operator.monitoring.window import LATENCY_BOUNDS, MAX_WINDOW_SECONDS, Window

log = logging.getLogger("mlops_operator.monitor")

# What a proxy must not forward (RFC 9110 section 7.6.1), and what aiohttp sets itself.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION,
        hdrs.KEEP_ALIVE,
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.CONTENT_LENGTH,
        hdrs.HOST,
    )
)
# The defaults are the ModelDeployment's (spec.monitoring), which the operator passes.
_FIELDS = Monitoring.model_fields
# A body over this is refused (413) before it reaches the runtime.
DEFAULT_MAX_REQUEST_BYTES: int = _FIELDS["max_request_bytes"].default
# A body (or an answer) over this passes through unbinned (`too-large`): only bodies under
# it are kept in memory, to be read once the answer is on its way.
DEFAULT_MAX_BINNED_BYTES: int = _FIELDS["max_binned_bytes"].default
# One request's rows in the window, at most (evenly spaced): no single call outweighs many.
DEFAULT_MAX_ROWS_PER_REQUEST: int = _FIELDS["max_rows_per_request"].default
# Kept bodies waiting to be binned, at most this many times the binning cap: beyond, a
# request passes through unbinned (`busy`) instead of the monitor's memory growing.
PENDING_BODIES = 2
CHUNK = 64 * 1024
# Prometheus series of per-bin counts one pod exports at most (features in profile order).
MAX_BIN_SERIES = 2000


@dataclass(frozen=True)
class Settings:
    upstream: str  # http://127.0.0.1:PORT, the runtime
    reference: ReferenceProfile | None  # None: requests, errors and latency only
    model: str = ""
    version: str = ""
    deployment: str = ""  # the ModelDeployment, named in every /drift answer
    pod: str = ""  # this pod, named in every /drift answer
    upstream_timeout: float = 60.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_binned_bytes: int = DEFAULT_MAX_BINNED_BYTES
    max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST


class _TooLarge(Exception):
    """The request body went over max_request_bytes while it streamed."""


class _Upload:
    """A request body streamed to the runtime as it arrives: counted against the hard cap,
    kept only while under the binning cap, and timed (its last byte)."""

    def __init__(self, source: web.Request, limit: int, keep: int) -> None:
        self._source, self._limit, self._keep = source, limit, keep
        self.size = 0
        self.kept: bytes | bytearray | None = bytearray() if keep else None
        self.too_large = False
        self.finished: float | None = None

    def whole(self, body: bytes) -> bytes:
        """The body read at once (small, its size known)."""
        self.size = len(body)
        self.kept = body if self._keep else None
        self.finished = time.monotonic()
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._source.content.iter_chunked(CHUNK):
            self.size += len(chunk)
            if self.size > self._limit:
                self.too_large = True
                raise _TooLarge
            if self.kept is not None:
                if self.size <= self._keep:
                    self.kept += chunk
                else:
                    self.kept = None
            yield chunk
        self.finished = time.monotonic()


class Metrics:
    """The monitor's Prometheus series (docs/metrics.md, "The serving monitor")."""

    def __init__(self, reference: ReferenceProfile | None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "mlops_monitor_requests", "Requests passed to the runtime, by HTTP status.",
            ["code"], registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "mlops_monitor_request_duration_seconds",
            "The runtime's time: from the request's last byte to the answer's first.",
            buckets=LATENCY_BOUNDS, registry=r,
        )  # fmt: skip
        self.refused = Counter(
            "mlops_monitor_refused_requests",
            "Requests the monitor answered itself, by HTTP status (413: body over"
            " maxRequestBytes; 408: body not received in time).",
            ["code"], registry=r,
        )  # fmt: skip
        self.unparsed = Counter(
            "mlops_monitor_unparsed_requests",
            "Inference requests passed through without being binned, by why.",
            ["reason"], registry=r,
        )  # fmt: skip
        self.bins = Counter(
            "mlops_monitor_feature_bin",
            "Input values per feature and reference bin (`missing`: no bin).",
            ["feature", "bin"], registry=r,
        )  # fmt: skip
        self.predictions = Counter(
            "mlops_monitor_prediction_bin",
            "Predictions per reference bin (`missing`: no bin).",
            ["bin"], registry=r,
        )  # fmt: skip
        for reason in v2.REASONS:
            self.unparsed.labels(reason)
        for code in ("413", "408"):
            self.refused.labels(code)
        # Per-bin series of the features in the profile's order, up to MAX_BIN_SERIES (a
        # profile may have 1,000 features of 100 bins): the rest are in /drift only.
        self._features: list[list[Any] | None] = []
        budget = MAX_BIN_SERIES
        for f in reference.features if reference else []:
            wanted = len(f.counts) + 1
            if wanted > budget:
                budget = 0
                self._features.append(None)
                continue
            budget -= wanted
            self._features.append(
                [self.bins.labels(f.name, str(i)) for i in range(len(f.counts))]
                + [self.bins.labels(f.name, "missing")]
            )
        p = reference.predictions if reference else None
        self._predictions = (
            [self.predictions.labels(str(i)) for i in range(len(p.counts))]
            + [self.predictions.labels("missing")]
            if p
            else []
        )

    def count_bins(self, binned: list[list[int | None]]) -> None:
        # Children looked up once above: a request costs one increment per distinct bin.
        for children, bins in zip([*self._features, self._predictions], binned, strict=False):
            if not children:  # over the series budget, or no predictions
                continue
            tally: dict[int, int] = {}
            for b in bins:
                key = len(children) - 1 if b is None else b
                tally[key] = tally.get(key, 0) + 1
            for key, n in tally.items():
                children[key].inc(n)


class Monitor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.window = Window(settings.reference)
        self.metrics = Metrics(settings.reference)
        self._session: ClientSession | None = None
        # One thread reads the kept bodies (JSON parsing), off the event loop.
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="bin")
        self._pending = 0  # bytes of kept bodies not yet binned
        self._binning: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = ClientSession(
            connector=TCPConnector(limit=0),
            timeout=ClientTimeout(total=self.settings.upstream_timeout, sock_connect=5),
            # Pass bodies on as they came, compressed or not.
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session:
            await self._session.close()
        self._reader.shutdown(wait=False, cancel_futures=True)

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """Pass the request to the runtime and its answer back (streamed when large or of
        unknown size); time the runtime alone (from the request's last byte to the answer's
        first); count and bin afterwards."""
        assert self._session is not None
        settings = self.settings
        started = time.monotonic()
        infer = request.method == "POST" and v2.infer_path(request.path)
        length = request.content_length
        if length is not None and length > settings.max_request_bytes:
            return self._refused(413, "request body too large")
        binned = infer and settings.reference is not None
        keep = settings.max_binned_bytes if binned else 0
        upload = _Upload(request, settings.max_request_bytes, keep)
        payload: bytes | AsyncIterator[bytes] | None = None
        if request.body_exists and length is not None and length <= settings.max_binned_bytes:
            try:  # small, and its size known: read whole, as most inference calls are
                async with asyncio.timeout(settings.upstream_timeout):
                    payload = upload.whole(await request.read())
            except TimeoutError:
                return self._refused(408, "request body not received in time")
        elif request.body_exists:
            payload = upload.chunks()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        if length is not None:
            headers[hdrs.CONTENT_LENGTH] = str(length)
        response: web.StreamResponse | None = None
        answer: bytes | bytearray | None = None
        try:
            async with self._session.request(
                request.method,
                settings.upstream + request.rel_url.raw_path_qs,
                headers=headers,
                data=payload,
                allow_redirects=False,
            ) as upstream:
                seconds = time.monotonic() - (upload.finished or started)
                passed = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
                size = upstream.content_length
                if size is not None and size <= settings.max_binned_bytes:
                    answer = await upstream.read()
                    response = web.Response(status=upstream.status, body=answer, headers=passed)
                else:  # large or of unknown size: streamed back, kept only under the cap
                    response = web.StreamResponse(status=upstream.status, headers=passed)
                    if size is not None:
                        response.content_length = size
                    await response.prepare(request)
                    answer = bytearray()
                    async for chunk in upstream.content.iter_chunked(CHUNK):
                        if (
                            answer is not None
                            and len(answer) + len(chunk) <= settings.max_binned_bytes
                        ):
                            answer += chunk
                        else:
                            answer = None  # too large to bin: passed on, not kept
                        await response.write(chunk)
                    await response.write_eof()
        except (ClientError, TimeoutError, _TooLarge) as err:
            if response is not None and response.prepared:  # the caller's connection ends
                log.warning(
                    "runtime's answer to %s %s broke off: %s", request.method, request.path, err
                )
                self._count(infer, 502, time.monotonic() - (upload.finished or started))
                raise
            if upload.too_large:
                return self._refused(413, "request body too large")
            if upload.finished is None and request.body_exists:
                return self._refused(408, "request body not received in time")
            log.warning("runtime did not answer %s %s: %s", request.method, request.path, err)
            seconds = time.monotonic() - (upload.finished or started)
            self._count(infer, 502, seconds)
            return web.Response(status=502, text=f"runtime did not answer: {err}\n")
        now = time.time()
        self._count(infer, response.status, seconds, now)
        if infer and response.status >= 300:  # what the runtime refused is not what it served
            self._unbinned(v2.REJECTED, now)
        elif binned:
            self._bin_later(upload.kept, answer, now)
        return response

    def _refused(self, status: int, why: str) -> web.Response:
        """Refused by the monitor itself: never reached the runtime, so not the runtime's
        error, latency or traffic; counted apart."""
        self.metrics.refused.labels(str(status)).inc()
        return web.Response(status=status, text=f"{why}\n")

    def _count(self, infer: bool, status: int, seconds: float, now: float | None = None) -> None:
        self.metrics.requests.labels(str(status)).inc()
        self.metrics.latency.observe(seconds)
        if infer:
            self.window.record_request(seconds=seconds, error=status >= 500, now=now or time.time())

    def _unbinned(self, reason: str, now: float) -> None:
        self.window.record_unparsed(now)
        self.metrics.unparsed.labels(reason).inc()

    def _bin_later(
        self, body: bytes | bytearray | None, answer: bytes | bytearray | None, now: float
    ) -> None:
        """Read the request's rows (and the answer's predictions) in a worker thread, after
        the answer has gone: within the binning cap and the pending budget, else counted."""
        if body is None or answer is None:
            self._unbinned(v2.TOO_LARGE, now)
            return
        size = len(body) + len(answer)
        if self._pending + size > PENDING_BODIES * 2 * self.settings.max_binned_bytes:
            self._unbinned(v2.BUSY, now)
            return
        self._pending += size
        task = asyncio.create_task(self._bin(bytes(body), bytes(answer), now, size))
        self._binning.add(task)
        task.add_done_callback(self._binning.discard)

    async def _bin(self, body: bytes, answer: bytes, now: float, size: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            read = await loop.run_in_executor(
                self._reader, read_bodies, body, answer, self.window.names
            )
        finally:
            self._pending -= size
        if isinstance(read, str):
            self._unbinned(read, now)
            return
        columns, predictions = at_most(*read, self.settings.max_rows_per_request)
        self.metrics.count_bins(self.window.record_rows(columns, predictions, now))

    async def drift(self, request: web.Request) -> web.Response:
        try:
            seconds = int(request.query.get("window", "600"))
        except ValueError:
            raise web.HTTPBadRequest(text="window must be a number of seconds\n") from None
        summary = self.window.summary(seconds, time.time())
        summary |= {
            "modelDeployment": self.settings.deployment,
            "pod": self.settings.pod,
            "model": self.settings.model,
            "version": self.settings.version,
            "referenceRows": self.settings.reference.rows if self.settings.reference else 0,
            "maxWindowSeconds": MAX_WINDOW_SECONDS,
        }
        return web.json_response(summary)

    async def metrics_page(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )


def applications(monitor: Monitor) -> tuple[web.Application, web.Application]:
    """The serving listener's app (everything proxied) and the admin listener's."""
    serving = web.Application(client_max_size=monitor.settings.max_request_bytes)
    serving.router.add_route("*", "/{tail:.*}", monitor.proxy)

    admin = web.Application()
    admin.router.add_get("/drift", monitor.drift)
    admin.router.add_get("/metrics", monitor.metrics_page)
    admin.router.add_get("/healthz", _ok)
    return serving, admin


def read_bodies(
    body: bytes, answer: bytes, names: list[str]
) -> tuple[list[list[Any]], list[Any] | None] | str:
    """A request's columns and its answer's predictions; or why they could not be read.
    In the reader thread: nothing here touches the window."""
    try:
        columns = v2.request_columns(body, names)
    except v2.Unreadable as err:
        return err.reason
    except Exception:  # deeply nested JSON (RecursionError) and the like: never fatal
        return v2.NOT_JSON
    rows = len(columns[0]) if columns else 0
    return columns, v2.response_predictions(answer, rows)


def at_most(
    columns: list[list[Any]], predictions: list[Any] | None, cap: int
) -> tuple[list[list[Any]], list[Any] | None]:
    """At most `cap` rows, evenly spaced through the request."""
    rows = len(columns[0]) if columns else 0
    if rows <= cap:
        return columns, predictions
    picked = [i * rows // cap for i in range(cap)]
    return (
        [[column[i] for i in picked] for column in columns],
        [predictions[i] for i in picked] if predictions is not None else None,
    )


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def serve(settings: Settings, listen: tuple[str, int], admin: tuple[str, int]) -> None:
    """Run both listeners until cancelled."""
    monitor = Monitor(settings)
    await monitor.start()
    runners = []
    try:
        for app, (host, port) in zip(applications(monitor), (listen, admin), strict=True):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            runners.append(runner)
        log.info("monitoring %s on %s:%d (admin %s:%d)", settings.upstream, *listen, *admin)
        await asyncio.Event().wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        await monitor.close()
