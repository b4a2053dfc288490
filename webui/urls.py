from django.urls import path, re_path
from django.views.generic import RedirectView

from webui.views import applications, catalog, deletes, experiments, guides, lifecycle, runs, setup, teams, tokens

app_name = "webui"
urlpatterns = [
    path("", RedirectView.as_view(url="/experiments/", permanent=False), name="home"),
    path("teams/switch/", teams.switch_team, name="team-switch"),
    path("help/statistics/", guides.statistics, name="help-statistics"),
    path("teams/tokens/", tokens.token_list, name="team-tokens"),
    path("teams/tokens/<uuid:pk>/revoke/", tokens.token_revoke, name="team-token-revoke"),
    # experiments
    path("experiments/", experiments.experiment_list, name="experiment-list"),
    path("experiments/new/", experiments.experiment_new, name="experiment-new"),
    path("experiments/<uuid:pk>/", experiments.experiment_detail, name="experiment-detail"),
    path("experiments/<uuid:pk>/header/", experiments.experiment_header, name="experiment-header"),
    path("experiments/<uuid:pk>/progress/", experiments.experiment_progress, name="experiment-progress"),
    path("experiments/<uuid:pk>/results/", experiments.experiment_results_fragment, name="experiment-results"),
    re_path(r"^experiments/(?P<pk>[0-9a-f-]{36})/results\.(?P<fmt>csv|json)$", runs.experiment_export, name="experiment-export"),
    path("experiments/<uuid:pk>/delete/", deletes.experiment_delete, name="experiment-delete"),
    path("experiments/<uuid:pk>/setup/", setup.experiment_setup, name="experiment-setup"),
    path("experiments/<uuid:pk>/setup/details/", setup.setup_details, name="experiment-setup-details"),
    path("experiments/<uuid:pk>/setup/steps/", setup.setup_steps, name="experiment-setup-steps"),
    path("experiments/<uuid:pk>/setup/save/", setup.setup_save, name="experiment-setup-save"),
    path("experiments/<uuid:pk>/setup/tasks/picker/", setup.setup_task_picker, name="experiment-setup-task-picker"),
    path("experiments/<uuid:pk>/setup/tasks/pick/", setup.setup_task_pick, name="experiment-setup-task-pick"),
    path("experiments/<uuid:pk>/setup/baseline/", setup.setup_baseline, name="experiment-setup-baseline"),
    path("experiments/<uuid:pk>/setup/settings/", setup.setup_settings, name="experiment-setup-settings"),
    path("experiments/<uuid:pk>/run-baseline/", lifecycle.run_baseline, name="experiment-run-baseline"),
    path("experiments/<uuid:pk>/reopen/", lifecycle.reopen, name="experiment-reopen"),
    path("experiments/<uuid:pk>/complete/", lifecycle.complete, name="experiment-complete"),
    path("experiments/<uuid:pk>/archive/", lifecycle.archive, name="experiment-archive"),
    path("experiments/<uuid:pk>/variants/new/", lifecycle.branch, name="variant-new"),
    path("variants/<uuid:pk>/run/", lifecycle.run_variant, name="variant-run"),
    path("variants/<uuid:pk>/delete/", lifecycle.delete_variant, name="variant-delete"),
    # runs
    path("runs/<uuid:pk>/", runs.run_detail, name="run-detail"),
    path("runs/<uuid:pk>/summary/", runs.run_summary, name="run-summary"),
    path("runs/<uuid:pk>/cancel/", lifecycle.cancel_run, name="run-cancel"),
    re_path(r"^runs/(?P<pk>[0-9a-f-]{36})/export\.(?P<fmt>csv|json)$", runs.run_export, name="run-export"),
    path("runs/<uuid:pk>/tests/<uuid:test_id>/", runs.test_detail, name="test-detail"),
    path("runs/<uuid:new>/compare/<uuid:old>/", runs.run_compare, name="run-compare"),
    # applications
    path("applications/", applications.application_list, name="application-list"),
    path("applications/<uuid:pk>/", applications.application_detail, name="application-detail"),
    path("applications/<uuid:pk>/rotate-secret/", applications.rotate_secret, name="application-rotate-secret"),
    path("applications/<uuid:pk>/ping/", applications.ping, name="application-ping"),
    path("applications/<uuid:pk>/delete/", deletes.application_delete, name="application-delete"),
    path("applications/<uuid:pk>/steps/", catalog.steps_tab, name="application-steps"),
    path("applications/<uuid:pk>/steps/<uuid:step_id>/", catalog.step_edit, name="step-edit"),
    path("applications/<uuid:pk>/steps/<uuid:step_id>/delete/", deletes.step_delete, name="step-delete"),
    path("applications/<uuid:pk>/tasks/", catalog.tasks_tab, name="application-tasks"),
    path("applications/<uuid:pk>/tasks/import/", catalog.tasks_import, name="application-tasks-import"),
    path("applications/<uuid:pk>/tasks/<uuid:task_id>/", catalog.task_edit, name="task-edit"),
    path("applications/<uuid:pk>/tasks/<uuid:task_id>/delete/", deletes.task_delete, name="task-delete"),
]
