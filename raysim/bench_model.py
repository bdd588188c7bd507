"""Where the Ray backend beats the local one: a cost model from measured costs.

A run is a sequence of windows (one lookahead each, see :mod:`raysim.runtime.backends`).
Its wall time on the local backend is, to first order,

    T_local = W · w_local + E · e

with W windows that hold events, E events (deliveries and timers), w_local the fixed
cost of a window (a few dozen numpy calls, the order sort, the log batch) and e the cost
of an event at scale (handler, routing, logging). A local run keeps ``u`` cores busy
(the simulation thread and the Parquet writer thread), so ``e`` is wall time on ``u``
cores.

On Ray with S shards on P cores, every shard runs 1/S of the events, and the shards
share the cores: S shards want S·u cores, so the compute part takes E·e·max(1/S, u/P).
Each message that crosses shards, a share (S − 1)/S of M under uniform traffic, costs x
more (serialised, and read back in the other process). Each window costs
w_ray(S) = a + b·S on the critical path: each shard hands every other shard its part of
the window (S² objects in all) and the next window waits for all of them; on Ray's task
path the driver also submits one call per shard and window, on the socket mesh
(:mod:`raysim.runtime.mesh`, the default on one machine) the shards trade the parts
directly and the driver is out of the loop.
Starting the shard actors costs T0(S) = c + d·S. So

    T_ray(S, P) = T0(S) + W · (a + b·S) + (E·e + M·x·(S − 1)/S) · max(1/S, u/P)

and the speed-up is T_local / T_ray. W is the windows each backend runs: Ray's task path
submits windows ahead of the results that say whether they are empty, so it runs more of
them; the mesh runs the local backend's.
Every coefficient is measured by ``raysim bench --scaling`` on the machine it runs on
(:func:`fit`); :func:`speedup` then answers "how fast at S shards on P cores" for any
workload's E, W and M. The per-window terms are what make small or short-lookahead runs
slower on Ray; the model's break-even
(:func:`break_even_events_per_window`) says how many events a window must hold before
Ray with S shards on S cores pays.

NOTE: what the model leaves out: the driver and raylet share the cores with the shards
(on 2 cores they take a visible share), load imbalance between shards, and the network
of a real cluster (x and b grow with it). It is a first-order model, checked against the
measured speed-ups on the machine that measured it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Costs:
    """Measured coefficients of the model (seconds; see the module docstring)."""

    event_s: float  # e: local wall per event at scale
    cores_used: float  # u: cores a local run keeps busy
    window_local_s: float  # w_local
    window_ray_s: tuple[float, float]  # (a, b): Ray per window = a + b·S
    start_ray_s: tuple[float, float]  # (c, d): actor start-up = c + d·S
    message_s: float  # x: extra cost of a message that crosses shards

    def as_dict(self) -> dict[str, Any]:
        """The coefficients as a JSON-able dict (microseconds and milliseconds rounded)."""
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass(frozen=True)
class Workload:
    """What a run does, for the model: events, windows with events, messages."""

    events: int
    windows: int
    messages: int
    # Windows the Ray backend runs, if not ``windows``: it submits windows ahead of the
    # results that say whether they are empty (pipelining), so it runs some empty ones.
    ray_windows: int | None = None


def local_time(c: Costs, w: Workload) -> float:
    """Predicted wall time of ``w`` on the local backend."""
    return w.windows * c.window_local_s + w.events * c.event_s


def ray_time(c: Costs, w: Workload, shards: int, cores: int) -> float:
    """Predicted wall time of ``w`` on Ray with ``shards`` shards on ``cores`` cores."""
    if shards < 1 or cores < 1:
        raise ValueError(f"shards and cores must be at least 1, got {shards} and {cores}")
    a, b = c.window_ray_s
    s0, s1 = c.start_ray_s
    cross = w.messages * c.message_s * (shards - 1) / shards
    share = max(1.0 / shards, c.cores_used / cores)
    windows = w.windows if w.ray_windows is None else w.ray_windows
    compute = w.events * c.event_s + cross
    return s0 + s1 * shards + windows * (a + b * shards) + compute * share


def speedup(c: Costs, w: Workload, shards: int, cores: int) -> float:
    """Predicted speed-up of Ray with ``shards`` shards on ``cores`` cores over local."""
    return local_time(c, w) / ray_time(c, w, shards, cores)


def break_even_events_per_window(c: Costs, shards: int, windows: int = 1000) -> float:
    """Events per window above which Ray with ``shards`` shards on as many cores is faster
    than local, for a run of ``windows`` windows whose every event is a message (E = M).
    ``inf`` if it never is (e.g. one shard)."""
    a, b = c.window_ray_s
    s0, s1 = c.start_ray_s
    share = max(1.0 / shards, c.cores_used / shards)
    # local: W·wl + E·e ; ray: T0 + W·(a+bS) + E·(e + x(S-1)/S)·share ; solve for E/W.
    gain = c.event_s - (c.event_s + c.message_s * (shards - 1) / shards) * share
    if gain <= 0:
        return float("inf")
    fixed = (s0 + s1 * shards) / windows + (a + b * shards) - c.window_local_s
    return max(0.0, fixed / gain)


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) through the points; slope 0 from one point."""
    if not xs:
        raise ValueError("no points to fit")
    if len(set(xs)) == 1:
        return float(np.mean(ys)), 0.0
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(intercept), float(slope)


def fit(lines: list[dict[str, Any]]) -> Costs:
    """The model's coefficients from ``raysim bench --scaling``'s measurement lines.

    Uses the ``window_cost`` lines (the tiny many-window workload at two lengths, local
    and on Ray at 1, 2, … shards: per-window cost is the slope of wall time against
    windows, start-up the intercept), the ``transfer`` line (x) and the local ``scaling``
    line (e and u, at scale).
    """
    local = [ln for ln in lines if ln["workload"] == "scaling" and ln["backend"] == "local"]
    transfer = [ln for ln in lines if ln["workload"] == "transfer"]
    wins = [ln for ln in lines if ln["workload"] == "window_cost"]
    if not local or not transfer or not wins:
        raise ValueError("fit needs the scaling, transfer and window_cost lines")
    big = local[0]
    event_s = big["wall_s"] / max(1, big["delivered"] + big["timers"])
    cores_used = max(1.0, big["cpu_s"] / big["wall_s"])

    def per_window(rows: list[dict[str, Any]]) -> tuple[float, float]:
        return fit_line([r["windows"] for r in rows], [r["wall_s"] for r in rows])

    local_rows = [r for r in wins if r["backend"] == "local"]
    _, window_local = per_window(local_rows)
    shard_counts = sorted({r["shards"] for r in wins if r["backend"] == "ray"})
    starts, slopes = [], []
    for s in shard_counts:
        start, slope = per_window([r for r in wins if r["backend"] == "ray" and r["shards"] == s])
        starts.append(start)
        slopes.append(slope)
    counts = [float(s) for s in shard_counts]
    return Costs(
        event_s=event_s,
        cores_used=cores_used,
        window_local_s=window_local,
        window_ray_s=fit_line(counts, slopes),
        start_ray_s=fit_line(counts, starts),
        message_s=transfer[0]["per_message_s"],
    )


def _is_ray_scaling(line: dict[str, Any]) -> bool:
    return bool(line["workload"] == "scaling" and line["backend"] == "ray")


def report(
    lines: list[dict[str, Any]],
    cores: tuple[int, ...] = (4, 8, 16, 32),
    nodes: int = 1_000_000,
) -> dict[str, Any]:
    """The model line ``raysim bench --scaling`` prints: coefficients, the model against
    each measured scaling line, and predictions for the scaling workload on more cores,
    as measured and scaled to ``nodes`` nodes (events and messages grow with the nodes;
    a lockstep run's windows do not)."""
    c = fit(lines)
    big = next(ln for ln in lines if ln["workload"] == "scaling" and ln["backend"] == "local")
    ray_lines = [ln for ln in lines if _is_ray_scaling(ln)]
    ray_windows = max((ln["windows"] for ln in ray_lines), default=big["windows"])
    work = Workload(
        big["delivered"] + big["timers"], big["windows"], big["delivered"], ray_windows
    )
    k = nodes / big["nodes"]
    scaled = replace(work, events=round(work.events * k), messages=round(work.messages * k))
    checked = []
    for ln in ray_lines:
        at = replace(work, ray_windows=ln["windows"])
        checked.append({
            "shards": ln["shards"],
            "measured_speedup": ln["speedup"],
            "model_speedup": round(speedup(c, at, ln["shards"], ln["cores"]), 3),
        })
    return {
        "workload": "scaling_model",
        "costs": c.as_dict(),
        "scaling_workload": asdict(work),
        "checked": checked,
        "predicted": [
            {
                "cores": p,
                "shards": p,
                "speedup": round(speedup(c, work, p, p), 2),
                f"speedup_at_{nodes}_nodes": round(speedup(c, scaled, p, p), 2),
            }
            for p in cores
        ],
        "break_even_events_per_window": {
            str(p): _rounded(break_even_events_per_window(c, p)) for p in (2, *cores)
        },
    }


def _rounded(x: float) -> int | None:
    return None if x == float("inf") else round(x)
