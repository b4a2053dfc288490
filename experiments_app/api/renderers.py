"""Renderers: JSON through orjson for every API answer, and text for the decision report
(`?format=md` and `?format=csv`, DRF's format override)."""

import json

import orjson
from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder

from experiments_app.results import RawJSON

ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class Encoder(JSONEncoder):
    """DRF's encoder, and RawJSON parsed (on DRF's path: indented output)."""

    def default(self, obj):
        return json.loads(obj.text) if isinstance(obj, RawJSON) else super().default(obj)


class FastJSONRenderer(renderers.JSONRenderer):
    """DRF's JSONRenderer, encoded by orjson: at 20 variants × 100,000 tasks the results answer is
    14 MB of JSON, ~116 ms through the json module and ~15 ms through orjson (BENCHMARKS.md).

    The same bytes as DRF's compact, UTF-8 output for what the API answers: datetimes and
    dataclasses go to DRF's own encoder (its ISO format, `Z` for UTC), U+2028/U+2029 are escaped
    as DRF does. What orjson cannot encode (an integer beyond 64 bits) and indented output
    (`; indent=` in Accept) take DRF's path. RawJSON (text the database wrote) goes in as it is."""

    encoder_class = Encoder

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None or self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            encoded = orjson.dumps(data, default=self.orjson_default, option=ORJSON_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        if b"\xe2" not in encoded:  # no U+2028/9 (nor any character of U+2000–U+2FFF): one memchr, not two passes
            return encoded
        return encoded.replace("\u2028".encode(), b"\\u2028").replace("\u2029".encode(), b"\\u2029")

    def orjson_default(self, obj):
        return orjson.Fragment(obj.text) if isinstance(obj, RawJSON) else self.encoder_class().default(obj)


class TextRenderer(renderers.BaseRenderer):
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        # The view hands over text; an error answer (a dict) still reads as JSON.
        return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)


class MarkdownRenderer(TextRenderer):
    media_type = "text/markdown"
    format = "md"


class CSVRenderer(TextRenderer):
    media_type = "text/csv"
    format = "csv"
