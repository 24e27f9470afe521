"""Container probes: a worker and a beat keep a small state file; a tiny command judges it.

`heartbeat_probe_dir` makes a worker (and a beat) write its state there from a
background thread; `celery-heartbeat-probe worker|beat` (or `python -m
celery_heartbeat.probe`) reads it and exits 0 (healthy), 1 (not) or 2 (no state).

The reading side (`state`, `verdict`, `cli`) imports neither Celery nor kombu
nor the user's app, so a probe costs a few milliseconds of CPU; the writing side
(`worker`, `beat`, `wiring`) runs inside Celery and imports it. Nothing is
imported here, so `import celery_heartbeat.probe` stays light.
"""
