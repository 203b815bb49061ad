from tests.integration.mediation.conftest import mediation, module_database_url  # noqa: F401
