"""The Celery app: Django settings through the CELERY namespace, then one install() call."""

from __future__ import annotations

import os

from celery import Celery

import celery_heartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
celery_heartbeat.install(app)  # reads CELERY_HEARTBEAT_* from settings.py
app.autodiscover_tasks()
