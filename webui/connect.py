"""The "Connect your application" panel: the environment variable and a handler to copy.

The handler is a complete Flask receiver for one application: its route is the path
of the application's webhook URL and it reads the overrides of the application's
first inference step. The fuller, framework-by-framework handlers live in
docs/examples/ and are explained in docs/integrating.md.
"""

from urllib.parse import urlsplit

SECRET_VARIABLE = "EXPERIMENTS_WEBHOOK_SECRET"
DOC_URL = "/docs/integrating/"
PLACEHOLDER_STEP = "response_generator"

HANDLER = """\
# pip install flask standardwebhooks
# {variable}=whsec_... flask --app receiver run --port {port}
import os

from flask import Flask, abort, request
from standardwebhooks import Webhook, WebhookVerificationError

app = Flask(__name__)
webhook = Webhook(os.environ["{variable}"])


@app.post("{path}")
def experiment_test():
    try:
        payload = webhook.verify(request.get_data(), dict(request.headers))
    except WebhookVerificationError:
        abort(401)
    if payload["type"] != "experiment.test":
        return {{"ok": True}}  # the ping of "Send test delivery"
    data = payload["data"]
    config = data["experiment"]["overrides"].get("{step}", {{}})  # this step's parameters
    output = {{"echo": data["task"]["input"], **config}}  # call your model with config here
    return {{"output": output}}
"""


def handler_snippet(application, step_ids):
    """A runnable Flask handler for `application` (text); `step_ids` are its steps' external ids."""
    parts = urlsplit(application.webhook_url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 8000
    step = step_ids[0] if step_ids else PLACEHOLDER_STEP
    # The step id goes inside a Python string literal: keep only what cannot break out of it.
    step = step.replace("\\", "").replace('"', "")
    path = (parts.path or "/").replace("\\", "").replace('"', "")
    return HANDLER.format(variable=SECRET_VARIABLE, port=port, path=path, step=step)
