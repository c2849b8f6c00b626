"""The WSGI entry point for gunicorn: the composition root that hands Celery's enqueuer to the app."""

from api.app import create_app
from settings import get_settings
from workers.dispatch import CeleryEnqueuer

app = create_app(get_settings(), CeleryEnqueuer(get_settings().lease_grace_ms))
