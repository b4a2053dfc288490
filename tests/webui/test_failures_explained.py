"""Failures explained where they happen (issue 11): failed runs, awaiting callbacks, delivery failures, stale flashes."""

import pytest

from experiments_app import runs
from tests.webui.conftest import finish_run, make_ready

pytestmark = pytest.mark.django_db


def test_with_only_a_baseline_the_delta_chart_is_replaced_by_a_sentence(editor):
    experiment = make_ready(editor.team)
    finish_run(runs.start_baseline_run(experiment), lambda ext: True)
    html = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert 'id="fig-pass-rate"' in html
    assert 'id="fig-delta"' not in html and 'id="chart-delta"' not in html
    assert "once a variant has a result" in html
