"""Per-step detail (SPEC §5 `steps`): its shape, storage, flagging, aggregation and cost."""

import pytest
from django.urls import reverse

from experiments_app import actions, results, runs, stats, step_detail
from experiments_app.errors import ValidationFailed
from tests.api_fixtures import ready_experiment
from tests.factories import make_application

ROUTER = {
    "model": "gpt-4o-mini",
    "output": "capital",
    "latency_ms": 120.5,
    "prompt_tokens": 40,
    "completion_tokens": 2,
    "cost_usd": 0.00001,
}
ANSWER = {"model": "gpt-4o", "output": "Paris", "latency_ms": 650, "prompt_tokens": 55, "completion_tokens": 80, "cost_usd": 0.0009}


def invalid_fields(data):
    with pytest.raises(ValidationFailed) as caught:
        runs.parse_result(data)
    return caught.value.errors


def test_parse_keeps_every_step_field():
    parsed = runs.parse_result({"output": "Paris", "steps": {"router": ROUTER, "answer": ANSWER}})
    assert parsed["steps"] == {"router": ROUTER, "answer": ANSWER}


def test_parse_drops_null_step_fields_and_accepts_no_steps():
    assert runs.parse_result({"output": 1, "steps": {"a": {"model": None, "latency_ms": 3}}})["steps"] == {"a": {"latency_ms": 3}}
    assert runs.parse_result({"output": 1, "steps": None})["steps"] == {}
    assert runs.parse_result({"output": 1})["steps"] == {}


def test_parse_names_each_bad_step_field():
    errors = invalid_fields(
        {
            "output": 1,
            "steps": {
                "a": {"model": "", "latency_ms": -1, "prompt_tokens": 2.5, "completion_tokens": True, "cost_usd": "cheap"},
                "b": {"temperature": 0.2},
                "c": "fast",
            },
        }
    )
    assert set(errors) == {
        "steps.a.model",
        "steps.a.latency_ms",
        "steps.a.prompt_tokens",
        "steps.a.completion_tokens",
        "steps.a.cost_usd",
        "steps.b.temperature",
        "steps.c",
    }


def test_parse_refuses_steps_that_are_not_an_object():
    assert set(invalid_fields({"output": 1, "steps": [ROUTER]})) == {"steps"}


def test_parse_refuses_too_many_steps():
    steps = {f"s{index}": {} for index in range(step_detail.MAX_STEPS + 1)}
    assert set(invalid_fields({"output": 1, "steps": steps})) == {"steps"}


def test_whole_token_counts_written_as_floats_are_accepted_as_integers():
    parsed = runs.parse_result({"output": 1, "steps": {"a": {"prompt_tokens": 12.0}}})
    assert parsed["steps"]["a"]["prompt_tokens"] == 12 and isinstance(parsed["steps"]["a"]["prompt_tokens"], int)


def test_a_step_outside_the_scope_is_flagged():
    assert step_detail.out_of_scope({"main": {}, "reranker": {}, "a": {}}, {"main": {}}) == ["a", "reranker"]
    assert step_detail.out_of_scope({}, {"main": {}}) == []


def test_a_test_costs_its_cost_metric_else_the_sum_of_its_steps():
    assert step_detail.test_cost({"cost_usd": 0.5}, {"a": {"cost_usd": 1}}) == 0.5
    assert step_detail.test_cost({}, {"a": {"cost_usd": 1}, "b": {"cost_usd": 0.25}, "c": {}}) == 1.25
    assert step_detail.test_cost({"latency_ms": 3}, {"a": {"model": "x"}}) is None  # not reported is not zero


def test_aggregate_summarizes_each_step_over_the_tests_that_reported_it():
    rows = [
        (
            {"cost_usd": 0.01},
            {"router": {"model": "m1", "latency_ms": 100, "prompt_tokens": 10, "completion_tokens": 1, "cost_usd": 0.001}},
        ),
        ({}, {"router": {"model": "m1", "latency_ms": 300, "prompt_tokens": 20, "cost_usd": 0.003}, "answer": {"model": "m2"}}),
        ({}, {}),
        (None, None),
    ]
    aggregated = step_detail.aggregate(rows)
    router = aggregated["steps"]["router"]
    assert router["count"] == 2 and router["models"] == {"m1": 2}
    assert router["latency_ms"] == stats.summarize([100, 300])
    assert router["tokens"]["sum"] == 31  # 10 + 1, then 20 (completion not reported)
    assert router["cost_usd"]["sum"] == pytest.approx(0.004)
    assert aggregated["steps"]["answer"]["latency_ms"]["count"] == 0 and aggregated["steps"]["answer"]["latency_ms"]["mean"] is None
    # Per test: 0.01 (its metric), 0.003 (its steps); the other two reported no cost at all.
    assert aggregated["cost"]["count"] == 2 and aggregated["cost"]["sum"] == pytest.approx(0.013)


def test_p95_of_a_step_latency_matches_the_percentile_of_its_values():
    rows = [({}, {"a": {"latency_ms": value}}) for value in range(1, 101)]
    assert step_detail.aggregate(rows)["steps"]["a"]["latency_ms"]["p95"] == pytest.approx(
        stats.percentile(list(map(float, range(1, 101))), 95)
    )


def test_deltas_set_each_step_beside_the_baselines_and_leave_missing_as_none():
    variant = step_detail.aggregate([({}, {"a": {"latency_ms": 200, "cost_usd": 0.2}, "b": {"latency_ms": 5}})])["steps"]
    baseline = step_detail.aggregate([({}, {"a": {"latency_ms": 150, "cost_usd": 0.1}})])["steps"]
    deltas = step_detail.step_deltas(variant, baseline)
    assert deltas["a"]["latency_ms_mean"] == 50 and deltas["a"]["latency_ms_p95"] == 50
    assert deltas["a"]["cost_usd_mean"] == pytest.approx(0.1) and deltas["a"]["tokens_mean"] is None
    assert deltas["b"]["latency_ms_mean"] is None  # the baseline has no step b


def test_cost_figures_are_missing_without_a_reported_cost_or_a_passed_test():
    assert step_detail.cost_figures({"cost": stats.summarize([0.1, 0.3])}, passed=2) == {
        "cost_per_test": pytest.approx(0.2),
        "cost_per_passed": pytest.approx(0.2),
    }
    assert step_detail.cost_figures({"cost": stats.summarize([0.1, 0.3])}, passed=0)["cost_per_passed"] is None
    assert step_detail.cost_figures({"metrics": {}}, passed=3) == {"cost_per_test": None, "cost_per_passed": None}
    # Runs summarized before per-test cost was stored fall back to the cost_usd metric.
    assert step_detail.cost_figures({"metrics": {"cost_usd": stats.summarize([1.0])}}, passed=1)["cost_per_passed"] == 1.0


def test_trace_aligns_steps_in_scope_order_then_the_flagged_ones():
    rows = step_detail.trace({"answer": ANSWER, "extra": {"model": "x"}}, {"router": ROUTER, "answer": ANSWER}, ["router", "answer"])
    assert [(row["step"], row["in_scope"]) for row in rows] == [("router", True), ("answer", True), ("extra", False)]
    assert rows[0]["this"] is None and rows[0]["baseline"]["tokens"] == 42
    assert rows[1]["this"]["tokens"] == 135


# ------------------------------------------------------------------ through the API


def pending_test(world):
    return runs.start_variant_run(world.variant).tests.first()


@pytest.mark.django_db
def test_a_result_with_steps_is_stored_and_shown_with_the_flagged_ones(editor, viewer, world):
    test = pending_test(world)
    result_url = reverse("api:test-result", kwargs={"id": test.pk})
    response = editor.post(result_url, {"output": test.task_expected, "steps": {"main": ANSWER, "reranker": ROUTER}}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["steps"] == {"main": ANSWER, "reranker": ROUTER}
    assert body["steps_out_of_scope"] == ["reranker"]
    listed = viewer.get(reverse("api:run-tests", kwargs={"id": test.run_id})).json()["results"]
    assert [row["steps_out_of_scope"] for row in listed if row["id"] == str(test.pk)] == [["reranker"]]


@pytest.mark.django_db
def test_a_result_with_bad_steps_is_400_naming_the_field_and_stores_nothing(editor, world):
    test = pending_test(world)
    result_url = reverse("api:test-result", kwargs={"id": test.pk})
    response = editor.post(result_url, {"output": 1, "steps": {"main": {"latency_ms": "slow"}}}, format="json")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["steps.main.latency_ms"]
    test.refresh_from_db()
    assert test.status == "pending" and test.steps == {}


@pytest.mark.django_db
def test_the_same_result_with_other_steps_is_a_different_result(editor, world):
    test = pending_test(world)
    result_url = reverse("api:test-result", kwargs={"id": test.pk})
    assert editor.post(result_url, {"output": 1, "steps": {"main": {"latency_ms": 1}}}, format="json").status_code == 200
    assert editor.post(result_url, {"output": 1, "steps": {"main": {"latency_ms": 1}}}, format="json").status_code == 200
    assert editor.post(result_url, {"output": 1, "steps": {"main": {"latency_ms": 2}}}, format="json").status_code == 409


def report(run, *, latency, cost, passing):
    """Answer every test of `run` with one `main` step; the first `passing` tests pass."""
    for index, test in enumerate(run.tests.order_by("task_external_id")):
        steps = {"main": {"model": "m", "latency_ms": latency + index, "prompt_tokens": 10, "completion_tokens": 5}}
        if cost is not None:
            steps["main"]["cost_usd"] = cost
        runs.record_result(test.pk, {"output": test.task_expected if index < passing else "wrong", "steps": steps})
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_results_carry_cost_per_passed_and_per_step_deltas_against_the_baseline(team):
    experiment = ready_experiment(make_application(team), n_tasks=4)
    report(runs.start_baseline_run(experiment), latency=100, cost=0.01, passing=2)
    experiment.refresh_from_db()
    variant = actions.create_variant(experiment, parent=experiment.baseline, inference_step="main", parameter="model", value="gpt-4o")
    report(runs.start_variant_run(variant), latency=160, cost=0.03, passing=3)
    answer = results.experiment_results(experiment)
    baseline, row = answer["baseline"], answer["variants"][0]
    assert baseline["cost_per_test"] == pytest.approx(0.01) and baseline["cost_per_passed"] == pytest.approx(0.04 / 2)
    assert row["cost_per_test"] == pytest.approx(0.03) and row["cost_per_passed"] == pytest.approx(0.12 / 3)
    main = row["steps"]["main"]
    assert main["latency_ms"]["mean"] == pytest.approx(161.5) and main["tokens"]["mean"] == 15
    assert main["delta"]["latency_ms_mean"] == pytest.approx(60) and main["delta"]["tokens_mean"] == 0
    assert main["delta"]["cost_usd_sum"] == pytest.approx(0.08)
    assert "delta" not in baseline["steps"]["main"]


@pytest.mark.django_db
def test_results_without_a_reported_cost_show_it_missing_not_zero(team):
    experiment = ready_experiment(make_application(team), n_tasks=2)
    report(runs.start_baseline_run(experiment), latency=100, cost=None, passing=2)
    baseline = results.experiment_results(experiment)["baseline"]
    assert baseline["cost_per_test"] is None and baseline["cost_per_passed"] is None
    assert baseline["steps"]["main"]["cost_usd"]["mean"] is None and baseline["steps"]["main"]["cost_usd"]["count"] == 0
