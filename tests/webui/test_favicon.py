"""Every page names a favicon served from static/ (no CDN), so browsers stop asking for a missing one."""

import re

import pytest

pytestmark = pytest.mark.django_db


def test_pages_link_a_favicon_that_is_served(client, settings):
    settings.DEBUG = False
    page = client.get("/accounts/login/").content.decode()

    href = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page).group(1)
    icon = client.get(href)

    assert href.startswith("/static/")
    assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg+xml")
    assert b"<svg" in b"".join(icon.streaming_content)
