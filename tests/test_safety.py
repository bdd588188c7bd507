"""Safety checks: run at the end of every run, counted in the run row, listed in the report,
fatal only under --strict; each built-in check catches a deliberately broken variant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from raysim.analysis import report
from raysim.api.protocol import BatchContext, BatchEvents, Context
from raysim.cli import app
from raysim.errors import ConfigError
from raysim.experiments import runner
from raysim.experiments.checks import load_events
from raysim.protocols.gossip.averaging import Averaging, AveragingColumns
from raysim.protocols.gossip.dissemination import Gossip, GossipColumns

from .conftest import make_config

HERE = "tests.test_safety"


class LeakyGossip(Gossip):
    """Broken on purpose: any message at all informs the receiver (a pull request too)."""

    def on_message(self, ctx: Context, src: int, msg: Any) -> None:
        self._learn(ctx, 0)
        super().on_message(ctx, src, msg)


class EagerGossip(Gossip):
    """Broken on purpose: node 7 believes it knows the update from the start."""

    def on_start(self, ctx: Context) -> None:
        super().on_start(ctx)
        if self.node == 7:
            self._learn(ctx, 0)


class SummingAveraging(AveragingColumns):
    """Broken on purpose: adds the peer's value instead of averaging with it."""

    def on_message(self, ctx: BatchContext, ev: BatchEvents) -> None:
        v = self.value[ev.li]
        super().on_message(ctx, ev)
        self.value[ev.li] = v + ev.fields["value"]


FAULTS: dict[str, Any] = {
    "loss": 0.2, "duplicate": 0.1, "corrupt": 0.1,
    "crashes": [{"at": 3000, "recover_at": 6000, "fraction": 0.2}],
}


@pytest.mark.parametrize("protocol", ["gossip.reference", "gossip.push", "gossip.pull",
                                      "gossip.push_pull", f"{HERE}:LeakyGossip"])
def test_correct_gossip_has_no_violations_under_faults(tmp_path: Path, protocol: str) -> None:
    params = {"mode": "pull"} if protocol.endswith("Gossip") else {}
    cfg = make_config(experiment={"protocol": protocol}, faults=FAULTS, protocol=params)
    res = runner.run(cfg, tmp_path)
    assert res.status == "ok" and res.row["informed_nodes"] > 32
    count = res.row["metric.violations.informed_by_delivery"]
    if protocol.endswith("LeakyGossip"):
        # Pull requests come from uninformed nodes: learning from them is caught.
        assert count > 0 and res.row["metric.violations"] == count
        first = json.loads(res.row["violations"])[0]
        assert first["check"] == "informed_by_delivery" and len(first["nodes"]) == 1
    else:
        assert count == 0 and res.row["metric.violations"] == 0


def test_a_node_informed_out_of_nowhere_is_caught_at_its_start(tmp_path: Path) -> None:
    cfg = make_config(experiment={"protocol": f"{HERE}:EagerGossip"})
    res = runner.run(cfg, tmp_path)
    assert res.row["metric.violations.informed_by_delivery"] == 1
    (v,) = res.violations
    assert (v.check, v.time, v.nodes) == ("informed_by_delivery", 0, (7,))


@pytest.mark.parametrize("protocol", ["gossip.average", "gossip.average.reference",
                                      f"{HERE}:SummingAveraging"])
def test_averaging_values_stay_in_the_hull_unless_broken(tmp_path: Path, protocol: str) -> None:
    cfg = make_config(experiment={"protocol": protocol, "stop_when": None, "duration": 8000},
                      faults=FAULTS)
    res = runner.run(cfg, tmp_path)
    assert res.status == "ok"
    count = res.row["metric.violations.value_in_hull"]
    assert (count > 0) == protocol.endswith("SummingAveraging"), count
    assert all(v.check == "value_in_hull" and "outside [0, 1]" in v.detail
               for v in res.violations)


def test_strict_fails_a_run_with_violations_and_keeps_its_events(tmp_path: Path) -> None:
    cfg = make_config(experiment={"protocol": f"{HERE}:EagerGossip"})
    res = runner.run(cfg, tmp_path, strict=True)
    assert res.status == "failed" and res.error is not None
    assert res.error.startswith("1 safety violation(s) (informed_by_delivery 1); first: "
                                "informed_by_delivery at time 0, nodes [7]")
    table = pd.read_parquet(tmp_path / "t" / "runs.parquet")
    assert list(table["status"]) == ["failed"]
    assert res.events_dir is not None and res.events_dir.exists()
    ok = runner.run(make_config(), tmp_path / "fine", strict=True)
    assert ok.status == "ok" and ok.row["metric.violations"] == 0


def test_cli_strict_exit_codes(tmp_path: Path) -> None:
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[experiment]\nname = "e"\nprotocol = "{HERE}:EagerGossip"\n'
                   'duration = 20000\nstop_when = "informed"\n[network]\nnodes = 16\n')
    plain = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path / "a")])
    assert plain.exit_code == 0 and "safety violations: 1 (informed_by_delivery 1)" in \
        plain.output
    strict = CliRunner().invoke(app, ["run", str(exp), "--out", str(tmp_path / "b"),
                                      "--strict"])
    assert strict.exit_code == 1 and "1 safety violation(s)" in strict.output


def test_without_the_full_log_checks_are_not_run_and_strict_refuses(tmp_path: Path) -> None:
    for level in ("observations", "none"):
        cfg = make_config(experiment={"protocol": f"{HERE}:EagerGossip"}, log={"level": level})
        res = runner.run(cfg, tmp_path / level)
        assert res.status == "ok"
        assert np.isnan(res.row["metric.violations"])
        assert np.isnan(res.row["metric.violations.informed_by_delivery"])
        with pytest.raises(ConfigError, match=r"--strict: .* log.level = '" + level):
            runner.run(cfg, tmp_path / f"{level}-strict", strict=True)
        assert not (tmp_path / f"{level}-strict").exists()


def test_the_report_lists_the_first_violations(tmp_path: Path) -> None:
    runner.run(make_config(experiment={"protocol": f"{HERE}:EagerGossip"}), tmp_path)
    page = report.build(tmp_path / "t")
    assert "Safety violations (1 run(s))" in page
    assert "node 7 became informed without a delivery" in page


def test_safety_sees_every_column_in_canonical_order(tmp_path: Path) -> None:
    res = runner.run(make_config(), tmp_path)
    assert res.events_dir is not None
    events = load_events(res.events_dir)
    on_disk = pd.read_parquet(res.events_dir)
    assert set(events) == set(on_disk.columns) - {"run_id"}
    assert all(len(v) == len(on_disk) for v in events.values())
    key = np.stack([events["time"], events["node"]])
    assert (np.diff(key[0]) >= 0).all()
    same = np.diff(key[0]) == 0
    assert (np.diff(key[1])[same] >= 0).all()
    assert events["kind"].dtype == object and "send" in set(events["kind"])


def test_named_columns_are_read_with_the_sort_keys_in_the_same_order(tmp_path: Path) -> None:
    res = runner.run(make_config(), tmp_path)
    assert res.events_dir is not None
    full = load_events(res.events_dir)
    some = load_events(res.events_dir, ["cause"])
    keys = {"time", "node", "seq", "kind", "msg_id", "peer", "msg_type", "name", "value"}
    assert set(some) == keys | {"cause"} and set(full) > set(some)
    for c in some:
        assert np.array_equal(some[c], full[c], equal_nan=some[c].dtype != object), c
    # The gossip checks declare that the sort keys are all they read.
    assert Gossip.log_columns == GossipColumns.log_columns == ()
    assert Averaging.log_columns == AveragingColumns.log_columns == ()
    obs = load_events(res.events_dir, ["cause"], kinds=["obs", "send"])
    rows = np.isin(full["kind"], ["obs", "send"])
    assert 0 < rows.sum() < len(rows) and set(obs["kind"]) == {"obs", "send"}
    for c in obs:
        assert np.array_equal(obs[c], full[c][rows], equal_nan=obs[c].dtype != object), c


def test_a_violation_of_an_undeclared_check_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not one of its declared checks"):
        runner.run(make_config(experiment={"protocol": f"{HERE}:WrongCheck"}), tmp_path)
    assert not list((tmp_path / "t" / "events").glob("run_id=*"))


class WrongCheck(Gossip):
    """Broken on purpose: reports a check it does not declare."""

    checks: ClassVar[tuple[str, ...]] = ("declared",)

    @classmethod
    def safety(cls, params: Any, events: Any) -> Any:
        from raysim.api.protocol import Violation

        return [Violation("other", 0, (0,), "x")]


def test_gossip_columns_share_the_reference_contract() -> None:
    assert GossipColumns.checks == Gossip.checks == ("informed_by_delivery",)
    assert AveragingColumns.checks == Averaging.checks == ("value_in_hull",)
    assert GossipColumns.report == "raysim.analysis.section:gossip"
