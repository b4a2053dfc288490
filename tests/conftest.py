import pytest

from tests import db_teardown

pytest_plugins = ["tests.engine_fixtures", "tests.api_fixtures"]

db_teardown.install()


@pytest.fixture
def team(db):
    from tests.factories import make_team

    return make_team()
