"""The integration guide, docs/integrating.md, as a page of the product, and the example files it links."""

from functools import lru_cache

import markdown
from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

GUIDE = settings.BASE_DIR / "docs" / "integrating.md"
EXAMPLES_DIR = settings.BASE_DIR / "docs" / "examples"


@lru_cache(maxsize=4)
def render_guide(path, modified):
    """The Markdown file as HTML (our own file, so trusted); `modified` makes an edited file re-render."""
    return markdown.markdown(path.read_text(encoding="utf-8"), extensions=["fenced_code", "tables", "toc"], output_format="html")


@require_GET
def integrating(request):
    body = render_guide(GUIDE, GUIDE.stat().st_mtime)
    return render(request, "webui/doc_page.html", {"title": "Integrating your application", "body": mark_safe(body)})


@require_GET
def integrating_example(request, name):
    """One of docs/examples/ as plain text: the guide links them relatively."""
    if name not in {path.name for path in EXAMPLES_DIR.glob("*.py")}:
        raise Http404("No such example.")
    return HttpResponse((EXAMPLES_DIR / name).read_text(encoding="utf-8"), content_type="text/plain; charset=utf-8")
