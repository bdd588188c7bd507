"""Experiment files: TOML in, a validated :class:`ExperimentConfig` out, or one clear error.

An experiment file has the sections ``[experiment]`` (name, protocol, seed, duration),
``[protocol]`` (the protocol's own parameters), ``[network]`` (nodes, topology, delay),
``[faults]`` (loss, duplicate, corrupt, partitions, crashes) and ``[log]``; ``[sweep]`` is
read by the sweep command. ``--set a.b=v`` overrides any value, with ``v`` read as a TOML
value (``--set faults.loss=0.1``, ``--set protocol.mode='"push"'`` or just ``=push``).

Every validation failure becomes a :class:`ConfigError` whose message names the file, the
field path and what is allowed; the CLI prints it on one line and exits with code 2.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from raysim.api.protocol import ProtocolSpec
from raysim.errors import ConfigError
from raysim.network.faults import (
    MAX_DELAY,
    MAX_TICKS,
    ConstantDelay,
    Delay,
    Faults,
    check_node_sets,
)
from raysim.network.lifecycle import read_trace
from raysim.protocols import resolve

SECTIONS = ("experiment", "protocol", "network", "faults", "log", "sweep")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ticks|ms|s|min|h)?\s*$")
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# A single safe path component: no separators, not "." or "..", not hidden, not too long.
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$"
MAX_EXPERIMENT_BYTES = 1 << 20  # an experiment file is a short TOML text


class ExperimentSection(_Section):
    """``[experiment]``: what runs, for how long, from which seed."""

    name: str = Field(
        description="the results folder: letters, digits, _ - . (not first), at most 100",
    )
    protocol: str = Field(description="a registered name, or 'package.module:ClassName'")
    modules: tuple[str, ...] = Field(
        (), description="modules to import first (beside the experiment file, or on PYTHONPATH)"
    )
    protocol_class: str | None = Field(
        None, description="filled in by raysim: the 'module:Class' the protocol resolved to"
    )
    seed: int = Field(0, ge=0, lt=2**63)
    tick_ms: float = Field(
        1.0, gt=0, le=3_600_000.0, description="milliseconds per tick, for duration strings"
    )
    duration: int | str = Field(60_000, description="ticks, or a string such as '60s'")
    stop_when: str | None = Field(
        None, description="stop once every live node has emitted this observation"
    )

    @field_validator("modules")
    @classmethod
    def _modules(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not name or not all(part.isidentifier() for part in name.split(".")):
                raise ValueError(f"{name!r} is not a module name (expected e.g. 'mymodule')")
        return tuple(dict.fromkeys(v))  # each module once, first mention first

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(NAME_PATTERN, v):
            raise ValueError(
                "must be one folder name: letters, digits, '_', '-' and '.' (not first), "
                "at most 100 characters"
            )
        return v

    @field_validator("duration")
    @classmethod
    def _duration(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if not 1 <= v <= MAX_TICKS:
                raise ValueError(f"duration must be 1..{MAX_TICKS} ticks")
            return v
        if not _DURATION.match(v):
            raise ValueError("duration must be ticks or a string like '500ms', '60s', '2min'")
        return v

    @model_validator(mode="after")
    def _duration_fits(self) -> ExperimentSection:
        ticks = self._ticks_float()
        if not ticks <= MAX_TICKS:
            raise ValueError(
                f"duration: {self.duration!r} is {ticks:.3g} ticks at tick_ms = {self.tick_ms}; "
                f"allowed: up to {MAX_TICKS} ticks"
            )
        return self

    def _ticks_float(self) -> float:
        if isinstance(self.duration, int):
            return float(self.duration)
        m = _DURATION.match(self.duration)
        assert m is not None
        value, unit = float(m.group(1)), m.group(2) or "ticks"
        return value if unit == "ticks" else value * _UNIT_MS[unit] / self.tick_ms

    @property
    def duration_ticks(self) -> int:
        """The duration in ticks."""
        if isinstance(self.duration, int):
            return self.duration
        ticks = self._ticks_float()
        if not ticks <= MAX_TICKS:  # also nan
            return MAX_TICKS + 1  # refused by the validator above; never reaches a run
        m = _DURATION.match(self.duration)
        assert m is not None
        return max(1, int(ticks) if m.group(2) in (None, "ticks") else round(ticks))


class NetworkSection(_Section):
    """``[network]``: how many nodes, who knows whom, how long messages take."""

    nodes: int = Field(ge=2, le=10_000_000)
    topology: Literal["full", "random"] = Field(
        "full", description="full membership, or a static random overlay of `degree` neighbours"
    )
    degree: int = Field(
        20, ge=1, le=10_000_000, description="neighbours per node with topology = 'random'"
    )
    delay: Delay = Field(default=ConstantDelay())
    jitter: int = Field(0, ge=0, le=MAX_DELAY, description="extra delay uniform in 0..jitter ticks")

    @field_validator("delay", mode="before")
    @classmethod
    def _plain_number(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return {"dist": "constant", "value": v}
        return v


class LogSection(_Section):
    """``[log]``: how much of the run to write."""

    level: Literal["all", "observations", "none"] = "all"
    batch_rows: int = Field(
        500_000, ge=1000, le=100_000_000, description="rows per Parquet row group"
    )


class ExperimentConfig(_Section):
    """A whole, validated experiment (one run; ``sweep`` holds axes for the sweep command)."""

    experiment: ExperimentSection
    protocol: dict[str, Any] = Field(default_factory=dict)
    network: NetworkSection
    faults: Faults = Faults()
    log: LogSection = LogSection()
    sweep: dict[str, Any] = Field(default_factory=dict)
    # Where the experiment file is (its modules are imported from there); not part of the
    # run's identity, so a results directory can be rerun from another checkout.
    _base_dir: str | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> str | None:
        """The experiment file's directory (searched first for ``experiment.modules``)."""
        return self._base_dir

    def without_base_dir(self) -> ExperimentConfig:
        """This config, its modules looked up on ``sys.path`` only (on a Ray worker)."""
        out = self.model_copy()
        out._base_dir = None
        return out

    def protocol_spec(self) -> ProtocolSpec:
        """The protocol class and presets this run uses (imports its modules if needed)."""
        e = self.experiment
        return resolve(e.protocol, e.modules, self._base_dir)

    def resolved(self) -> dict[str, Any]:
        """Every value of this run, protocol defaults included, as plain JSON-able data."""
        data = self.model_dump(mode="json", exclude={"sweep"})
        data["experiment"]["duration"] = self.experiment.duration_ticks
        return data

    def run_id(self) -> str:
        """A stable id: a hash of the resolved configuration (the same on every machine)."""
        blob = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML value if it parses as one, else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str], where: str) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides to raw experiment data (returns a new dict)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts) or len(parts) < 2:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. faults.loss=0.1")
        if parts[0] not in SECTIONS:
            raise ConfigError(
                f"--set {item!r}: unknown section {parts[0]!r}; allowed: {', '.join(SECTIONS)}"
            )
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {p!r} in {where} is not a table")
            node = child
        node[parts[-1]] = parse_value(text.strip())
    return data


def read_toml(path: Path) -> dict[str, Any]:
    """The raw table of an experiment file, or a ConfigError saying why it can't be read."""
    _check_experiment_file(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML experiment file") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not a text file; expected a UTF-8 TOML experiment file"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _check_experiment_file(path: Path) -> None:
    """A regular file of reasonable size (a FIFO or a device would hang or never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: is a directory, expected a TOML experiment file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{path}: not a regular file, expected a TOML experiment file")
    if st.st_size > MAX_EXPERIMENT_BYTES:
        raise ConfigError(
            f"{path}: {st.st_size} bytes; an experiment file may have at most "
            f"{MAX_EXPERIMENT_BYTES}"
        )


def _describe(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    loc = ".".join(x for x in (prefix, loc) if x)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field is missing"
    given = first.get("input")
    text = repr(given)
    text = text if len(text) <= 80 else text[:77] + "..."
    shown = "" if first["type"] in ("missing",) or isinstance(given, dict) else f" (got {text})"
    return f"{loc}: {msg}{shown}"


def with_modules(data: dict[str, Any], imports: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Raw experiment data with ``--import`` modules appended to ``experiment.modules``."""
    if not imports:
        return data
    data = copy.deepcopy(data)
    exp = data.setdefault("experiment", {})
    if isinstance(exp, dict):
        given = exp.get("modules", [])
        exp["modules"] = [*(given if isinstance(given, list) else [given]), *imports]
    return data


def _resolve_protocol(cfg: ExperimentConfig, where: str, base_dir: str | None) -> ProtocolSpec:
    """The run's protocol, found from ``experiment.protocol`` after importing its modules."""
    e = cfg.experiment
    try:
        spec = resolve(e.protocol, e.modules, base_dir)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if e.protocol_class is not None and e.protocol_class != spec.reference:
        raise ConfigError(
            f"{where}: experiment.protocol_class: the config says {e.protocol_class!r} but "
            f"{e.protocol!r} now resolves to {spec.reference!r} (leave protocol_class out)"
        )
    return spec


def validate(
    data: dict[str, Any], where: str, base_dir: str | Path | None = None
) -> ExperimentConfig:
    """Validate raw experiment data into an :class:`ExperimentConfig`, protocol included.

    ``base_dir`` (the experiment file's directory) is searched first for the modules of
    ``experiment.modules`` and a ``module:Class`` protocol reference.
    """
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown section [{unknown[0]}]; allowed: {', '.join(SECTIONS)}"
        )
    try:
        cfg = ExperimentConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{where}: {_describe(e)}") from None
    base = str(Path(base_dir).resolve()) if base_dir is not None else None
    spec = _resolve_protocol(cfg, where, base)
    try:
        params = spec.make_params(cfg.protocol)
    except ValidationError as e:
        fields = ", ".join(spec.cls.Params.model_fields)
        raise ConfigError(f"{where}: {_describe(e, 'protocol')}; parameters: {fields}") from None
    try:
        spec.cls.check(params, cfg.network.nodes)
    except ValueError as e:
        raise ConfigError(f"{where}: protocol: {e}") from None
    if cfg.network.topology == "random" and cfg.network.degree >= cfg.network.nodes:
        raise ConfigError(
            f"{where}: network.degree: must be below network.nodes ({cfg.network.nodes})"
        )
    check_nodes(cfg, where)
    byz = cfg.faults.byzantine
    if byz.behaviour is not None and byz.behaviour not in spec.cls.adversaries:
        allowed = ", ".join(sorted(spec.cls.adversaries)) or "none (the protocol declares none)"
        raise ConfigError(
            f"{where}: faults.byzantine.behaviour: unknown behaviour {byz.behaviour!r} of "
            f"{cfg.experiment.protocol!r}; allowed: {allowed}"
        )
    declared = spec.cls.message_types
    unknown_types = [t for t in byz.types if t not in declared] if declared else []
    if unknown_types:
        raise ConfigError(
            f"{where}: faults.byzantine.types: unknown message type {unknown_types[0]!r} of "
            f"{cfg.experiment.protocol!r}; allowed: {', '.join(declared)}"
        )
    if byz.behaviour is not None and not byz.active:
        raise ConfigError(
            f"{where}: faults.byzantine.behaviour: name the nodes (nodes or fraction)"
        )
    _check_finite(params.model_dump(mode="python"), f"{where}: protocol")
    # Store the full parameter set, defaults included, and the class the protocol resolved
    # to, so the run is described completely (and its run_id changes if either does).
    experiment = cfg.experiment.model_copy(update={"protocol_class": spec.reference})
    out = cfg.model_copy(
        update={"protocol": params.model_dump(mode="json"), "experiment": experiment}
    )
    out._base_dir = base
    return out


def check_nodes(cfg: ExperimentConfig, where: str) -> None:
    """Every node set of the config (partitions, crashes, the churn trace) names real nodes."""
    try:
        check_node_sets(cfg.faults, cfg.network.nodes)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    churn = cfg.faults.churn
    if churn.model == "trace":
        assert churn.trace is not None
        try:
            read_trace(churn.trace, cfg.network.nodes)
        except OSError as e:
            raise ConfigError(
                f"{where}: faults.churn.trace: cannot read {churn.trace!r} ({e.strerror})"
            ) from None
        except ValueError as e:
            raise ConfigError(f"{where}: faults.churn.trace: {e}") from None


def _check_finite(value: Any, where: str) -> None:
    """No inf or nan anywhere in protocol parameters (a typo, never a setting)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_finite(v, where)


def load(
    path: Path | str,
    overrides: list[str] | None = None,
    seed: int | None = None,
    imports: list[str] | tuple[str, ...] = (),
) -> ExperimentConfig:
    """Read, override and validate an experiment file (``imports``: ``--import`` modules)."""
    path = Path(path)
    data = with_modules(read_toml(path), imports)
    data = apply_overrides(data, overrides or [], str(path))
    if seed is not None:
        data.setdefault("experiment", {})["seed"] = seed
    churn = data.get("faults", {}).get("churn", {})
    trace = churn.get("trace") if isinstance(churn, dict) else None
    if isinstance(trace, str) and not Path(trace).is_absolute() and not Path(trace).exists():
        beside = path.parent / trace  # a trace named relative to the experiment file
        if beside.exists():
            churn["trace"] = str(beside)
    return validate(data, str(path), path.parent)
