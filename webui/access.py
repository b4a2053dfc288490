"""Who is asking and in which team: page access checks and the domain-error → response mapping."""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render

from experiments_app.errors import NotFound
from experiments_app.models import Membership, Role, role_at_least
from experiments_app.states import RUNNING, InvalidTransition

SESSION_TEAM_KEY = "webui_team_id"


def team_member(view):
    """Require a signed-in member of some team and set request.memberships, .team, .role.

    Objects are looked up among all of the user's teams (a link to another of my
    teams works); lists show the team picked in the switcher.
    """

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        memberships = list(Membership.objects.filter(user=request.user).select_related("team").order_by("team__name"))
        if not memberships:
            return render(request, "webui/no_team.html", status=403)
        chosen = request.session.get(SESSION_TEAM_KEY)
        current = next((m for m in memberships if str(m.team_id) == chosen), memberships[0])
        request.memberships = memberships
        request.team = current.team
        request.role = current.role
        request.roles = {m.team_id: m.role for m in memberships}
        return view(request, *args, **kwargs)

    return wrapped


def team_ids(request):
    return list(request.roles)


def role_in(request, team_id):
    role = request.roles.get(team_id)
    if role is None:
        raise Http404
    return role


def require_role(request, team_id, needed=Role.EDITOR):
    """Refuse (403) unless the user has at least `needed` in the object's team."""
    if not role_at_least(role_in(request, team_id), needed):
        raise PermissionDenied(f"This needs the {needed} role.")


def can(request, team_id, needed=Role.EDITOR):
    role = request.roles.get(team_id)
    return role is not None and role_at_least(role, needed)


def refuse(request, error, fallback_url):
    """Show a refused change as a message: a 409 flash fragment for htmx, a redirect otherwise."""
    if isinstance(error, NotFound):
        raise Http404(str(error))
    text = getattr(error, "detail", None) or str(error)
    if isinstance(error, InvalidTransition) and error.current in RUNNING and error.target in RUNNING:
        text = f"One run at a time: the experiment is {error.current.label.lower()} now. Wait for that run to end, or cancel it."
    if request.htmx:
        response = render(request, "webui/flash.html", {"flash": [{"level": "error", "text": text}]}, status=409)
        # A form that targets #flash already resolved it when it was sent; retargeting again
        # fails when the form was swapped out meanwhile (a double click, a refresh).
        if request.htmx.target != "flash":
            response["HX-Retarget"] = "#flash"
            response["HX-Reswap"] = "innerHTML"
        return response
    messages.error(request, text)
    return redirect(fallback_url)
