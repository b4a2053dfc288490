"""A demo LLM application under test.

python -m demo_app [--host H --port P]          receives webhooks (push mode)
python -m demo_app --pull [--application ID]     leases its tests from the dashboard (pull mode)
"""

import argparse
import logging
import os
import time

from demo_app import pipeline
from demo_app.pull_worker import PullWorker
from demo_app.server import application_file, load_application_id, load_secret, make_server, secret_file


def serve(args):
    server = make_server(args.host, args.port, async_fraction=args.async_fraction, speed=args.speed)
    print(
        f"Demo application listening on http://{args.host}:{args.port}/webhook (secret from $DEMO_WEBHOOK_SECRET or {secret_file()})",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def demo_answer(speed):
    """The pull worker's `answer`: the simulated pipeline with the test's overrides, slept for its latency."""

    def answer(test):
        experiment = test["experiment"]
        variant = (experiment.get("variant") or {}).get("name", "")
        result = pipeline.answer(test["task"], experiment.get("overrides"), test.get("repetition", 1), variant)
        time.sleep(result["metrics"]["latency_ms"] / 1000 * speed)
        return result

    return answer


def pull(args):
    application = args.application or load_application_id()
    secret = load_secret()
    if not application or not secret:
        raise SystemExit(
            f"Pull mode needs the application id (--application, $DEMO_APPLICATION_ID or {application_file()}) and its secret."
        )
    worker = PullWorker(args.dashboard, application, demo_answer(args.speed), secret=secret, concurrency=args.concurrency, wait=args.wait)
    print(
        f"Demo application pulling its tests from {args.dashboard} (application {application}); switch it to pull on its page", flush=True
    )
    try:
        worker.run()
    except KeyboardInterrupt:
        pass
    finally:
        worker.close()


def main():
    parser = argparse.ArgumentParser(description="The demo application under test.")
    parser.add_argument("--host", default=os.environ.get("DEMO_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8100)))
    parser.add_argument("--async-fraction", type=float, default=0.3, help="share of tests answered 202 + callback")
    parser.add_argument("--speed", type=float, default=0.1, help="share of the simulated latency actually slept")
    parser.add_argument("--pull", action="store_true", help="lease tests from the dashboard instead of receiving webhooks")
    parser.add_argument("--dashboard", default=os.environ.get("PUBLIC_URL") or f"http://127.0.0.1:{os.environ.get('PORT', 8000)}")
    parser.add_argument("--application", default=os.environ.get("DEMO_APPLICATION_ID"), help="pull mode: the application's id")
    parser.add_argument("--concurrency", type=int, default=8, help="pull mode: tests answered at once")
    parser.add_argument("--wait", type=float, default=30, help="pull mode: long-poll seconds (0–30)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="demo_app %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    if args.pull:
        pull(args)
    else:
        serve(args)


if __name__ == "__main__":
    main()
