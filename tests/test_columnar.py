"""Columnar protocols write exactly the log of their per-node reference twins."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from raysim.experiments.runner import run

from .conftest import canonical, make_config

FAULTS = {
    "loss": 0.1,
    "duplicate": 0.1,
    "corrupt": 0.05,
    "crashes": [{"fraction": 0.2, "at": 1500, "recover_at": 3200}, {"node": 7, "at": 2100}],
    "partitions": [{"start": 4000, "end": 6000, "a": "0-99", "direction": "a_to_b"}],
}


def _log(tmp_path: Path, name: str, sections: dict) -> pd.DataFrame:
    experiment = {"protocol": name, "stop_when": None, "duration": 9000}
    cfg = make_config(experiment=experiment, **sections)
    res = run(cfg, tmp_path / name)
    assert res.status == "ok", res.error
    assert res.events_dir is not None
    return canonical(res.events_dir)


@pytest.mark.parametrize("mode", ["push", "pull", "push_pull"])
@pytest.mark.parametrize("fanout", [1, 3])
@pytest.mark.parametrize("phase", ["random", "lockstep", "synchronous"])
def test_columnar_gossip_equals_the_reference(
    tmp_path: Path, mode: str, fanout: int, phase: str
) -> None:
    sections = {
        "protocol": {"mode": mode, "fanout": fanout, "phase": phase},
        "network": {"nodes": 300},
        "faults": FAULTS,
    }
    columnar = _log(tmp_path, "gossip", sections)
    reference = _log(tmp_path, "gossip.reference", sections)
    assert (columnar["kind"] == "obs").sum() > 5  # the rumor spread beyond the source
    pd.testing.assert_frame_equal(columnar, reference)


@pytest.mark.parametrize("topology", [{"topology": "full"}, {"topology": "random", "degree": 5}])
@pytest.mark.parametrize(
    "delay", [{"dist": "uniform", "low": 1, "high": 4}, {"dist": "constant", "value": 40}]
)
def test_columnar_averaging_equals_the_reference(
    tmp_path: Path, topology: dict, delay: dict
) -> None:
    sections = {"network": {"nodes": 200, "delay": delay, **topology}, "faults": FAULTS}
    columnar = _log(tmp_path, "gossip.average", sections)
    reference = _log(tmp_path, "gossip.average.reference", sections)
    assert len(columnar) > 1000
    pd.testing.assert_frame_equal(columnar, reference)
