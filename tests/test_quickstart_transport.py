"""The quickstart's broker: a reader polling while a message file is being written never sees it half-written.

kombu's ``filesystem://`` writer creates and locks the file before writing it,
and its reader takes no lock: a poll in that window reads an empty file and the
worker dies on a JSONDecodeError. These tests stop the writer at the moments
where it has started but not finished and poll the queue right there, so the
race happens every time instead of once in a few dozen runs.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu.transport import filesystem

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
QUEUE = "celery"


@pytest.fixture
def channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A channel of the broker connection the quickstart's app makes, on a fresh directory."""
    monkeypatch.setenv("QUICKSTART_DIR", str(tmp_path))
    monkeypatch.setenv("QUICKSTART_MONITORS", "http://127.0.0.1:9")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    for name in [n for n in sys.modules if n.split(".")[0] == "quickstart_app"]:
        del sys.modules[name]
    tasks = importlib.import_module("quickstart_app.tasks")
    try:
        with tasks.app.connection_for_write() as connection:
            yield connection.default_channel
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "quickstart_app"]:
            del sys.modules[name]


def test_a_poll_while_a_message_is_being_written_finds_nothing_then_the_whole_message(
    channel: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polled mid-write the queue is empty (never a broken message); polled after, it holds the message."""
    polls: list[str] = []

    def poll() -> None:
        try:
            polls.append(f"got {channel._get(QUEUE)!r}")
        except Empty:
            polls.append("empty")
        except Exception as exc:  # what kills the worker: JSONDecodeError from an empty file
            polls.append(f"{type(exc).__name__}")

    real_encode, real_replace = filesystem.str_to_bytes, os.replace

    def encode_then_poll(text: Any) -> bytes:  # kombu's writer: file created and locked, not written
        poll()
        return real_encode(text)

    def poll_then_replace(src: Any, dst: Any) -> None:  # an atomic writer: written, not renamed yet
        poll()
        real_replace(src, dst)

    monkeypatch.setattr(filesystem, "str_to_bytes", encode_then_poll)
    monkeypatch.setattr(os, "replace", poll_then_replace)
    channel._put(QUEUE, {"body": "hello"})
    monkeypatch.undo()

    assert polls, "the writer passed no point where a reader could interleave"
    assert ["empty"] * len(polls) == polls
    assert {"body": "hello"} == channel._get(QUEUE)
    assert [] == [name for name in os.listdir(channel.data_folder_in) if not name.endswith(".msg")]


def test_queue_bindings_from_two_producers_are_both_kept(channel: Any) -> None:
    """The first binding creates the exchange table whole; a second one is added to it, not lost."""
    channel._queue_bind("fanout-x", "", "", "one")
    channel._queue_bind("fanout-x", "", "", "two")
    assert {"one", "two"} == {row.queue for row in channel.get_table("fanout-x")}
    assert ["fanout-x.exchange"] == sorted(os.listdir(channel.control_folder))
