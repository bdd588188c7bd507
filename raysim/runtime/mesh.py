"""Shards that hand each other their windows directly: a socket mesh on one machine.

On Ray's task path every window is one actor call per shard, and each call waits for the
driver to resolve its inputs and dispatch it (~3-4 ms a window on this 2-core machine,
measured: see the README's scaling model). When every shard actor runs on the same
machine, the runtime instead starts each shard's whole run as one call
(:func:`run_windows`): after a window a shard sends every other shard its part of the
window's deliveries and its :class:`~raysim.engine.spec.StepInfo`, over a Unix-domain
socket, and reads theirs. With every shard's report in hand, each shard computes the next
window itself (:func:`raysim.runtime.windows.after_window`), so all of them walk the same
windows as the local backend, with no driver in the loop, and the log is the same.

Each object travels as one frame: a header (the frame's length, then the lengths of its
pieces), the pickle (protocol 5; Ray's cloudpickle where the C pickler cannot, so a
user's message classes travel as on Ray's own path), and the pickle's out-of-band
buffers (the numpy columns), read into one buffer the arrays then use in place. The
sockets live in a folder only this user can open (``mkdtemp``: mode 0700) that shard 0
creates and removes as soon as every shard is connected. A shard whose peer closes its
socket (its process died, or it failed and closed the mesh) raises :class:`MeshBroken`, so
a failure anywhere ends every shard.
"""

from __future__ import annotations

import pickle
import selectors
import shutil
import socket
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raysim.engine.shard import Inbound, RunSpec, StepInfo
from raysim.runtime.windows import after_window

_PREFIX = struct.Struct("<qq")  # the frame's body length, the number of pieces
_INDEX = struct.Struct("<q")  # a connecting shard's index
_CHUNK = 1 << 20  # the most one send or receive call moves
IDLE_S = 1.0  # how long a shard waits on its peers before it calls ``idle`` (and waits on)
_PATH_ROOM = 60  # the longest folder a socket name may start with (sun_path holds 107 bytes)


class MeshBroken(ConnectionError):
    """A peer shard closed its socket: it died or failed; this shard's run ends too."""


def make_folder() -> str:
    """A new folder for the mesh's sockets, readable only by this user (mode 0700).

    In the temporary directory (``TMPDIR``), or in ``/tmp`` where that path is too long
    for a socket's name (about 100 bytes on Linux).
    """
    base = tempfile.gettempdir()
    if len(base) > _PATH_ROOM:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="raysim-mesh-", dir=base)


def _frame(obj: Any, dumps: Callable[..., bytes]) -> list[memoryview]:
    """``obj`` as one frame: prefix, piece lengths, pickle, out-of-band buffers.

    The C pickler first (a window's part here: ~60 µs, against cloudpickle's ~110);
    ``dumps`` (Ray's cloudpickle) for what it cannot pickle by reference, such as a class
    defined in a function. Both read back with :func:`pickle.loads`.
    """
    bufs: list[Any] = []
    try:
        head = pickle.dumps(obj, protocol=5, buffer_callback=bufs.append)
    except (pickle.PicklingError, AttributeError, TypeError):
        bufs = []
        head = dumps(obj, protocol=5, buffer_callback=bufs.append)
    raws = [memoryview(head), *(b.raw() for b in bufs)]
    lengths = [r.nbytes for r in raws]
    meta = struct.pack(f"<{len(lengths)}q", *lengths)
    prefix = _PREFIX.pack(len(meta) + sum(lengths), len(lengths))
    # empty pieces (an empty array's buffer) are in the lengths but never sent: a send of
    # nothing moves no bytes, and the sender would wait on it forever
    return [memoryview(prefix), memoryview(meta), *(r for r in raws if r.nbytes)]


def _recv(sock: socket.socket, view: memoryview) -> int:
    """Read into ``view`` what ``sock`` has (at least one byte); a closed peer breaks the mesh."""
    try:
        n = sock.recv_into(view)
    except (ConnectionResetError, BrokenPipeError):
        n = 0
    if n == 0:
        raise MeshBroken("a peer shard closed the mesh")
    return n


class _Inflow:
    """One frame being read from a peer: its prefix, then its body into one buffer."""

    def __init__(self) -> None:
        self.prefix = bytearray(_PREFIX.size)
        self.body: bytearray | None = None
        self.got = 0
        self.pieces = 0

    def read(self, sock: socket.socket) -> bool:
        """Read what the socket has; True once the frame is complete."""
        if self.body is None:
            self.got += _recv(sock, memoryview(self.prefix)[self.got :])
            if self.got < _PREFIX.size:
                return False
            size, self.pieces = _PREFIX.unpack(self.prefix)
            self.body, self.got = bytearray(size), 0
            if size == 0:
                return True
        self.got += _recv(sock, memoryview(self.body)[self.got : self.got + _CHUNK])
        return self.got == len(self.body)

    def value(self) -> Any:
        """The object the frame carries (its arrays use the frame's buffer in place)."""
        assert self.body is not None
        body = memoryview(self.body)
        lengths = struct.unpack_from(f"<{self.pieces}q", body)
        at = 8 * self.pieces
        pieces = []
        for n in lengths:
            pieces.append(body[at : at + n])
            at += n
        return pickle.loads(pieces[0], buffers=pieces[1:])


class Mesh:
    """Shard ``index`` of ``n``: a socket to every other shard, through ``folder``."""

    def __init__(self, index: int, n: int, folder: str) -> None:
        from ray import cloudpickle  # here, not at import: local runs never import Ray

        self.index, self.n, self.folder = index, n, folder
        self._dumps = cloudpickle.dumps
        self._server: socket.socket | None = None
        self.peers: dict[int, socket.socket] = {}

    def _path(self, i: int) -> str:
        return str(Path(self.folder) / f"s{i}")

    def listen(self) -> None:
        """Open this shard's listening socket (every shard does, before any connects)."""
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self._path(self.index))
        self._server.listen(self.n)

    def connect(self) -> None:
        """Connect to every shard before this one and accept every shard after it."""
        for j in range(self.index):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self._path(j))
            s.sendall(_INDEX.pack(self.index))
            self.peers[j] = s
        assert self._server is not None
        for _ in range(self.n - 1 - self.index):
            s, _addr = self._server.accept()
            raw = b""
            while len(raw) < _INDEX.size:
                chunk = s.recv(_INDEX.size - len(raw))
                if not chunk:
                    raise MeshBroken("a peer shard closed the mesh while connecting")
                raw += chunk
            self.peers[_INDEX.unpack(raw)[0]] = s
        self._server.close()
        self._server = None
        for s in self.peers.values():
            s.setblocking(False)

    def drop_folder(self) -> None:
        """Remove the sockets' folder (every shard is connected: the names are not needed)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def exchange(
        self, out: dict[int, Any], idle: Callable[[], None] | None = None
    ) -> dict[int, Any]:
        """Send ``out[j]`` to every peer j and return what each peer sent this shard.

        ``idle()`` is called each :data:`IDLE_S` seconds that pass with nothing to read or
        send (a peer still in its window), so a waiting shard still sees its driver go.
        """
        sending = {j: _frame(obj, self._dumps) for j, obj in out.items()}
        reading = {j: _Inflow() for j in self.peers}
        got: dict[int, Any] = {}
        sel = selectors.DefaultSelector()
        try:
            for j, s in self.peers.items():
                sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, j)
            while reading or sending:
                ready = sel.select(timeout=IDLE_S)
                if not ready and idle is not None:
                    idle()
                for key, events in ready:
                    j, s = key.data, self.peers[key.data]
                    if events & selectors.EVENT_WRITE and j in sending:
                        self._send_some(s, sending, j)
                    if events & selectors.EVENT_READ and j in reading:
                        try:
                            complete = reading[j].read(s)
                        except BlockingIOError:
                            complete = False
                        if complete:
                            got[j] = reading.pop(j).value()
                    want = (selectors.EVENT_WRITE if j in sending else 0) | (
                        selectors.EVENT_READ if j in reading else 0
                    )
                    if not want:
                        sel.unregister(s)
                    elif want != key.events:
                        sel.modify(s, want, j)
        finally:
            sel.close()
        return got

    @staticmethod
    def _send_some(s: socket.socket, sending: dict[int, list[memoryview]], j: int) -> None:
        views = sending[j]
        try:
            sent = s.sendmsg(views[:64])
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            raise MeshBroken("a peer shard closed the mesh") from None
        while sent and views:
            if sent >= views[0].nbytes:
                sent -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0
        if not views:
            del sending[j]

    def close(self) -> None:
        """Close every socket (a peer still waiting on this shard sees the mesh broken)."""
        for s in self.peers.values():
            s.close()
        self.peers.clear()
        if self._server is not None:
            self._server.close()
            self._server = None


# step(end, inbound) -> (one Inbound per destination shard, this shard's StepInfo)
Step = Callable[[int, list[Inbound]], tuple[list[Inbound], StepInfo]]


def run_windows(
    spec: RunSpec,
    mesh: Mesh,
    step: Step,
    on_window: Callable[[int, int], None] | None = None,
    before: Callable[[], None] | None = None,
) -> int:
    """Step one shard through the whole run, trading each window's parts over ``mesh``.

    The windows are :func:`~raysim.runtime.windows.coordinate`'s with one window in
    flight, the local backend's: every shard sees every shard's report and applies
    :func:`~raysim.runtime.windows.after_window` to it. ``on_window(end, events)`` is
    called after each window (for progress), ``before()`` before each one and while
    waiting on the other shards (the owner check). Returns the run's end time.
    """
    lookahead, duration, me, n = spec.lookahead, spec.duration, mesh.index, mesh.n
    inbound: list[Inbound] = []
    k = 0
    while k * lookahead < duration:
        if before is not None:
            before()
        end = min((k + 1) * lookahead, duration)
        parts, info = step(end, inbound)
        k += 1
        got = mesh.exchange({j: (parts[j], info) for j in mesh.peers}, before) if n > 1 else {}
        inbound = [parts[j] if j == me else got[j][0] for j in range(n)]
        infos = [info if j == me else got[j][1] for j in range(n)]
        if on_window is not None:
            on_window(end, sum(i.events for i in infos))
        k, stop = after_window(spec, k, end, infos)
        if stop is not None:
            return stop
    return duration
