"""Make Celery's silent failures loud."""
