"""Running a planned sweep as Ray tasks: bounded concurrency, progress, resume, failures.

Theory of operation
-------------------
The driver (this process) owns ``runs.parquet``: each run is one Ray task that executes
:func:`raysim.experiments.runner.run` with the ``local`` backend and returns its row; the
driver writes the row as soon as the task finishes. At most ``max_parallel`` tasks are in flight
(``ray.wait`` back-pressure), so a 10⁴-point sweep never floods the scheduler.

*Resume.* A run is finished when ``runs.parquet`` has an ``ok`` row for its ``run_id`` and
its events directory exists (or its log level is ``none``). Everything else is (re)run:
runs never started, failed runs, and runs whose events were published but whose row was
never written (the driver died in between; the rerun replaces them with identical files).

*Atomicity.* A run's events are written under a hidden staging folder and renamed into
place by the runner; the row is written after that; ``runs.parquet`` is replaced whole by
rename. A sweep killed at any moment (Ctrl-C, ``kill -9``, a dead worker) therefore leaves
complete runs and hidden leftovers only; the next sweep removes the leftovers of the runs
it is about to rerun (it holds ``.sweep.lock`` so no other sweep is running them).

*Ctrl-C* stops the runs in flight, records nothing for them, and returns a summary with
``interrupted=True``. On a Ray the sweep started itself, it stops that Ray (its workers die
with their runs) and removes the runs' staging folders once their owners are gone; on a
cluster it joined, it cancels the tasks (they clean their staging folders). NOTE: not
``ray.cancel`` on a Ray of our own: in Ray 2.60 a cancel that races with the task's own
completion aborts the driver ("Tried to complete task that was not pending",
ray-project/ray#54846), which under load turned about one Ctrl-C in five into exit code 1.
"""

from __future__ import annotations

import fcntl
import json
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raysim.errors import ConfigError
from raysim.experiments.results import (
    EVENTS,
    MANIFEST,
    Location,
    append_rows,
    check_runs_table,
    event_run_ids,
    locate,
    publish_events,
    read_runs,
    remove_stale_staging,
    remove_torn_temporaries,
    remove_tree,
    write_text,
)
from raysim.runtime.staging import remove_dead, remove_when_dead

if TYPE_CHECKING:
    from raysim.experiments.config import ExperimentConfig
    from raysim.experiments.sweep import PlannedRun, SweepPlan

CANCEL_GRACE_S = 10.0


@dataclass
class SweepSummary:
    """What a sweep did: counts, failures, whether it was interrupted."""

    experiment: str
    results: str
    total: int
    skipped: int = 0
    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    wall_seconds: float = 0.0

    @property
    def missing(self) -> int:
        """Runs neither finished before nor finished now."""
        return self.total - self.skipped - self.ok - len(self.failed)

    @property
    def exit_code(self) -> int:
        """0 all ok, 1 some runs failed, 130 interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def describe(self) -> str:
        """A short human summary (several lines when runs failed)."""
        head = (
            f"sweep {self.experiment}: {self.total} runs: {self.ok} ran ok, "
            f"{self.skipped} already done, {len(self.failed)} failed"
        )
        if self.missing:
            head += f", {self.missing} not run"
        lines = [f"{head} ({self.wall_seconds:.1f} s); results: {self.results}"]
        for run_id, error in self.failed[:10]:
            lines.append(f"  failed {run_id}: {error}")
        if len(self.failed) > 10:
            lines.append(f"  … and {len(self.failed) - 10} more (see runs.parquet)")
        if self.interrupted:
            lines.append("interrupted: rerun the same command to finish the remaining runs")
        elif self.failed:
            lines.append("failed runs are recorded with their traceback in runs.parquet; "
                         "rerunning retries them")
        return "\n".join(lines)


def failed_row(cfg: ExperimentConfig, error: str, tb: str) -> dict[str, Any]:
    """A ``runs.parquet`` row for a run that failed outside its protocol (crash, bug, …)."""
    from raysim._version import __version__
    from raysim.experiments.runner import flatten, git_commit

    return {
        "run_id": cfg.run_id(),
        "experiment": cfg.experiment.name,
        "protocol": cfg.experiment.protocol,
        "seed": cfg.experiment.seed,
        "backend": "local",
        "shards": 1,
        "router": "shard",
        "transport": "local",
        **flatten({k: v for k, v in cfg.resolved().items() if k != "log"}),
        "status": "failed",
        "error": error,
        "traceback": tb,
        "raysim_version": __version__,
        "git_commit": git_commit(),
        "config": json.dumps(cfg.resolved(), sort_keys=True),
    }


def execute(
    cfg: ExperimentConfig, out: str, replicate: int, strict: bool = False
) -> dict[str, Any]:
    """Run one sweep point (the body of the Ray task); returns its ``runs.parquet`` row.

    The runner imports the run's ``experiment.modules`` before it resolves the protocol
    (they reach a task on another machine through its ``runtime_env``, see :func:`_task_env`).
    """
    from raysim.experiments import runner

    node_id = ""
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # pragma: no cover - outside Ray
        pass
    try:
        if node_id:
            # NOTE: under Ray the modules come from the task's runtime_env (py_modules), never
            # from the driver's folder, so a task behaves the same on every node of a cluster.
            cfg = cfg.without_base_dir()
        loc = locate(out)
        if loc.local is not None:
            row = runner.run(cfg, loc.local, backend="local", write_row=False, strict=strict).row
        else:
            tmp = Path(tempfile.mkdtemp(prefix="raysim-run-"))
            try:
                result = runner.run(cfg, tmp, backend="local", write_row=False, strict=strict)
                if result.events_dir is not None:
                    publish_events(result.events_dir, loc.child(cfg.experiment.name), result.run_id)
                row = result.row
            finally:
                remove_tree(tmp)
    except Exception as e:
        row = failed_row(cfg, f"{type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())
    row["replicate"] = replicate
    row["ray_node_id"] = node_id
    row["hostname"] = socket.gethostname()
    return row


@contextmanager
def _sweep_lock(loc: Location) -> Iterator[None]:
    if loc.local is None:  # no portable lock on object stores: one sweep per location
        yield
        return
    loc.local.mkdir(parents=True, exist_ok=True)
    with open(loc.local / ".sweep.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{loc}: another raysim sweep is writing to this directory") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _check_target(base: Location, loc: Location, out: str | Path) -> None:
    """Bad ``--out`` or a foreign ``runs.parquet``: ConfigError before anything is written."""
    try:
        if base.local is not None and base.local.exists() and not base.local.is_dir():
            raise ConfigError(f"--out {out}: exists and is not a directory")
        if loc.exists() and not loc.is_dir():
            raise ConfigError(f"--out {out}: {loc} exists and is not a directory")
        check_runs_table(loc)
        loc.fs.create_dir(loc.path, recursive=True)
        if loc.local is not None:
            probe = loc.local / f".write-test-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
    except OSError as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"--out {out}: results directory is not writable ({reason})") from None


def finished_run_ids(loc: Location, runs: Sequence[PlannedRun]) -> set[str]:
    """run_ids of ``runs`` that are complete at ``loc``: an ok row, and events if logged."""
    table = read_runs(loc, columns=["run_id", "status"])
    if table is None:
        return set()
    ok = set(table.loc[table["status"] == "ok", "run_id"])
    events = event_run_ids(loc)
    return {
        r.run_id for r in runs
        if r.run_id in ok and (r.cfg.log.level == "none" or r.run_id in events)
    }


def _error_text(e: BaseException) -> tuple[str, str]:
    text = str(e).strip().splitlines()
    first = next((ln for ln in reversed(text) if ln.strip()), type(e).__name__)
    return f"{type(e).__name__}: {first.strip()}", "".join(traceback.format_exception(e))


def run_sweep(
    plan: SweepPlan,
    out: str | Path,
    *,
    address: str | None = None,
    max_parallel: int | None = None,
    progress: bool = True,
    strict: bool = False,
) -> SweepSummary:
    """Run every unfinished run of ``plan`` as a Ray task; write rows as runs finish.

    ``out`` is the parent results directory (local path or pyarrow filesystem URI); the
    runs go to ``out/<experiment>``. ``address`` (or ``RAY_ADDRESS``) joins a cluster,
    otherwise a local Ray is started (and shut down at the end) unless one is running.
    ``max_parallel`` defaults to the cluster's CPU count. Each task imports its run's
    ``experiment.modules`` (shipped to the task's machine) before resolving the protocol.
    With ``strict`` a run whose safety checks find violations is a failed run. Ctrl-C
    returns an interrupted summary instead of raising.
    """
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"--max-parallel {max_parallel}: must be at least 1")
    if strict:
        from raysim.experiments.runner import check_strict

        for r in plan.runs:
            check_strict(r.cfg)
    base = locate(out)
    loc = base.child(plan.experiment)
    _check_target(base, loc, out)
    t0 = time.perf_counter()
    summary = SweepSummary(plan.experiment, str(loc), len(plan.runs))
    with _sweep_lock(loc):
        done = finished_run_ids(loc, plan.runs)
        todo = [r for r in plan.runs if r.run_id not in done]
        summary.skipped = len(plan.runs) - len(todo)
        remove_stale_staging(loc, {r.run_id for r in todo})
        write_text(loc, MANIFEST, json.dumps(plan.manifest(), indent=1, sort_keys=True))
        if todo:
            target = base.display if base.local is None else str(base.local)
            try:
                _drive(todo, target, loc, summary, address=address, max_parallel=max_parallel,
                       progress=progress, strict=strict)
            finally:
                _settle(loc, todo, summary)
    summary.wall_seconds = time.perf_counter() - t0
    return summary


def _settle(loc: Location, todo: list[PlannedRun], summary: SweepSummary) -> None:
    """After the runs: count what is really done, remove what dead attempts left behind.

    The ok count is read back from ``runs.parquet`` rather than kept while rows are written,
    so a Ctrl-C between writing a row and counting it cannot make the summary disagree with
    the table. Staging folders of attempts whose process died (Ray retried them) and torn
    temporaries of the runs table are removed.
    """
    summary.ok = len(finished_run_ids(loc, todo))
    if loc.local is not None:
        remove_dead(loc.local / EVENTS)
    remove_torn_temporaries(loc)


def _drive(
    todo: list[PlannedRun],
    out: str,
    loc: Location,
    summary: SweepSummary,
    *,
    address: str | None,
    max_parallel: int | None,
    progress: bool,
    strict: bool,
) -> None:
    import ray
    from tqdm import tqdm

    from raysim.runtime.backends import ensure_ray

    started_here = not ray.is_initialized()
    ensure_ray(address)
    pending: dict[Any, PlannedRun] = {}
    try:
        limit = max_parallel or max(1, int(ray.cluster_resources().get("CPU", 1)))
        task = ray.remote(num_cpus=1, max_retries=2, scheduling_strategy="SPREAD")(execute)
        envs: dict[tuple[str, tuple[str, ...]], dict[str, Any] | None] = {}
        queue = iter(todo)
        bar = tqdm(total=summary.total, initial=summary.skipped, desc=summary.experiment,
                   unit="run", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        try:
            while True:
                for run in queue:
                    e = run.cfg.experiment
                    key = (e.protocol, e.modules)
                    if key not in envs:
                        envs[key] = _task_env(run.cfg)
                    env = envs[key]
                    submit = task if env is None else task.options(runtime_env=env)
                    pending[submit.remote(run.cfg, out, run.point.replicate, strict)] = run
                    if len(pending) >= limit:
                        break
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    run = pending.pop(ref)
                    _record(ref, run, loc, summary)
                    bar.update(1)
                    bar.set_postfix(ok=summary.ok, failed=len(summary.failed), refresh=False)
        except KeyboardInterrupt:
            summary.interrupted = True
            if not started_here:  # our own Ray is stopped below, its workers with it
                _cancel(pending, loc, summary)
        finally:
            bar.close()
    finally:
        if started_here:
            ray.shutdown()
            if summary.interrupted and pending and loc.local is not None:
                remove_when_dead(loc.local / EVENTS, {r.run_id for r in pending.values()},
                                 CANCEL_GRACE_S)


def _task_env(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """The ``runtime_env`` that gives a sweep task the run's protocol modules (or None)."""
    from raysim.protocols import module_sources
    from raysim.runtime.backends import worker_env

    return worker_env(module_sources(cfg.experiment.protocol, cfg.experiment.modules))


def _record(
    ref: Any, run: PlannedRun, loc: Location, summary: SweepSummary, keep_failures: bool = True
) -> None:
    import ray

    try:
        row = ray.get(ref)
    except (ray.exceptions.TaskCancelledError, KeyboardInterrupt):
        return
    except Exception as e:  # the task's process died, or Ray could not run it
        if not keep_failures:
            return
        error, tb = _error_text(e)
        row = failed_row(run.cfg, error, tb)
        row["replicate"] = run.point.replicate
    if row["status"] != "ok" and not keep_failures:
        return  # a run interrupted by Ctrl-C is not a failure: it just did not finish
    append_rows(loc, [row])
    if row["status"] == "ok":
        summary.ok += 1
    else:
        summary.failed.append((row["run_id"], str(row.get("error") or "")))


def _cancel(pending: dict[Any, PlannedRun], loc: Location, summary: SweepSummary) -> None:
    """Cancel the tasks in flight: politely first (they remove their staging folders), then
    by force. A task that finished meanwhile still gets its row."""
    import ray

    refs = list(pending)
    for ref in refs:
        ray.cancel(ref, force=False)
    deadline = time.monotonic() + CANCEL_GRACE_S
    while refs and time.monotonic() < deadline:
        ready, refs = ray.wait(refs, num_returns=len(refs), timeout=0.2)
        for ref in ready:
            _record(ref, pending[ref], loc, summary, keep_failures=False)
    for ref in refs:
        ray.cancel(ref, force=True)
