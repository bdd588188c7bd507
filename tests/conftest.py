"""Shared fixtures: one Ray session for the whole test run, helpers to run experiments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from raysim.config import ExperimentConfig, validate
from raysim.runner import RunResult, run
from raysim.schema import CANONICAL_SORT

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start Ray once per test session: small object store, temp dir under /tmp."""
    import ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=150 * 1024**2,
            logging_level="ERROR",
            _temp_dir="/tmp/raysim-test-ray",
        )
    yield
    ray.shutdown()


def make_config(**sections: dict[str, Any]) -> ExperimentConfig:
    """A validated config from section overrides on a small gossip default."""
    data: dict[str, Any] = {
        "experiment": {
            "name": "t",
            "protocol": "gossip.push_pull",
            "seed": 3,
            "duration": 30_000,
            "stop_when": "informed",
        },
        "protocol": {"period": 1000},
        "network": {"nodes": 64, "delay": {"dist": "uniform", "low": 20, "high": 120}},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return validate(data, "test")


def canonical(events_dir: Path) -> pd.DataFrame:
    """A run's event log in canonical order, strings as plain objects."""
    df = pd.read_parquet(events_dir)
    for c in ("kind", "msg_type", "name"):
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df.sort_values(list(CANONICAL_SORT)).reset_index(drop=True)


def run_log(cfg: ExperimentConfig, out: Path) -> tuple[RunResult, pd.DataFrame]:
    """Run locally; the result and the canonical log."""
    res = run(cfg, out)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    return res, canonical(res.events_dir)


def rows(df: pd.DataFrame, kind: str, name: str | None = None) -> pd.DataFrame:
    """The rows of one kind (and observation name / drop reason)."""
    m = df["kind"] == kind
    if name is not None:
        m &= df["name"] == name
    return df[m]
