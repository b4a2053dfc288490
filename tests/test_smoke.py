from django.core.management import call_command


def test_manage_check_passes(db):
    call_command("check")


def test_migrations_are_complete(db):
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
