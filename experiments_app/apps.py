from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class ExperimentsAppConfig(AppConfig):
    name = "experiments_app"
    verbose_name = "Experiments"

    def ready(self):
        checks.register(check_secrets_key, checks.Tags.security, deploy=True)


def check_secrets_key(app_configs, **kwargs):
    """`check --deploy`: production needs its own key for secrets at rest (secrets_at_rest.py)."""
    if settings.SECRETS_ENCRYPTION_KEYS:
        return []
    return [
        checks.Warning(
            "SECRETS_ENCRYPTION_KEYS is not set: webhook secrets are encrypted with a key derived from SECRET_KEY.",
            hint="Set SECRETS_ENCRYPTION_KEYS to a key from `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`.",
            id="experiments_app.W001",
        )
    ]
