"""Who may see and change what through the API.

A token acts in its one team with its role. A browser session acts in every team
the user is a member of, each with that membership's role. `?team=<slug>` or an
`X-Team` header narrows either to one team. Another team's object is always a 404
(never a 403), so its existence is not disclosed.
"""

import re

from rest_framework import exceptions

from experiments_app.auth import TokenPrincipal
from experiments_app.errors import ValidationFailed
from experiments_app.models import Membership, Role, role_at_least

SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,100}$")


def selected_team_slug(request):
    slug = request.query_params.get("team") or request.headers.get("X-Team")
    if slug is None:
        return None
    if not SLUG.match(slug):
        raise ValidationFailed({"team": "Must be a team slug."})
    return slug


def team_roles(request):
    """{team_id: (team, role)} the request may act in. Cached on the request."""
    cached = getattr(request, "_team_roles", None)
    if cached is not None:
        return cached
    user = request.user
    if isinstance(user, TokenPrincipal):
        roles = {user.team.pk: (user.team, user.role)}
    elif user is not None and user.is_authenticated:
        roles = {m.team_id: (m.team, m.role) for m in Membership.objects.filter(user=user).select_related("team")}
    else:
        roles = {}
    slug = selected_team_slug(request)
    if slug is not None:
        roles = {pk: (team, role) for pk, (team, role) in roles.items() if team.slug == slug}
    request._team_roles = roles
    return roles


def visible_team_ids(request):
    return list(team_roles(request))


def scoped(request, queryset, team_field="team"):
    """`queryset` narrowed to the teams the request may see."""
    return queryset.filter(**{f"{team_field}__in": visible_team_ids(request)})


def get_visible(request, queryset, pk, team_field="team"):
    """The object with `pk` if the request may see it; 404 otherwise."""
    obj = scoped(request, queryset, team_field).filter(pk=pk).first()
    if obj is None:
        raise exceptions.NotFound()
    return obj


def require_role(request, team_id, needed):
    """403 unless the request's role in `team_id` is at least `needed` (404 when not a member)."""
    entry = team_roles(request).get(team_id)
    if entry is None:
        raise exceptions.NotFound()
    if not role_at_least(entry[1], needed):
        raise exceptions.PermissionDenied(f"This needs the {needed} role; yours is {entry[1]}.")


def acting_team(request, needed=Role.VIEWER):
    """The one team a new top-level object (an application) is created in."""
    roles = team_roles(request)
    if not roles:
        raise exceptions.PermissionDenied("You are not a member of any team (or of the one selected).")
    if len(roles) > 1:
        raise ValidationFailed({"team": "You belong to several teams: pass ?team=<slug> or an X-Team header."})
    (team_id,) = roles
    require_role(request, team_id, needed)
    return roles[team_id][0]
