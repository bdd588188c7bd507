"""The ``raysim`` command line: run, protocols, bench (and sweep, report).

Bad input of any kind ends with one line on stderr, ``error: <what>: <why>; <allowed>``,
and exit code 2; a protocol that raises ends with its run, node, time, event and
traceback, and exit code 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer

from raysim.errors import ConfigError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Deterministic, fault-injecting simulation of distributed-systems algorithms on Ray.",
)

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a value: section.key=value (repeatable)."),
]
OutOpt = Annotated[Path, typer.Option("--out", help="Results directory.")]
ImportOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        help="Import this module first (beside the experiment file or on PYTHONPATH), e.g. "
        "one that registers your protocol; added to experiment.modules (repeatable).",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict", help="A run whose safety checks find violations fails (exit code 1)."
    ),
]


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    experiment: Annotated[Path, typer.Argument(help="Experiment TOML file.")],
    set_: SetOpt = None,
    out: OutOpt = Path("results"),
    backend: Annotated[str, typer.Option(help="local or ray.")] = "local",
    shards: Annotated[int | None, typer.Option(help="Ray shard actors (default 2).")] = None,
    shard_size: Annotated[int | None, typer.Option(help="Nodes per shard actor.")] = None,
    router: Annotated[str, typer.Option(help="Routing placement: shard or actor.")] = "shard",
    transport: Annotated[
        str | None,
        typer.Option(help="How Ray shards trade windows: auto (default), mesh or tasks."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override experiment.seed.")] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS or local).")
    ] = None,
    import_: ImportOpt = None,
    strict: StrictOpt = False,
    progress: Annotated[
        bool, typer.Option(help="Show a progress bar (only ever on a terminal).")
    ] = True,
) -> None:
    """Run one experiment and write its event log and runs.parquet row."""
    from raysim.experiments import config, runner

    try:
        _ray_only_options(
            backend, shards=shards, shard_size=shard_size, address=address, transport=transport
        )
        cfg = config.load(experiment, set_ or [], seed, imports=import_ or [])
        if backend == "ray" and shards is None and shard_size is None:
            shards = 2
        earlier = _earlier_backend(Path(out) / cfg.experiment.name, cfg.run_id())
        with _RunBar(cfg.experiment.duration_ticks, cfg.experiment.tick_ms, progress) as bar:
            result = runner.run(
                cfg, out, backend, shards, shard_size, router, address, strict=strict,
                progress=bar.update, transport=transport or "auto",
            )
    except ConfigError as e:
        _fail(str(e))
        return
    if result.status != "ok":
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(1)
    row = result.row
    typer.echo(
        f"run {result.run_id}: {row['protocol']}, {row['nodes']} nodes, "
        f"{row['backend']} backend, {row['shards']} shard(s), {row['wall_seconds']:.2f} s"
    )
    typer.echo(_summary(row))
    for k, v in result.metrics.items():
        typer.echo(f"  {k.replace('_', ' ')}: {v:.3f}")
    _echo_safety(row)
    typer.echo(f"  results: {Path(out) / cfg.experiment.name}")
    if earlier is not None:
        typer.echo(
            f"  note: replaced this run_id's earlier row ({earlier} backend): the same "
            "configuration and seed give the same run_id and event log"
        )


def _summary(row: dict[str, Any]) -> str:
    """The run's message accounting: every copy sent ends in exactly one of the terms."""
    g = row.get
    dup = f" + duplicated {g('duplicated', 0)}" if g("duplicated", 0) else ""
    return (
        f"  virtual time {row['end_time']} ticks; events logged {row['events_logged']}\n"
        f"  messages sent {row['sent']}{dup} = delivered {g('delivered', 0)}"
        f" + lost {g('lost', 0)} + partitioned {g('partitioned', 0)}\n"
        f"    + dropped at crashed nodes {g('dropped_crashed', 0)} + corrupt {g('corrupt', 0)}"
        f" + in flight at the end {g('in_flight', 0)}"
    )


def _earlier_backend(results: Path, run_id: str) -> str | None:
    """The backend of an ok row of ``run_id`` already in ``results``, if there is one."""
    runs = results / "runs.parquet"
    if not runs.is_file():
        return None
    import pyarrow.parquet as pq  # NOTE: not pandas, nor pq.read_table (it imports pandas)

    try:
        table = pq.ParquetFile(runs).read(columns=["run_id", "status", "backend"])
    except Exception:
        return None  # the runner reports an unusable runs table with its one clear line
    rows = zip(*(table.column(c).to_pylist() for c in ("run_id", "status", "backend")),
               strict=True)
    hits = [str(backend) for rid, status, backend in rows if rid == run_id and status == "ok"]
    return hits[-1] if hits else None


class _RunBar:
    """A tqdm bar of virtual time against the duration, with events/s; terminals only."""

    def __init__(self, duration_ticks: int, tick_ms: float, enabled: bool) -> None:
        self.scale = tick_ms / 1000.0  # ticks -> virtual seconds
        self.total = duration_ticks * self.scale
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> _RunBar:
        # NOTE: tqdm's own test for disable=None, made here so that a run whose bar could
        # not show (--no-progress, or stderr not a terminal) does not import tqdm at all
        if not self.enabled or (hasattr(sys.stderr, "isatty") and not sys.stderr.isatty()):
            return self
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.total,
            file=sys.stderr,
            # None: tqdm stays silent when stderr is not a terminal (pipes, CI logs)
            disable=None if self.enabled else True,
            dynamic_ncols=True,
            leave=False,
            bar_format="{percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} virtual s "
            "[{elapsed}<{remaining}{postfix}]",
        )
        return self

    def update(self, end: int, events: int) -> None:
        """Coordinator callback: a window ending at ``end`` is done, ``events`` handled."""
        bar = self.bar
        if bar is None or bar.disable:
            return
        bar.update(min(end * self.scale, self.total) - bar.n)
        elapsed = bar.format_dict["elapsed"] or 1e-9
        bar.set_postfix_str(f"{events / elapsed:,.0f} events/s", refresh=False)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _echo_safety(row: dict[str, Any]) -> None:
    """The safety-check line of a run's summary (nothing if its protocol declares none)."""
    total = row.get("metric.violations")
    if total is None:
        return
    if total != total:  # NaN: not checked
        typer.echo("  safety checks: not run (they need log.level = 'all')")
        return
    per = {k.removeprefix("metric.violations."): int(v) for k, v in row.items()
           if k.startswith("metric.violations.")}
    typer.echo(f"  safety violations: {int(total)} ("
               + ", ".join(f"{k} {v}" for k, v in per.items()) + ")")
    for v in json.loads(row.get("violations") or "[]")[:3]:
        typer.echo(f"    {v['check']} at time {v['time']}, nodes {v['nodes']}: {v['detail']}")
def _ray_only_options(backend: str, **given: object) -> None:
    """Options that only the Ray backend reads are refused with another backend.

    NOTE: refused rather than ignored: ``--shards 4`` on the local backend would otherwise
    run one shard and record ``shards = 1`` while the user believes they tested four.
    """
    if backend != "ray":
        for name, value in given.items():
            if value is not None:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"{flag} {value}: only the Ray backend uses it; add --backend ray "
                    f"(or drop {flag} for a local run)"
                )



@app.command()
def protocols(import_: ImportOpt = None) -> None:
    """List the registered protocols and their parameters (``--import`` yours first)."""
    from raysim.protocols import available, import_modules

    try:
        import_modules(import_ or [], Path.cwd(), label="--import")
    except ConfigError as e:
        _fail(str(e))
    for spec in available():
        typer.echo(f"{spec.name}  —  {spec.summary}")
        for name, f in spec.cls.Params.model_fields.items():
            default = spec.presets.get(name, f.default)
            desc = f"  {f.description}" if f.description else ""
            typer.echo(f"    {name}: {_type_name(f.annotation)} = {default!r}{desc}")


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


@app.command(
    epilog="Each workload runs in its own process, so its peak_rss_mib is its own. "
    "Figures from this machine are in the README's Performance section."
)
def bench(
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only this workload (repeatable): gossip_push_pull, averaging, naive, "
            "ring, vector_clock, gossip_reference, chord, cycle, causality, startup, scaling or "
            "scaling_model (those two not run by default; see --scaling)."
        ),
    ] = None,
    quick: Annotated[bool, typer.Option(help="Smaller sizes, for a smoke test.")] = False,
    scaling: Annotated[
        bool,
        typer.Option(
            "--scaling",
            help="Run the scaling workload and the Ray cost model (the same as --only "
            "scaling --only scaling_model): speed-up and efficiency at 1, 2, 4, ... shards, "
            "measured per-window and per-message costs, and the model's predictions.",
        ),
    ] = False,
) -> None:
    """Run the fixed benchmark workloads; print one JSON line each. The workloads:

    gossip_push_pull: push-pull gossip to every node, 10^4 and 10^5 nodes, local and Ray.

    averaging: push-pull averaging, k = 20 overlay, 10^5 nodes x 30 rounds, local and Ray.

    naive: one Ray actor per node (shard_size = 1), 50 nodes: the baseline.

    ring: a hash ring of 10^4 nodes x 20 virtual nodes; place 10^6 keys.

    vector_clock: merge two 10^5-entry vector clocks, dense and sparse.

    gossip_reference: the per-node twin of gossip_push_pull, 10^4 and 10^5 nodes, local.

    chord: the first run of experiments/chord_hops.toml (1024 nodes, per-node), local.

    cycle: cycle-driven averaging (lockstep rounds), 10^5 and 10^6 nodes, observation log.

    causality: gossip with [log] causality = none, lamport, vector at 100, 1000, 10^4 nodes:
    rows/s and bytes per row on disk.

    startup: the fixed cost of a small local run (wall minus its simulation loop) and its
    parts: interpreter, imports, config validation, first window, teardown, exit.

    scaling: (only with --only scaling) cycle at 10^6 nodes, local, then Ray at 1, 2, 4, ...
    shards up to the cores, with speed-up and efficiency.

    scaling_model: (only with --only scaling_model, after scaling) per-window and
    per-message costs of each backend, and the fitted model of where Ray beats local.
    """
    from raysim import bench as benchmod

    if scaling:
        only = [*(only or []), *(w for w in ("scaling", "scaling_model") if w not in (only or []))]
    try:
        for line in benchmod.run_all(only=only, quick=quick):
            typer.echo(json.dumps(line))
    except ConfigError as e:
        _fail(str(e))


def _version(value: bool) -> None:
    if value:
        from raysim._version import __version__

        typer.echo(f"raysim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Deterministic, fault-injecting simulation of distributed-systems algorithms on Ray."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the ``raysim`` script."""
    return app(args=argv if argv is not None else sys.argv[1:], prog_name="raysim")


@app.command()
def sweep(
    experiment: Annotated[
        Path, typer.Argument(help="Experiment TOML file (its sweep table gives the axes).")
    ],
    set_: SetOpt = None,
    out: Annotated[
        str, typer.Option("--out", help="Results directory (a path or a pyarrow filesystem URI).")
    ] = "results",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (default: RAY_ADDRESS or local).")
    ] = None,
    max_parallel: Annotated[
        int | None, typer.Option(help="Runs in flight at once (default: the cluster's CPUs).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    import_: ImportOpt = None,
    strict: StrictOpt = False,
) -> None:
    """Run every point of the experiment's sweep table as Ray tasks; skip runs already done."""
    from raysim.experiments import sweep as sweepmod
    from raysim.experiments.sweep_exec import run_sweep

    try:
        plan = sweepmod.plan(experiment, set_ or [], imports=import_ or [])
        summary = run_sweep(
            plan, out, address=address, max_parallel=max_parallel, progress=progress,
            strict=strict,
        )
    except ConfigError as e:
        _fail(str(e))
        return
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    typer.echo(summary.describe(), err=summary.exit_code != 0)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command()
def report(
    results_dir: Annotated[
        str, typer.Argument(help="A results directory (results/<experiment>) or its parent.")
    ],
) -> None:
    """Write a self-contained report.html (figures, run table) into a results directory."""
    from raysim.analysis import report as reportmod

    try:
        written = reportmod.write(results_dir)
    except ConfigError as e:
        _fail(str(e))
        return
    for path in written:
        typer.echo(f"report: {path}")


NodesOpt = Annotated[
    str | None, typer.Option("--nodes", help="Nodes to show, e.g. 0-9,17 (default: all).")
]
RunOpt = Annotated[
    str | None, typer.Option("--run", help="Run id (default: the ok run with fewest events).")
]
FromOpt = Annotated[int | None, typer.Option("--from", help="First virtual time shown.")]
ToOpt = Annotated[int | None, typer.Option("--to", help="Last virtual time shown.")]


def _diagram_data(results_dir: str, run: str | None, nodes: str | None,
                  t_from: int | None, t_to: int | None) -> Any:
    from raysim.analysis import diagram as dg

    try:
        picked = dg.parse_nodes(nodes) if nodes is not None else None
    except ValueError as e:
        raise ConfigError(f"--nodes {nodes!r}: {e}") from None
    if t_from is not None and t_to is not None and t_to < t_from:
        raise ConfigError(f"--to {t_to}: must not be below --from {t_from}")
    return dg.load_diagram(results_dir, run, picked, t_from, t_to)


@app.command()
def diagram(
    results_dir: Annotated[str, typer.Argument(help="A results directory (results/<experiment>).")],
    run: RunOpt = None,
    nodes: NodesOpt = None,
    t_from: FromOpt = None,
    t_to: ToOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file (default: RESULTS_DIR/diagram.html).")
    ] = None,
) -> None:
    """Write a run's space-time diagram: one timeline per node, messages as arrows (HTML)."""
    from raysim.analysis import diagram as dg

    try:
        data = _diagram_data(results_dir, run, nodes, t_from, t_to)
        if not len(data.events):
            raise ConfigError(f"{results_dir}: run {data.run_id} has no events there")
        target = out if out is not None else Path(results_dir) / "diagram.html"
        if target.parent and not target.parent.is_dir():
            raise ConfigError(f"--out {target}: no such directory {target.parent}")
        fig, graph = dg.build_figure(data)
        note = (f"Run {data.run_id}: {len(data.nodes)} of {data.n_nodes} nodes, "
                f"{len(data.events)} rows.")
        target.write_text(dg.page(fig, graph, note), encoding="utf-8")
    except ConfigError as e:
        _fail(str(e))
        return
    typer.echo(f"diagram: {target} (run {data.run_id}, {len(data.events)} rows)")


export_app = typer.Typer(no_args_is_help=True, help="Export a run's log for other tools.")
app.add_typer(export_app, name="export")


@export_app.command("shiviz")
def export_shiviz(
    results_dir: Annotated[str, typer.Argument(help="A results directory (results/<experiment>).")],
    run: RunOpt = None,
    nodes: NodesOpt = None,
    t_from: FromOpt = None,
    t_to: ToOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output file (default: standard output).")
    ] = None,
) -> None:
    """Write a run's events in ShiViz's input format (with vector clocks)."""
    from raysim.analysis import diagram as dg

    try:
        data = _diagram_data(results_dir, run, nodes, t_from, t_to)
        text = dg.shiviz(data)
        if out is not None:
            if not out.parent.is_dir():
                raise ConfigError(f"--out {out}: no such directory {out.parent}")
            out.write_text(text, encoding="utf-8")
    except ConfigError as e:
        _fail(str(e))
        return
    if out is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"shiviz: {out} ({text.count(chr(10)) - 2} events)", err=True)
