"""Getting pings to the monitoring services: hand-over from pool processes, queueing, delivery."""
