"""Internal: everything about `celery beat`: liveness pings, reading its entries, cron rendering, auto-monitoring."""
