"""Sign-in, team scoping, the team switcher and role checks on the pages."""

import pytest

from experiments_app.models import Membership, Role
from tests.factories import make_application, make_team
from tests.webui.conftest import make_ready, make_with_results

pytestmark = pytest.mark.django_db


def test_pages_redirect_anonymous_users_to_sign_in(client):
    response = client.get("/experiments/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/experiments/")


def test_home_redirects_to_experiments(client):
    assert client.get("/")["Location"] == "/experiments/"


def test_login_page_renders_and_signs_in(client):
    from tests.factories import make_user

    make_user(make_team(), username="ana", password="secret-pw")
    assert b"Sign in" in client.get("/accounts/login/").content
    response = client.post("/accounts/login/", {"username": "ana", "password": "secret-pw"})
    assert response.status_code == 302
    assert response["Location"] == "/experiments/"


def test_login_shows_an_error_for_a_wrong_password(client):
    response = client.post("/accounts/login/", {"username": "nobody", "password": "x"})
    assert response.status_code == 200
    assert b"errorlist" in response.content


def test_sign_out_ends_the_session(editor):
    response = editor.post("/accounts/logout/")
    assert response.status_code == 302
    assert editor.get("/experiments/").status_code == 302


def test_user_without_team_sees_an_explanation(client):
    from tests.factories import make_user

    client.force_login(make_user(None))
    response = client.get("/experiments/")
    assert response.status_code == 403
    assert b"not in a team" in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/experiments/{experiment}/",
        "/experiments/{experiment}/header/",
        "/experiments/{experiment}/progress/",
        "/experiments/{experiment}/results/",
        "/experiments/{experiment}/setup/",
        "/experiments/{experiment}/results.csv",
        "/experiments/{experiment}/variants/new/",
        "/runs/{run}/",
        "/runs/{run}/summary/",
        "/runs/{run}/export.json",
        "/runs/{run}/tests/{test}/",
        "/runs/{run}/compare/{run}/",
        "/applications/{application}/",
        "/applications/{application}/steps/",
        "/applications/{application}/tasks/",
    ],
)
def test_another_teams_objects_are_not_found(editor, outsider, path):
    experiment, baseline_run, _, _ = make_with_results(editor.team)
    url = path.format(
        experiment=experiment.pk, run=baseline_run.pk, test=baseline_run.tests.first().pk, application=experiment.application_id
    )
    assert editor.get(url).status_code in (200, 286)  # 286: a finished run's summary stops polling
    assert outsider.get(url).status_code == 404
    assert outsider.get(url, HTTP_HX_REQUEST="true").status_code == 404


def test_another_teams_objects_cannot_be_changed(editor, outsider):
    experiment = make_ready(editor.team)
    assert outsider.post(f"/experiments/{experiment.pk}/run-baseline/").status_code == 404
    experiment.refresh_from_db()
    assert experiment.status == "baseline_pending"


def test_viewer_sees_no_run_button(editor, viewer):
    experiment = make_ready(editor.team)
    assert b"Run baseline" in editor.get(f"/experiments/{experiment.pk}/").content
    assert b"Run baseline" not in viewer.get(f"/experiments/{experiment.pk}/").content


def test_server_refuses_a_viewers_run_anyway(viewer):
    experiment = make_ready(viewer.team)
    response = viewer.post(f"/experiments/{experiment.pk}/run-baseline/")
    assert response.status_code == 403
    experiment.refresh_from_db()
    assert experiment.status == "baseline_pending"


def test_viewer_cannot_branch_or_run_variants(editor, viewer):
    experiment, _, variant, _ = make_with_results(editor.team)
    page = viewer.get(f"/experiments/{experiment.pk}/").content
    assert b"+ branch" not in page and b"Run \xe2\x96\xb8" not in page
    assert viewer.get(f"/experiments/{experiment.pk}/variants/new/").status_code == 403
    assert viewer.post(f"/variants/{variant.pk}/run/").status_code == 403


def test_lists_show_the_team_picked_in_the_switcher(editor):
    other = make_team(name="Zeta team")  # teams are listed by name; the first is the default
    Membership.objects.create(team=other, user=editor.user, role=Role.VIEWER)
    make_ready(editor.team, name="First team's experiment")
    make_ready(other, name="Second team's experiment")
    page = editor.get("/experiments/").content.decode()
    assert "First team&#x27;s experiment" in page and "Zeta team" in page  # the switcher lists both teams
    response = editor.post("/teams/switch/", {"team": str(other.pk), "next": "/experiments/"})
    assert response["Location"] == "/experiments/"
    page = editor.get("/experiments/").content.decode()
    assert "Second team&#x27;s experiment" in page and "First team&#x27;s experiment" not in page


def test_switching_to_a_team_i_am_not_in_is_ignored(editor):
    stranger = make_team()
    make_ready(editor.team, name="Mine")
    editor.post("/teams/switch/", {"team": str(stranger.pk)})
    assert b"Mine" in editor.get("/experiments/").content


def test_switch_ignores_an_offsite_next(editor):
    response = editor.post("/teams/switch/", {"team": str(editor.team.pk), "next": "https://evil.example/"})
    assert response["Location"] == "/experiments/"


def test_role_in_the_objects_team_applies(editor):
    """A viewer of team B who is an editor of team A cannot run B's experiments."""
    other = make_team()
    Membership.objects.create(team=other, user=editor.user, role=Role.VIEWER)
    experiment = make_ready(other)
    assert editor.get(f"/experiments/{experiment.pk}/").status_code == 200
    assert editor.post(f"/experiments/{experiment.pk}/run-baseline/").status_code == 403


def test_static_assets_are_served_locally_not_from_a_cdn(editor):
    experiment = make_ready(editor.team)
    page = editor.get(f"/experiments/{experiment.pk}/").content.decode()
    assert "/static/vendor/htmx.min.js" in page and "/static/vendor/plotly.min.js" in page
    assert "cdn" not in page.lower() and "unpkg" not in page.lower()


def test_body_carries_the_csrf_token_for_htmx(editor):
    page = editor.get("/experiments/").content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in page


def test_applications_list_is_scoped_to_the_team(editor):
    make_application(editor.team, name="Ours")
    make_application(make_team(), name="Theirs")
    page = editor.get("/applications/").content
    assert b"Ours" in page and b"Theirs" not in page
