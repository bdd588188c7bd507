"""Runtime backends: the same shards stepped in one process (``local``) or as Ray actors (``ray``).

The coordinator steps global time in windows of the network's minimum delay and skips
empty stretches: after each window every shard reports its earliest pending event and the
earliest delivery it sent to each shard, and the next window starts at the smallest of
those. The sequence of windows is therefore a function of the run alone, whatever the
layout, which is what lets the stop rule (``stop_when``) end every layout at the same time.

Routing runs inside each shard (``router = "shard"``: each shard routes its own sends and
hands every destination shard its part) or in one :class:`RouterActor` per run
(``router = "actor"``). Both give the same log; ``raysim bench`` measures which is faster.

On Ray the shards trade a window's parts in one of two ways (``transport``): through Ray's
task path, one actor call per shard and window, the driver coordinating
(:func:`~raysim.runtime.windows.coordinate`, several windows in flight); or over a socket
mesh (:mod:`raysim.runtime.mesh`), each shard's whole run one call and the shards handing
each other their parts directly, which needs every shard on one machine and routing in
the shards. ``auto`` takes the mesh where it can run. The windows, and so the log, are the
same either way.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from raysim.api.protocol import ProtocolSpec
from raysim.engine.context import paused_gc
from raysim.engine.shard import NEVER, Inbound, RunSpec, Shard, StepInfo
from raysim.errors import ConfigError, ProtocolError, RunFailed
from raysim.log.eventlog import EventLog
from raysim.network.lifecycle import Schedule, lifecycle_schedule
from raysim.network.router import Messages, Router
from raysim.protocols import resolve
from raysim.runtime.staging import owner_gone
from raysim.runtime.windows import Progress, coordinate

ROUTER_PLACEMENTS = ("shard", "actor")
# How shard actors trade a window's parts: "mesh" (directly, over Unix-domain sockets;
# every shard on one machine and routing in the shards), "tasks" (one actor call per shard
# and window, through the driver), "auto" (the mesh where it can run, else tasks).
TRANSPORTS = ("auto", "mesh", "tasks")
PIPELINE_DEPTH = 8  # windows in flight on Ray's task path; the log does not depend on it
# Objects up to this size travel inside Ray's task messages (through the driver, which owns
# them) rather than through the shared-memory object store. See :func:`ensure_ray`.
INLINE_BYTES = 256 * 1024


def shard_bounds(n_nodes: int, shards: int | None, shard_size: int | None) -> np.ndarray:
    """Node ranges of the shards: ``bounds[i]..bounds[i+1]-1`` is shard i (contiguous blocks)."""
    if shard_size is not None:
        edges = [*range(0, n_nodes, shard_size), n_nodes]
        return np.array(edges, dtype=np.int64)
    s = max(1, min(shards or 1, n_nodes))
    return np.array([i * n_nodes // s for i in range(s + 1)], dtype=np.int64)


def peak_rss_mib() -> float:
    """Peak resident memory of this process, in MiB.

    NOTE: Linux's ``ru_maxrss`` survives ``exec`` (it keeps the peak of the process image
    before it), so a process started from a big one would report the parent's size;
    ``VmHWM`` in ``/proc/self/status`` is this image's own peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _by_destination(outs: list[list[Any]]) -> list[list[Any]]:
    """Shards' outputs, ``outs[source][destination]``, as each destination's inbox."""
    return [[row[d] for row in outs] for d in range(len(outs))]


def _part(log_dir: Path | None, name: str) -> Path | None:
    return None if log_dir is None else log_dir / f"part-{name}.parquet"


def resolve_protocol(spec: RunSpec, modules: Sequence[str] = ()) -> ProtocolSpec:
    """The protocol a run names, looked up where the shard is built (a Ray worker too),
    after importing the run's ``modules`` (on a worker: from its runtime_env's py_modules)."""
    return resolve(spec.protocol, modules)


def run_local(
    spec: RunSpec, bounds: np.ndarray, log_dir: Path | None, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every shard in this process (the reference backend)."""
    n = len(bounds) - 1
    proto, schedule = resolve_protocol(spec), lifecycle_schedule(spec)
    shards = [
        Shard(spec, i, bounds, _part(log_dir, f"{i:05d}"), protocol=proto, schedule=schedule)
        for i in range(n)
    ]

    def submit(end: int, inbox: list[list[Any]]) -> tuple[list[list[Any]], list[StepInfo]]:
        results = [s.step(end, inbox[i]) for i, s in enumerate(shards)]
        return _by_destination([r[0] for r in results]), [r[1] for r in results]

    with paused_gc():
        end = coordinate(spec, n, submit, lambda infos: infos, progress=progress)
    finals = [s.finish() for s in shards]
    return {"end_time": end, "shards": finals, "peak_rss_mib": peak_rss_mib()}


def worker_env(sources: Sequence[str]) -> dict[str, Any] | None:
    """The Ray ``runtime_env`` that gives a worker the user's protocol modules, or None.

    ``sources`` are the files and package folders of :func:`raysim.protocols.module_sources`;
    they are uploaded to the cluster once (content-addressed ``gcs://`` packages, what
    ``ray.init(runtime_env={"py_modules": [...]})`` does for a job) and Ray puts them on
    each worker's ``sys.path``, on this machine or any node of a cluster. Needs Ray started.

    NOTE: Ray accepts local paths in ``py_modules`` only at the job level (``ray.init``),
    and raysim often joins a Ray that is already running (a notebook, the test session, a
    sweep's driver), so the upload is done here with the helper ``ray.init`` itself uses;
    a per-actor / per-task ``runtime_env`` then names the uploaded packages.
    """
    if not sources:
        return None
    import tempfile

    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    with tempfile.TemporaryDirectory(prefix="raysim-py-modules-") as scratch:
        env: dict[str, Any] = upload_py_modules_if_needed(
            {"py_modules": list(sources)}, include_gitignore=True, scratch_dir=scratch
        )
    return env


class _OwnerWatch:
    """Stops a Ray actor whose driver is gone, so a killed run leaves nothing behind.

    The driver holds a lock on the run's staging folder (:mod:`raysim.runtime.staging`);
    once it is free, the driver is dead: the actor removes the folder and exits instead of
    writing on until Ray notices the dead owner (10–30 s). Checked at most every
    ``OWNER_CHECK_S`` seconds of wall time (it never changes what a run computes).
    """

    def __init__(self, staging: str | None) -> None:
        self.staging = Path(staging) if staging else None
        self.next_check = 0.0

    def check(self, now: bool = False) -> None:
        """Exit this actor (after removing the staging folder) if the driver is gone.

        ``now`` looks at once, whenever the last look was.
        """
        if self.staging is None:
            return
        t = time.monotonic()
        if t < self.next_check and not now:
            return
        self.next_check = t + OWNER_CHECK_S
        if owner_gone(self.staging):
            import ray

            shutil.rmtree(self.staging, ignore_errors=True)
            ray.actor.exit_actor()


OWNER_CHECK_S = 0.2


class _ShardWorker:
    """The body of a Ray shard actor: a :class:`Shard` behind remote-callable methods."""

    def __init__(
        self,
        spec: RunSpec,
        index: int,
        bounds: np.ndarray,
        log: str | None,
        route: bool,
        schedule: Schedule,
        modules: Sequence[str] = (),
    ) -> None:
        self.owner = _OwnerWatch(str(Path(log).parent) if log else None)
        path = Path(log) if log else None
        # The user's modules first, so that the protocol's name or module:Class reference
        # resolves here as in the driver.
        proto = resolve_protocol(spec, modules)
        self.shard = Shard(spec, index, bounds, path, route, protocol=proto, schedule=schedule)
        self.n = len(bounds) - 1
        self.mesh: Any = None  # a raysim.runtime.mesh.Mesh, on the mesh transport
        self.done_windows: list[tuple[int, int]] = []  # (end, events), for windows()
        gc.disable()  # the actor's process does nothing but this run; see engine.paused_gc

    def step(self, end: int, *inbound: Inbound) -> tuple[Any, ...]:
        self.owner.check()
        parts, info = self.shard.step(end, inbound)
        return (*parts, info)

    def advance(self, end: int, *inbound: Inbound) -> tuple[Any, StepInfo]:
        """Router-actor placement: process the window, hand the raw sends to the router."""
        self.owner.check()
        if self.shard.stop_rule_met(inbound):
            return (True, None), StepInfo(NEVER, [NEVER] * self.n, True, True)
        self.shard.receive([b for _, b in inbound])
        out = self.shard.advance(end)
        info = self.shard.info([NEVER] * self.n)
        return (info.done, out), info

    # --- the socket mesh (raysim.runtime.mesh): the whole run in one call --------------------

    def mesh_folder(self) -> str:
        """Shard 0: a new folder for the mesh's sockets, on this actor's machine."""
        from raysim.runtime.mesh import make_folder

        return make_folder()

    def mesh_listen(self, folder: str) -> None:
        """Open this shard's socket in ``folder``."""
        from raysim.runtime.mesh import Mesh

        self.mesh = Mesh(self.shard.index, self.n, folder)
        self.mesh.listen()

    def mesh_connect(self) -> None:
        """Connect to every other shard (every shard listens already)."""
        self.mesh.connect()

    def run_mesh(self, report: bool) -> int:
        """Step through every window of the run, trading parts over the mesh; the end time.

        With ``report``, each window's (end, events) is kept for :meth:`windows`.
        """
        from raysim.runtime.mesh import MeshBroken, run_windows

        if self.shard.index == 0:
            self.mesh.drop_folder()  # every shard is connected

        def keep(end: int, events: int) -> None:
            self.done_windows.append((end, events))

        try:
            return run_windows(
                self.shard.spec, self.mesh, self.shard.step, keep if report else None,
                self.owner.check,
            )
        except MeshBroken:
            self.owner.check(now=True)  # a peer that left because the driver is gone
            raise
        finally:
            self.mesh.close()

    def windows(self) -> list[tuple[int, int]]:
        """The windows finished since the last call, as (end, events) (another thread)."""
        done = self.done_windows
        out = done[: len(done)]
        del done[: len(out)]
        return out

    def finish(self) -> dict[str, Any]:
        gc.enable()
        out = self.shard.finish()
        out["peak_rss_mib"] = peak_rss_mib()
        return out


class _RouterWorker:
    """The body of a Ray router actor: routes every shard's sends, splits by destination."""

    def __init__(
        self, spec: RunSpec, bounds: np.ndarray, log: str | None, modules: Sequence[str] = ()
    ) -> None:
        resolve(spec.protocol, modules)  # the messages it routes may be the user's classes
        path = Path(log) if log else None
        self.log = EventLog(path, spec.log_level, spec.batch_rows, spec.causality)
        self.router = Router(
            spec.seed, spec.n_nodes, spec.delay, spec.jitter, spec.faults, bounds, self.log
        )
        self.n = len(bounds) - 1

    def route(self, *raw: tuple[bool, Messages | None]) -> tuple[Any, ...]:
        per_dst: list[list[Messages]] = [[] for _ in range(self.n)]
        mins = [NEVER] * self.n
        all_done = all(done for done, _ in raw)
        for _, batch in raw:
            if batch is None:
                continue
            for d, part in enumerate(self.router.split(self.router.route(batch))):
                if part is not None:
                    per_dst[d].append(part)
                    mins[d] = min(mins[d], int(part.time.min()))
        return (*((all_done, p) for p in per_dst), mins)

    def finish(self) -> dict[str, Any]:
        return {
            "rows": self.log.close(),
            "route": self.router.stats,
            "peak_rss_mib": peak_rss_mib(),
        }


LOOPBACK = "127.0.0.1"
# NOTE: Ray resolves ``_node_ip_address="127.0.0.1"`` back to the machine's routable address
# (``services.resolve_ip_for_localhost``) unless this flag is off, and then its GCS, raylet,
# object manager and workers listen on every interface. With the flag off, Ray takes the
# loopback address as the node's address and every server binds to it. The flag only
# matters to ``ray start`` for joining worker nodes, which a local cluster never does.
_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def ensure_ray(address: str | None = None) -> None:
    """Start a local Ray (or join ``address`` / ``RAY_ADDRESS``) unless one is running.

    A local Ray listens on the loopback address only and keeps Ray's own authentication
    default (token auth; ``RAY_AUTH_MODE=disabled`` in the environment turns it off). Ray's
    warnings are shown.

    NOTE: a local Ray inlines objects up to :data:`INLINE_BYTES` (Ray's default is 100 KiB;
    ``RAY_max_direct_call_object_size`` in the environment still wins). A window's part
    for another shard is one such object: ~120 KB on the 10^5-node averaging workload with
    2 shards, where each one through the object store cost a create, a seal and a read in
    the raylet, on the cores the shards compute on. Inlined, the median gap between a
    shard's windows fell from ~6 to ~3 ms and the run from 7.2 to 5.0 s (observation log
    off). Above ~0.5 MB the store is the faster path again (a 2 MB part: 13.7 ms a window
    in the store, 23 ms inlined), so the limit stays well below that.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if not address:
        bind_loopback()
    import ray

    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"--address {address}: cannot join the Ray cluster ({reason})"
            ) from None
        return
    ray.init(
        num_cpus=os.cpu_count() or 1,
        include_dashboard=False,
        logging_level=logging.WARNING,
        object_store_memory=int(os.environ.get("RAYSIM_OBJECT_STORE_BYTES", 512 * 1024**2)),
        _temp_dir=os.environ.get("RAYSIM_RAY_TMP", "/tmp/raysim-ray"),
        _node_ip_address=LOOPBACK,
        _system_config=local_system_config(),
    )


def local_system_config() -> dict[str, Any]:
    """Ray's system settings for a local Ray raysim starts (or a test session starts):
    results up to :data:`INLINE_BYTES` inline, unless ``RAY_max_direct_call_object_size``
    is in the environment (which Ray reads itself)."""
    if "RAY_max_direct_call_object_size" in os.environ:
        return {}
    return {"max_direct_call_object_size": INLINE_BYTES}


def bind_loopback() -> None:
    """Make the next local ``ray.init`` bind every Ray server to the loopback address."""
    os.environ[_LOCAL_ONLY_ENV] = "0"  # read by Ray at import, and by its child processes
    import sys

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:  # Ray was imported before: set the flag it already read
        setattr(constants, "ENABLE_RAY_CLUSTER", False)  # noqa: B010


@contextmanager
def _actor_deaths(run_id: str, actors: list[Any], router_actor: Any) -> Iterator[None]:
    """Turn the death of a shard (or router) actor into one :class:`RunFailed` line, and a
    handler's :class:`ProtocolError` inside an actor into that error itself."""
    import ray

    try:
        yield
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, ProtocolError):
            raise e.cause from None  # where and when, as the local backend says it
        raise
    except ray.exceptions.RayActorError as e:
        ids = [a._actor_id.hex() for a in actors]
        dead = getattr(e, "actor_id", None)
        who = f"shard actor {ids.index(dead)}" if dead in ids else "an actor"
        if router_actor is not None and dead == router_actor._actor_id.hex():
            who = "the router actor"
        raise RunFailed(
            f"run {run_id}: {who} died during the run (its process exited or was killed; "
            "see Ray's logs); the run is recorded as failed",
            str(e),
        ) from None


def _one_machine() -> bool:
    """Whether the Ray cluster is one machine (every shard actor can reach the others'
    Unix-domain sockets)."""
    import ray

    return len({n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")}) <= 1


WATCH_S = 0.2  # how often the driver reads a mesh run's progress


def _run_mesh(actors: list[Any], progress: Progress | None) -> int:
    """Start every shard's whole run over a socket mesh, wait for all; the end time.

    A failure in one shard breaks the mesh for the others (:class:`MeshBroken`), so
    every call ends; the error raised is a dead actor's if one died, else the first that
    is not a broken mesh (the cause), else a broken mesh.
    """
    import ray

    from raysim.runtime.mesh import MeshBroken

    folder = ray.get(actors[0].mesh_folder.remote())
    ray.get([a.mesh_listen.remote(folder) for a in actors])
    ray.get([a.mesh_connect.remote() for a in actors])
    refs = [a.run_mesh.remote(i == 0 and progress is not None) for i, a in enumerate(actors)]
    watch = actors[0].windows.options(concurrency_group="watch") if progress else None
    pending, errors, ends = list(refs), [], []
    while pending:
        done, pending = ray.wait(pending, timeout=WATCH_S if watch is not None else None)
        for ref in done:
            try:
                ends.append(ray.get(ref))
            except Exception as e:
                errors.append(e)
        if watch is not None and progress is not None:
            try:
                for end, events in ray.get(watch.remote()):
                    progress(end, events)
            except ray.exceptions.RayActorError:
                watch = None  # shard 0 died: its run's call says so
    if errors:
        dead = [e for e in errors if isinstance(e, ray.exceptions.RayActorError)]
        causes = [e for e in errors if not isinstance(getattr(e, "cause", e), MeshBroken)]
        raise (dead or causes or errors)[0]
    return int(ends[0])


def run_ray(
    spec: RunSpec,
    bounds: np.ndarray,
    log_dir: Path | None,
    router: str = "shard",
    address: str | None = None,
    modules: Sequence[str] = (),
    sources: Sequence[str] = (),
    progress: Progress | None = None,
    transport: str = "auto",
) -> dict[str, Any]:
    """Run the shards as Ray actors, routing in each shard or in one router actor.

    ``modules`` are imported by each shard actor before it resolves the protocol;
    ``sources`` (their files) travel to the actors' machines (:func:`worker_env`).
    ``transport`` is one of :data:`TRANSPORTS`: with ``"auto"`` the shards trade their
    parts over a socket mesh (:mod:`raysim.runtime.mesh`) when they route their own sends
    and the cluster is one machine, and through Ray's task path otherwise. Both give the
    same log.
    """
    import ray

    if transport not in TRANSPORTS:
        raise ValueError(f"transport {transport!r}: allowed: {', '.join(TRANSPORTS)}")
    ensure_ray(address)
    n = len(bounds) - 1
    env = worker_env(sources)  # after ensure_ray: uploads to the running cluster
    # NOTE: the "watch" group is a second thread in each shard actor, so the driver can
    # read a mesh run's progress while the run's one call is busy; every other method runs
    # in the default group, one at a time and in the order called.
    shard_cls: Any = ray.remote(num_cpus=0, concurrency_groups={"watch": 1})(  # type: ignore[call-overload]
        _ShardWorker
    )
    if env is not None:
        shard_cls = shard_cls.options(runtime_env=env)
    in_shard = router == "shard"
    one_machine = _one_machine()
    mesh = transport == "mesh" or (transport == "auto" and in_shard and one_machine)
    if mesh and not in_shard:
        raise ValueError("transport 'mesh' needs routing in the shards (router = 'shard')")
    if mesh and not one_machine:
        raise ConfigError(
            "--transport mesh: this Ray cluster spans several machines and the mesh's "
            "sockets reach only one; use --transport auto or tasks"
        )
    # NOTE: the lifecycle schedule is computed once per run and put in the object store
    # once; every shard actor gets the same (zero-copy) arrays.
    schedule = ray.put(lifecycle_schedule(spec))
    actors: list[Any] = [
        shard_cls.remote(
            spec, i, bounds, str(_part(log_dir, f"{i:05d}")) if log_dir else None, in_shard,
            schedule, tuple(modules),
        )
        for i in range(n)
    ]
    router_actor: Any = None
    if not in_shard:
        router_cls: Any = ray.remote(num_cpus=0)(_RouterWorker)
        if env is not None:
            router_cls = router_cls.options(runtime_env=env)
        router_actor = router_cls.remote(
            spec, bounds, str(_part(log_dir, "router")) if log_dir else None, tuple(modules)
        )

    def submit_in_shard(end: int, inbox: list[list[Any]]) -> tuple[list[list[Any]], Any]:
        refs = [
            a.step.options(num_returns=n + 1).remote(end, *inbox[i]) for i, a in enumerate(actors)
        ]
        return _by_destination([list(r[:-1]) for r in refs]), [r[-1] for r in refs]

    def submit_router(end: int, inbox: list[list[Any]]) -> tuple[list[list[Any]], Any]:
        assert router_actor is not None
        refs = [
            a.advance.options(num_returns=2).remote(end, *inbox[i]) for i, a in enumerate(actors)
        ]
        routed = router_actor.route.options(num_returns=n + 1).remote(*[r[0] for r in refs])
        # Each destination gets one (flag, batches) item: the router's, for all senders.
        return [[routed[d]] for d in range(n)], ([r[1] for r in refs], routed[-1])

    def collect_in_shard(handle: Any) -> list[StepInfo]:
        return list(ray.get(handle))

    def collect_router(handle: Any) -> list[StepInfo]:
        info_refs, mins_ref = handle
        infos: list[StepInfo] = ray.get(info_refs)
        mins: list[int] = ray.get(mins_ref)
        for i in infos:
            i.out_min_time = mins
        return infos

    try:
        with _actor_deaths(spec.run_id, actors, router_actor):
            if mesh:
                end = _run_mesh(actors, progress)
            elif in_shard:
                end = coordinate(
                    spec, n, submit_in_shard, collect_in_shard, PIPELINE_DEPTH, progress
                )
            else:
                end = coordinate(
                    spec, n, submit_router, collect_router, PIPELINE_DEPTH, progress
                )
            finals: list[dict[str, Any]] = ray.get([a.finish.remote() for a in actors])
            if router_actor is not None:
                r = ray.get(router_actor.finish.remote())
                finals[0]["route"].add(r["route"])
                finals[0]["rows"] += r["rows"]
    finally:
        for a in actors:
            ray.kill(a)
        if router_actor is not None:
            ray.kill(router_actor)
    peak = max([peak_rss_mib()] + [f.get("peak_rss_mib", 0.0) for f in finals])
    return {
        "end_time": end,
        "shards": finals,
        "peak_rss_mib": peak,
        "transport": "mesh" if mesh else "tasks",
    }
