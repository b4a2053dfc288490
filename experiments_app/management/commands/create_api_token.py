from django.core.management.base import BaseCommand, CommandError

from experiments_app.models import ApiToken, Role, Team


class Command(BaseCommand):
    help = "Create an API token for a team and print it alone on its line (it is shown only once)."

    def add_arguments(self, parser):
        parser.add_argument("--team", required=True, help="the team's slug")
        parser.add_argument("--create-team", action="store_true", help="create the team when it does not exist")
        parser.add_argument("--role", default=Role.EDITOR, choices=Role.values, help="the token's role (default: editor)")
        parser.add_argument("--name", default="", help="a label to tell tokens apart")

    def handle(self, *args, team, create_team, role, name, **options):
        found = Team.objects.filter(slug=team).first()
        if found is None:
            if not create_team:
                raise CommandError(f"No team with slug {team!r}; pass --create-team to create it.", returncode=2)
            found = Team.objects.create(slug=team, name=team)
        _, raw = ApiToken.issue(found, role=role, name=name)
        self.stdout.write(raw)
