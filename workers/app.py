"""The Celery application. Lane task modules are imported by the workers, never by the ingress."""

from celery import Celery

app = Celery("qgate")
app.config_from_object("celeryconfig")
