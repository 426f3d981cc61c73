"""The environment and the TCP rendezvous of ``lc.distributed.init`` (pure Python, no GPU).

``resolve_config`` reads torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) or the arguments that override them and validates them.
``rendezvous`` hands rank 0's NCCL unique id (128 opaque bytes) to every other rank over one TCP
connection each: rank 0 listens at ``MASTER_PORT`` (all interfaces), the others connect to
``MASTER_ADDR:MASTER_PORT`` (retrying until rank 0 listens), send a hello (magic, protocol
version, rank, world size) and receive a status byte plus a length-prefixed payload: the id, or
the error rank 0 saw (a wrong world size, a duplicate rank, a missing rank), which each rank
raises too. Every step has a deadline, so a rank that never shows up ends in
``lc.BackendError`` naming it, the address and the timeout, never in a hang. The tests run 2-4
local processes through it with a fake id (tests/python/test_distributed.py).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import Mapping

from ._lightning_core import BackendError

_MAGIC = b"LCRV"
_VERSION = 1
_HELLO = struct.Struct("!4sHii")  # magic, version, rank, world size
_REPLY = struct.Struct("!BI")  # status, payload length
_OK, _VALUE_ERROR, _BACKEND_ERROR = 0, 1, 2
_MAX_PAYLOAD = 1 << 20

ID_BYTES = 128


@dataclass(frozen=True)
class Config:
    """The validated launch parameters of one rank.

    Parameters
    ----------
    rank : int
        This process's rank, ``0 <= rank < world_size``.
    world_size : int
        The number of processes.
    local_rank : int
        This process's rank on its host: the GPU it drives (``cuda:local_rank``).
    master_addr : str or None
        Rank 0's host (None when ``world_size == 1``).
    master_port : int or None
        The rendezvous port (None when ``world_size == 1``).
    """

    rank: int
    world_size: int
    local_rank: int
    master_addr: str | None
    master_port: int | None


def _where(rank: int | None) -> str:
    return "" if rank is None else f"rank {rank}: "


def _int_value(name: str, arg_name: str, arg: object, env: Mapping[str, str],
               rank: int | None) -> int | None:
    if arg is not None:
        if isinstance(arg, bool) or not isinstance(arg, int):
            raise ValueError(f"[distributed.init] {_where(rank)}{arg_name}={arg!r} is not an "
                             f"integer")
        return int(arg)
    raw = env.get(name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"[distributed.init] {_where(rank)}the environment variable "
                         f"{name}={raw!r} is not an integer (torchrun sets it; or pass "
                         f"{arg_name}=)") from None


def resolve_config(rank: int | None = None, world_size: int | None = None,
                   local_rank: int | None = None, master_addr: str | None = None,
                   master_port: int | None = None,
                   env: Mapping[str, str] | None = None) -> Config:
    """Arguments first, then torchrun's environment variables, validated.

    Without ``RANK`` and ``WORLD_SIZE`` (and no arguments) the process is rank 0 of 1.
    ``LOCAL_RANK`` defaults to the rank (one host).

    Parameters
    ----------
    rank, world_size, local_rank : int, optional
        Override ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``.
    master_addr : str, optional
        Overrides ``MASTER_ADDR`` (needed when ``world_size > 1``).
    master_port : int, optional
        Overrides ``MASTER_PORT`` (needed when ``world_size > 1``).
    env : mapping, optional
        The environment to read (default ``os.environ``).

    Returns
    -------
    Config

    Raises
    ------
    ValueError
        A missing, malformed, out-of-range or inconsistent value; the message names the
        variable (or argument) and the rank.
    """
    env = os.environ if env is None else env
    r = _int_value("RANK", "rank", rank, env, None)
    w = _int_value("WORLD_SIZE", "world_size", world_size, env, r)
    if r is None and w is None:
        r, w = 0, 1
    elif w is None:
        raise ValueError(f"[distributed.init] rank {r}: RANK is set but WORLD_SIZE is not; "
                         f"set both (torchrun does) or pass world_size=")
    elif r is None:
        raise ValueError(f"[distributed.init] WORLD_SIZE={w} is set but RANK is not; set both "
                         f"(torchrun does) or pass rank=")
    if w < 1:
        raise ValueError(f"[distributed.init] rank {r}: WORLD_SIZE={w} must be at least 1")
    if not 0 <= r < w:
        raise ValueError(f"[distributed.init] RANK={r} is out of range for WORLD_SIZE={w} "
                         f"(ranks are 0..{w - 1})")
    lr = _int_value("LOCAL_RANK", "local_rank", local_rank, env, r)
    if lr is None:
        lr = r
    if not 0 <= lr < w:
        raise ValueError(f"[distributed.init] rank {r}: LOCAL_RANK={lr} is out of range for "
                         f"WORLD_SIZE={w} (0..{w - 1})")
    lws = _int_value("LOCAL_WORLD_SIZE", "local_world_size", None, env, r)
    if lws is not None and not 0 <= lr < lws:
        raise ValueError(f"[distributed.init] rank {r}: LOCAL_RANK={lr} is out of range for "
                         f"LOCAL_WORLD_SIZE={lws}")
    if w == 1:
        return Config(r, w, lr, None, None)
    addr = master_addr if master_addr is not None else env.get("MASTER_ADDR")
    if addr is not None and not isinstance(addr, str):
        raise ValueError(f"[distributed.init] rank {r}: master_addr={addr!r} is not a string")
    if not addr or not addr.strip():
        raise ValueError(f"[distributed.init] rank {r}: MASTER_ADDR is not set; with "
                         f"WORLD_SIZE={w} every rank needs rank 0's host (torchrun sets it; or "
                         f"pass master_addr=)")
    port = _int_value("MASTER_PORT", "master_port", master_port, env, r)
    if port is None:
        raise ValueError(f"[distributed.init] rank {r}: MASTER_PORT is not set; with "
                         f"WORLD_SIZE={w} every rank needs the rendezvous port (torchrun sets "
                         f"it; or pass master_port=)")
    if not 1 <= port <= 65535:
        raise ValueError(f"[distributed.init] rank {r}: MASTER_PORT={port} is not a TCP port "
                         f"(1..65535)")
    return Config(r, w, lr, addr.strip(), port)


def _recv_exact(conn: socket.socket, n: int, deadline: float) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout
        conn.settimeout(left)
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _reply(conn: socket.socket, status: int, payload: bytes) -> None:
    try:
        conn.settimeout(2.0)
        conn.sendall(_REPLY.pack(status, len(payload)) + payload)
    except OSError:
        pass  # that rank is gone; it fails on its own


def _serve(world_size: int, port: int, payload: bytes, timeout: float, addr: str) -> None:
    try:
        server = socket.create_server(("", port), family=socket.AF_INET, backlog=max(world_size, 16))
    except OSError as e:
        raise BackendError(
            f"[distributed.init] rank 0: cannot listen for the rendezvous on port {port} "
            f"(MASTER_PORT): {e.strerror or e}; another process (an earlier job?) uses it: pick "
            f"another MASTER_PORT / master_port") from None
    deadline = time.monotonic() + timeout
    joined: dict[int, socket.socket] = {}

    def fail(exc_type: type, status: int, msg: str, extra: socket.socket | None = None) -> None:
        for c in list(joined.values()) + ([extra] if extra is not None else []):
            _reply(c, status, msg.encode())
        if extra is not None:
            extra.close()
        raise exc_type(msg)

    try:
        while len(joined) < world_size - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, world_size)) - joined.keys())
                fail(BackendError, _BACKEND_ERROR,
                     f"[distributed.init] rank 0: rank(s) {missing} did not join the rendezvous "
                     f"at {addr}:{port} within the timeout of {timeout:g} s "
                     f"({len(joined) + 1} of {world_size} ranks arrived); were they started, "
                     f"with the same MASTER_ADDR / MASTER_PORT?")
            server.settimeout(left)
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            try:
                hello = _recv_exact(conn, _HELLO.size, min(deadline, time.monotonic() + 10.0))
            except (socket.timeout, OSError):
                hello = None
            if hello is None:
                conn.close()  # a stray connection (port scanner, health check): ignore it
                continue
            magic, version, r, w = _HELLO.unpack(hello)
            if magic != _MAGIC or version != _VERSION:
                conn.close()
                continue
            if w != world_size:
                fail(ValueError, _VALUE_ERROR,
                     f"[distributed.init] rank {r} has WORLD_SIZE={w} but rank 0 has "
                     f"WORLD_SIZE={world_size}: every rank must be started with the same "
                     f"world size", conn)
            if not 1 <= r < world_size or r in joined:
                why = "joined twice" if r in joined else f"is out of range 1..{world_size - 1}"
                fail(ValueError, _VALUE_ERROR,
                     f"[distributed.init] rank {r} {why} at the rendezvous {addr}:{port} "
                     f"(WORLD_SIZE={world_size}): check RANK of every process", conn)
            joined[r] = conn
        for c in joined.values():
            _reply(c, _OK, payload)
    finally:
        for c in joined.values():
            c.close()
        server.close()


def _join(rank: int, world_size: int, addr: str, port: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    nap = 0.02
    conn = None
    last = ""
    while conn is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendError(
                f"[distributed.init] rank {rank}: no rendezvous at {addr}:{port} within the "
                f"timeout of {timeout:g} s ({last or 'no answer'}): is rank 0 running, and are "
                f"MASTER_ADDR / MASTER_PORT the same on every rank?")
        try:
            conn = socket.create_connection((addr, port), timeout=min(left, 2.0))
        except OSError as e:  # refused (rank 0 not listening yet), unreachable, name unknown
            last = e.strerror or str(e)
            time.sleep(min(nap, max(deadline - time.monotonic(), 0)))
            nap = min(nap * 2, 0.5)
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(max(deadline - time.monotonic(), 0.1))
        conn.sendall(_HELLO.pack(_MAGIC, _VERSION, rank, world_size))
        # rank 0 reports missing ranks at its own deadline: a grace period lets that message
        # (which names them) arrive before this rank gives up with a vaguer one.
        try:
            head = _recv_exact(conn, _REPLY.size, deadline + 5.0)
            body = None if head is None else _recv_exact(conn, min(_REPLY.unpack(head)[1],
                                                                   _MAX_PAYLOAD), deadline + 5.0)
        except socket.timeout:
            raise BackendError(
                f"[distributed.init] rank {rank}: rank 0 at {addr}:{port} accepted the "
                f"rendezvous but did not answer within the timeout of {timeout:g} s "
                f"(other ranks missing?)") from None
        except OSError as e:
            head = body = None
            last = e.strerror or str(e)
        if head is None or body is None:
            raise BackendError(
                f"[distributed.init] rank {rank}: rank 0 at {addr}:{port} closed the rendezvous "
                f"without an answer (it failed or exited)")
        status = _REPLY.unpack(head)[0]
        if status == _OK:
            return body
        msg = body.decode(errors="replace")
        raise (ValueError if status == _VALUE_ERROR else BackendError)(msg)
    finally:
        conn.close()


def rendezvous(rank: int, world_size: int, addr: str | None, port: int | None, timeout: float,
               payload: bytes | None = None) -> bytes:
    """Rank 0's ``payload`` on every rank, exchanged over TCP at ``addr:port``.

    Parameters
    ----------
    rank : int
        This process's rank.
    world_size : int
        The number of ranks; 1 returns ``payload`` without any socket.
    addr : str or None
        Rank 0's host (MASTER_ADDR); rank 0 itself listens on all interfaces.
    port : int or None
        The rendezvous port (MASTER_PORT).
    timeout : float
        Seconds every rank waits for the others, at most.
    payload : bytes, optional
        Rank 0's bytes to hand out (the NCCL unique id); ignored on the other ranks.

    Returns
    -------
    bytes
        Rank 0's payload.

    Raises
    ------
    ValueError
        Ranks disagree on the world size, or two processes claim one rank.
    lightning_core.BackendError
        A rank did not show up within ``timeout`` (naming it, the address and the timeout),
        rank 0 is unreachable, or the port is in use.
    """
    if timeout <= 0:
        raise ValueError(f"[distributed.init] rank {rank}: timeout={timeout!r} must be positive")
    if rank == 0:
        if payload is None:
            raise ValueError("[distributed.init] rank 0 needs the payload to hand out")
        payload = bytes(payload)
        if world_size > 1:
            assert port is not None
            _serve(world_size, port, payload, timeout, addr or "")
        return payload
    assert addr is not None and port is not None
    return _join(rank, world_size, addr, port, timeout)
