"""Helpers and fixtures shared by the sweep, analysis, report, notebook and cluster tests.

Test modules import the fixtures they use from here (``from tests.sweep_support import …``);
the Ray session itself is ``ray_session`` in ``conftest.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from raysim.experiments import sweep
from raysim.experiments.sweep_exec import run_sweep
from raysim.log.schema import CANONICAL_SORT

# Columns of runs.parquet that describe the machine, not the simulation.
VOLATILE = {"wall_seconds", "peak_rss_mib", "ray_node_id", "hostname", "git_commit"}

GOSSIP: dict[str, Any] = {
    "experiment": {"name": "tiny", "protocol": "gossip", "seed": 5, "duration": 60_000,
                   "stop_when": "informed"},
    "protocol": {"period": 1000, "phase": "lockstep"},
    "network": {"nodes": 40, "delay": {"dist": "uniform", "low": 20, "high": 100}},
    "faults": {"loss": 0.0},
    "log": {"level": "all"},
    "sweep": {
        "seeds": 2,
        "protocol.mode": ["push", "pull", "push_pull"],
        "network.nodes": [40, 120],
        "faults.loss": [0.0, 0.2],
    },
}

AVERAGING: dict[str, Any] = {
    "experiment": {"name": "avg", "protocol": "gossip.average", "seed": 2, "duration": 12_000},
    "protocol": {"period": 1000, "phase": "lockstep"},
    "network": {"nodes": 60, "delay": 10},
    "log": {"level": "observations"},
    "sweep": {"seeds": 3},
}


def data(base: dict[str, Any], **sweep_table: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with its sweep table replaced (when given)."""
    out = copy.deepcopy(base)
    if sweep_table:
        out["sweep"] = sweep_table
    return out


def write_toml(path: Path, raw: dict[str, Any]) -> Path:
    """Write raw experiment data as a TOML file (the subset of TOML the tests need)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + "}"
        return repr(v)

    lines = []
    for section, table in raw.items():
        lines.append(f"[{section}]")
        lines += [f'"{k}" = {value(v)}' for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def rows(results: Path) -> pd.DataFrame:
    """runs.parquet without volatile columns, sorted by run_id."""
    df = pd.read_parquet(results / "runs.parquet")
    df = df.drop(columns=[c for c in VOLATILE if c in df.columns])
    return df.sort_values("run_id").reset_index(drop=True)[sorted(df.columns)]


def events(results: Path, run_id: str) -> pd.DataFrame:
    """One run's event log in canonical order, strings as plain objects."""
    df = pd.read_parquet(results / "events" / f"run_id={run_id}")
    for c in ("kind", "msg_type", "name"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df.sort_values(list(CANONICAL_SORT)).reset_index(drop=True)


def finished_sweep(raw: dict, where: str, out: Path) -> None:
    """Run a sweep of ``raw`` experiment data into ``out``; every run must succeed."""
    summary = run_sweep(sweep.plan_data(raw, where=where), out, progress=False)
    assert summary.exit_code == 0, summary.describe()


@pytest.fixture(scope="session")
def tiny_results(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 24-run gossip sweep (3 modes × 2 sizes × 2 loss rates × 2 seeds)."""
    out = tmp_path_factory.mktemp("tiny")
    finished_sweep(GOSSIP, where="tiny", out=out)
    return out / "tiny"


@pytest.fixture(scope="session")
def averaging_results(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 3-run push-pull averaging sweep."""
    out = tmp_path_factory.mktemp("avg")
    finished_sweep(AVERAGING, where="avg", out=out)
    return out / "avg"
