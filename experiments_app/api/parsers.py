"""A JSON parser that refuses what the database cannot store, before any view runs."""

import json
import math

from django.conf import settings
from rest_framework import exceptions, parsers, status


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def check_storable(data):
    """Raise ValueError for strings PostgreSQL refuses: NUL characters and lone surrogates."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise ValueError("strings may not contain NUL (\\u0000) characters")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("strings must be valid Unicode (no lone surrogates)") from None


class StrictJSONParser(parsers.JSONParser):
    """JSON only; bodies over DATA_UPLOAD_MAX_MEMORY_SIZE answer 413, not a memory spike.

    DRF reads the request stream itself, so Django's own size check never runs for it.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if limit is not None and request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise PayloadTooLarge()
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise PayloadTooLarge()
        try:
            data = json.loads(raw.decode("utf-8"), parse_float=finite_float, parse_constant=reject_constant)
            check_storable(data)
        except (ValueError, RecursionError) as error:
            raise exceptions.ParseError(f"JSON parse error - {str(error)[:200]}") from None
        return data
