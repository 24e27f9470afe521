"""A Django app with one periodic task."""
