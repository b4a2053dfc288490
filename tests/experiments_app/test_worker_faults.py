"""Issue 14: whatever process dies, every test becomes terminal exactly once (real workers, real kills).

Each test ends with the same invariant (`check_invariant`): every test terminal exactly once,
and the run's stored counts equal a recount.
"""

import multiprocessing
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings

from experiments_app import runs, tasks
from experiments_app.models import Run, RunStatus
from experiments_app.runs import dispatch
from tests.engine_fixtures import Reply, database_url, start_baseline, start_worker, wait_for
from tests.fault_fixtures import check_invariant


def children(pid):
    """The pids of the direct children of `pid` (the prefork pool processes of a worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def sweep_until_finished(run_id, queue, timeout, every=1.0):
    """Do the beat's job (a sweep every `every` s, waking dispatchers on `queue`) until the run ends."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        run = Run.objects.get(pk=run_id)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
            return time.monotonic() - started
        runs.sweep_tests(wake=lambda application_id: tasks.dispatch_application.apply_async(args=[str(application_id)], queue=queue))
        time.sleep(every)
    return None


def py_spy_dump(pid):
    try:
        return subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"(py-spy: {error})"


def test_a_process_killed_while_reading_the_shutdown_flag_blocks_no_other():
    """The warm-shutdown flag is read by every dispatcher loop: a reader SIGKILLed mid-read must
    leave nothing held (a multiprocessing.Event's lock stayed held and every later reader hung)."""
    dispatch.prepare_shutdown_flag()
    context = multiprocessing.get_context("fork")
    for _ in range(10):
        reader = context.Process(target=lambda: [dispatch.is_shutting_down() for _ in iter(int, 1)])
        reader.start()
        time.sleep(0.05)
        os.kill(reader.pid, signal.SIGKILL)
        reader.join()
        other = context.Process(target=dispatch.is_shutting_down)
        other.start()
        other.join(2)
        if other.is_alive():
            other.kill()
            pytest.fail("reading the flag blocked after a reader was killed")
    dispatch.begin_shutdown()
    assert dispatch.is_shutting_down()
    dispatch._shutdown = None


def test_the_embedded_broker_runs_a_pool_that_shares_no_lock_between_processes():
    """billiard's blocking pool (prefork on a broker without an event loop, as the filesystem one)
    shares a read lock among its idle processes; killing the holder hung every replacement."""
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert settings.CELERY_WORKER_POOL == "threads"
    else:
        assert settings.CELERY_WORKER_POOL == "prefork"  # Redis: an event loop and a queue per pool process


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    settings.CELERY_BROKER_URL.startswith("filesystem://"),
    reason="the embedded broker runs the threads pool: there are no pool processes to kill (see the test above)",
)
def test_killing_every_pool_process_mid_run_leaves_no_test_stuck(receiver, live_server, tmp_path, monkeypatch):
    """SIGKILL all prefork children of a worker that is sending a run: the processes the pool
    starts in their place take the next dispatch tasks, and the run finishes within the bound."""
    monkeypatch.setattr(runs.start, "wake_dispatcher", lambda application_id: None)
    receiver.handler = lambda received, count: Reply(200, {"output": "ok", "passed": True}, delay=0.5)
    run = start_baseline(receiver.url, n_tasks=60, max_concurrency=4, timeout_seconds=2)
    queue = f"prefork-{run.pk.hex[:8]}"
    worker = start_worker(
        database_url(), live_server.url, tmp_path / "prefork.log", queues=[queue], concurrency=4, pool="prefork",
        env={"DISPATCH_LEASE_SECONDS": "3", "DISPATCH_TEST_LEASE_MARGIN_SECONDS": "1"},
    )  # fmt: skip
    try:
        application_id = str(run.experiment.application_id)
        for _ in range(4):  # every pool process busy, as under load: one dispatches, the others find the lease held
            tasks.dispatch_application.apply_async(args=[application_id], queue=queue)
        wait_for(lambda: len(receiver.requests) >= 8, 30, message="the first requests")
        pool = children(worker.process.pid)
        assert len(pool) == 4
        for pid in pool:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: len(set(children(worker.process.pid)) - set(pool)) == 4, 30, message="the new pool processes")
        took = sweep_until_finished(run.pk, queue, timeout=90)
        if took is None:
            dumps = "\n".join(py_spy_dump(pid) for pid in children(worker.process.pid))
            pytest.fail(f"the run was not finished 90 s after the kill; the new pool processes:\n{dumps}\n{worker.log()[-3000:]}")
    finally:
        worker.stop()
    run = check_invariant(run.pk, receiver)
    assert (run.status, run.total, run.passed) == (RunStatus.SUCCEEDED, 60, 60)
    print(f"recovered {time.monotonic() - killed_at:.1f} s after the kill")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_idle_worker_exits_promptly_on_sigterm(live_server, tmp_path):
    """A process manager's SIGTERM (honcho on Ctrl-C): a healthy idle worker and its pool are gone within seconds."""
    worker = start_worker(database_url(), live_server.url, tmp_path / "idle.log", queues=[f"idle-{os.getpid()}"], concurrency=2)
    pool = children(worker.process.pid)
    worker.process.terminate()
    stopped_at = time.monotonic()
    try:
        worker.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        pytest.fail(f"an idle worker was still running 10 s after SIGTERM:\n{worker.log()[-2000:]}")
    took = time.monotonic() - stopped_at
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pool), 5, message="the pool processes to exit")
    print(f"idle worker exited {took:.1f} s after SIGTERM")
