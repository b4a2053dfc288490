"""A typed client for the routes of SPEC §8. Every method is one request (lists follow `next`)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any, Literal, TypedDict

import httpx

JSON = dict[str, Any]
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_RUN_STATUSES = ("succeeded", "failed", "cancelled")
MAX_WAIT_SECONDS = 60


class ClientError(Exception):
    """Base of the errors this client raises."""


class ConnectionFailed(ClientError):
    """The server could not be reached (or did not answer in time)."""


class ApiError(ClientError):
    """The server answered with an error status; `code`, `detail` and `errors` come from its body."""

    def __init__(self, status_code: int, code: str, detail: str, errors: dict[str, list[str]] | None = None):
        self.status_code, self.code, self.detail, self.errors = status_code, code, detail, errors or {}
        fields = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in self.errors.items())
        super().__init__(f"HTTP {status_code} {code}: {detail}" + (f" ({fields})" if fields else ""))


class RunTimedOut(ClientError):
    """The run had not ended when the wait's timeout passed."""

    def __init__(self, run: Run, seconds: float):
        self.run = run
        super().__init__(f"run {run['id']} is still {run['status']} after {seconds:g}s")


class Run(TypedDict):
    id: str
    experiment: str
    variant: str
    status: RunStatus
    total: int
    passed: int
    failed: int
    errored: int
    started_at: str | None
    completed_at: str | None
    created_at: str
    webhook_url: str


class Verdict(TypedDict):
    code: Literal["better", "worse", "no_difference", "inconclusive", "pending"]
    text: str


class Result(TypedDict, total=False):
    variant: str
    name: str
    parent: str | None
    is_baseline: bool
    change: dict[str, Any] | None
    run: str | None
    status: RunStatus | None
    pass_rate: float | None
    pass_rate_vs_baseline: float | None
    delta_pp: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    total: int | None
    passed: int | None
    failed: int | None
    errored: int | None
    improved: list[str]
    regressed: list[str]
    completed_at: str | None
    metrics: dict[str, dict[str, Any]]
    evaluators: dict[str, dict[str, Any]]
    delta_ci_low: float | None
    delta_ci_high: float | None
    p_value_adjusted: float | None
    significant: bool
    verdict: Verdict
    mde_pp: float | None
    tasks_needed: int | None
    flaky: int | None
    pass_at_k: float | None
    pass_hat_k: float | None
    warnings: list[dict[str, str]]
    guardrails: list[dict[str, Any]]
    ship: bool | None
    stopped_early: bool | None
    skipped: int | None
    is_control: bool


class Results(TypedDict):
    baseline: Result
    variants: list[Result]


Gate = TypedDict("Gate", {"pass": bool, "reason": str, "verdict": Verdict, "variant": str, "run": str | None, "result": Result})


class Client:
    """`Client(url, token)`: `url` is the dashboard's address (the API is under /api/v1/)."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = httpx.Client(
            base_url=f"{self.url}/api/v1/",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "experiments-client/0.1"},
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """A client for EXPERIMENTS_URL with EXPERIMENTS_TOKEN; ClientError when either is unset."""
        url, token = os.environ.get("EXPERIMENTS_URL"), os.environ.get("EXPERIMENTS_TOKEN")
        if not url:
            raise ClientError("EXPERIMENTS_URL is not set")
        if not token:
            raise ClientError("EXPERIMENTS_TOKEN is not set")
        return cls(url, token, **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- transport --------------------------------------------------------------------

    def request(self, method: str, path: str, *, json: Any = None, params: dict | None = None, timeout: float | None = None) -> Any:
        """One request; the decoded JSON body (text for non-JSON answers, None for 204)."""
        params = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self.http.request(method, path, json=json, params=params, timeout=timeout or self.timeout)
        except httpx.TimeoutException as error:
            raise ConnectionFailed(f"no answer from {self.url} in time ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise ConnectionFailed(f"cannot reach {self.url}: {error}") from None
        if response.status_code == 204:
            return None
        is_json = response.headers.get("content-type", "").startswith("application/json")
        if response.status_code >= 400:
            body = response.json() if is_json else {}
            raise ApiError(response.status_code, body.get("code", "error"), body.get("detail", response.reason_phrase), body.get("errors"))
        return response.json() if is_json else response.text

    def pages(self, path: str, params: dict | None = None) -> Iterator[JSON]:
        """Every item of a paginated list, following `next`."""
        page = self.request("GET", path, params=params)
        while True:
            yield from page["results"]
            if not page.get("next"):
                return
            page = self.request("GET", page["next"])

    # --- applications, steps, tasks ---------------------------------------------------

    def list_applications(self) -> list[JSON]:
        return list(self.pages("applications/"))

    def create_application(self, name: str, webhook_url: str, **fields: Any) -> JSON:
        return self.request("POST", "applications/", json={"name": name, "webhook_url": webhook_url, **fields})

    def get_application(self, application_id: str) -> JSON:
        return self.request("GET", f"applications/{application_id}/")

    def update_application(self, application_id: str, **fields: Any) -> JSON:
        return self.request("PATCH", f"applications/{application_id}/", json=fields)

    def delete_application(self, application_id: str) -> None:
        self.request("DELETE", f"applications/{application_id}/")

    def rotate_application_secret(self, application_id: str) -> JSON:
        return self.request("POST", f"applications/{application_id}/rotate-secret/")

    def ping_application(self, application_id: str) -> JSON:
        return self.request("POST", f"applications/{application_id}/ping/")

    def list_inference_steps(self, application_id: str) -> list[JSON]:
        return list(self.pages(f"applications/{application_id}/inference-steps/"))

    def create_inference_step(self, application_id: str, external_id: str, config: dict[str, Any], **fields: Any) -> JSON:
        body = {"external_id": external_id, "config": config, **fields}
        return self.request("POST", f"applications/{application_id}/inference-steps/", json=body)

    def get_inference_step(self, application_id: str, step_id: str) -> JSON:
        return self.request("GET", f"applications/{application_id}/inference-steps/{step_id}/")

    def update_inference_step(self, application_id: str, step_id: str, **fields: Any) -> JSON:
        return self.request("PATCH", f"applications/{application_id}/inference-steps/{step_id}/", json=fields)

    def delete_inference_step(self, application_id: str, step_id: str) -> None:
        self.request("DELETE", f"applications/{application_id}/inference-steps/{step_id}/")

    def list_tasks(self, application_id: str, tag: str | None = None) -> list[JSON]:
        return list(self.pages(f"applications/{application_id}/tasks/", {"tag": tag}))

    def create_task(self, application_id: str, external_id: str, input: dict[str, Any], **fields: Any) -> JSON:
        return self.request("POST", f"applications/{application_id}/tasks/", json={"external_id": external_id, "input": input, **fields})

    def bulk_create_tasks(self, application_id: str, tasks: list[dict[str, Any]]) -> int:
        return self.request("POST", f"applications/{application_id}/tasks/bulk/", json=tasks)["created"]

    def get_task(self, application_id: str, task_id: str) -> JSON:
        return self.request("GET", f"applications/{application_id}/tasks/{task_id}/")

    def update_task(self, application_id: str, task_id: str, **fields: Any) -> JSON:
        return self.request("PATCH", f"applications/{application_id}/tasks/{task_id}/", json=fields)

    def delete_task(self, application_id: str, task_id: str) -> None:
        self.request("DELETE", f"applications/{application_id}/tasks/{task_id}/")

    # --- experiments and variants -----------------------------------------------------

    def list_experiments(self, status: str | None = None) -> list[JSON]:
        return list(self.pages("experiments/", {"status": status}))

    def create_experiment(self, application: str, name: str, description: str = "") -> JSON:
        return self.request("POST", "experiments/", json={"application": application, "name": name, "description": description})

    def get_experiment(self, experiment_id: str) -> JSON:
        return self.request("GET", f"experiments/{experiment_id}/")

    def update_experiment(self, experiment_id: str, **changes: Any) -> JSON:
        return self.request("PATCH", f"experiments/{experiment_id}/", json=changes)

    def delete_experiment(self, experiment_id: str) -> None:
        self.request("DELETE", f"experiments/{experiment_id}/")

    def get_baseline(self, experiment_id: str) -> JSON:
        return self.request("GET", f"experiments/{experiment_id}/baseline/")

    def set_baseline(self, experiment_id: str, config: dict[str, dict[str, Any]]) -> JSON:
        return self.request("PUT", f"experiments/{experiment_id}/baseline/", json={"config": config})

    def run_baseline(self, experiment_id: str) -> Run:
        return self.request("POST", f"experiments/{experiment_id}/run-baseline/")

    def list_runs(self, experiment_id: str, status: str | None = None) -> list[Run]:
        return list(self.pages(f"experiments/{experiment_id}/runs/", {"status": status}))  # type: ignore[arg-type]

    def results(self, experiment_id: str) -> Results:
        return self.request("GET", f"experiments/{experiment_id}/results/")

    def gate(self, experiment_id: str, variant: str, *, max_regression_pp: float = 0.0, alpha: float | None = None) -> Gate:
        params = {"variant": variant, "max_regression_pp": max_regression_pp, "alpha": alpha}
        return self.request("GET", f"experiments/{experiment_id}/gate/", params=params)

    def report(self, experiment_id: str, format: Literal["json", "md", "csv"] = "json") -> JSON | str:
        return self.request("GET", f"experiments/{experiment_id}/report/", params={"format": format})

    def reopen_experiment(self, experiment_id: str) -> JSON:
        return self.request("POST", f"experiments/{experiment_id}/reopen/")

    def complete_experiment(self, experiment_id: str, winner: str | None = None) -> JSON:
        return self.request("POST", f"experiments/{experiment_id}/complete/", json={"winner": winner})

    def archive_experiment(self, experiment_id: str) -> JSON:
        return self.request("POST", f"experiments/{experiment_id}/archive/")

    def list_variants(self, experiment_id: str) -> list[JSON]:
        return list(self.pages(f"experiments/{experiment_id}/variants/"))

    def create_variant(self, experiment_id: str, parent: str, inference_step: str, parameter: str, value: Any, name: str = "") -> JSON:
        body = {"parent": parent, "inference_step": inference_step, "parameter": parameter, "value": value, "name": name}
        return self.request("POST", f"experiments/{experiment_id}/variants/", json=body)

    def get_variant(self, variant_id: str) -> JSON:
        return self.request("GET", f"variants/{variant_id}/")

    def delete_variant(self, variant_id: str) -> None:
        self.request("DELETE", f"variants/{variant_id}/")

    def run_variant(self, variant_id: str, *, webhook_url: str | None = None, stop_when_decided: bool | None = None) -> Run:
        body = {
            key: value for key, value in {"webhook_url": webhook_url, "stop_when_decided": stop_when_decided}.items() if value is not None
        }
        return self.request("POST", f"variants/{variant_id}/run/", json=body)

    # --- runs and tests ---------------------------------------------------------------

    def get_run(self, run_id: str, *, wait: int | None = None) -> Run:
        """The run; with `wait` (1–60 s) the server answers as soon as it ends, or after that long."""
        timeout = self.timeout + wait if wait else None
        return self.request("GET", f"runs/{run_id}/", params={"wait": wait}, timeout=timeout)

    def wait_for_run(self, run_id: str, timeout: float | None = None) -> Run:
        """Long-poll until the run ends; RunTimedOut after `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_WAIT_SECONDS if deadline is None else deadline - time.monotonic()
            run = self.get_run(run_id, wait=max(1, min(MAX_WAIT_SECONDS, int(left)))) if left >= 1 else self.get_run(run_id)
            if run["status"] in TERMINAL_RUN_STATUSES:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                raise RunTimedOut(run, timeout or 0)

    def list_tests(self, run_id: str, status: str | None = None) -> list[JSON]:
        return list(self.pages(f"runs/{run_id}/tests/", {"status": status}))

    def cancel_run(self, run_id: str) -> Run:
        return self.request("POST", f"runs/{run_id}/cancel/")

    def compare_runs(self, new_run: str, old_run: str) -> JSON:
        return self.request("GET", f"runs/{new_run}/compare/{old_run}/")

    def get_test(self, test_id: str) -> JSON:
        return self.request("GET", f"tests/{test_id}/")

    def report_test_result(self, test_id: str, output: Any, **fields: Any) -> JSON:
        return self.request("POST", f"tests/{test_id}/result/", json={"output": output, **fields})

    # --- event endpoints --------------------------------------------------------------

    def list_event_endpoints(self) -> list[JSON]:
        return list(self.pages("event-endpoints/"))

    def create_event_endpoint(self, url: str, events: list[str], application: str | None = None, description: str = "") -> JSON:
        body = {"url": url, "events": events, "application": application, "description": description}
        return self.request("POST", "event-endpoints/", json=body)

    def get_event_endpoint(self, endpoint_id: str) -> JSON:
        return self.request("GET", f"event-endpoints/{endpoint_id}/")

    def update_event_endpoint(self, endpoint_id: str, **fields: Any) -> JSON:
        return self.request("PATCH", f"event-endpoints/{endpoint_id}/", json=fields)

    def delete_event_endpoint(self, endpoint_id: str) -> None:
        self.request("DELETE", f"event-endpoints/{endpoint_id}/")

    def rotate_event_endpoint_secret(self, endpoint_id: str) -> JSON:
        return self.request("POST", f"event-endpoints/{endpoint_id}/rotate-secret/")

    def list_event_deliveries(self, endpoint_id: str) -> list[JSON]:
        return list(self.pages(f"event-endpoints/{endpoint_id}/deliveries/"))

    def redeliver_event(self, endpoint_id: str, delivery_id: str) -> JSON:
        return self.request("POST", f"event-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver/")
