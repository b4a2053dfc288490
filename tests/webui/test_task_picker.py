"""The task picker on the setup page: search, pages of 50, add/remove one or all matching, at any size."""

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from experiments_app import actions
from experiments_app.models import Role, Task
from tests.factories import make_application, make_step, make_task, make_team, make_user
from tests.webui.conftest import make_with_results, signed_in

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def many_tasks(application, n):
    """`n` tasks `case-00000`…, every tenth tagged `hard`, named after their number."""
    Task.objects.bulk_create(
        Task(
            application=application,
            external_id=f"case-{i:05d}",
            name=f"Question number {i}",
            input={"i": i},
            tags=["hard"] if i % 10 == 0 else [],
        )
        for i in range(n)
    )


def experiment_with_tasks(team, n_tasks):
    """A draft experiment with one step in scope and no task selected yet."""
    application = make_application(team)
    make_step(application, external_id="main")
    many_tasks(application, n_tasks)
    experiment = actions.create_experiment(application, name="Big")
    actions.set_scope(experiment, steps=["main"])
    experiment.refresh_from_db()
    return experiment


@pytest.fixture
def big(editor):
    return experiment_with_tasks(editor.team, 2100)


def urls(experiment):
    base = f"/experiments/{experiment.pk}/setup/"
    return base, base + "tasks/picker/", base + "tasks/pick/"


def task(experiment, external_id):
    return Task.objects.get(application_id=experiment.application_id, external_id=external_id)


def row(html, external_id):
    """The picker's table row of one task."""
    match = re.search(rf'<tr(?: class="picked")?>(?:(?!</tr>).)*>{re.escape(external_id)}<(?:(?!</tr>).)*</tr>', html, re.S)
    assert match, f"{external_id} is not on this page"
    return match.group(0)


def selected_ids(experiment):
    return set(experiment.tasks.values_list("external_id", flat=True))


def test_picker_finds_a_task_beyond_the_first_thousand_and_adds_it(editor, big):
    setup, picker, pick = urls(big)
    html = editor.get(picker, {"q": "case-02050"}, **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="task-picker"') and "<html" not in html
    assert "1 task matches this search" in html
    target = task(big, "case-02050")
    assert f'name="add" value="{target.pk}"' in row(html, "case-02050")
    response = editor.post(pick, {"add": str(target.pk), "q": "case-02050", "page": "1"}, **HTMX)
    assert response.status_code == 200
    assert selected_ids(big) == {"case-02050"}
    html = response.content.decode()
    assert "✓ selected" in row(html, "case-02050") and f'name="remove" value="{target.pk}"' in html
    assert "1 of 2100 tasks selected" in html
    big.refresh_from_db()
    assert big.status == "baseline_pending"  # the scope is complete: set_scope moved it


def test_picker_pages_hold_fifty_tasks_and_reach_the_last(editor, big):
    _, picker, _ = urls(big)
    html = editor.get(picker, {"page": "42"}, **HTMX).content.decode()
    assert "Page 42 of 42" in html and html.count('name="add"') == 2100 - 41 * 50
    assert "case-02099" in html and "case-02049" not in html
    middle = editor.get(picker, {"page": "21"}, **HTMX).content.decode()
    assert middle.count('name="add"') == 50 and "case-01000" in middle and "case-01049" in middle


def test_picker_page_links_keep_the_search(editor, big):
    _, picker, _ = urls(big)
    html = editor.get(picker, {"tag": "hard", "page": "2"}, **HTMX).content.decode()
    links = re.findall(r'hx-get="([^"]+)"', html)
    assert {parse_qs(urlsplit(link.replace("&amp;", "&")).query)["page"][0] for link in links} == {"1", "3"}
    assert all("tag=hard" in link for link in links)
    assert re.search(r'href="/experiments/[^"]+/setup/\?tag=hard&amp;page=3#task-picker"', html)


def test_picker_searches_names_too(editor, big):
    _, picker, _ = urls(big)
    html = editor.get(picker, {"q": "number 1777"}, **HTMX).content.decode()
    assert "case-01777" in html and "1 task matches" in html


def test_picker_filters_by_tag(editor, big):
    _, picker, _ = urls(big)
    html = editor.get(picker, {"tag": "hard"}, **HTMX).content.decode()
    assert "210 tasks match this search" in html and "case-00010" in html and "case-00011" not in html


def test_picker_shows_only_selected_tasks_on_request(editor, big):
    _, picker, pick = urls(big)
    editor.post(pick, {"add": str(task(big, "case-01500").pk)})
    html = editor.get(picker, {"show": "selected"}, **HTMX).content.decode()
    assert "1 task matches this search" in html and "✓ selected" in row(html, "case-01500")
    unselected = editor.get(picker, {"show": "unselected"}, **HTMX).content.decode()
    assert "2099 tasks match this search" in unselected


def test_picker_ignores_bad_filters(editor, big):
    _, picker, _ = urls(big)
    response = editor.get(picker, {"show": "bogus", "q": "x" * 500, "page": "nope"}, **HTMX)
    assert response.status_code == 200 and "2100 tasks match" in response.content.decode()


def test_removing_a_task_deselects_it(editor, big):
    _, _, pick = urls(big)
    keep, drop = task(big, "case-00001"), task(big, "case-01999")
    actions.set_scope(big, tasks=[keep, drop])
    response = editor.post(pick, {"remove": str(drop.pk), "q": "case-01999"}, **HTMX)
    assert response.status_code == 200
    assert selected_ids(big) == {"case-00001"}
    assert f'name="add" value="{drop.pk}"' in row(response.content.decode(), "case-01999")


def test_removing_the_last_task_moves_back_to_draft(editor, big):
    _, _, pick = urls(big)
    only = task(big, "case-00042")
    actions.set_scope(big, tasks=[only])
    html = editor.post(pick, {"remove": str(only.pk)}, **HTMX).content.decode()
    big.refresh_from_db()
    assert big.status == "draft" and not selected_ids(big)
    assert "Select at least one step and one task" in html  # the run section, swapped out of band


def test_add_all_matching_adds_every_task_of_the_search(editor, big):
    _, _, pick = urls(big)
    response = editor.post(pick, {"bulk": "add-matching", "q": "case-01"}, **HTMX)
    assert response.status_code == 200
    assert selected_ids(big) == {f"case-{i:05d}" for i in range(1000, 2000)}
    assert "1000 of 2100 tasks selected" in response.content.decode()


def test_add_all_matching_keeps_what_was_already_selected(editor, big):
    _, _, pick = urls(big)
    actions.set_scope(big, tasks=[task(big, "case-00003")])
    editor.post(pick, {"bulk": "add-matching", "tag": "hard"})
    assert len(selected_ids(big)) == 211 and "case-00003" in selected_ids(big)


def test_remove_all_matching_removes_only_the_search(editor, big):
    _, _, pick = urls(big)
    editor.post(pick, {"bulk": "add-matching"})
    assert big.tasks.count() == 2100
    editor.post(pick, {"bulk": "remove-matching", "q": "case-020"})
    assert big.tasks.count() == 2000 and not any(ext.startswith("case-020") for ext in selected_ids(big))


def test_htmx_pick_swaps_the_picker_and_updates_status_and_counts_out_of_band(editor, big):
    _, _, pick = urls(big)
    html = editor.post(pick, {"add": str(task(big, "case-00007").pk)}, **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="task-picker"')
    assert re.search(r'<div class="page-head" id="setup-head" hx-swap-oob="true">', html)
    assert 'class="badge s-baseline_pending"' in html and "Save and run baseline" in html
    assert re.search(r'<span id="tasks-count" class="muted small" hx-swap-oob="true">1 of 2100 selected</span>', html)
    assert 'id="setup-run" hx-swap-oob="true"' in html


def test_plain_pick_redirects_back_keeping_search_and_page(editor, big):
    setup, _, pick = urls(big)
    response = editor.post(pick, {"add": str(task(big, "case-00100").pk), "q": "case-00", "tag": "hard", "show": "unselected", "page": "2"})
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == setup and location.fragment == "task-picker"
    assert parse_qs(location.query) == {"q": ["case-00"], "tag": ["hard"], "show": ["unselected"], "page": ["2"]}
    assert selected_ids(big) == {"case-00100"}


def test_setup_page_renders_the_picker_from_the_query_without_javascript(editor, big):
    setup, _, _ = urls(big)
    html = editor.get(setup, {"q": "case-0205", "page": "1"}).content.decode()
    assert "<html" in html and "10 tasks match this search" in html
    assert 'value="case-0205"' in html  # the search box keeps the query
    assert "hx-swap-oob" not in html
    assert f'name="add" value="{task(big, "case-02051").pk}"' in html


def test_plain_get_of_the_picker_goes_to_the_setup_page(editor, big):
    setup, picker, _ = urls(big)
    response = editor.get(picker, {"q": "case-1", "page": "3"})
    assert response.status_code == 302 and response["Location"] == f"{setup}?q=case-1&page=3#task-picker"


def test_another_teams_experiment_is_not_found(big, outsider):
    _, picker, pick = urls(big)
    assert outsider.get(picker, **HTMX).status_code == 404
    assert outsider.post(pick, {"add": str(task(big, "case-00001").pk)}).status_code == 404
    assert not selected_ids(big)


def test_a_viewer_sees_the_picker_but_cannot_change_it(editor, big):
    setup, _, pick = urls(big)
    viewer = signed_in(editor.team, Role.VIEWER)
    html = viewer.get(setup).content.decode()
    assert "Only editors and admins change the task selection." in html
    assert re.search(r'name="add" value="[^"]+" aria-label="Add case-00000" disabled', html)
    assert re.search(r'name="bulk" value="add-matching" disabled', html)
    assert viewer.post(pick, {"add": str(task(big, "case-00001").pk)}).status_code == 403
    assert viewer.post(pick, {"bulk": "add-matching"}, **HTMX).status_code == 403
    assert not selected_ids(big)


def test_a_locked_experiment_shows_the_picker_disabled(editor):
    experiment, *_ = make_with_results(editor.team)
    html = editor.get(urls(experiment)[0]).content.decode()
    assert "The task selection is locked since the baseline ran." in html
    assert re.search(r'name="remove" value="[^"]+" aria-label="Remove t000" disabled', html)


def test_a_locked_experiment_refuses_picks(editor):
    experiment, *_ = make_with_results(editor.team)
    _, _, pick = urls(experiment)
    extra = make_task(experiment.application, external_id="late")
    response = editor.post(pick, {"add": str(extra.pk)}, **HTMX)
    assert response.status_code == 409 and b"locked" in response.content and response["HX-Retarget"] == "#flash"
    response = editor.post(pick, {"bulk": "remove-matching"})
    assert response.status_code == 302 and response["Location"].endswith("#task-picker")
    assert "locked" in editor.get(response["Location"]).content.decode()
    assert selected_ids(experiment) == {"t000", "t001", "t002", "t003"}


def test_an_archived_experiment_refuses_picks(editor, big):
    _, _, pick = urls(big)
    actions.archive_experiment(big)
    response = editor.post(pick, {"add": str(task(big, "case-00001").pk)}, **HTMX)
    assert response.status_code == 409 and b"archived" in response.content
    assert not selected_ids(big)


@pytest.mark.parametrize(
    "data, named",
    [
        ({"add": "not-a-uuid"}, "add: "),
        ({}, "Name one change"),
        ({"bulk": "everything"}, "bulk: "),
    ],
)
def test_a_bad_pick_is_a_400_naming_the_field(editor, big, data, named):
    _, _, pick = urls(big)
    response = editor.post(pick, data, **HTMX)
    assert response.status_code == 400 and named in response.content.decode()
    plain = editor.post(pick, data)
    assert plain.status_code == 400 and named in plain.content.decode() and 'id="task-picker"' in plain.content.decode()
    assert not selected_ids(big)


def test_two_changes_at_once_are_refused(editor, big):
    _, _, pick = urls(big)
    one, two = task(big, "case-00001"), task(big, "case-00002")
    response = editor.post(pick, {"add": str(one.pk), "remove": str(two.pk)}, **HTMX)
    assert response.status_code == 400 and not selected_ids(big)


def test_another_applications_task_cannot_be_added(editor, big):
    _, _, pick = urls(big)
    stranger = make_task(make_application(editor.team), external_id="elsewhere")
    response = editor.post(pick, {"add": str(stranger.pk)}, **HTMX)
    assert response.status_code == 400 and b"Unknown tasks" in response.content
    assert not selected_ids(big)


def count_queries(call):
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code in (200, 302)
    return len(captured)


def test_picker_queries_do_not_grow_with_tasks_or_page_size(editor):
    small = experiment_with_tasks(editor.team, 3)
    large = experiment_with_tasks(editor.team, 2100)
    actions.set_scope(large, tasks=list(Task.objects.filter(application_id=large.application_id)[:1500]))

    def picker(experiment):
        return count_queries(lambda: editor.get(urls(experiment)[1], **HTMX))

    def page(experiment):
        return count_queries(lambda: editor.get(urls(experiment)[0]))

    assert picker(small) == picker(large) <= 8  # 3 rows vs 50 rows, 0 vs 1,500 selected
    assert page(small) == page(large) <= 12


def test_a_single_pick_queries_do_not_grow_with_the_selection(editor):
    small = experiment_with_tasks(editor.team, 3)
    large = experiment_with_tasks(editor.team, 2100)
    actions.set_scope(large, tasks=list(Task.objects.filter(application_id=large.application_id)[:1500]))

    actions.set_scope(small, tasks=[task(small, "case-00000")])  # both in baseline_pending: no transition

    def add(experiment, external_id):
        target = task(experiment, external_id)
        return count_queries(lambda: editor.post(urls(experiment)[2], {"add": str(target.pk)}, **HTMX))

    assert add(small, "case-00001") == add(large, "case-02000")


def test_a_bad_plain_pick_keeps_the_search_on_the_page_it_answers(editor, big):
    _, _, pick = urls(big)
    response = editor.post(pick, {"add": "not-a-uuid", "q": "case-0205"})
    assert response.status_code == 400 and "10 tasks match this search" in response.content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_picker_in_a_browser_searches_pages_and_picks_without_losing_a_change(page, live_server):
    """htmx end to end: the search box refreshes the picker while typing; picks, pages and
    searches queue behind one another, so a search answered late cannot undo a pick."""
    from tests.webui.conftest import PASSWORD
    from tests.webui.test_browser import settled, sign_in

    team = make_team()
    user = make_user(team, Role.EDITOR, password=PASSWORD)
    experiment = experiment_with_tasks(team, 1200)
    setup = f"{live_server.url}/experiments/{experiment.pk}/setup/"

    sign_in(page, live_server.url, user.username)
    page.goto(setup)
    assert "0 of 1200 tasks selected" in page.locator("#task-picker").inner_text()
    page.fill("#picker-q", "case-01150")
    page.wait_for_selector("#task-picker:has-text('1 task matches')")
    settled(page)
    page.click("button[aria-label='Add case-01150']")  # leaving the search box must not re-search over the pick
    page.wait_for_selector("#task-picker:has-text('1 of 1200 tasks selected')")
    settled(page)
    assert page.locator("#tasks-count").inner_text() == "1 of 1200 selected"
    assert page.locator("#setup-head .badge").inner_text().lower() == "baseline pending"
    assert page.locator("#setup-run button:has-text('Save and run baseline')").count() == 1
    page.fill("#picker-q", "")
    page.wait_for_selector("#task-picker:has-text('1200 tasks match')")
    settled(page)
    page.click("#task-picker a:has-text('Next')")
    page.wait_for_selector("#task-picker:has-text('Page 2 of 24')")
    settled(page)
    page.click("button[value='add-matching']")
    page.wait_for_selector("#task-picker:has-text('1200 of 1200 tasks selected')")
    settled(page)
    assert "Page 2 of 24" in page.locator("#task-picker").inner_text()
    page.select_option("#picker-tag", "hard")
    page.wait_for_selector("#task-picker:has-text('120 tasks match')")
    settled(page)
    page.click("button[value='remove-matching']")
    page.wait_for_selector("#task-picker:has-text('1080 of 1200 tasks selected')")
    settled(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(setup)
    assert page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth") <= 1
    assert experiment.tasks.count() == 1080
