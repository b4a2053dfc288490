"""Sending (SPEC §4): an asyncio loop in a background thread with a few httpx.AsyncClients.

The database stays on the caller's thread (Django's ORM is synchronous); this thread
only signs and sends. Jobs go in with `submit`, outcomes come back on `outcomes`.
"""

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from experiments_app import webhooks

TARGET_CACHE_SECONDS = 30.0
# httpcore's pool does work proportional to its open connections on every request
# (a readability check per idle connection), which made 100 keep-alive connections in
# one client CPU-bound at ~40 requests/s. Small clients side by side keep that constant.
CONNECTIONS_PER_CLIENT = 10


@dataclass
class Job:
    test_id: object
    run_id: object
    attempt: int
    url: str
    secret: object  # a secret, or the list of secrets that sign now (rotation)
    msg_id: str
    payload: dict
    timeout: float


@dataclass
class Outcome:
    job: Job
    started_at: datetime
    duration_ms: float
    status_code: int | None = None
    body: bytes | None = None
    retry_after: str | None = None
    error: str = ""
    blocked: bool = False  # refused by the SSRF guard: not worth retrying
    too_large: bool = False
    extra: dict = field(default_factory=dict)


class Sender:
    def __init__(self, max_connections, *, max_body_bytes):
        self.outcomes = queue.SimpleQueue()
        self.max_connections = max_connections
        self.max_body_bytes = max_body_bytes
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="webhook-sender", daemon=True)
        self.clients = []  # [client, free slots]
        self.targets = {}

    def start(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.open(), self.loop).result()
        return self

    async def open(self):
        # The cap on requests in flight: jobs may be queued beyond it, never sent beyond it.
        self.slots = asyncio.Semaphore(self.max_connections)
        remaining = self.max_connections
        while remaining > 0:
            size = min(CONNECTIONS_PER_CLIENT, remaining)
            limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
            client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False, timeout=None)
            self.clients.append([client, size])
            remaining -= size

    def submit(self, job):
        asyncio.run_coroutine_threadsafe(self.deliver(job), self.loop)

    def close(self):
        async def shutdown():
            for client, _ in self.clients:
                await client.aclose()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()

    async def target(self, url):
        """The checked, pinned target of `url`, resolved at most every TARGET_CACHE_SECONDS.

        Concurrent jobs share one resolution (the cached value is a future)."""
        now = time.monotonic()
        cached = self.targets.get(url)
        if cached is None or cached[0] < now or (cached[1].done() and cached[1].exception()):
            future = asyncio.ensure_future(asyncio.to_thread(webhooks.resolve_target, url))
            cached = (now + TARGET_CACHE_SECONDS, future)
            self.targets[url] = cached
        return await asyncio.shield(cached[1])

    async def deliver(self, job):
        async with self.slots:
            # The clients' capacities add up to the cap, so one always has a free slot here.
            entry = max(self.clients, key=lambda item: item[1])
            entry[1] -= 1
            try:
                outcome = await self.attempt(job, entry[0])
            finally:
                entry[1] += 1
        # Reported once the slot is free, so the dispatcher may start the next job at once.
        self.outcomes.put(outcome)

    async def attempt(self, job, client):
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        outcome = Outcome(job=job, started_at=started_at, duration_ms=0.0)
        try:
            await asyncio.wait_for(self.send(client, job, outcome), timeout=job.timeout)
        except webhooks.BlockedAddress as blocked:
            outcome.error, outcome.blocked = str(blocked), True
        except (TimeoutError, httpx.TimeoutException):
            outcome.status_code = None
            outcome.error = f"Timed out after {job.timeout:g}s."
        except httpx.HTTPError as failure:
            outcome.error = f"{type(failure).__name__}: {failure}" if str(failure) else f"{type(failure).__name__}."
        except Exception as failure:
            outcome.error = f"{type(failure).__name__}: {failure}"
        outcome.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return outcome

    async def send(self, client, job, outcome):
        target = await self.target(job.url)
        job.payload["timestamp"] = webhooks.iso_now()
        body = webhooks.encode(job.payload)
        headers = webhooks.signed_headers(job.secret, job.msg_id, body)
        options = webhooks.request_options(target, headers)
        async with client.stream("POST", target.url, content=body, **options) as response:
            outcome.status_code = response.status_code
            outcome.retry_after = response.headers.get("retry-after")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_body_bytes:
                    outcome.too_large = True
                    break
                chunks.append(chunk)
            outcome.body = b"".join(chunks)
