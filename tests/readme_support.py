"""Running the README: its blocks in order, as ``tests/test_readme.py`` checks them.

How the README's fenced blocks are read:

- ```` ```bash ```` blocks are commands. Each line (``\\`` continues it) runs in a fresh
  ``bash`` from a scratch working directory laid out like the repository root (``.venv``,
  ``experiments``, ``analysis``, ``pyproject.toml`` and ``Makefile`` are links into it), so
  ``results/`` is the scratch directory's own. A line whose comment says ``exits N``
  must end with exit code N; every other line must succeed. ``make TARGET`` lines are
  checked with ``make -n TARGET`` in the repository (the targets themselves install, run
  the whole suite or open JupyterLab).
- ```` ```python ```` blocks run with this interpreter in the same directory, after the
  commands above them (the toolkit's and the walk-through's blocks are other tests', see
  :data:`ELSEWHERE`).
- ```` ```text ```` blocks (and plain ```` ``` ```` ones) are output samples or pictures,
  never run. A ``text`` block right after a ``bash`` block is the output of that block's
  first command: it must match what the command prints, line for line, but for wall-clock
  seconds (``0.09 s``), which vary. A command with a sample is run exactly as written.
- ```` ```toml ```` blocks are experiment-file excerpts (``tests/test_config.py``).

Slow commands run at the sizes of :data:`FAST`: the extra ``--set`` options appended to
each, keyed by the command as written (comments and environment assignments dropped). A
key that no longer matches a README command fails the test, so the map follows the README.
Every raysim command joins this test session's Ray (``RAY_ADDRESS``) instead of starting
its own, which saves ~5 s a command.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINKED = (".venv", "experiments", "analysis", "pyproject.toml", "Makefile", "raysim")

_ONE_SEED = ["--set", "sweep.seeds=1"]
# the Chord paper's churn sweeps (uniform and exponential periods), at a quick size
_PAPER_CHURN_FAST = [
    "--set", "network.nodes=64", "--set", "experiment.duration=40s",
    "--set", "protocol.lookup_start=20000", "--set", "protocol.lookup_rate=0.5",
    "--set", "sweep.faults.churn.rate=[0.1]"]
# command as written (without comment) -> extra arguments that make it quick
FAST: dict[str, list[str]] = {
    ".venv/bin/raysim run experiments/gossip_convergence.toml --set network.nodes=10000 "
    "--set faults.loss=0.1 --set protocol.mode=push --seed 7": ["--set", "network.nodes=500"],
    ".venv/bin/raysim run experiments/gossip_convergence.toml --backend ray --shards 4": [
        "--set", "network.nodes=200"],
    ".venv/bin/raysim sweep experiments/gossip_quick.toml --out results": [
        *_ONE_SEED, "--set", "sweep.network.nodes=[40, 120]",
        "--set", "sweep.faults.loss=[0.0, 0.3]"],
    ".venv/bin/raysim sweep experiments/chord_path_length.toml --out results": [
        *_ONE_SEED, "--set", "sweep.zip=[]", "--set", "sweep.network.nodes=[16, 64]",
        "--set", "experiment.duration=4000"],
    ".venv/bin/raysim sweep experiments/chord_hops.toml --out results": [
        *_ONE_SEED, "--set", "network.nodes=48", "--set", "experiment.duration=12000"],
    ".venv/bin/raysim sweep experiments/chord_failures.toml --out results": [
        *_ONE_SEED, "--set", "network.nodes=48", "--set", "experiment.duration=36000",
        "--set", "sweep.faults.crashes=[[], [{fraction=0.25, at=2000}]]"],
    ".venv/bin/raysim sweep experiments/chord_churn.toml --out results": [
        *_ONE_SEED, "--set", "network.nodes=48", "--set", "experiment.duration=25000",
        "--set", "sweep.faults.churn.rate=[2.0]"],
    ".venv/bin/raysim sweep experiments/chord_churn.toml --out results "
    "--set faults.churn.model=none --set faults.churn.rate=0.0": [
        *_ONE_SEED, "--set", "network.nodes=48", "--set", "experiment.duration=25000"],
    ".venv/bin/raysim sweep experiments/chord_paper_churn.toml --out results --set "
    "experiment.duration=1500s --set protocol.lookup_rate=0.01 --set sweep.seeds=1 --set "
    "sweep.faults.churn.rate=[0.01,0.05,0.1]": _PAPER_CHURN_FAST,
    ".venv/bin/raysim sweep experiments/chord_paper_churn.toml --out results --set "
    "experiment.duration=1500s --set protocol.lookup_rate=0.01 --set sweep.seeds=1 --set "
    "sweep.faults.churn.rate=[0.05,0.1] --set protocol.intervals=exponential": _PAPER_CHURN_FAST,
    ".venv/bin/raysim run experiments/chord_keys.toml --out results": [
        "--set", "network.nodes=32", "--set", "experiment.duration=20000",
        "--set", "faults.churn.end=15000"],
    ".venv/bin/raysim sweep experiments/byzantine_averaging.toml --out results": [
        *_ONE_SEED, "--set", "network.nodes=20", "--set", "experiment.duration=4000"],
    ".venv/bin/raysim sweep experiments/bracha.toml --out results": [*_ONE_SEED],
    ".venv/bin/raysim sweep experiments/byzantine_raft.toml --out results": [*_ONE_SEED],
    ".venv/bin/raysim sweep experiments/quorum_versions.toml --out results": [
        *_ONE_SEED, "--set", "experiment.duration=1500"],
    ".venv/bin/raysim sweep experiments/chord_byzantine.toml --out results": [
        "--set", "network.nodes=32", "--set", "experiment.duration=8000",
        "--set", "sweep.faults.byzantine.fraction=[0.1]"],
    ".venv/bin/raysim sweep experiments/causal_broadcast.toml --out results": [
        *_ONE_SEED, "--set", "sweep.network.jitter=[0, 400]", "--set", "protocol.until=1000"],
    ".venv/bin/python -m raysim.analysis.chord load --nodes 1024": ["--nodes", "64"],
    ".venv/bin/raysim sweep experiments/retry_ack.toml --out results": [
        *_ONE_SEED, "--set", "sweep.faults.loss=[0.5]", "--set", 'sweep.protocol.ack=["each"]',
        "--set", 'sweep.protocol.timeout=["adaptive"]', "--set", "sweep.protocol.jitter=[0.0]"],
    ".venv/bin/raysim sweep experiments/retry_ack_timeout.toml --out results": [
        *_ONE_SEED, "--set", 'sweep.protocol.timeout=["fixed"]', "--set",
        "sweep.protocol.rto=[150]", "--set",
        'sweep.network.delay=[{dist="lognormal", median=50, sigma=1.0, min=10}]'],
    ".venv/bin/raysim sweep experiments/anti_entropy.toml --out results": [
        *_ONE_SEED, "--set", 'sweep.protocol.crdt=["or_set"]',
        "--set", 'sweep.protocol.mode=["digest"]'],
    ".venv/bin/raysim sweep experiments/anti_entropy_partition.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.period=[1000]", "--set", "sweep.faults.loss=[0.0]"],
    ".venv/bin/raysim sweep experiments/rumor.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.k=[2]",
        "--set", 'sweep.experiment.protocol=["gossip.rumor"]'],
    ".venv/bin/raysim sweep experiments/rumor_paper.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.k=[1]", "--set", "network.nodes=200",
        "--set", 'sweep.experiment.protocol=["gossip.rumor.no_reset"]'],
    ".venv/bin/raysim sweep experiments/byzantine_anti_entropy.toml --out results": [
        *_ONE_SEED, "--set", "network.nodes=8", "--set", 'sweep.protocol.mode=["digest"]',
        "--set", "sweep.faults.byzantine.nodes=[[1]]"],
    ".venv/bin/raysim sweep experiments/log_rebuild.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.flush=[4]", "--set",
        "sweep.faults.crashes=[[{nodes=[1, 2], at=3000, recover_at=3200}]]"],
    ".venv/bin/python -m raysim.analysis.chord moves --nodes 1024": ["--nodes", "64"],
    ".venv/bin/raysim sweep experiments/raft_election.toml --out results": [
        *_ONE_SEED, "--set", "sweep.network.nodes=[5]",
        "--set", "sweep.protocol.election_max=[300]", "--set", "sweep.faults.loss=[0.0]",
        "--set", "sweep.faults.partitions=[[]]",
        "--set", 'sweep.network.delay=[{dist = "uniform", low = 10, high = 30}]'],
    ".venv/bin/raysim sweep experiments/raft_fig16.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.election_max=[300]"],
    ".venv/bin/raysim sweep experiments/raft_fig16_scale.toml --out results": [
        *_ONE_SEED, "--set", "sweep.zip=[]"],
    ".venv/bin/raysim sweep experiments/raft_leases.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.clock_drift=[0.9]",
        "--set", "sweep.protocol.drift_bound=[0.0]"],
    ".venv/bin/raysim sweep experiments/naive_leader.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.timeout=[150]"],
    ".venv/bin/raysim sweep experiments/quorum_register.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.w=[1, 3]", "--set", "sweep.protocol.r=[1, 3]",
        "--set", 'sweep.protocol.fanout=["quorum"]'],
    ".venv/bin/raysim sweep experiments/failure_detectors.toml --out results": [
        *_ONE_SEED, "--set", 'sweep.experiment.protocol=["detection.heartbeat"]',
        "--set", "sweep.protocol.timeout=[250]", "--set", "sweep.faults.loss=[0.0]",
        "--set", 'sweep.network.delay=[{dist = "uniform", low = 10, high = 30}]',
        "--set", "experiment.duration=6000"],
    ".venv/bin/raysim sweep experiments/failure_detectors_phi.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.threshold=[8.0]", "--set", "sweep.faults.loss=[0.0]",
        "--set", 'sweep.network.delay=[{dist = "uniform", low = 10, high = 30}]',
        "--set", "experiment.duration=6000"],
    ".venv/bin/raysim sweep experiments/failure_detectors_swim.toml --out results": [
        *_ONE_SEED, "--set", "sweep.protocol.period=[400]", "--set", "sweep.faults.loss=[0.0]",
        "--set", 'sweep.network.delay=[{dist = "uniform", low = 10, high = 30}]',
        "--set", "experiment.duration=6000"],
}


@dataclass
class Block:
    """One fenced block of the README."""

    lang: str
    text: str
    line: int  # where it starts in README.md (1-based)


def blocks(markdown: str) -> list[Block]:
    """The fenced blocks in order, indented ones (inside lists) included."""
    out, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^( *)```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2), i
        body = []
        i += 1
        while not re.match(r"^ *```\s*$", lines[i]):
            body.append(lines[i][indent:])
            i += 1
        out.append(Block(lang or "text", "\n".join(body) + "\n", start + 1))
        i += 1
    return out


@dataclass
class Command:
    """One shell command of a bash block."""

    text: str  # as written, continuation lines joined, comment kept
    words: list[str]  # shell words, comment and leading VAR=value assignments dropped
    env: dict[str, str]
    exit_code: int

    @property
    def key(self) -> str:
        return " ".join(self.words)


def commands(block: Block) -> list[Command]:
    """The commands of a bash block (one per logical line)."""
    out, pending = [], ""
    for raw in block.text.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line, pending = pending + raw, ""
        words = shlex.split(line, comments=True)
        if not words:
            continue
        env = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            k, v = words.pop(0).split("=", 1)
            env[k] = v
        code = re.search(r"#.*\bexits (\d+)", line)
        out.append(Command(line, words, env, int(code.group(1)) if code else 0))
    return out


# Sections whose blocks other tests own: the toolkit's (tests/test_ring.py and friends) and
# the walk-through's (tests/test_readme_walkthrough.py writes its files, then runs them).
ELSEWHERE = (
    "## The causality and replicated-data toolkit",
    "## Writing your own protocol: a walk-through",
)


def plan() -> list[tuple[Block, list[Command], Block | None]]:
    """Runnable blocks in README order, each bash block with its output sample (if any)."""
    text = README.read_text(encoding="utf-8")
    spans = []
    for heading in ELSEWHERE:
        start = text.index(heading)
        end = text.index("\n## ", start + 10)
        spans.append((text[:start].count("\n") + 1, text[:end].count("\n") + 1))
    bs = blocks(text)
    out = []
    for i, b in enumerate(bs):
        if any(lo <= b.line <= hi for lo, hi in spans):
            continue
        if b.lang == "bash":
            after = bs[i + 1] if i + 1 < len(bs) and bs[i + 1].lang == "text" else None
            out.append((b, commands(b), after))
        elif b.lang == "python":
            out.append((b, [], None))
    return out


SECONDS = re.compile(r"\b\d+\.\d+ s\b")


def _normalise(output: str) -> list[str]:
    return [SECONDS.sub("<seconds> s", ln.rstrip()) for ln in output.strip().splitlines()]


@pytest.fixture(scope="session")
def workdir(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory that looks like the repository root to the README's commands."""
    d = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        (d / name).symlink_to(ROOT / name)
    return d


def _env() -> dict[str, str]:
    import ray

    return {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}


def run_readme(workdir: Path) -> list[tuple[float, str]]:
    """Run every block of :func:`plan` in ``workdir``; the seconds each took, slowest first."""
    env = _env()
    took: list[tuple[float, str]] = []
    for block, cmds, sample in plan():
        if block.lang == "python":
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", block.text], cwd=workdir, env=env,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, f"README.md:{block.line}: python block\n{r.stderr[-3000:]}"
            took.append((time.perf_counter() - t0, f"README.md:{block.line}: python"))
            continue
        for i, c in enumerate(cmds):
            if c.words[0] == "make":
                r = subprocess.run(["make", "-n", *c.words[1:]], cwd=ROOT, capture_output=True,
                                   text=True, timeout=60)
                assert r.returncode == 0, f"README.md:{block.line}: {c.text}\n{r.stderr}"
                continue
            t0 = time.perf_counter()
            extra = FAST.get(c.key, [])
            if i == 0 and sample is not None:
                assert not extra, f"README.md:{block.line}: a command with a sample runs as is"
            r = subprocess.run(shlex.join([*c.words, *extra]), shell=True,
                               executable="/bin/bash", cwd=workdir, env={**env, **c.env},
                               capture_output=True, text=True, timeout=180)
            where = f"README.md:{block.line}: {c.text}"
            assert r.returncode == c.exit_code, f"{where}\nexit {r.returncode}\n{r.stderr[-3000:]}"
            if i == 0 and sample is not None:
                assert _normalise(r.stdout + r.stderr) == _normalise(sample.text), (
                    f"{where}: the sample at README.md:{sample.line} differs from what it "
                    f"prints:\n{r.stdout}{r.stderr}"
                )
            took.append((time.perf_counter() - t0, c.key[:90]))
    return sorted(took, reverse=True)


@pytest.fixture(scope="session")
def readme_results(workdir: Path) -> Path:
    """Every README block run in order; the results directory they wrote."""
    for seconds, what in run_readme(workdir)[:8]:  # shown by pytest -rP, or with a failure
        print(f"{seconds:6.1f} s  {what}")
    return workdir / "results"


# Every example experiment each notebook says it supports, from the README's own commands
# (small sizes; gossip_convergence is single `raysim run`s, the others sweeps or runs).
GOSSIP_EXAMPLES = ("gossip_quick", "gossip_convergence")
CHORD_EXAMPLES = ("chord_path_length", "chord_hops", "chord_failures", "chord_churn",
                  "chord_keys", "chord_ring8")
FULL_LOGS = ("chord_churn", "chord_keys", "chord_ring8")  # log.level = "all"
SWEPT_P_OR_R = ("chord_failures", "chord_churn")
