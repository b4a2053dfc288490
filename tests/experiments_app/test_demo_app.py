"""The demo application under test and the demo loader."""

import json

import httpx
import pytest
from django.core.management import call_command

from demo_app import pipeline
from demo_app.catalog import TASKS
from demo_app.server import serve_in_thread
from experiments_app import webhooks
from experiments_app.management.commands.load_demo import CONTROL, GUARDRAILS, REPETITIONS, VARIANTS
from experiments_app.models import Experiment, Run, RunStatus, Team, new_webhook_secret
from experiments_app.results import experiment_results
from experiments_app.states import State

SECRET = new_webhook_secret()


def task(index):
    return {"externalId": TASKS[index]["external_id"], "input": TASKS[index]["input"]}


def pass_count(overrides):
    return sum(pipeline.answer(task(i), overrides)["output"] == TASKS[i]["expected"] for i in range(len(TASKS)))


def test_the_pipeline_is_deterministic():
    assert pipeline.answer(task(3), {"answer": {"temperature": 0.5}}, 2) == pipeline.answer(task(3), {"answer": {"temperature": 0.5}}, 2)


def outcomes(overrides, variant="Baseline", repetitions=3):
    """{task: (passed in repetition 1, 2, …)} of the whole catalog."""
    return {
        TASKS[i]["external_id"]: tuple(
            pipeline.answer(task(i), overrides, repetition, variant)["output"] == TASKS[i]["expected"]
            for repetition in range(1, repetitions + 1)
        )
        for i in range(len(TASKS))
    }


def test_temperature_makes_some_tasks_flaky_across_repetitions():
    flaky = [passes for passes in outcomes({"answer": {"temperature": 0.9}}).values() if len(set(passes)) == 2]
    assert len(flaky) >= 5


def test_at_temperature_zero_every_repetition_agrees():
    assert all(len(set(passes)) == 1 for passes in outcomes({"answer": {"temperature": 0.0}}).values())


def test_another_variant_with_the_same_configuration_samples_afresh():
    # The control re-runs the baseline's configuration: its draws differ, as a re-run's would.
    baseline, control = outcomes({}, "Baseline"), outcomes({}, CONTROL)
    assert baseline != control
    assert baseline == outcomes({}, "Baseline")


def test_cooler_and_stronger_configurations_answer_more_correctly():
    baseline = pass_count({})
    cooler = pass_count({"answer": {"temperature": 0.2}})
    stronger = pass_count({"answer": {"temperature": 0.2, "model": "gpt-4o"}})
    assert baseline < cooler < stronger


def test_the_system_prompt_changes_correctness():
    assert pass_count({"answer": {"system": "Think step by step and answer concisely."}}) > pass_count({})


def test_metrics_follow_the_model():
    mini = pipeline.answer(task(0), {"answer": {"model": "gpt-4o-mini"}})["metrics"]
    large = pipeline.answer(task(0), {"answer": {"model": "gpt-4o"}})["metrics"]
    assert large["latency_ms"] > mini["latency_ms"] and large["cost_usd"] > mini["cost_usd"]
    assert set(mini) == {"latency_ms", "prompt_tokens", "completion_tokens", "cost_usd"}


@pytest.fixture
def demo_server():
    server = serve_in_thread(port=0, secret=SECRET, async_fraction=0.0, speed=0.0)
    yield f"http://127.0.0.1:{server.server_address[1]}/webhook"
    server.shutdown()
    server.server_close()


def post(url, payload, secret=SECRET, msg_id="msg_demo"):
    body = webhooks.encode(payload)
    return httpx.post(url, content=body, headers=webhooks.signed_headers(secret, msg_id, body))


def test_the_demo_app_refuses_a_bad_signature(demo_server):
    assert post(demo_server, {"type": "webhook.ping", "data": {}}, secret=new_webhook_secret()).status_code == 401


def test_the_demo_app_answers_a_signed_test(demo_server):
    payload = {"type": "experiment.test", "data": {"testId": "t1", "repetition": 1, "callbackUrl": "http://127.0.0.1:9/",
               "task": task(0), "experiment": {"overrides": {"answer": {"model": "gpt-4o", "temperature": 0.0}}}}}  # fmt: skip
    response = post(demo_server, payload)
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(pipeline.answer(task(0), payload["data"]["experiment"]["overrides"])))


@pytest.mark.django_db
def test_load_demo_runs_a_baseline_and_variants_and_is_idempotent(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    call_command("load_demo")
    call_command("load_demo")
    team = Team.objects.get(slug="demo")
    experiment = Experiment.objects.get(team=team)
    assert experiment.status == State.IDLE
    assert (experiment.repetitions, experiment.guardrails[0]["metric"]) == (REPETITIONS, GUARDRAILS[0]["metric"])
    runs = Run.objects.real().filter(experiment=experiment)
    assert runs.count() == 2 + len(VARIANTS) and set(runs.values_list("status", flat=True)) == {RunStatus.SUCCEEDED}
    dry = Run.objects.get(experiment=experiment, dry_run=True)  # issue 13: one dry run, beside the results
    assert dry.total == 3 and dry.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
    assert experiment.application.webhook_url == "http://127.0.0.1:8100/webhook"
    assert (tmp_path / "demo_app.secret").read_text().strip() == experiment.application.webhook_secret
    assert team.memberships.get(user__username="demo").role == "admin"


def test_the_demo_reports_per_step_detail_that_adds_up_to_its_metrics():
    result = pipeline.answer(task(0), {"answer": {"model": "gpt-4o"}, "router": {"model": "o3-mini"}})
    steps, metrics = result["steps"], result["metrics"]
    assert set(steps) == {"router", "answer"}
    assert steps["answer"]["model"] == "gpt-4o" and steps["router"]["model"] == "o3-mini"
    assert steps["answer"]["output"] == result["output"]
    assert metrics["cost_usd"] == pytest.approx(steps["router"]["cost_usd"] + steps["answer"]["cost_usd"], abs=1e-6)
    assert metrics["latency_ms"] == pytest.approx(steps["router"]["latency_ms"] + steps["answer"]["latency_ms"], abs=0.11)
    assert metrics["prompt_tokens"] == steps["router"]["prompt_tokens"] + steps["answer"]["prompt_tokens"]


@pytest.mark.django_db
def test_the_demo_shows_each_part_of_a_verdict(tmp_path, monkeypatch):
    """Issue 9: flaky tasks, a control, a variant significant before Holm but not after, a
    latency guardrail, a variant that stopped early. One load (it takes seconds), one check each."""
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    call_command("load_demo")
    results = experiment_results(Experiment.objects.get(team__slug="demo"))
    baseline, rows = results["baseline"], {row["name"]: row for row in results["variants"]}

    # flaky tasks: temperature makes repetitions disagree
    assert baseline["flaky"] > 0 and baseline["pass_at_k"] > baseline["pass_rate"] > baseline["pass_hat_k"]
    # the control: the noise floor, no difference and no drift
    control = rows[CONTROL]
    assert control["is_control"] and control["verdict"]["code"] == "no_difference" and control["noise"]["flip_rate"] is not None
    assert not any(warning["code"] == "baseline_drift" for row in rows.values() for warning in row["warnings"])
    # raw p below 0.05, Holm-adjusted p not
    borderline = [row for row in rows.values() if row["p_value"] < 0.05 <= row["p_value_adjusted"]]
    assert [row["name"] for row in borderline] == ["Answers on claude-3-5-haiku"]
    assert not borderline[0]["significant"] and borderline[0]["verdict"]["code"] == "no_difference"
    # better variants, and the latency guardrail keeps the slower one from shipping
    assert {name for name, row in rows.items() if row["verdict"]["code"] == "better"} >= {"Cooler answers", "Step-by-step prompt"}
    slower = rows["Cooler answers on gpt-4o"]
    assert slower["verdict"]["code"] == "better" and slower["ship"] is False
    (latency,) = slower["guardrails"]
    assert latency["name"] == GUARDRAILS[0]["name"] and latency["delta"] > GUARDRAILS[0]["margin"] and not latency["non_inferior"]
    assert rows["Cooler answers"]["ship"] is True
    # stopped early once decided: the unsent tests are skipped
    assert [name for name, row in rows.items() if row["stopped_early"]] == ["Cooler answers on gpt-4o"]
    assert slower["skipped"] > 0 and slower["total"] + slower["skipped"] == len(TASKS) * REPETITIONS
