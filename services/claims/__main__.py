"""``python -m services.claims``: API, relay and consumers in one process (port 8002)."""

from services.claims.app import ClaimsSettings, create_app
from shared.runtime import serve

settings = ClaimsSettings()
serve(create_app(settings), settings, settings.host, settings.port)
