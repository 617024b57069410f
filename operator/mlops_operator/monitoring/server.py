"""The proxy in front of a serving runtime: passes every request through unchanged and, for
V2 inference calls, bins the inputs and outputs against the reference profile.

Two listeners: `--listen` (the pod's serving port, what the Service sends traffic to) and
`--admin` (/metrics for Prometheus, /drift for the operator, /healthz). The request is
forwarded before anything is parsed, and the counting runs after the answer has been
handed back to aiohttp, so a body the monitor cannot read costs the caller nothing and is
only counted (`mlops_monitor_unparsed_requests_total{reason}`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, hdrs, web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

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
# The largest request body passed through (aiohttp's default is 1 MiB, too small for batches).
MAX_BODY = 256 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    upstream: str  # http://127.0.0.1:PORT, the runtime
    reference: ReferenceProfile | None  # None: requests, errors and latency only
    model: str = ""
    version: str = ""
    upstream_timeout: float = 60.0


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
            "Time from the request's arrival to the runtime's full answer.",
            buckets=LATENCY_BOUNDS, registry=r,
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
        self._features = [
            [self.bins.labels(f.name, str(i)) for i in range(len(f.counts))]
            + [self.bins.labels(f.name, "missing")]
            for f in (reference.features if reference else [])
        ]
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

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        started = time.monotonic()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            async with self._session.request(
                request.method,
                self.settings.upstream + request.rel_url.raw_path_qs,
                headers=headers,
                data=body,
                allow_redirects=False,
            ) as upstream:
                answer = await upstream.read()
                response = web.Response(
                    status=upstream.status,
                    body=answer,
                    headers={
                        k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                    },
                )
        except (ClientError, TimeoutError) as err:
            log.warning("runtime did not answer %s %s: %s", request.method, request.path, err)
            answer = b""
            response = web.Response(status=502, text=f"runtime did not answer: {err}\n")
        elapsed = time.monotonic() - started
        error = response.status >= 500
        now = time.time()
        self.metrics.requests.labels(str(response.status)).inc()
        self.metrics.latency.observe(elapsed)
        if request.method == "POST" and v2.infer_path(request.path):
            self.window.record_request(seconds=elapsed, error=error, now=now)
            if response.status >= 300:  # what the runtime refused is not what it served
                self.window.record_unparsed(now)
                self.metrics.unparsed.labels(v2.REJECTED).inc()
            elif self.settings.reference is not None:  # else: nothing to bin against
                # After the answer is on its way: the caller never waits for the counting.
                asyncio.get_running_loop().call_soon(self._observe, body, answer, now)
        return response

    def _observe(self, body: bytes, answer: bytes, now: float) -> None:
        try:
            columns = v2.request_columns(body, self.window.names)
        except v2.Unreadable as err:
            self.window.record_unparsed(now)
            self.metrics.unparsed.labels(err.reason).inc()
            return
        except Exception:  # never let a body take the monitor down
            log.exception("could not read an inference request")
            self.window.record_unparsed(now)
            self.metrics.unparsed.labels(v2.NOT_JSON).inc()
            return
        rows = len(columns[0]) if columns else 0
        predictions = v2.response_predictions(answer, rows)
        self.metrics.count_bins(self.window.record_rows(columns, predictions, now))

    async def drift(self, request: web.Request) -> web.Response:
        try:
            seconds = int(request.query.get("window", "600"))
        except ValueError:
            raise web.HTTPBadRequest(text="window must be a number of seconds\n") from None
        summary = self.window.summary(seconds, time.time())
        summary |= {
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
    serving = web.Application(client_max_size=MAX_BODY)
    serving.router.add_route("*", "/{tail:.*}", monitor.proxy)

    admin = web.Application()
    admin.router.add_get("/drift", monitor.drift)
    admin.router.add_get("/metrics", monitor.metrics_page)
    admin.router.add_get("/healthz", _ok)
    return serving, admin


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
