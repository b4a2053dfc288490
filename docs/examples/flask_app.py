"""Receive experiment webhooks with Flask (docs/integrating.md).

    pip install flask standardwebhooks
    EXPERIMENTS_WEBHOOK_SECRET=whsec_... flask --app flask_app run --port 8200

Webhook URL: http://<host>:8200/webhook answers each test synchronously;
http://<host>:8200/webhook/async answers 202 and posts the result to callbackUrl.
Keep the one that suits your application.
"""

import json
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from flask import Flask, abort, request
from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["EXPERIMENTS_WEBHOOK_SECRET"])
app = Flask(__name__)

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


def verified_payload():
    """The delivery's JSON body once its signature checks out (401 otherwise)."""
    try:
        return webhook.verify(request.get_data(), dict(request.headers))
    except WebhookVerificationError:
        abort(401, "Invalid webhook signature.")


@app.post("/webhook")
def receive():
    payload = verified_payload()
    if payload["type"] != "experiment.test":
        return {"ok": True}  # webhook.ping from "Send test delivery"
    data = payload["data"]
    return run_task(data["task"], data["experiment"]["overrides"])  # 200 with output and metrics


@app.post("/webhook/async")
def receive_async():
    payload = verified_payload()
    if payload["type"] != "experiment.test":
        return {"ok": True}
    # Answer at once and work later; a real application hands this to its job queue.
    threading.Thread(target=answer_later, args=(payload["data"],), daemon=True).start()
    return "", 202


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
                app.logger.warning("result refused: %s %s", error.code, error.read()[:500])
                return
        except urllib.error.URLError as error:
            app.logger.warning("result not delivered: %s", error)
        time.sleep(2**attempt)
