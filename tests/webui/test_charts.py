"""The experiment page's charts: plotly figures built with plotly's Python API, drawn by the
plotly.min.js of the same installed package, and never loaded into a worker."""

import json
import re
import subprocess
import sys
from pathlib import Path

import plotly
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs_version

from tests.webui.test_presentation import RESULTS
from webui import charts

BASE_DIR = Path(__file__).resolve().parent.parent.parent
PACKAGE_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@pytest.mark.parametrize("build", [charts.pass_rate_figure, charts.delta_figure])
def test_figures_are_valid_plotly_figures_as_plain_json(build):
    figure = build(RESULTS)

    assert json.loads(json.dumps(figure)) == json.loads(json.dumps(go.Figure(figure).to_plotly_json()))
    assert figure["layout"]["template"] == {"data": {"scatter": [{"type": "scatter"}]}}  # plotly's empty "none" template


def test_figures_refuse_what_plotly_would_not_draw():
    with pytest.raises(ValueError, match="Invalid value"):
        charts.base_layout("title", "y", bargap=-1)


@pytest.mark.django_db
def test_the_page_gets_the_plotly_js_of_the_installed_package(client, settings):
    settings.DEBUG = False

    response = client.get("/static/vendor/plotly.min.js")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PACKAGE_JS.read_bytes()
    assert not (BASE_DIR / "static" / "vendor" / "plotly.min.js").exists()


def test_the_javascript_and_python_halves_are_one_release():
    header = PACKAGE_JS.read_text(encoding="utf-8")[:200]
    assert re.search(r"plotly\.js v(\S+)", header).group(1) == get_plotlyjs_version()


def test_a_worker_never_imports_plotly():
    """What a worker loads: the Celery app with Django set up, the task modules, and every
    module of experiments_app (the engine included)."""
    code = (
        "import importlib, pkgutil, sys\n"
        "from dashboard.celery import app\n"
        "import django; django.setup()\n"
        "app.loader.import_default_modules()\n"
        "import experiments_app\n"
        "for module in pkgutil.walk_packages(experiments_app.__path__, 'experiments_app.'):\n"
        "    importlib.import_module(module.name)\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'plotly'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
