"""What duplicate-beat detection costs on the broker: messages and bytes per hour, detection on vs off.

Real `celery beat` processes dispatch beat liveness at a short period; this process
stands in for the worker and taps the broker: it consumes the liveness queue and
binds its own queue to the detection's fanout exchange, so it sees every message
that crosses the broker. The count per dispatch does not depend on the period, so
the figures are scaled to one hour at the default period (60 s)::

    python benchmarks/beat_duplicates.py                                   # Redis and RabbitMQ on localhost
    python benchmarks/beat_duplicates.py --broker redis://127.0.0.1:6379/1 --periods 40

Scenarios: one beat with detection off (the baseline: beat liveness alone), one beat
with it on, and two beats with it on (a duplicate: both alarm). Bytes are the message
body plus its headers as JSON, the part that grows with what the library sends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from kombu import Consumer, Exchange, Queue

from celery_heartbeat.beat.announcer import EXCHANGE_PREFIX

DEFAULT_BROKERS = ["redis://127.0.0.1:6379/1", "amqp://guest:guest@127.0.0.1:5672//"]
PERIOD = 0.5
DEFAULT_PERIOD = 60.0

APP_MODULE = """
from celery import Celery
import celery_heartbeat

app = Celery("{name}", broker="{broker}")
app.conf.task_default_queue = "{name}"
app.conf.broker_connection_retry_on_startup = True
celery_heartbeat.install(app, detect_duplicate_beats={detect})
celery_heartbeat.install_beat_liveness(app, "https://hc-ping.com/benchmark-uuid", every={every})
"""


@dataclass
class Tally:
    messages: int = 0
    bytes: int = 0

    def add(self, body: Any, headers: Any) -> None:
        self.messages += 1
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        self.bytes += len(raw) + len(json.dumps(headers or {}, default=str))


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=1.0):
            return True
    except OSError:
        return False


def run(broker: str, beats: int, detect: bool, periods: int) -> tuple[Tally, Tally]:
    """Run `beats` beats until `periods` x `beats` liveness messages went through; tally both kinds."""
    name = f"bench{uuid.uuid4().hex[:8]}"
    liveness, announcements = Tally(), Tally()
    app = Celery("bench", broker=broker, set_as_current=False)
    exchange = Exchange(f"{EXCHANGE_PREFIX}{name}.{name}", type="fanout", durable=False, auto_delete=True)
    tap = Queue(f"{exchange.name}.tap", exchange, durable=False, auto_delete=True, exclusive=True)
    work = Queue(name, durable=True)

    def on_liveness(body: Any, message: Any) -> None:
        liveness.add(message.body, message.headers)

    def on_announcement(body: Any, message: Any) -> None:
        announcements.add(message.body, message.headers)

    with tempfile.TemporaryDirectory() as home, app.connection_for_write() as conn:
        module = f"benchapp_{name}"
        source = APP_MODULE.format(name=name, broker=broker, detect=detect, every=PERIOD)
        (Path(home) / f"{module}.py").write_text(textwrap.dedent(source))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([home, os.environ.get("PYTHONPATH", "")]))
        channel = conn.channel()
        consumers = [
            Consumer(channel, queues=[tap], callbacks=[on_announcement], no_ack=True),
            Consumer(channel, queues=[work], callbacks=[on_liveness], no_ack=True),
        ]
        for consumer in consumers:
            consumer.consume()
        procs = []
        try:
            for i in range(beats):
                cmd = [sys.executable, "-m", "celery", "-A", module, "beat", "-s", f"{home}/schedule-{i}"]
                quiet = subprocess.DEVNULL
                procs.append(subprocess.Popen([*cmd, "-l", "error"], cwd=home, env=env, stdout=quiet, stderr=quiet))
            deadline = time.monotonic() + 60 + periods * PERIOD * 4
            while liveness.messages < periods * beats and time.monotonic() < deadline:
                with contextlib.suppress(socket.timeout):
                    conn.drain_events(timeout=0.5)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:  # celery beat can hang when SIGTERM lands inside a publish
                    proc.kill()
                    proc.wait(5)
        # Collect what was in flight when the beats stopped: every dispatch's message and announcement.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            with contextlib.suppress(socket.timeout):
                conn.drain_events(timeout=0.2)
        for consumer in consumers:
            consumer.cancel()
        conn.default_channel.queue_delete(name)
    return liveness, announcements


def per_hour(tally: Tally, periods: float) -> tuple[float, float]:
    """Scale a tally over `periods` liveness periods to one hour at the default period."""
    scale = 3600.0 / DEFAULT_PERIOD / max(periods, 1.0)
    return tally.messages * scale, tally.bytes * scale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", action="append", help="broker URL (repeatable); default Redis and RabbitMQ")
    parser.add_argument("--periods", type=int, default=20, help="liveness periods per scenario (default 20)")
    args = parser.parse_args()
    for broker in args.broker or DEFAULT_BROKERS:
        host = urlsplit(broker).scheme
        if not reachable(broker):
            print(f"{host}: not reachable, skipped")
            continue
        print(f"\n{host}: {args.periods} liveness periods of {PERIOD:g} s per scenario, scaled to 1 h at 60 s")
        head = ("scenario", "liveness msg/h", "bytes/h", "announced/h", "delivered/h", "bytes/h", "+bytes")
        print("{:<22}{:>15}{:>10}{:>13}{:>13}{:>10}{:>8}".format(*head))
        for beats, detect in ((1, False), (1, True), (2, True)):
            liveness, announcements = run(broker, beats, detect, args.periods)
            periods = liveness.messages / beats  # each beat dispatches once a period
            live_msgs, live_bytes = per_hour(liveness, periods)
            ann_msgs, ann_bytes = per_hour(announcements, periods)
            # Every announcement also reaches each beat's own queue (its sender's too, which ignores it).
            delivered_msgs, traffic = ann_msgs * beats, ann_bytes * (1 + beats)
            label = f"{beats} beat{'s' if beats > 1 else ''}, detection {'on' if detect else 'off'}"
            row = (label, live_msgs, live_bytes, ann_msgs, delivered_msgs, traffic, 100 * traffic / live_bytes)
            print("{:<22}{:>15.0f}{:>10.0f}{:>13.0f}{:>13.0f}{:>10.0f}{:>7.0f}%".format(*row))
        print("+bytes: detection traffic (published and delivered) against the beat-liveness messages themselves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
