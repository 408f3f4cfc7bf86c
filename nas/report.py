"""A run's report: Pareto front, hypervolume and where-the-front-lives pictures, a Markdown summary, a CSV.

`report(run)` writes into ``<run>/report/``:

- ``front.png``: every evaluation, the Pareto front and the picked models (one panel per
  pair of objectives);
- ``hypervolume.png``: the front's hypervolume after each batch of evaluations;
- ``dimensions.png``: parallel coordinates over the space's dimensions and the objectives,
  the front's configs coloured by the first objective over the others in grey;
- ``summary.md``: the run, its counts, the front and the picks as Markdown tables;
- ``evaluations.csv``: one row per evaluation: status, metrics, config, on-front flag.

matplotlib is imported only here (with its non-interactive Agg canvas; no global backend
is switched).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nas.errors import ReportError
from nas.evaluation import Evaluation
from nas.metrics import METRICS
from nas.rundir import atomic_write, make_dir
from nas.runs import load_run

FILES = ("front.png", "hypervolume.png", "dimensions.png", "summary.md", "evaluations.csv")


def default_picks(objectives: Sequence[Any]) -> list[str]:
    """The picks marked when none are asked: the knee and the best of the first objective."""
    return ["knee", f"best:{objectives[0].name}"]


def report(run: Any, out: str | os.PathLike | None = None, picks: Sequence[str] | None = None, *, trust: bool = False) -> dict[str, Path]:
    """Write the report of a run; returns name -> file.

    Example:
        >>> import tempfile
        >>> from nas.runs import run_spec
        >>> run = run_spec({"name": "tiny", "space": {"args": {"depths": [1], "widths": [16, 32], "ranks": [4]}},
        ...                 "train": {"epochs": 1}}, run=tempfile.mkdtemp(), budget=2, progress=False)
        >>> sorted(report(run))
        ['dimensions.png', 'evaluations.csv', 'front.png', 'hypervolume.png', 'summary.md']

    Args:
        run: a `nas.runs.Run` or its directory.
        out: output directory (default ``<run>/report``).
        picks: pick rules to mark (`nas.pick`); default: the knee and the best of the first objective.
        trust: with a run directory, whether its spec may import and call the code its
            sources name (as for `nas.load_run`; default no, unless ``NAS_TRUSTED_SOURCES`` lists it).
    """
    if isinstance(run, (str, os.PathLike)):
        run = load_run(run, trust=trust)
    front = run.front
    if not front and getattr(run, "constraints", None) and any(e.ok for e in run.evaluations):
        raise ReportError(f"the run {run.run}: {run.infeasible_line()}")
    if not front:
        raise ReportError(f"the run {run.run} has no successful evaluation yet; run `nas search --run {run.run}` first")
    rules = list(picks) if picks else default_picks(run.objectives)
    chosen = [(rule, run.pick(rule)) for rule in rules]  # bad rules fail before anything is written
    out = Path(out) if out is not None else run.run / "report"
    make_dir(out)
    files = {
        "front.png": _front_plot(run, chosen, out / "front.png"),
        "hypervolume.png": _hypervolume_plot(run, out / "hypervolume.png"),
        "dimensions.png": _dimensions_plot(run, out / "dimensions.png"),
        "evaluations.csv": _csv(run, out / "evaluations.csv"),
    }
    files["summary.md"] = _markdown(run, chosen, files, out / "summary.md")
    return {name: files[name] for name in FILES}


# -- pictures ------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    return atomic_write(path, fig.savefig)


def _label(objective: Any) -> str:
    return f"{objective.name} ({'higher' if objective.direction == 'max' else 'lower'} is better)"


def _front_plot(run: Any, chosen: list[tuple[str, Evaluation]], path: Path) -> Path:
    objectives = run.objectives
    ok = [e for e in run.evaluations if e.ok and all(o.name in e.metrics for o in objectives)]
    front = run.front
    if len(objectives) == 1:
        pairs = [(None, objectives[0])]
    else:  # cost on x, the first objective (usually accuracy) on y
        pairs = [(b, a) for a, b in itertools.combinations(objectives, 2)]
    cols = min(3, len(pairs))
    rows = -(-len(pairs) // cols)
    fig = _figure(5.2 * cols, 4.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    markers = ["*", "D", "P", "X", "s", "^"]
    for ax, (x_obj, y_obj) in zip(axes, pairs):
        def xs(evs, x_obj=x_obj):
            return [e.metrics[x_obj.name] for e in evs] if x_obj else list(range(1, len(evs) + 1))

        ax.scatter(xs(ok), [e.metrics[y_obj.name] for e in ok], s=10, c="#b0b0b0", label=f"evaluated ({len(ok)})")
        if x_obj is not None:
            line = sorted(front, key=lambda e: e.metrics[x_obj.name])
            if len(objectives) == 2:  # the front's attainment staircase
                ax.plot(xs(line), [e.metrics[y_obj.name] for e in line], "-o", c="#1f77b4", ms=4, lw=1.2,
                        drawstyle="steps-post" if x_obj.direction == "min" else "steps-pre", label=f"Pareto front ({len(front)})")
            else:  # a projection of a higher-dimensional front is no curve: points only
                ax.scatter(xs(line), [e.metrics[y_obj.name] for e in line], s=22, c="#1f77b4",
                           label=f"Pareto front in {len(objectives)} objectives ({len(front)})")
            values = [e.metrics[x_obj.name] for e in ok if e.metrics[x_obj.name] > 0]
            if values and max(values) / min(values) > 100:
                ax.set_xscale("log")
            ax.set_xlabel(_label(x_obj))
        else:
            ax.set_xlabel("evaluation")
        for i, (rule, ev) in enumerate(chosen):
            x = ev.metrics[x_obj.name] if x_obj else ok.index(ev) + 1 if ev in ok else 0
            ax.scatter([x], [ev.metrics[y_obj.name]], s=150, marker=markers[i % len(markers)], c=f"C{i + 1}",
                       edgecolors="black", linewidths=0.6, zorder=5, label=f"pick {rule}")
        ax.set_ylabel(_label(y_obj))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    for ax in axes[len(pairs):]:
        ax.set_visible(False)
    fig.suptitle(f"{_name(run)}: Pareto front of {len(run.evaluations)} evaluations")
    return _save(fig, path)


def _hypervolume_plot(run: Any, path: Path) -> Path:
    fig = _figure(6.0, 3.8)
    ax = fig.subplots()
    history = run.hypervolume_history
    if history:
        ns, hv = zip(*history)
        ax.plot(ns, hv, drawstyle="steps-post", marker="o", ms=3)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume")
    ref = ", ".join(f"{k}={v:g}" for k, v in run.reference.items())
    ax.set_title(f"{_name(run)}: hypervolume (reference {ref})", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _dimensions_plot(run: Any, path: Path) -> Path:
    """Parallel coordinates: one axis per dimension (value index; 'off' when inactive) and per objective."""
    import numpy as np
    from matplotlib import colormaps

    space, objectives = run.space, run.objectives
    ok = [e for e in run.evaluations if e.ok and all(o.name in e.metrics for o in objectives)]
    front = run.front
    dims = space.dimensions
    axes_names = [d.name for d in dims] + [o.name for o in objectives]
    values = np.array([[e.metrics[o.name] for o in objectives] for e in ok]) if ok else np.zeros((0, len(objectives)))
    low, high = values.min(axis=0), values.max(axis=0)
    off = -0.12

    def row(ev: Evaluation) -> list[float]:
        out = []
        for d in dims:
            v = ev.config.get(d.name)
            out.append(off if v is None or v not in d.values else (d.index(v) / max(1, len(d.values) - 1)))
        for j, o in enumerate(objectives):
            span = high[j] - low[j]
            out.append((ev.metrics[o.name] - low[j]) / span if span > 0 else 0.5)
        return out

    fig = _figure(max(7.0, 0.75 * len(axes_names) + 2), 4.8)
    ax = fig.subplots()
    x = np.arange(len(axes_names))
    on_front = {id(e) for e in front}
    for ev in ok:
        if id(ev) not in on_front:
            ax.plot(x, row(ev), c="#c8c8c8", lw=0.5, alpha=0.5)
    cmap = colormaps["viridis"]
    first = objectives[0]
    span = high[0] - low[0] if len(values) else 0
    for ev in front:
        t = (ev.metrics[first.name] - low[0]) / span if span > 0 else 1.0
        ax.plot(x, row(ev), c=cmap(t if first.direction == "max" else 1 - t), lw=1.6, alpha=0.9)
    for i, d in enumerate(dims):
        ax.axvline(i, c="black", lw=0.6)
        for j, v in enumerate(d.values):
            ax.text(i + 0.04, j / max(1, len(d.values) - 1), str(v), fontsize=6, va="center")
        if d.when is not None:
            ax.text(i + 0.04, off, "off", fontsize=6, va="center", color="#777777")
    for j, _o in enumerate(objectives):
        i = len(dims) + j
        ax.axvline(i, c="black", lw=0.6)
        if len(values):
            ax.text(i + 0.04, 0.0, f"{low[j]:.4g}", fontsize=6, va="center")
            ax.text(i + 0.04, 1.0, f"{high[j]:.4g}", fontsize=6, va="center")
    ax.set_xticks(x, axes_names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(-0.3, len(axes_names) - 0.5)
    ax.set_ylim(off - 0.08, 1.08)
    ax.set_title(f"{_name(run)}: where the front lives ({len(front)} front configs coloured by {first.name}, others grey)", fontsize=10)
    return _save(fig, path)


# -- tables --------------------------------------------------------------------------------
def _csv(run: Any, path: Path) -> Path:
    metrics: list[str] = [o.name for o in run.objectives]
    for ev in run.evaluations:
        metrics += [m for m in ev.metrics if m not in metrics]
    dims = run.space.names()
    on_front = {id(e) for e in run.front}
    with io.StringIO(newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "status", "on_front", *metrics, "seconds", "error", *dims])
        for i, ev in enumerate(run.evaluations):
            writer.writerow([
                i, ev.status, int(id(ev) in on_front), *(ev.metrics.get(m, "") for m in metrics),
                f"{ev.seconds:.6f}", ev.error or "", *(ev.config.get(d, "") for d in dims),
            ])
        return atomic_write(path, f.getvalue())


def _markdown(run: Any, chosen: list[tuple[str, Evaluation]], files: dict[str, Path], path: Path) -> Path:
    spec = run.spec
    objectives = [o.name for o in run.objectives]
    extra = [m for m in METRICS if m not in objectives and any(m in e.metrics for e in run.front)]
    columns = objectives + extra
    failed = sum(not e.ok for e in run.evaluations)
    lines = [f"# Run `{_name(run)}`", ""]
    if spec is not None:
        lines += [
            f"- space: `{spec['space.family']}` ({run.space.size():,} subnets), data `{spec['data.source']}`",
            spec.method.training_line(spec),
            f"- search: {spec['search.searcher']}, objectives {', '.join(spec['search.objectives'])}, budget {spec['search.budget']}",
        ]
    constraints = getattr(run, "constraints", None)
    if constraints:
        lines.append(f"- constraints: {', '.join(f'`{c}`' for c in constraints)} ({len(run.feasible)} of {len(run.evaluations)} evaluations meet them)")
    if getattr(run, "history", None):
        last = run.history[-1]
        accs = [f"{w} subnet {last[f'{w}_accuracy']:.4f}" for w in ("largest", "smallest") if f"{w}_accuracy" in last]
        if accs:
            lines.append(f"- supernet after epoch {last['epoch']}: validation accuracy of the {' and '.join(accs)}")
    lines += [
        f"- {len(run.evaluations)} evaluations ({failed} failed), {len(run.front)} on the Pareto front, "
        f"hypervolume {run.hypervolume:.6g} (reference {', '.join(f'{k}={v:g}' for k, v in run.reference.items())})",
        "",
        "## Picks",
        "",
        "| pick | " + " | ".join(columns) + " | config |",
        "|---|" + "---:|" * len(columns) + "---|",
    ]
    for rule, ev in chosen:
        lines.append(f"| `{rule}` | " + " | ".join(_cell(ev.metrics.get(c)) for c in columns) + f" | `{_config(ev.config)}` |")
    lines += ["", "## Pareto front", "", "| # | " + " | ".join(columns) + " | config |", "|---:|" + "---:|" * len(columns) + "---|"]
    for i, ev in enumerate(run.front, 1):
        lines.append(f"| {i} | " + " | ".join(_cell(ev.metrics.get(c)) for c in columns) + f" | `{_config(ev.config)}` |")
    lines += ["", "## Pictures", ""]
    lines += [f"![{name}]({files[name].name})" for name in ("front.png", "hypervolume.png", "dimensions.png")]
    lines += ["", f"All evaluations: [{files['evaluations.csv'].name}]({files['evaluations.csv'].name})", ""]
    if run.run is not None:
        lines += [f"Export a pick: `nas export {run.run} --pick knee --format pt,torchscript,onnx`", ""]
    return atomic_write(path, "\n".join(lines))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _config(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items())


def _name(run: Any) -> str:
    spec = getattr(run, "spec", None)
    return spec.name if spec is not None else (run.run.name if run.run is not None else "search")


__all__ = ["FILES", "ReportError", "default_picks", "report"]
