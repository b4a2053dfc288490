"""Receive experiment webhooks in Django (docs/integrating.md).

Save as yourapp/experiments_webhook.py and route it in your project's urls.py:

    path("experiments/", include("yourapp.experiments_webhook")),

    pip install standardwebhooks
    EXPERIMENTS_WEBHOOK_SECRET=whsec_... python manage.py runserver 8200

Webhook URL: http://<host>:8200/experiments/webhook/ answers each test synchronously;
http://<host>:8200/experiments/webhook/async/ answers 202 and posts the result to callbackUrl.
Keep the one that suits your application.
"""

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from standardwebhooks import Webhook, WebhookVerificationError

webhook = Webhook(os.environ["EXPERIMENTS_WEBHOOK_SECRET"])
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


@csrf_exempt  # the signature authenticates the request; there is no browser session
@require_POST
def receive(request):
    try:
        payload = webhook.verify(request.body, dict(request.headers))
    except WebhookVerificationError:
        return JsonResponse({"detail": "Invalid webhook signature."}, status=401)
    if payload["type"] != "experiment.test":
        return JsonResponse({"ok": True})  # webhook.ping from "Send test delivery"
    data = payload["data"]
    return JsonResponse(run_task(data["task"], data["experiment"]["overrides"]))  # 200 with output and metrics


@csrf_exempt
@require_POST
def receive_async(request):
    try:
        payload = webhook.verify(request.body, dict(request.headers))
    except WebhookVerificationError:
        return JsonResponse({"detail": "Invalid webhook signature."}, status=401)
    if payload["type"] != "experiment.test":
        return JsonResponse({"ok": True})
    # Answer at once and work later; a real project hands this to Celery (answer_later.delay(data)).
    threading.Thread(target=answer_later, args=(payload["data"],), daemon=True).start()
    return HttpResponse(status=202)


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


urlpatterns = [
    path("webhook/", receive),
    path("webhook/async/", receive_async),
]
