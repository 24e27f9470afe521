"""Getting pings to the monitoring services: hand-over from pool processes, queueing, delivery.

- `ping.py`: the ping value (monitor, kind, run, event time).
- `runs.py`: which runs ping at all (coalescing decided when a run starts).
- `handover.py`: prefork pool processes hand run events to the main process's one sender.
- `book.py`: pending pings per monitor, in event order, coalesced; pure data.
- `backoff.py`: when a failing URL or host may be tried again.
- `transport.py`: HTTP through `requests`, answering the library's own `Response`.
- `outcome.py`: what an answer means (sent, rejected, retry later).
- `scheduler.py`: what goes next (one per monitor, bounded, hosts isolated) and what an answer means.
- `workers.py`: the worker threads, each with its keep-alive transport, started on demand.
- `sender.py`: the per-process sender: dispatcher thread, fork safety, flush and shutdown.
- `retry.py`: the one retry engine of the synchronous paths (ping task, CLI, sync API client).
"""
