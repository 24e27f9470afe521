"""kombu's ``filesystem://`` transport, with files that appear only once they are complete.

The stock transport creates a message file, locks it and only then writes it;
its reader moves and reads files without taking the lock, so now and then it
reads an empty file and the worker dies on a ``JSONDecodeError``. The same
window exists when an exchange's binding table is first created. Here every
file is written under a temporary name that no reader looks at, then renamed
into place: a rename within one directory is atomic, so a reader sees either
no file or the whole file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps


def _write_complete(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it to ``path`` in one step."""
    folder, _ = os.path.split(path)
    partial = os.path.join(folder, f".partial-{uuid.uuid4()}")  # matches no queue's ``.<queue>.msg``
    try:
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


class Channel(filesystem.Channel):  # type: ignore[misc]
    """Writes message files and new exchange tables atomically; reads as kombu does."""

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        filename = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"  # kombu's name and order
        path = os.path.join(self.data_folder_out, filename)
        try:
            _write_complete(path, filesystem.str_to_bytes(dumps(payload)))
        except OSError as exc:
            raise ChannelError(f"Cannot add file {filename!r} to directory") from exc

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        checked = getattr(self, "_exchange_file", None)  # kombu >= 5.6 validates the name
        table = checked(exchange) if checked else self.control_folder / f"{exchange}.exchange"
        if not table.exists():
            self.control_folder.mkdir(exist_ok=True)
            first = [filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")]
            partial = self.control_folder / f".partial-{uuid.uuid4()}"
            partial.write_bytes(filesystem.str_to_bytes(dumps(first)))
            try:
                os.link(partial, table)  # creates the table whole, or fails if another process won
                return
            except FileExistsError:
                pass  # then add our binding to theirs, under kombu's lock, below
            finally:
                partial.unlink()
        super()._queue_bind(exchange, routing_key, pattern, queue)


class Transport(filesystem.Transport):  # type: ignore[misc]
    """Use with ``broker_transport = "quickstart_app.transport:Transport"``."""

    Channel = Channel
