"""One run, start to finish: layout, backend, atomic results, one row in ``runs.parquet``.

Results layout (the contract the analysis relies on)::

    <out>/<experiment>/runs.parquet                      one row per run
    <out>/<experiment>/events/run_id=<id>/part-*.parquet the event log, one part per shard

A run's event files are written under a hidden staging folder (``events/.staging-…``,
which Parquet readers skip) and renamed into place only when the run has finished, so an
interrupted run leaves nothing that looks complete. ``runs.parquet`` is rewritten whole
into a temporary file and renamed over the old one, under a lock.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from raysim._version import __version__
from raysim.api.protocol import ProtocolSpec, Violation
from raysim.engine.shard import RunSpec
from raysim.errors import ConfigError, ProtocolError, RunFailed
from raysim.experiments.checks import SafetyResult, covers, run_checks
from raysim.experiments.config import ExperimentConfig
from raysim.experiments.results import append_run_row, check_runs_table, locate
from raysim.network.lifecycle import read_trace
from raysim.network.router import RouteStats
from raysim.protocols import aliases, lookup, module_sources
from raysim.runtime.backends import (
    ROUTER_PLACEMENTS,
    TRANSPORTS,
    Progress,
    run_local,
    run_ray,
    shard_bounds,
)
from raysim.runtime.staging import Staging, remove_dead

BACKENDS = ("local", "ray")


@dataclass
class RunResult:
    """What a run produced: its id, status, counts, metrics and where its files are."""

    run_id: str
    status: str
    row: dict[str, Any]
    events_dir: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    violations: list[Violation] = field(default_factory=list)
    checks_seconds: float = 0.0  # wall time of the end-of-run checks (not in the row)
    checks_cpu_seconds: float = 0.0  # and this process's CPU time in them


@cache
def git_commit() -> str:
    """The commit of the raysim checkout, or '' when not run from one."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists become JSON text (one scalar per column)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v, sort_keys=True)
        else:
            out[key] = v
    return out


def prepare_results_dir(out: Path, experiment: str) -> Path:
    """Create ``out/experiment`` or fail with one clear line if it cannot be written.

    Everything is checked before anything is created: a bad results directory is left
    exactly as it was.
    """
    target = out / experiment
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {out}: {target} exists and is not a directory")
    check_runs_table(locate(target))
    try:
        (target / "events").mkdir(parents=True, exist_ok=True)
        probe = target / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"--out {out}: results directory is not writable ({e.strerror})"
        ) from None
    return target


def effective_protocol(cfg: ExperimentConfig) -> str:
    """The registered name that describes what the run really runs.

    A name implies parameter presets (``gossip.push_pull`` is ``mode = "push_pull"``); a
    ``--set protocol.mode=push`` overrides them, and the run is then ``gossip.push``. Among
    the names registered for the same class whose presets all hold for the run's effective
    parameters, the one with the most presets wins (ties: the name as written, then the
    alphabetically first); with no match, the name as written.
    """
    given = lookup(cfg.experiment.protocol)
    params = given.make_params(cfg.protocol).model_dump(mode="json")
    candidates = [
        spec
        for spec in aliases(given)
        if all(params.get(k) == v for k, v in spec.presets.items())
    ]
    if not candidates:
        return given.name
    best = max(len(s.presets) for s in candidates)
    names = [s.name for s in candidates if len(s.presets) == best]
    return given.name if given.name in names else names[0]


def make_spec(cfg: ExperimentConfig, run_id: str) -> RunSpec:
    """The shard-level description of a validated configuration."""
    e, n = cfg.experiment, cfg.network
    return RunSpec(
        run_id=run_id,
        seed=e.seed,
        n_nodes=n.nodes,
        protocol=e.protocol,
        params=dict(cfg.protocol),
        topology=n.topology,
        degree=n.degree,
        delay=n.delay,
        jitter=n.jitter,
        faults=cfg.faults,
        duration=e.duration_ticks,
        stop_when=e.stop_when,
        log_level=cfg.log.level,
        batch_rows=cfg.log.batch_rows,
        tick_ms=e.tick_ms,
        causality=cfg.log.causality,
        trace=(
            read_trace(cfg.faults.churn.trace, n.nodes)
            if cfg.faults.churn.model == "trace" and cfg.faults.churn.trace
            else None
        ),
    )


def summarize(spec: RunSpec, raw: dict[str, Any]) -> dict[str, Any]:
    """Totals over shards: message counts, router decisions, milestones."""
    route = RouteStats()
    counts: dict[str, int] = {}
    milestones: dict[str, tuple[int, int]] = {}
    rows = 0
    for s in raw["shards"]:
        route.add(s["route"])
        rows += s["rows"]
        for k, v in s.get("counts", {}).items():
            counts[k] = counts.get(k, 0) + v
        for name, (count, last) in s.get("milestones", {}).items():
            c0, l0 = milestones.get(name, (0, -1))
            milestones[name] = (c0 + count, max(l0, last))
    stats: dict[str, Any] = {
        "nodes": spec.n_nodes,
        "end_time": raw["end_time"],
        "events_logged": rows,
        "sent": route.sent,
        "lost": route.lost,
        "partitioned": route.partitioned,
        "duplicated": route.duplicated,
        "corrupted": route.corrupted,
        **counts,
    }
    # Every copy the network carried (sent + duplicated) was delivered, lost, cut by a
    # partition, dropped at a crashed node, failed its checksum, or is still on its way.
    accounted = sum(
        stats.get(k, 0) for k in ("delivered", "lost", "partitioned", "dropped_crashed", "corrupt")
    )
    stats["in_flight"] = route.sent + route.duplicated - accounted
    for name, (count, last) in sorted(milestones.items()):
        stats[f"{name}_nodes"] = count
        stats[f"{name}_time"] = last
    return stats


def run(
    cfg: ExperimentConfig,
    out: Path,
    backend: str = "local",
    shards: int | None = None,
    shard_size: int | None = None,
    router: str = "shard",
    address: str | None = None,
    write_row: bool = True,
    strict: bool = False,
    progress: Progress | None = None,
    transport: str = "auto",
) -> RunResult:
    """Run one experiment; write its event log and its ``runs.parquet`` row.

    With ``write_row=False`` the row is only returned (``RunResult.row``) and the caller
    writes it: the sweep driver does, so that one process owns ``runs.parquet``. The
    protocol's safety checks run at the end (:mod:`raysim.experiments.checks`); with
    ``strict`` a run with violations is recorded as failed (its events are kept).
    ``progress(window end, events so far)`` is called after each window (``raysim run``'s bar).
    ``transport`` is how Ray's shard actors trade windows (``auto``, ``mesh`` or ``tasks``:
    :func:`raysim.runtime.backends.run_ray`); it never changes the log.
    """
    proto = _protocol(cfg, strict)
    if backend not in BACKENDS:
        raise ConfigError(f"--backend {backend!r}: allowed: {', '.join(BACKENDS)}")
    if router not in ROUTER_PLACEMENTS:
        raise ConfigError(f"--router {router!r}: allowed: {', '.join(ROUTER_PLACEMENTS)}")
    if transport not in TRANSPORTS:
        raise ConfigError(f"--transport {transport!r}: allowed: {', '.join(TRANSPORTS)}")
    if transport == "mesh" and router != "shard":
        raise ConfigError(
            "--transport mesh: the mesh needs routing in the shards; use --router shard "
            "(or --transport auto, which takes Ray's task path with the router actor)"
        )
    if shards is not None and shards < 1:
        raise ConfigError(f"--shards {shards}: must be at least 1")
    if shard_size is not None and shard_size < 1:
        raise ConfigError(f"--shard-size {shard_size}: must be at least 1")
    results = prepare_results_dir(Path(out), cfg.experiment.name)
    run_id = cfg.run_id()
    spec = make_spec(cfg, run_id)
    bounds = shard_bounds(
        spec.n_nodes, shards if backend == "ray" else 1, shard_size if backend == "ray" else None
    )
    final = results / "events" / f"run_id={run_id}"
    remove_dead(results / "events")  # whatever killed runs left behind
    staging = Staging(results / "events", run_id) if cfg.log.level != "none" else None
    log_dir = staging.path if staging is not None else None
    row: dict[str, Any] = {
        "run_id": run_id,
        "experiment": cfg.experiment.name,
        "protocol": effective_protocol(cfg),
        "seed": cfg.experiment.seed,
        "backend": backend,
        "shards": len(bounds) - 1,
        "router": router if backend == "ray" else "shard",
        # how the shards traded windows: "local" (one process), "mesh" or "tasks" (Ray)
        "transport": "local" if backend == "local" else transport,
        **flatten({k: v for k, v in cfg.resolved().items() if k != "log"}),
    }
    t0 = time.perf_counter()
    try:
        if backend == "local":
            raw = run_local(spec, bounds, log_dir, progress=progress)
        else:
            # NOTE: absolute, since Ray actors need not share this process's working
            # directory (they do not when joining a running cluster).
            ray_dir = log_dir.absolute() if log_dir is not None else None
            raw = run_ray(spec, bounds, ray_dir, router=router, address=address,
                          modules=cfg.experiment.modules,
                          sources=module_sources(cfg.experiment.protocol, cfg.experiment.modules),
                          progress=progress, transport=transport)
    except (ProtocolError, RunFailed) as e:
        if staging is not None:
            staging.discard()
        tb = e.traceback if isinstance(e, ProtocolError) else e.detail
        row.update(status="failed", error=str(e).splitlines()[0], traceback=tb)
        row.update(_meta(time.perf_counter() - t0, cfg))
        if write_row:
            append_run_row(results, row)
        return RunResult(run_id, "failed", row, None, error=str(e))
    except BaseException:
        if staging is not None:
            staging.discard()
        raise
    wall = time.perf_counter() - t0
    stats = summarize(spec, raw)
    params = proto.make_params(cfg.protocol)
    metrics = {k: float(v) for k, v in proto.cls.metrics(params, stats).items()}
    c0, cpu0 = time.perf_counter(), time.process_time()
    try:
        safety = run_checks(proto, params, log_dir, cfg.log.level, spec.n_nodes)
    except BaseException:
        if staging is not None:
            staging.discard()
        raise
    checks_s, checks_cpu = time.perf_counter() - c0, time.process_time() - cpu0
    if staging is not None:
        _publish(staging, final)
    status, error = _verdict(safety, strict)
    row.update(status=status, error=error, traceback=None)
    row.update(stats)
    metrics.update(safety.metrics)
    row.update({f"metric.{k}": v for k, v in metrics.items()})
    row.update(safety.row(proto.cls.checks))
    row["peak_rss_mib"] = raw["peak_rss_mib"]
    row["transport"] = raw.get("transport", row["transport"])  # what "auto" chose
    row.update(_meta(wall, cfg))
    if write_row:
        append_run_row(results, row)
    return RunResult(run_id, status, row, final if log_dir is not None else None, metrics,
                     error=error, violations=safety.first, checks_seconds=checks_s,
                     checks_cpu_seconds=checks_cpu)


def _protocol(cfg: ExperimentConfig, strict: bool) -> ProtocolSpec:
    """The run's protocol (importing its modules here, e.g. in a sweep task on another
    machine); with ``strict``, a config error if its checks could not be run."""
    proto = cfg.protocol_spec()
    if strict:
        check_strict(cfg, proto)
    return proto


def check_strict(cfg: ExperimentConfig, proto: ProtocolSpec | None = None) -> None:
    """A ConfigError if ``--strict`` cannot be honoured: checks need the full event log."""
    proto = proto or cfg.protocol_spec()
    if proto.cls.checks and not covers(cfg.log.level, proto.cls.log_needs):
        raise ConfigError(
            f"--strict: protocol {cfg.experiment.protocol!r} checks {', '.join(proto.cls.checks)}"
            f" over the log at level {proto.cls.log_needs!r}, but log.level = "
            f"{cfg.log.level!r}; set log.level = {proto.cls.log_needs!r} or drop --strict"
        )


def _verdict(safety: SafetyResult, strict: bool) -> tuple[str, str | None]:
    """A run's status and error: violations fail it only under ``strict``."""
    if strict and safety.total:
        return "failed", safety.describe()
    return "ok", None


def _publish(staging: Staging, final: Path) -> None:
    """Rename a finished run's staging folder into place (replacing an older copy)."""
    if final.exists():
        trash = final.with_name(f".old-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        os.replace(staging.path, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging.path, final)
    staging.close()


def _meta(wall: float, cfg: ExperimentConfig) -> dict[str, Any]:
    return {
        "wall_seconds": wall,
        "raysim_version": __version__,
        "git_commit": git_commit(),
        "config": json.dumps(cfg.resolved(), sort_keys=True),
    }
