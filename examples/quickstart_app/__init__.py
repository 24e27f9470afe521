"""The Celery app that ``examples/quickstart.py`` runs in a worker and in ``celery beat``."""
