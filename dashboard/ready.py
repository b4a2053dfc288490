"""The last Procfile process of `make run`: waits until the dashboard serves, the demo
application answers and both workers answer a ping through the broker, then prints the
address and the demo login, so they are the last thing on the console.

honcho stops every process as soon as one ends, so after printing this one becomes
`sleep infinity` (no Python left in memory). If something never comes up it says what and
exits non-zero, which stops `make run`.

    python -m dashboard.ready --port 8000 --demo-port 8100 --workers worker,sweeper
"""

import argparse
import os
import socket
import sys
import time
import urllib.error
import urllib.request

from dashboard.celery import app


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for(what, check, deadline):
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"make run: {what} did not come up; see its lines above")
        time.sleep(0.2)


def workers_answering(names):
    replies = app.control.ping(timeout=1.0)
    return {name for reply in replies for name in reply} >= names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="where the dashboard serves (127.0.0.1)")
    parser.add_argument("--demo-port", type=int, required=True, help="where the demo application listens (127.0.0.1)")
    parser.add_argument("--workers", default="worker,sweeper", help="celery node names (before @host) that must answer a ping")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.timeout
    dashboard = f"http://127.0.0.1:{args.port}"
    nodes = {f"{name}@{socket.gethostname()}" for name in args.workers.split(",")}

    wait_for(f"the dashboard ({dashboard})", lambda: answers(f"{dashboard}/accounts/login/"), deadline)
    wait_for(f"the demo application (port {args.demo_port})", lambda: answers(f"http://127.0.0.1:{args.demo_port}/"), deadline)
    wait_for(f"the workers {', '.join(sorted(nodes))}", lambda: workers_answering(nodes), deadline)
    password = os.environ.get("DEMO_PASSWORD", "demo")
    print(f"Dashboard: {dashboard}/  (sign in as demo / {password})  · Ctrl-C stops everything", flush=True)
    os.execvp("sleep", ["sleep", "infinity"])


if __name__ == "__main__":
    main()
