"""Sending (SPEC §4): an asyncio loop in a background thread with one aiohttp session.

The database stays on the caller's thread (Django's ORM is synchronous); this thread
only signs and sends. Jobs go in with `submit`, outcomes come back on `outcomes`.

aiohttp, not httpx: at 100 requests in flight to one application httpx took 0.84 ms of CPU
per request (1.1 ms while httpcore looked for `sniffio` on every request), aiohttp 0.09 ms
(bench/http_clients.py, BENCHMARKS.md). The dispatcher's CPU per test is what bounds a
worker's throughput.
"""

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from experiments_app import webhooks

TARGET_CACHE_SECONDS = 30.0


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
        self.session = None
        self.targets = {}
        self.running = set()

    def start(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.open(), self.loop).result()
        return self

    async def open(self):
        # The cap on requests in flight: jobs may be queued beyond it, never sent beyond it.
        self.slots = asyncio.Semaphore(self.max_connections)
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, use_dns_cache=False)
        # No default timeout (each attempt has its own, below); no cookies kept between tests.
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None), cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
        )

    def submit(self, *jobs):
        """Hand `jobs` to the loop: one wake-up of the loop for all of them (a wake-up and a
        concurrent Future per job were ~4% of a worker's CPU at 100 requests in flight)."""
        self.loop.call_soon_threadsafe(self.start_jobs, jobs)

    def start_jobs(self, jobs):
        for job in jobs:
            task = self.loop.create_task(self.deliver(job))
            self.running.add(task)  # the loop keeps only weak references to its tasks
            task.add_done_callback(self.running.discard)

    def close(self):
        async def shutdown():
            if self.session is not None:
                await self.session.close()

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
            outcome = await self.attempt(job)
        # Reported once the slot is free, so the dispatcher may start the next job at once.
        self.outcomes.put(outcome)

    async def attempt(self, job):
        started_at = datetime.now(UTC)
        started = time.perf_counter()
        outcome = Outcome(job=job, started_at=started_at, duration_ms=0.0)
        try:
            async with asyncio.timeout(job.timeout):  # no task of its own, as wait_for makes
                await self.send(job, outcome)
        except webhooks.BlockedAddress as blocked:
            outcome.error, outcome.blocked = str(blocked), True
        except TimeoutError:
            outcome.status_code = None
            outcome.error = f"Timed out after {job.timeout:g}s."
        except aiohttp.ClientError as failure:
            outcome.error = describe_failure(failure)
        except Exception as failure:
            outcome.error = f"{type(failure).__name__}: {failure}"
        outcome.duration_ms = round((time.perf_counter() - started) * 1000, 1)
        return outcome

    async def send(self, job, outcome):
        target = await self.target(job.url)
        job.payload["timestamp"] = webhooks.iso_now()
        body = webhooks.encode(job.payload)
        headers = webhooks.signed_headers(job.secret, job.msg_id, body)
        options = webhooks.request_options(target, headers)
        request = self.session.post(
            target.url,
            data=body,
            headers=options["headers"],
            server_hostname=target.sni_hostname,  # TLS to the pinned address checks the name's certificate
            allow_redirects=False,
        )
        async with request as response:
            outcome.status_code = response.status
            outcome.retry_after = response.headers.get("retry-after")
            chunks, size = [], 0
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > self.max_body_bytes:
                    outcome.too_large = True
                    break
                chunks.append(chunk)
            outcome.body = b"".join(chunks)


def describe_failure(failure):
    """An attempt's error line for a failed request. A refused or unreachable connection keeps
    the name it has always had on the run page and in the API, whatever the HTTP client."""
    name = "ConnectError" if isinstance(failure, aiohttp.ClientConnectorError) else type(failure).__name__
    return f"{name}: {failure}" if str(failure) else f"{name}."
