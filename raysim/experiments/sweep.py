"""Sweeps: an experiment's ``[sweep]`` table expanded into runs, and the runs executed on Ray.

Theory of operation
-------------------
*Expansion is pure.* :func:`parse_sweep` checks the table's shape and :func:`expand` turns it
into :class:`Point` values (axis values + replicate index) with no I/O, no randomness and no
Ray. :func:`plan` then validates every point against the experiment (one clear
:class:`~raysim.errors.ConfigError` naming the point if one is bad), gives it its seed and
its ``run_id``. :func:`run_sweep` (in :mod:`raysim.experiments.sweep_exec`) executes a plan.

The ``[sweep]`` table::

    [sweep]
    seeds = 10                                   # replicates 0..9; or a list: [0, 1, 2]
    "protocol.mode" = ["push", "pull", "push_pull"]   # an axis: a field path and its values
    "network.nodes" = [100, 1000, 10000]
    "faults.loss"   = [0.0, 0.1, 0.3]

    [[sweep.zip]]                                # axes that vary together, not as a product
    "network.nodes"  = [100, 1000]
    "network.degree" = [8, 16]

Grid axes and each ``[[sweep.zip]]`` group are combined as a Cartesian product (in the
order written, zip groups last), times the replicates. Axis names are field paths as in
``--set``; unquoted dotted keys (``network.nodes = [...]``) and sub-tables
(``[sweep.network]``) mean the same. ``experiment.seed`` and ``experiment.name`` cannot be
axes.

*Seeds.* A point's seed is ``derive_seed(master, params, replicate)``: the first 63 bits of
SHA-256 over canonical JSON of the experiment's master seed (``experiment.seed``), the
run's whole resolved configuration except its seed, name and ``[log]`` section, and the
replicate index. It is the same on every machine and Python version, and it depends on
nothing else: adding an axis value, another replicate or a whole new axis that includes
the current value leaves every existing run's seed, and so its ``run_id``, unchanged. A
list of seeds names replicate indices, so ``seeds = 10`` and ``seeds = [0, …, 9]`` are the
same runs, and ``seeds = [10, …, 19]`` adds ten more.

*Overrides.* ``--set sweep.seeds=3`` or ``--set sweep.network.nodes=[100,200]`` change the
sweep table; ``--set network.nodes=100`` on a swept field narrows that axis to the one value.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raysim.errors import ConfigError
from raysim.experiments.config import (
    SECTIONS,
    ExperimentConfig,
    apply_overrides,
    parse_value,
    read_toml,
    validate,
    with_modules,
)

RESERVED = ("seeds", "zip")
MAX_RUNS = 100_000  # runs one sweep may plan; every one is validated and listed in sweep.json
AXIS_SECTIONS = tuple(s for s in SECTIONS if s != "sweep")
FORBIDDEN_AXES = {
    "experiment.seed": "the seed of each run is derived from it; use sweep.seeds for replicates",
    "experiment.name": "all runs of a sweep share one results directory",
}

Axis = tuple[str, tuple[Any, ...]]


@dataclass(frozen=True)
class SweepSpec:
    """A checked ``[sweep]`` table: grid axes, zipped groups and replicate indices."""

    axes: tuple[Axis, ...] = ()
    zips: tuple[tuple[Axis, ...], ...] = ()
    replicates: tuple[int, ...] = (0,)

    @property
    def names(self) -> tuple[str, ...]:
        """Every swept field path, grid axes first."""
        return tuple(n for n, _ in self.axes) + tuple(n for g in self.zips for n, _ in g)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (for the manifest and the report)."""
        return {
            "axes": {n: list(v) for n, v in self.axes},
            "zip": [{n: list(v) for n, v in g} for g in self.zips],
            "replicates": list(self.replicates),
        }


@dataclass(frozen=True)
class Point:
    """One combination of axis values and one replicate index."""

    params: tuple[tuple[str, Any], ...]
    replicate: int

    def label(self) -> str:
        """``network.nodes=100, faults.loss=0.1, replicate 3``."""
        parts = [f"{k}={_canon(v)}" for k, v in self.params]
        return ", ".join([*parts, f"replicate {self.replicate}"])


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def flatten_table(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sweep sub-tables as dotted keys: ``{"network": {"nodes": …}}`` → ``network.nodes``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            for k, v in flatten_table(value, name + ".").items():
                if k in out:
                    raise ConfigError(f"sweep axis {k!r} is given twice")
                out[k] = v
        else:
            if name in out:
                raise ConfigError(f"sweep axis {name!r} is given twice")
            out[name] = value
    return out


def _axis(name: str, values: Any, where: str) -> Axis:
    parts = name.split(".")
    if len(parts) < 2 or not all(parts) or parts[0] not in AXIS_SECTIONS:
        raise ConfigError(
            f"{where}: sweep axis {name!r}: expected a field path section.key with section one of "
            f"{', '.join(AXIS_SECTIONS)} (reserved keys: {', '.join(RESERVED)})"
        )
    if name in FORBIDDEN_AXES:
        raise ConfigError(f"{where}: sweep axis {name!r} is not allowed: {FORBIDDEN_AXES[name]}")
    if not isinstance(values, list):
        raise ConfigError(
            f"{where}: sweep axis {name!r}: expected a list of values (got {values!r})"
        )
    if not values:
        raise ConfigError(f"{where}: sweep axis {name!r} is empty; give at least one value")
    seen: set[str] = set()
    for v in values:
        c = _canon(v)
        if c in seen:
            raise ConfigError(f"{where}: sweep axis {name!r}: value {v!r} appears twice")
        seen.add(c)
    return name, tuple(values)


def _replicates(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, bool):
        raise ConfigError(f"{where}: sweep.seeds: expected a count or a list of replicate indices")
    if isinstance(value, int):
        if not 1 <= value <= MAX_RUNS:
            raise ConfigError(
                f"{where}: sweep.seeds: must be at least 1 and at most {MAX_RUNS} (got {value})"
            )
        return tuple(range(value))
    if isinstance(value, list) and value:
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in value
        ):
            raise ConfigError(
                f"{where}: sweep.seeds: list entries must be non-negative integers below 2**63"
            )
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: sweep.seeds: replicate indices must be distinct")
        return tuple(value)
    raise ConfigError(
        f"{where}: sweep.seeds: expected a count (seeds = 10) or a non-empty list of replicate "
        f"indices (seeds = [0, 1, 2]); got {value!r}"
    )


def parse_sweep(table: Mapping[str, Any], where: str = "[sweep]") -> SweepSpec:
    """Check a raw ``[sweep]`` table and return its :class:`SweepSpec` (no I/O)."""
    table = dict(table)
    replicates = _replicates(table.pop("seeds", 1), where)
    raw_zips = table.pop("zip", [])
    if isinstance(raw_zips, dict):
        raw_zips = [raw_zips]
    if not isinstance(raw_zips, list) or not all(isinstance(g, dict) for g in raw_zips):
        raise ConfigError(f"{where}: sweep.zip: expected tables of axes ([[sweep.zip]])")
    axes = tuple(_axis(n, v, where) for n, v in flatten_table(table).items())
    zips: list[tuple[Axis, ...]] = []
    for i, group in enumerate(raw_zips):
        members = tuple(_axis(n, v, where) for n, v in flatten_table(group).items())
        if not members:
            raise ConfigError(f"{where}: sweep.zip.{i}: a zip group needs at least one axis")
        lengths = {len(v) for _, v in members}
        if len(lengths) != 1:
            desc = ", ".join(f"{n} has {len(v)}" for n, v in members)
            raise ConfigError(f"{where}: sweep.zip.{i}: zipped axes need equal lengths ({desc})")
        zips.append(members)
    spec = SweepSpec(axes, tuple(zips), replicates)
    total = len(replicates) * math.prod(len(v) for _, v in axes)
    total *= math.prod(len(g[0][1]) for g in zips)
    if total > MAX_RUNS:
        raise ConfigError(
            f"{where}: the sweep has {total} runs; at most {MAX_RUNS} may be planned at once "
            "(split it, e.g. with sweep.seeds = [a list of replicate indices])"
        )
    names = spec.names
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: sweep axis {dup[0]!r} appears in more than one place")
    return spec


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of a sweep: the product of grid axes and zip groups, times replicates.

    Order: axes in the order written (zip groups last), the last axis varying fastest,
    replicates innermost.
    """
    units: list[list[tuple[tuple[str, Any], ...]]] = [
        [((name, v),) for v in values] for name, values in spec.axes
    ]
    for group in spec.zips:
        n = len(group[0][1])
        units.append([tuple((name, values[i]) for name, values in group) for i in range(n)])
    points: list[Point] = []
    for combo in itertools.product(*units):
        params = tuple(kv for unit in combo for kv in unit)
        points.extend(Point(params, r) for r in spec.replicates)
    return points


def derive_seed(master: int, params: Mapping[str, Any], replicate: int) -> int:
    """A run's seed: 63 bits of SHA-256 over canonical JSON of (master, params, replicate).

    Stable across machines, processes and Python versions (never Python's ``hash()``).
    """
    blob = _canon({"master": master, "params": params, "replicate": replicate})
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big") & (2**63 - 1)


def seed_basis(cfg: ExperimentConfig) -> dict[str, Any]:
    """What a run's seed depends on: its resolved config less seed, name and ``[log]``."""
    data = cfg.resolved()
    data.pop("log", None)
    data["experiment"] = {k: v for k, v in data["experiment"].items() if k not in ("seed", "name")}
    return data


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"sweep axis {path!r}: {p!r} is not a table")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


@dataclass(frozen=True)
class PlannedRun:
    """One validated run of a sweep, with its derived seed."""

    cfg: ExperimentConfig
    point: Point

    @property
    def run_id(self) -> str:
        """The run's stable id (hash of its resolved config)."""
        return self.cfg.run_id()


@dataclass(frozen=True)
class SweepPlan:
    """Every run of a sweep, validated, in expansion order."""

    experiment: str
    source: str
    spec: SweepSpec
    runs: tuple[PlannedRun, ...]
    master_seed: int = 0

    def manifest(self) -> dict[str, Any]:
        """The ``sweep.json`` written next to ``runs.parquet``."""
        return {
            "experiment": self.experiment,
            "source": self.source,
            "sweep": self.spec.to_dict(),
            "master_seed": self.master_seed,
            "runs": [
                {
                    "run_id": r.run_id,
                    "params": dict(r.point.params),
                    "replicate": r.point.replicate,
                    "seed": r.cfg.experiment.seed,
                }
                for r in self.runs
            ],
        }


def _split_overrides(overrides: Sequence[str]) -> tuple[list[tuple[str, Any]], list[str]]:
    sweep_over, other = [], []
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if sep and key.startswith("sweep."):
            sweep_over.append((key[len("sweep.") :], parse_value(text.strip())))
        else:
            other.append(item)
    return sweep_over, other


def plan_data(
    data: Mapping[str, Any],
    overrides: Sequence[str] = (),
    where: str = "<experiment>",
    base_dir: str | Path | None = None,
    imports: Sequence[str] = (),
) -> SweepPlan:
    """Plan a sweep from raw experiment data (a parsed TOML table) and ``--set`` overrides.

    ``base_dir`` is the experiment file's directory (for ``experiment.modules``);
    ``imports`` are ``--import`` modules, appended to ``experiment.modules``.
    """
    data = with_modules(dict(data), list(imports))
    raw_sweep = data.pop("sweep", {})
    if not isinstance(raw_sweep, dict):
        raise ConfigError(f"{where}: [sweep] must be a table")
    sweep_over, other = _split_overrides(overrides)
    table = flatten_table(raw_sweep) if raw_sweep else {}
    for key, value in sweep_over:
        if not key:
            raise ConfigError("--set sweep.: expected sweep.seeds=N or sweep.<field path>=[values]")
        table[key] = value
    spec = parse_sweep(table, where)
    # --set on a swept field narrows that axis to the one value.
    narrowed: dict[str, Any] = {}
    rest = []
    for item in other:
        key, sep, text = item.partition("=")
        key = key.strip()
        if sep and key in dict(spec.axes):
            narrowed[key] = parse_value(text.strip())
        elif sep and any(key == n for g in spec.zips for n, _ in g):
            raise ConfigError(
                f"--set {item!r}: {key} is a zipped sweep axis; change sweep.zip instead"
            )
        else:
            rest.append(item)
    if narrowed:
        spec = SweepSpec(
            tuple((n, (narrowed[n],) if n in narrowed else v) for n, v in spec.axes),
            spec.zips,
            spec.replicates,
        )
    base = apply_overrides(data, rest, where)
    return _resolve(base, spec, where, base_dir)


def _resolve(
    base: dict[str, Any], spec: SweepSpec, where: str, base_dir: str | Path | None = None
) -> SweepPlan:
    runs: list[PlannedRun] = []
    # Keyed by canonical JSON: axis values may be lists or tables (e.g. faults.crashes).
    cache: dict[str, ExperimentConfig] = {}
    seen: dict[str, Point] = {}
    for point in expand(spec):
        key = _canon([[k, v] for k, v in point.params])
        cfg = cache.get(key)
        if cfg is None:
            data = copy.deepcopy(base)
            for name, value in point.params:
                _set_path(data, name, value)
            label = ", ".join(f"{k}={_canon(v)}" for k, v in point.params)
            cfg = validate(
                data, f"{where} [sweep point {label}]" if label else where, base_dir
            )
            cache[key] = cfg
        seed = derive_seed(cfg.experiment.seed, seed_basis(cfg), point.replicate)
        experiment = cfg.experiment.model_copy(update={"seed": seed})
        run_cfg = cfg.model_copy(update={"experiment": experiment})
        run = PlannedRun(run_cfg, point)
        if run.run_id in seen:
            raise ConfigError(
                f"{where}: sweep points ({seen[run.run_id].label()}) and ({point.label()}) "
                "resolve to the same run; remove one of the equal axis values"
            )
        seen[run.run_id] = point
        runs.append(run)
    first = next(iter(cache.values()))
    return SweepPlan(first.experiment.name, where, spec, tuple(runs), first.experiment.seed)


def plan(
    path: Path | str, overrides: Sequence[str] = (), imports: Sequence[str] = ()
) -> SweepPlan:
    """Read an experiment file and plan its sweep (one run if it has no ``[sweep]`` table).

    ``imports`` (``--import``) are appended to ``experiment.modules``.
    """
    path = Path(path)
    return plan_data(read_toml(path), overrides, str(path), path.parent, imports)


__all__ = [
    "PlannedRun",
    "Point",
    "SweepPlan",
    "SweepSpec",
    "derive_seed",
    "expand",
    "parse_sweep",
    "plan",
    "plan_data",
    "seed_basis",
]
