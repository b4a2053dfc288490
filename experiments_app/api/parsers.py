"""A JSON parser that refuses what the database cannot store, before any view runs (see jsonlimits)."""

from django.conf import settings
from rest_framework import exceptions, parsers, status

from experiments_app import jsonlimits


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


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
            # Depth is checked per stored field (jsonlimits.field_errors), so the 400 names it.
            return jsonlimits.loads(raw)
        except jsonlimits.InvalidJSON as error:
            raise exceptions.ParseError(f"JSON parse error - {error}") from None
