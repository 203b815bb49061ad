from tests.integration.counseling.conftest import counseling, suffix  # noqa: F401
