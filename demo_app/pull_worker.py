"""A pull worker for the experiments dashboard: copy this one file into your application.

Use pull mode when the dashboard cannot reach your application (a firewall, a laptop, a
notebook): switch the application's delivery to `pull` on its page, and run this worker
where your pipeline runs. It depends only on httpx and loops:

1. lease tests: POST {dashboard}/api/v1/applications/{id}/pending-tests/, a long poll that
   answers as soon as a test is due (or after `wait` seconds with none);
2. run each test through your pipeline with the test's `overrides` applied: that is your
   `answer(test)` function, which returns the result body;
3. post each result to {dashboard}/api/v1/tests/{testId}/result/.

Every request is signed with the application's webhook secret (Standard Webhooks, the
same signature the dashboard puts on its webhooks), so the worker needs no other
credential; a team API token with the editor role works too (`token=`).

A test whose result does not come back before its lease ends (`lease_seconds`, default
the application's timeout_seconds) is offered again with one more attempt, so a crashed
worker loses nothing. Results are posted at least once; the dashboard accepts the same
result again and refuses a different one (409), which this worker logs and skips.

    export EXPERIMENTS_WEBHOOK_SECRET=whsec_...      # the application's secret
    python pull_worker.py --dashboard https://dashboard.example --application <application id>

Without `--handler module:function` it answers with `echo`, which shows what arrived; point
`--handler` at your own function, or import `PullWorker` and pass `answer=`.

An `answer(test)` receives the `data` object of SPEC §4:

    {"testId", "repetition", "callbackUrl", "task": {"id", "externalId", "input"},
     "experiment": {"id", "name", "variant": {...}, "overrides": {step: {parameter: value}}}}

and returns the result of SPEC §5: {"output": ..., "passed"?, "metrics"?, "error"?,
"traceId"?, "steps"?: {step: {"model", "output", "latency_ms", "prompt_tokens",
"completion_tokens", "cost_usd"}}}. If it raises, the error is reported as the result.
"""

import argparse
import base64
import hashlib
import hmac
import importlib
import json
import logging
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

logger = logging.getLogger("pull_worker")

RETRYABLE = {408, 429, 500, 502, 503, 504}


def sign(secret, msg_id, timestamp, body):
    """The Standard Webhooks signature (`v1,<base64 HMAC-SHA256>`) of `body` (bytes)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret, body):
    msg_id = "msg_" + secrets.token_hex(12)
    timestamp = int(time.time())
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": sign(secret, msg_id, timestamp, body)}


def echo(test):
    """A stand-in pipeline: answers with the task's input and the overrides it would apply."""
    return {"output": {"input": test["task"]["input"], "overrides": test["experiment"]["overrides"]}}


class PullWorker:
    def __init__(
        self,
        dashboard,
        application_id,
        answer=echo,
        *,
        secret=None,
        token=None,
        concurrency=4,
        wait=30,
        lease_seconds=None,
        client=None,
    ):
        if not (secret or token):
            raise ValueError("Give the application's webhook secret or a team API token.")
        self.base = dashboard.rstrip("/")
        self.application_id = application_id
        self.answer = answer
        self.secret, self.token = secret, token
        self.concurrency = concurrency
        self.wait = wait
        self.lease_seconds = lease_seconds
        self.client = client or httpx.Client(timeout=httpx.Timeout(10.0, read=wait + 15.0))
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pull-worker")
        self.stopping = threading.Event()

    def post(self, url, payload):
        body = json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        else:
            headers.update(signed_headers(self.secret, body))
        return self.client.post(url, content=body, headers=headers)

    def lease(self):
        """The tests leased to this worker (up to `concurrency`), after a long poll of up to `wait` seconds."""
        options = {"max": self.concurrency, "wait": self.wait}
        if self.lease_seconds:
            options["lease_seconds"] = self.lease_seconds
        response = self.post(f"{self.base}/api/v1/applications/{self.application_id}/pending-tests/", options)
        if response.status_code in (401, 403, 404, 409):
            raise SystemExit(f"The dashboard refused to lease tests ({response.status_code}): {response.text[:300]}")
        response.raise_for_status()
        return response.json()["tests"]

    def report(self, test, result):
        """Post one result, retrying transient failures; a refusal (4xx) is logged, not retried."""
        url = f"{self.base}/api/v1/tests/{test['testId']}/result/"
        for attempt in range(5):
            try:
                response = self.post(url, result)
            except httpx.HTTPError as error:
                logger.warning("posting the result of %s failed: %s", test["testId"], error)
            else:
                if response.status_code == 200:
                    return True
                if response.status_code not in RETRYABLE:
                    logger.warning("result of %s refused (%s): %s", test["testId"], response.status_code, response.text[:300])
                    return False
            time.sleep(min(2**attempt, 30))
        return False

    def handle(self, test):
        try:
            result = self.answer(test)
        except Exception as error:  # the pipeline failed: say so rather than let the lease run out
            logger.exception("answering %s failed", test["testId"])
            result = {"output": None, "error": f"{type(error).__name__}: {error}"}
        return self.report(test, result)

    def run_once(self):
        """Lease a batch, answer it (in parallel), return how many tests were answered."""
        tests = self.lease()
        return sum(1 for answered in self.pool.map(self.handle, tests) if answered)

    def run(self):
        """Work until `stop()` (or Ctrl-C); network trouble is retried with a growing pause."""
        pause = 1.0
        while not self.stopping.is_set():
            try:
                if not self.run_once():
                    # Nothing leased: the long poll ended, or the dashboard had no place to wait.
                    self.stopping.wait(0.5)
                pause = 1.0
            except (httpx.HTTPError, ValueError, KeyError) as error:
                logger.warning("leasing failed (%s); retrying in %.0fs", error, pause)
                self.stopping.wait(pause)
                pause = min(pause * 2, 60.0)

    def stop(self):
        self.stopping.set()

    def close(self):
        self.pool.shutdown(wait=True)
        self.client.close()


def load_handler(spec):
    """`package.module:function` → the function."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name or "answer")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Lease tests from the experiments dashboard and answer them.")
    parser.add_argument("--dashboard", default=os.environ.get("EXPERIMENTS_DASHBOARD_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--application", default=os.environ.get("EXPERIMENTS_APPLICATION_ID"), help="the application's id")
    parser.add_argument("--handler", help="module:function answering one test (default: echo)")
    parser.add_argument("--concurrency", type=int, default=4, help="tests answered at once")
    parser.add_argument("--wait", type=float, default=30, help="long-poll seconds (0–30)")
    parser.add_argument("--lease-seconds", type=int, help="default: the application's timeout_seconds")
    args = parser.parse_args(argv)
    secret, token = os.environ.get("EXPERIMENTS_WEBHOOK_SECRET"), os.environ.get("EXPERIMENTS_API_TOKEN")
    if not args.application or not (secret or token):
        parser.error("--application (or EXPERIMENTS_APPLICATION_ID) and EXPERIMENTS_WEBHOOK_SECRET (or EXPERIMENTS_API_TOKEN) are needed")
    logging.basicConfig(level=logging.INFO, format="pull_worker %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    answer = load_handler(args.handler) if args.handler else echo
    worker = PullWorker(
        args.dashboard,
        args.application,
        answer,
        secret=secret,
        token=token,
        concurrency=args.concurrency,
        wait=args.wait,
        lease_seconds=args.lease_seconds,
    )
    print(f"Pulling tests of application {args.application} from {args.dashboard}", flush=True)
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
