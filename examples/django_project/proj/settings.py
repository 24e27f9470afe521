"""Settings for the example project, every secret read from the environment."""

from __future__ import annotations

import os

from celery.schedules import crontab

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-example-key-set-DJANGO_SECRET_KEY")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = ["reports"]
ROOT_URLCONF = "proj.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"

# Celery, through app.config_from_object("django.conf:settings", namespace="CELERY").
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
CELERY_BEAT_SCHEDULE = {
    "nightly-report": {"task": "reports.tasks.nightly_report", "schedule": crontab(hour=2, minute=0)},
}

# celery-heartbeat: task name or glob -> monitor URL. An unset variable disables its entry.
CELERY_HEARTBEAT_URLS = {
    "reports.tasks.nightly_report": os.environ.get("HEARTBEAT_NIGHTLY_REPORT_URL"),
}
CELERY_HEARTBEAT_BEAT_URL = os.environ.get("HEARTBEAT_BEAT_URL")  # is celery beat itself alive?
