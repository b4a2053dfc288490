"""The answer to an error no view handled: 503 while the database cannot be reached, else 500."""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views import defaults

# How long a client should wait before trying again while the database is unreachable.
RETRY_AFTER_SECONDS = 10


def is_database_unavailable(error):
    """Connection-level database errors (a refused or lost connection), not a bad query."""
    return isinstance(error, (OperationalError, InterfaceError))


def server_error(request):
    """handler500: Django calls it inside the `except` of the unhandled error, so the error is
    still in sys.exc_info(). A database outage is temporary: 503 with Retry-After, not 500."""
    error = sys.exc_info()[1]
    is_api = request.path.startswith("/api/")
    if is_database_unavailable(error):
        detail = "The database is unreachable for the moment; try again shortly."
        if is_api:
            response = JsonResponse({"code": "unavailable", "detail": detail}, status=503)
        else:
            response = HttpResponse(f"<!doctype html><title>Unavailable</title><h1>Unavailable</h1><p>{detail}</p>", status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if is_api:
        return JsonResponse({"code": "server_error", "detail": "Something went wrong on our side."}, status=500)
    return defaults.server_error(request)
