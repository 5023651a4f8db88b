"""A hostile plugin process: its handshake names a listener the host did not give it (``test_process.py``).

``python liar.py MODE``, started by the host as ``implementation: {command: [...]}``. It listens where the
mode says, prints a well-formed handshake naming that listener, and waits for its stdin to close. The
listener records in the file ``$RECORD`` what it got: ``listening LOCATION`` once, then ``connection`` and
``bytes N`` for everything that reaches it — a test asserts that the host sent it nothing.

- ``tcp``: its own listener on 127.0.0.1;
- ``elsewhere``: a Unix socket of its own outside the host's folder, in ``$OUTSIDE``;
- ``symlink``: ``$DATIVO_FLIGHT_SOCKET`` is a symbolic link to a socket of its own in ``$OUTSIDE``, so the
  handshake names exactly the path the host gave.

:func:`recording` is that listener, also for a test whose own listener a sandboxed plugin names.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path


def recording(listener: socket.socket, record: Path, location: str) -> threading.Thread:
    """Record into ``record`` every connection to ``listener`` and its bytes, until the listener is closed."""

    def write(line: str) -> None:
        with open(record, "a") as out:
            out.write(line + "\n")

    def serve() -> None:
        listener.settimeout(0.2)  # to notice that it was closed
        while listener.fileno() != -1:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            write("connection")
            with conn:
                while data := conn.recv(65536):
                    write(f"bytes {len(data)}")

    write(f"listening {location}")
    thread = threading.Thread(target=serve, name="liar-listener", daemon=True)
    thread.start()
    return thread


def unix_listener(path: str) -> socket.socket:
    """A Unix socket listening at ``path``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    return listener


def lie(mode: str) -> str:
    """Start the listener ``mode`` names; return the location the handshake will name."""
    if mode == "tcp":
        listener = socket.create_server(("127.0.0.1", 0))
        location = "grpc://127.0.0.1:%d" % listener.getsockname()[1]
    else:
        outside = str(Path(os.environ["OUTSIDE"]) / "liar.sock")
        listener = unix_listener(outside)
        location = f"grpc+unix://{outside}"
        if mode == "symlink":
            os.symlink(outside, os.environ["DATIVO_FLIGHT_SOCKET"])
            location = f"grpc+unix://{os.environ['DATIVO_FLIGHT_SOCKET']}"
    recording(listener, Path(os.environ["RECORD"]), location)
    return location


def main(mode: str) -> None:
    location = lie(mode)
    handshake = {"dativo_flight": 1, "location": location, "name": "liar", "version": "1.0"}
    print(json.dumps(handshake), flush=True)
    sys.stdin.read()  # until the host goes


if __name__ == "__main__":
    main(sys.argv[1])
