from tests.integration.activities.conftest import activities  # noqa: F401
