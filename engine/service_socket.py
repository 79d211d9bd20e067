"""The service's socket and lock, on the file system: where they live, how they are bound
and locked, who is on the other end. Kept apart from service.py so the client (which
finds the socket and waits on the lock) need not import the service's machinery.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path


def socket_path(state: Path) -> Path:
    return state.with_name(state.name + ".sock")


def lock_path(state: Path) -> Path:
    return state.with_name(state.name + ".engine-lock")


def peer_uid(conn: socket.socket) -> int:
    """The connecting process's uid, as the kernel saw it connect (not what it claims)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def take_lock(state: Path) -> int | None:
    """The service lock's fd, or None when another live service holds it."""
    path = lock_path(state)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def short_address(path: Path) -> Iterator[str]:
    """`path` as a socket address: a Unix socket's path must fit in 107 bytes, so a longer
    one goes through its folder's descriptor (/proc/self/fd/N/NAME), which the kernel
    resolves to the same file."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def listen(state: Path) -> socket.socket:
    """Bind `state`.sock afresh (a dead service's file is replaced; we hold the lock)."""
    path = socket_path(state)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # born 0600: no moment when another user could connect
    try:
        with short_address(path) as address:
            listener.bind(address)
    finally:
        os.umask(old)
    listener.listen(16)
    return listener
