"""Experiment files: validation, overrides, and one clear error per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysim.errors import ConfigError
from raysim.experiments.config import load, parse_value, validate

EXAMPLE = Path(__file__).parent.parent / "experiments" / "gossip_convergence.toml"


def test_the_example_loads_with_protocol_defaults_filled_in() -> None:
    cfg = load(EXAMPLE)
    assert cfg.experiment.protocol == "gossip.push_pull"
    assert cfg.protocol["mode"] == "push_pull"  # implied by the protocol's name
    assert cfg.protocol["fanout"] >= 1
    assert cfg.experiment.duration_ticks == 120_000


def test_overrides_read_naturally() -> None:
    cfg = load(
        EXAMPLE,
        [
            "network.nodes=1000",
            "faults.loss=0.1",
            "protocol.mode=push",
            "network.delay={dist='constant', value=7}",
        ],
    )
    assert cfg.network.nodes == 1000
    assert cfg.faults.loss == 0.1
    assert cfg.protocol["mode"] == "push"
    assert cfg.network.delay.lower_bound == 7


def test_seed_override_changes_the_run_id_and_nothing_else() -> None:
    a, b = load(EXAMPLE, seed=1), load(EXAMPLE, seed=2)
    assert a.run_id() != b.run_id()
    assert load(EXAMPLE, seed=1).run_id() == a.run_id()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["network.nodes=x"], "network.nodes"),
        (["network.nodes=1"], "network.nodes"),
        (["protocol.fanot=2"], "protocol.fanot: unknown field"),
        (["protocol.mode=sideways"], "protocol.mode"),
        (["experiment.protocol=nope"], "unknown protocol 'nope'"),
        (["faults.loss=1.5"], "faults.loss"),
        (["faults.lost=0.1"], "faults.lost: unknown field"),
        (["network.delay={dist='uniform', low=10, high=5}"], "network.delay"),
        (["network.delay={dist='gamma'}"], "network.delay"),
        (["experiment.duration='ten'"], "experiment.duration"),
        (["nosuch.key=1"], "unknown section 'nosuch'"),
        (["loss=0.1"], "expected section.key=value"),
        (["faults.crashes=[{at=5}]"], "faults.crashes.0"),
        (["faults.partitions=[{a='0-3', start=10, end=5}]"], "faults.partitions.0"),
        (["protocol.source=5000"], "source"),
    ],
)
def test_bad_values_name_the_field(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(EXAMPLE, overrides)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\nname = 1")
    for path, expected in (
        (tmp_path / "missing.toml", "no such"),
        (bad, "not valid TOML"),
        (tmp_path, "is a directory"),
    ):
        with pytest.raises(ConfigError, match=expected):
            load(path)


def test_unknown_section_in_a_file(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text(EXAMPLE.read_text() + "\n[netwrok]\nnodes = 3\n")
    with pytest.raises(ConfigError, match=r"unknown section \[netwrok\]"):
        load(f)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3", 3),
        ("0.5", 0.5),
        ("true", True),
        ("push", "push"),
        ("'a b'", "a b"),
        ("[1, 2]", [1, 2]),
    ],
)
def test_set_values_are_toml_or_plain_strings(text: str, value: object) -> None:
    assert parse_value(text) == value


@pytest.mark.parametrize(
    ("duration", "ticks"),
    [(500, 500), ("500ms", 500), ("2s", 2000), ("1.5min", 90_000), ("40ticks", 40)],
)
def test_durations(duration: object, ticks: int) -> None:
    cfg = validate(
        {
            "experiment": {"name": "d", "protocol": "gossip", "duration": duration},
            "network": {"nodes": 4},
        },
        "t",
    )
    assert cfg.experiment.duration_ticks == ticks
