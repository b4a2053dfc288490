import pytest

pytest_plugins = ["tests.engine_fixtures", "tests.api_fixtures"]


@pytest.fixture
def team(db):
    from tests.factories import make_team

    return make_team()
