"""Every asset the pages use is served from static/, without a CDN and without DEBUG."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/static/vendor/htmx.min.js", "/static/vendor/plotly.min.js"])
def test_vendored_assets_are_served_with_debug_off(client, settings, path):
    settings.DEBUG = False
    response = client.get(path)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) > 10_000


def test_swagger_ui_assets_are_served_locally(client):
    page = client.get("/api/docs/").content.decode()
    assert "cdn" not in page.lower()
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
