"""The client package and `experiments-cli` against a live server started by the test, with a
real Celery worker dispatching to a real application under test (an HTTP server here).

The flow is the one a CI job follows: the setup through the typed `Client`, then the console
script as a subprocess — run a variant with --wait and gate it, wait, gate, results, report —
checking exit codes, the one-line errors, the JUnit and Markdown files, and the events an
endpoint receives on the way (verified with `standardwebhooks`).
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest
import standardwebhooks
from experiments_client import ApiError, Client, ConnectionFailed

from experiments_app.models import Role, Run, Team
from tests.engine_fixtures import Receiver, Reply, wait_for
from tests.factories import make_application, make_team, make_token

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CLI = Path(sys.executable).parent / "experiments-cli"
N_TASKS = 12


def application_under_test(received, count):
    """Answers every task right, except with temperature 0.9, where it gets every task wrong."""
    data = received.json["data"]
    temperature = data["experiment"]["overrides"]["main"]["temperature"]
    answer = data["task"]["input"]["answer"]
    return Reply(200, {"output": answer if temperature != 0.9 else "wrong", "metrics": {"latency_ms": 10 + count}})


@pytest.fixture
def app_server(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    server = Receiver()
    server.handler = application_under_test
    server.start()
    yield server
    server.stop()


@pytest.fixture
def events_server():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def env(live_server):
    token = make_token(make_team(), Role.EDITOR)
    return {**os.environ, "EXPERIMENTS_URL": live_server.url, "EXPERIMENTS_TOKEN": token}


@pytest.fixture
def client(env):
    with Client(env["EXPERIMENTS_URL"], env["EXPERIMENTS_TOKEN"]) as client:
        yield client


def cli(env, *args):
    done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def experiment(client, app_server, celery_worker_process, env):
    """An experiment whose baseline ran through the worker, ready for variants."""
    team = Team.objects.get(api_tokens__prefix=env["EXPERIMENTS_TOKEN"][:12])
    application = make_application(team, webhook_url=app_server.url)
    step = client.create_inference_step(str(application.pk), "main", {"model": "m", "temperature": 0.7})
    assert step["external_id"] == "main"
    created = client.bulk_create_tasks(
        str(application.pk), [{"external_id": f"t{i:02}", "input": {"answer": f"a{i}"}, "expected": f"a{i}"} for i in range(N_TASKS)]
    )
    assert created == N_TASKS
    experiment = client.create_experiment(str(application.pk), "CI gate", "Lower temperature keeps answers right.")
    tasks = [task["id"] for task in client.list_tasks(str(application.pk))]
    client.update_experiment(experiment["id"], inference_steps=["main"], tasks=tasks)
    run = client.run_baseline(experiment["id"])
    ended = client.wait_for_run(run["id"], timeout=120)
    assert ended["status"] == "succeeded", celery_worker_process.log()[-3000:]
    return client.get_experiment(experiment["id"])


def variant(client, experiment, value):
    return client.create_variant(experiment["id"], experiment["baseline"], "main", "temperature", value)


def test_run_wait_and_gate_pass_with_one_command_and_write_junit_and_markdown(client, experiment, env, tmp_path):
    good = variant(client, experiment, 0.3)
    junit, markdown = tmp_path / "gate.xml", tmp_path / "gate.md"
    code, out, err = cli(env, "run", good["id"], "--wait", "--timeout", "120", "--junit", str(junit), "--markdown", str(markdown))
    assert code == 0, out + err
    assert "PASS:" in out and err == ""
    suite = ElementTree.parse(junit).getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "1", "0")
    summary = markdown.read_text()
    assert "✅ pass" in summary and "| Variant | Pass rate |" in summary and "100.0%" in summary


def test_a_regressing_variant_fails_the_gate_with_exit_1(client, experiment, env, tmp_path):
    bad = variant(client, experiment, 0.9)
    junit = tmp_path / "gate.xml"
    code, out, err = cli(env, "run", bad["id"], "--wait", "--timeout", "120", "--junit", str(junit))
    assert code == 1, out + err
    assert "FAIL:" in out and "regressed" in out
    failure = ElementTree.parse(junit).getroot().find("testcase/failure")
    assert failure is not None and "regressed" in failure.get("message")
    code, out, _ = cli(env, "gate", experiment["id"], "--variant", bad["id"])
    assert code == 1 and out.startswith("FAIL:")
    code, out, err = cli(env, "results", experiment["id"])
    assert code == 1 and "significantly worse" in err


def test_wait_gate_results_and_report_on_a_started_run(client, experiment, env, tmp_path):
    good = variant(client, experiment, 0.2)
    code, out, _ = cli(env, "run", good["id"])
    assert code == 0 and "started run" in out
    run_id = out.split("started run ")[1].split()[0]
    code, out, err = cli(env, "wait", run_id, "--timeout", "120")
    assert code == 0, out + err
    assert f"run {run_id} succeeded" in out
    assert cli(env, "gate", experiment["id"], "--variant", good["id"])[0] == 0
    code, out, _ = cli(env, "results", experiment["id"])
    assert code == 0 and "no_difference" in out
    report = tmp_path / "report.md"
    code, out, _ = cli(env, "report", experiment["id"], "--format", "md", "--output", str(report))
    assert code == 0 and report.read_text().startswith("# Decision report: CI gate")
    code, out, _ = cli(env, "report", experiment["id"], "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("variant,name,parent")


def test_run_stop_when_decided_asks_the_server_and_results_print_the_verdicts(client, experiment, env, tmp_path):
    bad = variant(client, experiment, 0.9)
    code, out, err = cli(env, "run", bad["id"], "--stop-when-decided", "--wait", "--timeout", "120")
    assert code == 1, out + err
    assert "(stops once decided)" in out
    run = Run.objects.get(variant_id=bad["id"])
    assert run.stop_when_decided and f"run {run.pk} succeeded" in out
    markdown = tmp_path / "results.md"
    code, out, err = cli(env, "results", experiment["id"], "--markdown", str(markdown))
    assert code == 1 and "significantly worse" in err
    # the verdict's sentence: Δ with its interval and the Holm-adjusted p
    assert "worse: -100.0 pp (95% CI" in out and "adjusted p < 0.001" in out and "p_adj" in out
    assert "| Δ vs baseline [CI] | p | p (adjusted) | Verdict | Ship |" in markdown.read_text()


def test_events_reach_an_endpoint_signed_while_the_cli_runs(client, experiment, env, events_server):
    team = Team.objects.get(api_tokens__prefix=env["EXPERIMENTS_TOKEN"][:12])
    with Client(env["EXPERIMENTS_URL"], make_token(team, Role.ADMIN)) as admin:
        endpoint = admin.create_event_endpoint(events_server.url, ["run.completed", "variant.completed", "variant.regressed"])
    bad = variant(client, experiment, 0.9)
    assert cli(env, "run", bad["id"], "--wait", "--timeout", "120")[0] == 1
    wait_for(lambda: len(events_server.requests) >= 3, 30, message="three events")
    bodies = [standardwebhooks.Webhook(endpoint["secret"]).verify(r.body, r.headers) for r in events_server.requests]
    assert sorted(body["type"] for body in bodies) == ["run.completed", "variant.completed", "variant.regressed"]

    def delivered():
        deliveries = client.list_event_deliveries(endpoint["id"])
        return deliveries if [d["status"] for d in deliveries] == ["delivered"] * 3 else None

    deliveries = wait_for(delivered, 10, message="three delivered deliveries")
    assert all(d["attempt_log"][0]["status_code"] == 200 for d in deliveries)


def test_usage_and_connection_errors_exit_2_with_one_line(env, live_server):
    code, out, err = cli({**env, "EXPERIMENTS_URL": ""}, "gate", "x", "--variant", "y")
    assert (code, err) == (2, "experiments-cli: error: EXPERIMENTS_URL is not set (or pass --url)\n")
    code, _, err = cli(env, "gate", "x")
    assert code == 2 and err.count("\n") == 1 and "--variant" in err
    code, _, err = cli({**env, "EXPERIMENTS_URL": "http://127.0.0.1:9"}, "gate", "x", "--variant", "y")
    assert code == 2 and err.startswith("experiments-cli: cannot reach http://127.0.0.1:9") and err.count("\n") == 1
    code, _, err = cli({**env, "EXPERIMENTS_TOKEN": "edt_wrong"}, "results", "00000000-0000-0000-0000-000000000000")
    assert code == 2 and "HTTP 401" in err and err.count("\n") == 1
    code, _, err = cli(env, "gate", "00000000-0000-0000-0000-000000000000", "--variant", "00000000-0000-0000-0000-000000000000")
    assert code == 2 and "HTTP 404" in err


def test_the_client_raises_typed_errors(env):
    with Client(env["EXPERIMENTS_URL"], env["EXPERIMENTS_TOKEN"]) as client:
        with pytest.raises(ApiError) as refused:
            client.create_experiment("00000000-0000-0000-0000-000000000000", "x")
        assert refused.value.status_code == 400 and "application" in refused.value.errors
    with Client("http://127.0.0.1:9", "x") as offline, pytest.raises(ConnectionFailed):
        offline.list_experiments()


@pytest.mark.django_db(transaction=False)
def test_the_package_builds_from_its_path_with_httpx_as_its_only_dependency(tmp_path):
    source = Path(__file__).resolve().parents[2] / "clients" / "python"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("experiments_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(name for name in archive.namelist() if name.endswith("METADATA"))).decode()
        entry_points = archive.read(next(name for name in archive.namelist() if name.endswith("entry_points.txt"))).decode()
    assert [line for line in metadata.splitlines() if line.startswith("Requires-Dist")] == ["Requires-Dist: httpx>=0.25"]
    assert "experiments-cli = experiments_client.cli:main" in entry_points
