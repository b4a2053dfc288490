"""The decision report as a page, styled to print (the same data as experiments/{id}/report/)."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from experiments_app.report import build_report
from webui.access import team_member
from webui.views.experiments import load_experiment


@require_GET
@team_member
def experiment_report(request, pk):
    experiment = load_experiment(request, pk)
    return render(request, "webui/experiment_report.html", {"experiment": experiment, "report": build_report(experiment)})
