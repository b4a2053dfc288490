"""Idle memory of `make run`: proportional set size (PSS) summed over its whole process tree.

    .venv/bin/python bench/idle_memory.py [--settle 30] [--venv DIR]   # starts `make run` itself, then Ctrl-C
    .venv/bin/python bench/idle_memory.py --pid PID              # a tree that is already running

PSS divides each shared page among the processes mapping it, so the sum over a tree is what
the tree costs the machine (RSS would count shared pages once per process). Read from
/proc/<pid>/smaps_rollup. When it starts `make run` itself it uses a fresh VAR_DIR and spare
ports, waits for the login line, lets the processes idle `--settle` seconds (a few sweeps
pass), measures, then stops it with SIGINT as Ctrl-C would. Prints one line per process and
a JSON line last.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def tree(root):
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo += children(pid)
    return pids


def rollup(pid):
    """(pss_kb, rss_kb) of one process."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"Pss", "Rss"}:
            values[key] = int(rest.split()[0])
    return values.get("Pss", 0), values.get("Rss", 0)


def describe(pid):
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    text = " ".join(part.decode(errors="replace") for part in argv if part)
    return text[:110]


def measure(root):
    rows = []
    for pid in tree(root):
        try:
            pss, rss = rollup(pid)
            rows.append({"pid": pid, "pss_mb": round(pss / 1024, 1), "rss_mb": round(rss / 1024, 1), "command": describe(pid)})
        except OSError:
            pass  # ended meanwhile
    return rows


def spare_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_make_run(var_dir, venv):
    env = {key: value for key, value in os.environ.items() if key not in {"PUBLIC_URL", "PORT", "DEMO_PORT"}}
    env.update(VAR_DIR=str(var_dir), PORT=str(spare_port()), DEMO_PORT=str(spare_port()), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", *([f"VENV={venv}"] if venv else [])],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    for line in process.stdout:
        if "Dashboard: " in line:
            return process
    sys.exit("make run ended before printing its login line")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int, help="measure this running process tree instead of starting `make run`")
    parser.add_argument("--venv", help="the venv `make run` uses (default its own .venv); a runtime-only one is what users get")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds of idling before measuring")
    args = parser.parse_args()

    process = None
    if args.pid:
        root = args.pid
    else:
        var_dir = Path(tempfile.mkdtemp(prefix="idle-memory-"))
        started = time.monotonic()
        process = start_make_run(var_dir, args.venv)
        print(f"make run serving after {time.monotonic() - started:.1f} s; idling {args.settle:g} s", file=sys.stderr)
        subprocess_output = process.stdout
        time.sleep(args.settle)
        root = process.pid
    rows = measure(root)
    for row in sorted(rows, key=lambda row: -row["pss_mb"]):
        print(f"{row['pid']:>8} {row['pss_mb']:>7.1f} MB PSS {row['rss_mb']:>7.1f} MB RSS  {row['command']}")
    total = round(sum(row["pss_mb"] for row in rows), 1)
    python_processes = sum(1 for row in rows if row["pss_mb"] >= 1)
    if process:
        os.killpg(process.pid, signal.SIGINT)
        subprocess_output.read()
        process.wait(timeout=60)
    rss = round(sum(row["rss_mb"] for row in rows), 1)  # counts shared pages once per process
    print(
        json.dumps(
            {"processes": len(rows), "processes_over_1mb": python_processes, "pss_mb": total, "rss_mb_summed": rss, "cores": os.cpu_count()}
        )
    )


if __name__ == "__main__":
    main()
