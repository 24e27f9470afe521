"""`python -m celery_heartbeat.probe worker|beat ...`: the same as `celery-heartbeat-probe`."""

import sys

from celery_heartbeat.probe.cli import main

sys.exit(main())
