"""The one place where errors become HTTP answers for the API.

Every error answers `{"code", "detail"}`, plus `errors` ({field path: [messages]})
for 400 and `status` (the experiment's current status) for 409.
"""

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from experiments_app.errors import Conflict, DomainError, NotFound, ValidationFailed
from experiments_app.models import Experiment
from experiments_app.states import InvalidTransition


def flatten_errors(detail, prefix=""):
    """DRF's nested error detail as {"tasks[3].input": ["…"], …}."""
    if isinstance(detail, dict):
        flat = {}
        for key, value in detail.items():
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif prefix:
                path = f"{prefix}.{key}"
            else:
                path = str(key)
            flat.update(flatten_errors(value, path))
        return flat
    if isinstance(detail, list) and detail and all(isinstance(item, (dict, list)) for item in detail):
        flat = {}
        for index, value in enumerate(detail):
            flat.update(flatten_errors(value, f"{prefix}[{index}]"))
        return flat
    messages = detail if isinstance(detail, list) else [detail]
    return {prefix or "non_field_errors": [str(message) for message in messages]}


def current_status(context):
    """The fresh status of the experiment the view acted on, if it loaded one."""
    experiment = getattr(context.get("view"), "experiment", None)
    if experiment is None:
        return None
    return Experiment.objects.filter(pk=experiment.pk).values_list("status", flat=True).first()


def body(code, detail, **extra):
    return {"code": code, "detail": str(detail), **extra}


def domain_response(exc, context):
    if isinstance(exc, ValidationFailed):
        return Response(body(exc.code, exc.detail, errors=exc.errors), status=400)
    if isinstance(exc, NotFound):
        return Response(body(exc.code, exc.detail), status=404)
    if isinstance(exc, InvalidTransition):
        return Response(body(exc.code, exc.detail, status=current_status(context) or exc.current.value), status=409)
    if isinstance(exc, Conflict):
        state = exc.extra.get("status") or current_status(context)
        return Response(body(exc.code, exc.detail, status=state), status=409)
    return Response(body(exc.code, exc.detail), status=400)


def handle_exception(exc, context):
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: domain, DRF and Django errors in one JSON shape."""
    response = build_response(exc, context)
    if response is not None:
        set_rollback()
    return response


def build_response(exc, context):
    if isinstance(exc, DomainError):
        return domain_response(exc, context)
    if isinstance(exc, RequestDataTooBig):
        return Response(body("too_large", "The request body is too large."), status=413)
    if isinstance(exc, SuspiciousOperation):
        return Response(body("bad_request", "The request could not be read."), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        data = body("invalid", "Invalid input.", errors=flatten_errors(exc.detail))
    else:
        codes = exc.get_codes()
        data = body(codes if isinstance(codes, str) else exc.default_code, exc.detail)
    return Response(data, status=exc.status_code, headers=headers)
