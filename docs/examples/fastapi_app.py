"""Receive experiment webhooks with FastAPI (docs/integrating.md).

    pip install fastapi uvicorn standardwebhooks
    EXPERIMENTS_WEBHOOK_SECRET=whsec_... uvicorn fastapi_app:app --port 8200

Webhook URL: http://<host>:8200/webhook answers each test synchronously;
http://<host>:8200/webhook/async answers 202 and posts the result to callbackUrl.
Keep the one that suits your application.
"""

import json
import logging
import os
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["EXPERIMENTS_WEBHOOK_SECRET"])
app = FastAPI()
logger = logging.getLogger(__name__)

# Your inference steps (their external_id in the dashboard) and their production parameters.
PRODUCTION_CONFIG = {"response_generator": {"model": "gpt-4o-mini", "temperature": 0.7}}


def run_task(task, overrides):
    """Your pipeline: each step runs with its production parameters, the experiment's overrides on top."""
    config = {step: {**params, **overrides.get(step, {})} for step, params in PRODUCTION_CONFIG.items()}
    started = time.perf_counter()
    output = call_llm(task["input"], **config["response_generator"])
    return {"output": output, "metrics": {"latency_ms": (time.perf_counter() - started) * 1000}}


def call_llm(task_input, **params):
    """Stands in for your model call, e.g. client.chat.completions.create(**params, messages=...)."""
    return {"echo": task_input, **params}


async def verified_payload(request: Request):
    """The delivery's JSON body once its signature checks out (401 otherwise)."""
    try:
        return webhook.verify(await request.body(), dict(request.headers))
    except WebhookVerificationError:
        raise HTTPException(401, "Invalid webhook signature.") from None


@app.post("/webhook")
async def receive(request: Request):
    payload = await verified_payload(request)
    if payload["type"] != "experiment.test":
        return {"ok": True}  # webhook.ping from "Send test delivery"
    data = payload["data"]
    # run_task blocks (a model call): keep it off the event loop
    return await run_in_threadpool(run_task, data["task"], data["experiment"]["overrides"])


@app.post("/webhook/async", status_code=202)
async def receive_async(request: Request, background: BackgroundTasks):
    payload = await verified_payload(request)
    if payload["type"] != "experiment.test":
        return Response(status_code=200)
    # Runs after the 202 is sent; a real application may hand this to its job queue instead.
    background.add_task(answer_later, payload["data"])
    return Response(status_code=202)


def answer_later(data):
    post_result(data["callbackUrl"], run_task(data["task"], data["experiment"]["overrides"]))


def post_result(url, result):
    """POST the result to callbackUrl, signed with the same secret; retry network errors and 5xx."""
    body, msg_id = json.dumps(result), f"msg_{uuid.uuid4().hex}"
    for attempt in range(5):
        now = datetime.now(timezone.utc)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook.sign(msg_id, now, body),
        }
        try:
            urllib.request.urlopen(urllib.request.Request(url, body.encode(), headers, method="POST"), timeout=10)
            return
        except urllib.error.HTTPError as error:
            if error.code < 500:  # 409: the test already has another result; 404: no such test
                logger.warning("result refused: %s %s", error.code, error.read()[:500])
                return
        except urllib.error.URLError as error:
            logger.warning("result not delivered: %s", error)
        time.sleep(2**attempt)
