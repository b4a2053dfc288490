"""A minimal Django project of its own around docs/examples/django_webhook.py (run in a subprocess).

CSRF protection is on, as in a real project, so the example's csrf_exempt is exercised.
"""

SECRET_KEY = "only-for-the-example-test"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.docs.django_example_urls"
INSTALLED_APPS = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
DATABASES = {}
USE_TZ = True
LOGGING = {"version": 1, "disable_existing_loggers": False}
