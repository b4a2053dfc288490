"""Re-encrypt every stored secret with the first key of SECRETS_ENCRYPTION_KEYS (after a key rotation)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from experiments_app.models import Application, EventEndpoint
from experiments_app.secrets_at_rest import EncryptedTextField


class Command(BaseCommand):
    help = "Re-encrypt stored secrets with the first key of SECRETS_ENCRYPTION_KEYS; then older keys can be removed."

    def handle(self, *args, **options):
        with transaction.atomic():
            for model in (Application, EventEndpoint):
                fields = [field.name for field in model._meta.fields if isinstance(field, EncryptedTextField)]
                count = 0
                for row in model.objects.select_for_update().only("pk", *fields):
                    # Read in clear with any key; saving encrypts with the first key.
                    model.objects.filter(pk=row.pk).update(**{name: getattr(row, name) for name in fields})
                    count += 1
                self.stdout.write(f"Re-encrypted the secrets of {count} {model._meta.verbose_name_plural}.")
