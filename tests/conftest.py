"""Shared fixtures: one Ray session for the whole test run, helpers to run experiments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from raysim.experiments.config import ExperimentConfig, validate
from raysim.experiments.runner import RunResult, run
from raysim.log.schema import CANONICAL_SORT

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# Under pytest-xdist each worker starts its own Ray: each gets its own temp dir.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["RAYSIM_TEST_RAY_TMP"] = (
        os.environ.get("RAYSIM_TEST_RAY_TMP", "/tmp/raysim-test-ray")
        + "-" + os.environ["PYTEST_XDIST_WORKER"])

# The README run (tests/readme_support.py) is shared by the README, notebook and report
# screenshot tests: registered here, once, so that it runs once per session.
from tests.readme_support import readme_results, workdir  # noqa: F401


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """Start Ray once per test session: small object store, temp dir under /tmp."""
    import ray

    from raysim.runtime.backends import LOOPBACK, bind_loopback, local_system_config

    if not ray.is_initialized():
        bind_loopback()  # like every local Ray raysim starts (tests turn token auth off above)
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=150 * 1024**2,
            logging_level="ERROR",
            _temp_dir=os.environ.get("RAYSIM_TEST_RAY_TMP", "/tmp/raysim-test-ray"),
            _node_ip_address=LOOPBACK,
            # as ensure_ray: windows' parts below this size travel inline
            _system_config=local_system_config(),
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


def check_notebook_stored_clean(path: Path, import_line: str) -> None:
    """A notebook is stored without outputs, imports raysim.analysis and hacks nothing."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    assert import_line in source
    assert "sys.path" not in source and "pip install" not in source


def execute_notebook(path: Path, results: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """Run a notebook on ``results`` (RAYSIM_RESULTS); its printed text and plotly figure count."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("RAYSIM_RESULTS", str(results))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    figures = [o for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    return text, len(figures)


# Under pytest-xdist (`-n 2`, pyproject.toml) tests are handed out a file at a time, so that a
# module fixture runs once; the README run is shared by two files, which go to one worker.
_README_FILES = ("test_readme.py", "test_report_screens.py")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduler, a scope being a test file (the README's two files one)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "readme" if Path(path).name in _README_FILES else path

    return ByFile(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The README's files first: the longest scope starts first, not last."""
    items.sort(key=lambda item: item.path.name not in _README_FILES)
