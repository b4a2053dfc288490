def chrome(request):
    """The team switcher's data, loaded by the page's access check (no query of its own)."""
    memberships = getattr(request, "memberships", None)
    if memberships is None:
        return {}
    return {"memberships": memberships, "current_team": request.team, "current_role": request.role}
