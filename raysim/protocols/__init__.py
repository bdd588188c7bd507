"""The catalogue of protocols: the built-in families (one sub-package each) and the registry.

The built-in protocols are registered family by family, on first use: :data:`BUILTIN` names
the family package that registers each built-in name, and :func:`lookup` and :func:`resolve`
import only the family of the name they are asked for (:func:`available`, and an unknown
name's error, import them all), so a run loads one family, not seven. The registry is
:mod:`raysim.api.protocol`'s, which user modules fill with ``@raysim.register``; a built-in
name stays reserved to its family even before the family is imported.
:func:`resolve` finds a protocol from anywhere:

- ``modules`` (``[experiment] modules``, ``--import``) are imported first, in order, so
  that their ``@register`` decorators run. Each is a dotted module name, looked up with the
  experiment file's directory (``base_dir``) first on ``sys.path`` while it is imported,
  then ``PYTHONPATH`` and the installed packages. ``sys.path`` is restored afterwards.
- The reference is then either a registered name (``gossip.push``, or one a module
  registered) or ``"package.module:ClassName"`` (the module is imported the same way, the
  class need not be registered).

Every failure (a module that does not import, a name that is not registered, an object that
is not a protocol class) is one :class:`~raysim.errors.ConfigError` line.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raysim.api.protocol import BatchProtocol, Protocol, ProtocolSpec, registered, reserve
from raysim.errors import ConfigError

FAMILIES = ("byzantine", "causality", "chord", "consensus", "detection", "gossip", "replication")

# NOTE: built-in name -> the family package whose import registers it. Importing a family
# costs tens of milliseconds (pydantic models, numpy tables); a run needs one family, so
# each is imported on the first lookup of one of its names (tests/test_startup.py checks
# that this table matches what the families register).
BUILTIN: dict[str, str] = {
    name: f"raysim.protocols.{family}"
    for family, names in {
        "byzantine": ("byzantine.bracha",),
        "causality": (
            "causal.broadcast",
            "causal.broadcast.arrival",
            "causal.broadcast.causal",
            "clocks.lamport",
            "clocks.vector",
        ),
        "chord": ("chord",),
        "consensus": ("consensus.naive_leader", "consensus.quorum_register", "consensus.raft"),
        "detection": (
            "detection.eventually_perfect",
            "detection.heartbeat",
            "detection.phi",
            "detection.swim",
        ),
        "gossip": (
            "gossip",
            "gossip.average",
            "gossip.average.reference",
            "gossip.pull",
            "gossip.push",
            "gossip.push_pull",
            "gossip.reference",
            "gossip.rumor",
            "gossip.rumor.backstop",
            "gossip.rumor.blind_coin",
            "gossip.rumor.no_reset",
            "gossip.rumor.pull",
            "gossip.rumor.push_pull",
        ),
        "replication": (
            "replication.anti_entropy",
            "replication.log_rebuild",
            "replication.retry_ack",
        ),
    }.items()
    for name in names
}
reserve(BUILTIN)


def _load(name: str) -> None:
    """Import the family that registers the built-in ``name`` (nothing for other names)."""
    family = BUILTIN.get(name)
    if family is not None and family not in sys.modules:
        importlib.import_module(family)


def load_all() -> None:
    """Import every built-in family, so that the registry holds every built-in protocol."""
    for family in FAMILIES:
        importlib.import_module(f"raysim.protocols.{family}")


def __getattr__(name: str) -> Any:
    # ``raysim.protocols.gossip`` and friends, imported on first use (PEP 562)
    if name in FAMILIES:
        return importlib.import_module(f"raysim.protocols.{name}")
    raise AttributeError(f"module 'raysim.protocols' has no attribute {name!r}")


def lookup(name: str) -> ProtocolSpec:
    """The protocol registered as ``name`` (or a ``module:Class`` reference whose module is
    already importable); KeyError listing the known names otherwise."""
    if ":" in name:
        try:
            return _from_reference(name)
        except ConfigError as e:
            raise KeyError(str(e)) from None
    _load(name)
    reg = registered()
    try:
        return reg[name]
    except KeyError:
        load_all()
        reg = registered()
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(sorted(reg))}") from None


def available() -> Iterable[ProtocolSpec]:
    """All registered protocols, sorted by name (every built-in family is imported)."""
    load_all()
    reg = registered()
    return [reg[k] for k in sorted(reg)]


def aliases(spec: ProtocolSpec) -> list[ProtocolSpec]:
    """Every name registered so far for ``spec``'s class, sorted by name.

    A built-in class is registered only by its own family, which is imported once one of
    its names has been looked up, so no other family needs importing to find its names.
    """
    reg = registered()
    return [reg[k] for k in sorted(reg) if reg[k].cls is spec.cls]


@contextmanager
def _search_first(base_dir: str | Path | None) -> Iterator[None]:
    """``base_dir`` first on ``sys.path`` for the duration of the block (then restored)."""
    if base_dir is None or not Path(base_dir).is_dir():
        yield
        return
    saved = list(sys.path)
    sys.path.insert(0, str(Path(base_dir).resolve()))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved


def import_modules(
    modules: Sequence[str], base_dir: str | Path | None = None, label: str = "experiment.modules"
) -> None:
    """Import ``modules`` in order (see the module docstring); a ConfigError (its message
    starting with ``label``) if one fails."""
    for name in modules:
        _import(name, base_dir, f"{label}: {name!r}")


def _import(name: str, base_dir: str | Path | None, what: str) -> None:
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise ConfigError(f"{what}: not a module name (expected e.g. 'mymodule' or 'pkg.mod')")
    if name in sys.modules:
        return
    with _search_first(base_dir):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            where = f" (searched {base_dir} and sys.path)" if base_dir else " (searched sys.path)"
            missing = f"no module named {e.name!r}" if e.name else str(e)
            raise ConfigError(f"{what}: cannot import: {missing}{where}") from None
        except Exception as e:  # the module itself raised while importing
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ConfigError(
                f"{what}: importing it raised {type(e).__name__}: {first}".rstrip(": ")
            ) from None


def _from_reference(ref: str, base_dir: str | Path | None = None) -> ProtocolSpec:
    module, _, qualname = ref.partition(":")
    what = f"experiment.protocol: {ref!r}"
    if not module or not qualname:
        raise ConfigError(f"{what}: expected a registered name or 'package.module:ClassName'")
    _import(module, base_dir, what)
    obj: object = sys.modules[module]
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what}: module {module!r} has no attribute {part!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, Protocol | BatchProtocol)):
        raise ConfigError(
            f"{what}: is a {type(obj).__name__}, not a protocol class "
            "(a subclass of raysim.Protocol or raysim.BatchProtocol)"
        )
    doc = (obj.__doc__ or "").strip().splitlines()
    return ProtocolSpec(ref, obj, {}, doc[0] if doc else "")


def resolve(
    ref: str, modules: Sequence[str] = (), base_dir: str | Path | None = None
) -> ProtocolSpec:
    """The protocol ``ref`` names, after importing ``modules``; a one-line ConfigError if not.

    ``ref`` is a registered name or ``"package.module:ClassName"``; ``modules`` and the
    reference's module are imported with ``base_dir`` (the experiment file's directory)
    first on ``sys.path``. Called by the config loader, the runner and every Ray worker
    (shard actors, sweep tasks) before the run starts, so all of them see the same class.
    """
    import_modules(modules, base_dir)
    if ":" in ref:
        return _from_reference(ref, base_dir)
    _load(ref)
    reg = registered()
    if ref not in reg:
        load_all()
        reg = registered()
        hint = "" if modules else " (a protocol of your own: add its module to experiment.modules)"
        raise ConfigError(
            f"experiment.protocol: unknown protocol {ref!r}; known: {', '.join(sorted(reg))}"
            + hint
        )
    return reg[ref]


def _installed_roots() -> tuple[str, ...]:
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots |= {sys.prefix, sys.base_prefix}
    return tuple(os.path.realpath(r) for r in roots)


def module_sources(ref: str, modules: Sequence[str] = ()) -> list[str]:
    """Files and folders a remote worker needs to import ``modules`` and ``ref``'s module.

    For each module (already imported here) whose top-level package lives outside the
    installed environment and is not raysim itself, the package folder (or the single
    ``.py`` file of a top-level module). The Ray backend ships them to every worker as
    ``runtime_env = {"py_modules": [...]}``, so a cluster node that has never seen the
    user's files imports the same code.
    """
    names = list(modules)
    if ":" in ref:
        names.append(ref.partition(":")[0])
    roots = _installed_roots()
    out: list[str] = []
    for name in names:
        top = name.split(".")[0]
        if top == "raysim" or top in sys.builtin_module_names:
            continue
        mod = sys.modules.get(top)
        spec = mod.__spec__ if mod is not None else importlib.util.find_spec(top)
        origin = getattr(spec, "origin", None) if spec is not None else None
        if not origin or origin in ("built-in", "frozen"):
            continue
        path = os.path.realpath(origin)
        if any(path.startswith(r + os.sep) for r in roots):
            continue
        if spec is not None and spec.submodule_search_locations:
            path = os.path.dirname(path)  # a package: ship its folder
        if path not in out:
            out.append(path)
    return out


__all__ = [
    "BUILTIN",
    "FAMILIES",
    "aliases",
    "available",
    "byzantine",
    "causality",
    "chord",
    "consensus",
    "detection",
    "gossip",
    "import_modules",
    "load_all",
    "lookup",
    "module_sources",
    "replication",
    "resolve",
]
