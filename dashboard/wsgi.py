import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
# The web server (gunicorn) keeps each thread's database connection for a minute instead of
# opening one per request (a new PostgreSQL connection cost ~13% of a result post's CPU);
# CONN_MAX_AGE set in the environment wins. Other processes keep settings' default. No health
# check per request (a round trip, 9% of a result post): a connection broken by a database
# restart fails one request (503 with Retry-After) and is then closed and made anew.
os.environ.setdefault("CONN_MAX_AGE", "60")
application = get_wsgi_application()
# The URLconf, and with it every view, serializer and the API schema's modules, imported now, as
# each gunicorn worker boots, not by its first request (~0.4 s of imports that request waited for,
# and the CPU of 4 workers' imports inside a busy minute).
get_resolver().url_patterns  # noqa: B018 (evaluated for its import)
