"""Issue 14, the faults section: real processes, real services, real failures.

Each scenario ends with the same invariant (fault_fixtures.check_invariant): every test terminal
exactly once, and the run's stored counts and aggregates equal a recount. The figures each prints
(`-s`) are the ones RELIABILITY.md reports.
"""

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.db import connection

from experiments_app import runs, tasks
from experiments_app.models import Delivery, Role, Run, RunStatus, Test, TestStatus, Transition
from experiments_app.states import State
from tests.api_fixtures import ready_experiment
from tests.engine_fixtures import Reply, database_url, request_test_id, start_baseline, start_worker, wait_for
from tests.experiments_app.test_worker_faults import children
from tests.factories import make_application, make_team, make_token
from tests.fault_fixtures import (
    FINISHED,
    RedisServer,
    TcpProxy,
    check_invariant,
    service_env,
    start_web,
    start_worker_with_beat,
)

pytestmark = [pytest.mark.worker, pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def finished(run_id):
    return Run.objects.filter(pk=run_id, status__in=FINISHED).first()


def statuses_seen(run_id, seen):
    seen.add(Run.objects.filter(pk=run_id).values_list("status", flat=True).first())


# ------------------------------------------------------------------ crash between commit and enqueue


def test_a_crash_between_the_commit_and_the_enqueue_is_recovered_by_the_sweeper(celery_worker_process, receiver, monkeypatch):
    """The run's rows are committed but its wake-up never reaches the broker (the web process died
    in between): the sweeper finds the due tests and dispatches them."""
    monkeypatch.setattr(runs.start, "wake_dispatcher", lambda application_id: None)  # the enqueue that never happened
    receiver.handler = lambda received, count: Reply(200, {"output": "ok", "passed": True})
    run = start_baseline(receiver.url, n_tasks=20, max_concurrency=5)
    time.sleep(1.0)
    assert len(receiver.requests) == 0 and Run.objects.get(pk=run.pk).status == RunStatus.QUEUED
    started = time.monotonic()
    while not finished(run.pk):
        assert time.monotonic() - started < 60, celery_worker_process.log()[-2000:]
        tasks.sweep_tests.delay()  # what the beat does every SWEEP_INTERVAL_SECONDS
        time.sleep(1.0)
    took = time.monotonic() - started
    run = check_invariant(run.pk, receiver)
    assert (run.status, run.passed, len(receiver.requests)) == (RunStatus.SUCCEEDED, 20, 20)
    print(f"crash between commit and enqueue: finished {took:.1f} s after the first sweep; 0 lost, 0 sent twice")


# ------------------------------------------------------------------ a poison test


def test_a_poison_test_that_kills_its_worker_every_time_ends_errored_and_the_rest_finishes(receiver, live_server, tmp_path, monkeypatch):
    monkeypatch.setattr(runs.start, "wake_dispatcher", lambda application_id: None)
    run = start_baseline(receiver.url, n_tasks=12, max_concurrency=4, timeout_seconds=1, max_error_rate=0.5)
    poison = Test.objects.filter(run=run).order_by("task_external_id")[5]
    queue = f"poison-{run.pk.hex[:8]}"
    env = {"DISPATCH_LEASE_SECONDS": "2", "DISPATCH_TEST_LEASE_MARGIN_SECONDS": "1"}
    workers, kills = [], []

    def new_worker():
        workers.append(
            start_worker(database_url(), live_server.url, tmp_path / f"w{len(workers)}.log", queues=[queue], concurrency=1, env=env)
        )

    def handler(received, count):
        if request_test_id(received) == str(poison.pk):
            # Kill the process that sends this request: a pool process, or the worker itself (threads pool).
            pid = workers[-1].process.pid
            for victim in children(pid) or [pid]:
                os.kill(victim, signal.SIGKILL)
            kills.append(time.monotonic())
            time.sleep(0.5)
        return Reply(200, {"output": "ok", "passed": True}, delay=0.2)

    receiver.handler = handler
    new_worker()
    started = time.monotonic()
    try:
        while not finished(run.pk):
            assert time.monotonic() - started < 150, f"kills: {len(kills)}\n{workers[-1].log()[-3000:]}"
            if workers[-1].process.poll() is not None:
                new_worker()  # what a process manager does for a worker that died
            runs.sweep_tests(wake=lambda application_id: tasks.dispatch_application.apply_async(args=[str(application_id)], queue=queue))
            time.sleep(1.0)
    finally:
        for worker in workers:
            worker.stop()
    errors = {test.task_external_id: (test.status, test.attempts, test.lost_attempts, test.error) for test in Test.objects.filter(run=run)}
    run = check_invariant(run.pk, receiver)
    poison.refresh_from_db()
    assert poison.status == TestStatus.ERRORED and "stopped 3 times" in poison.error
    assert len(kills) == 3  # bounded: DISPATCH_MAX_LOST_ATTEMPTS
    assert (run.passed, run.errored) == (11, 1), [value for value in errors.values() if value[0] != "passed"]
    print(f"poison test: errored after {len(kills)} kills; run finished in {time.monotonic() - started:.1f} s; 11 others passed")


# ------------------------------------------------------------------ Redis restarted mid-run


def test_redis_restarted_mid_run_loses_nothing(receiver, live_server, tmp_path, monkeypatch):
    """The broker (our own redis-server, no persistence) is killed and restarted empty mid-run:
    queued wake-ups are gone; the sweeper recovers from the database."""
    monkeypatch.setattr(runs.start, "wake_dispatcher", lambda application_id: None)  # only our worker's sweeper wakes it
    redis = RedisServer(tmp_path).start()
    # Every test's first answer is a 503: its retry falls due after the dispatcher has left, so only
    # a wake-up through the broker (the sweeper's) can finish the run.
    receiver.handler = lambda received, count: Reply(503) if count == 1 else Reply(200, {"output": "ok", "passed": True})
    quick_leave = {"DISPATCH_LEASE_SECONDS": "3", "WEBHOOK_RETRY_BASE_SECONDS": "3", "DISPATCH_IDLE_SECONDS": "0.2"}
    env = service_env(database_url(), redis.url, tmp_path / "var", live_server.url, quick_leave)
    worker = start_worker_with_beat(env, tmp_path / "worker.log")
    seen = set()
    try:
        run = start_baseline(
            receiver.url, n_tasks=40, max_concurrency=8, timeout_seconds=2
        )  # its wake-up goes to the shared broker: lost here
        wait_for(lambda: len(receiver.requests) >= 40, 30, message=f"the first attempts\n{worker.log()[-2000:]}")
        statuses_seen(run.pk, seen)
        killed = time.monotonic()
        redis.restart(down_seconds=2.0)
        run = wait_for(lambda: statuses_seen(run.pk, seen) or finished(run.pk), 120, message=f"the run\n{worker.log()[-3000:]}")
        took = time.monotonic() - killed
    finally:
        worker.stop()
        redis.stop()
    run = check_invariant(run.pk, receiver)
    assert (run.status, run.passed) == (RunStatus.SUCCEEDED, 40)
    assert all(test.attempts == 2 for test in Test.objects.filter(run=run))
    duplicates = len(receiver.requests) - 80
    print(
        f"redis killed, back empty after 2 s: run finished {took:.1f} s after the kill; 0 lost; {duplicates} re-sent, counted once; statuses {sorted(seen)}"
    )


# ------------------------------------------------------------------ PostgreSQL unreachable mid-run


@pytest.mark.skipif(connection.vendor != "postgresql", reason="this scenario cuts the connection to PostgreSQL")
def test_postgresql_unreachable_for_10_seconds_mid_run(receiver, live_server, tmp_path, monkeypatch):
    """Worker and web reach PostgreSQL through our own proxy, which is cut for 10 s mid-run: no
    test ends without a result, the API answers 503 (not 500) meanwhile, and the run finishes."""
    monkeypatch.setattr(runs.start, "wake_dispatcher", lambda application_id: None)  # only our worker (behind the proxy) sends
    redis = RedisServer(tmp_path).start()
    params = connection.settings_dict
    proxy = TcpProxy(int(params.get("PORT") or 5432), params.get("HOST") or "127.0.0.1").start()
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    through_proxy = f"postgres://{params.get('USER') or 'postgres'}{password}@127.0.0.1:{proxy.port}/{params['NAME']}"
    receiver.handler = lambda received, count: Reply(200, {"output": "ok", "passed": True}, delay=0.3)
    env = service_env(through_proxy, redis.url, tmp_path / "var", live_server.url, {"DISPATCH_LEASE_SECONDS": "30"})
    worker = start_worker_with_beat(env, tmp_path / "worker.log")
    web, web_url = start_web(env, tmp_path / "web.log")
    team = make_team()
    token = make_token(team, Role.VIEWER)
    seen, during = set(), []
    try:
        run = start_baseline(receiver.url, n_tasks=60, max_concurrency=4, timeout_seconds=5, team=team)
        wait_for(lambda: len(receiver.requests) >= 8, 30, message=f"the first requests\n{worker.log()[-2000:]}")
        assert get(f"{web_url}/api/v1/runs/{run.pk}/", token)[0] == 200
        proxy.cut()
        terminal = Test.objects.filter(run=run, status__in=(TestStatus.PASSED, TestStatus.FAILED, TestStatus.ERRORED))
        terminal_at_cut = terminal.count()
        cut_at = time.monotonic()
        while time.monotonic() - cut_at < 10:
            during.append(get(f"{web_url}/api/v1/runs/{run.pk}/", token))
            statuses_seen(run.pk, seen)
            time.sleep(1.0)
        # No test ended while it was down (this process reaches PostgreSQL directly, the worker cannot).
        assert terminal.count() == terminal_at_cut
        proxy.restore()
        restored = time.monotonic()
        run = wait_for(lambda: statuses_seen(run.pk, seen) or finished(run.pk), 120, message=f"the run\n{worker.log()[-3000:]}")
        took = time.monotonic() - restored
        after = get(f"{web_url}/api/v1/runs/{run.pk}/", token)
    finally:
        web.stop()
        worker.stop()
        proxy.stop()
        redis.stop()
    codes = sorted({code for code, _ in during})
    assert codes == [503], during
    assert all(retry_after == "10" for _, retry_after in during)
    assert after[0] == 200
    run = check_invariant(run.pk, receiver)
    assert (run.status, run.passed, run.errored) == (RunStatus.SUCCEEDED, 60, 0)
    print(
        f"postgresql cut 10 s: API answered {codes} meanwhile; run finished {took:.1f} s after; {len(receiver.requests) - 60} re-sent, counted once"
    )


def get(url, token):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")


# ------------------------------------------------------------------ 1,000 concurrent results


def test_1000_concurrent_results_from_16_clients_are_each_counted_once(live_server, settings):
    """Sixteen clients post the results of a 1,000-test run at once (each test once, a tenth twice)."""
    team = make_team()
    # Pull mode: nothing pushes these tests. Pushed, a worker left running by an earlier test of the
    # session would deliver them to the factory's dead URL and error the ones whose result comes late.
    application = make_application(team, delivery=Delivery.PULL, webhook_url="")
    experiment = ready_experiment(application, n_tasks=1000)
    run = runs.start_baseline_run(experiment)
    token = make_token(team, Role.EDITOR)
    tests = list(Test.objects.filter(run=run).values_list("pk", "task_expected"))
    jobs = [(pk, {"output": expected if index % 3 else "wrong"}) for index, (pk, expected) in enumerate(tests)]
    jobs += jobs[::10]  # duplicates: answered 200, counted once
    codes, lock = {}, threading.Lock()

    def client(share):
        for pk, body in share:
            request = urllib.request.Request(
                f"{live_server.url}/api/v1/tests/{pk}/result/",
                data=json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    code = response.status
            except urllib.error.HTTPError as error:
                code = error.code
            with lock:
                codes[code] = codes.get(code, 0) + 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(jobs[index::16],)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    took = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), "a client is stuck (deadlock?)"
    assert codes == {200: len(jobs)}, codes
    run = check_invariant(run.pk)
    expected_passed = sum(1 for index in range(len(tests)) if index % 3)
    assert (run.status, run.total, run.passed, run.failed) == (RunStatus.SUCCEEDED, 1000, expected_passed, 1000 - expected_passed)
    assert run.passed / run.total == Test.objects.filter(run=run, status=TestStatus.PASSED).count() / 1000
    assert Transition.objects.filter(experiment=experiment, to_status=State.BASELINE_COMPLETE).count() == 1
    print(
        f"{len(jobs)} results from 16 clients in {took:.1f} s ({len(jobs) / took:.0f}/s); pass rate {run.passed / run.total:.3f} = recount"
    )
