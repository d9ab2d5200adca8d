"""Pickled messages over a stream socket between this package's processes (forks.py, sender.py).

Each message is a 4-byte length and a pickle. Both ends are our own processes, started
by this run: nothing else writes to these sockets.
"""

from __future__ import annotations

import pickle
import select
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!I")


def send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


class Reader:
    """Length-prefixed pickled messages from a socket; ``None`` at end of stream."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def next(self, block: bool = True) -> Any:
        """The next message, None at EOF, or ... (Ellipsis) when none is complete and not blocking."""
        while True:
            if len(self.buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(self.buffer)
                if len(self.buffer) >= _HEADER.size + size:
                    data = self.buffer[_HEADER.size:_HEADER.size + size]
                    self.buffer = self.buffer[_HEADER.size + size:]
                    return pickle.loads(data)
            if not block and not select.select([self.sock], [], [], 0)[0]:
                return ...
            try:
                chunk = self.sock.recv(1 << 16)
            except OSError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
