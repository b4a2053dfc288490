"""The team switcher."""

from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from webui.access import SESSION_TEAM_KEY, team_member


@require_POST
@team_member
def switch_team(request):
    """Show another of my teams; a team I am not in is ignored."""
    team_id = request.POST.get("team", "")
    if any(str(m.team_id) == team_id for m in request.memberships):
        request.session[SESSION_TEAM_KEY] = team_id
    target = request.POST.get("next") or "/experiments/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = "/experiments/"
    return redirect(target)
