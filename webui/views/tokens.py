"""The current team's API tokens: listed for every member, issued and revoked by its admins."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from experiments_app import actions
from experiments_app.errors import ValidationFailed
from experiments_app.models import ApiToken, Role
from webui.access import can, require_role, team_ids, team_member
from webui.forms import TokenForm, apply_errors

# The raw token waits here between the POST that issues it and the GET that shows it once.
SESSION_NEW_TOKEN_KEY = "webui_new_token"


def tokens_context(request, form=None, raw_token=None):
    return {
        "team": request.team,
        "tokens": ApiToken.objects.filter(team=request.team).order_by("-created_at", "pk"),
        "form": form or TokenForm(),
        "raw_token": raw_token,
        "can_admin": can(request, request.team.pk, Role.ADMIN),
    }


def pop_new_token(request):
    """The raw token issued just before (for the current team), removed from the session so it shows once."""
    parked = request.session.pop(SESSION_NEW_TOKEN_KEY, None)
    if isinstance(parked, dict) and parked.get("team") == str(request.team.pk):
        return parked.get("raw")
    return None


@require_http_methods(["GET", "POST"])
@team_member
@vary_on_headers("HX-Request")
def token_list(request):
    form, raw_token = None, None
    if request.method == "POST":
        require_role(request, request.team.pk, Role.ADMIN)
        form = TokenForm(request.POST)
        if form.is_valid():
            try:
                _, raw_token = actions.issue_token(request.team, role=form.cleaned_data["role"], name=form.cleaned_data["name"])
            except ValidationFailed as error:
                apply_errors(form, error)
            else:
                form = None
                if not request.htmx:
                    # POST/redirect/GET: a refresh must not issue a second token. The raw value
                    # sits in the session only until that GET pops it.
                    request.session[SESSION_NEW_TOKEN_KEY] = {"team": str(request.team.pk), "raw": raw_token}
                    return redirect("webui:team-tokens")
    else:
        raw_token = pop_new_token(request)
    template = "webui/team_tokens.html#tokens" if request.htmx else "webui/team_tokens.html"
    response = render(request, template, tokens_context(request, form, raw_token), status=400 if form is not None and form.errors else 200)
    if raw_token:
        response["Cache-Control"] = "no-store"
    return response


@require_POST
@team_member
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, team_id__in=team_ids(request))
    require_role(request, token.team_id, Role.ADMIN)
    actions.revoke_token(token)
    if request.htmx:
        return render(request, "webui/team_tokens.html#tokens", tokens_context(request))
    messages.success(request, f"Revoked the token {token.prefix}…; it no longer authenticates.")
    return redirect("webui:team-tokens")
