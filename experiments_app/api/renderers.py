"""Text renderers for the decision report: `?format=md` and `?format=csv` (DRF's format override)."""

import json

from rest_framework import renderers


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
