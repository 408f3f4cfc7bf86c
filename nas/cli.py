"""The ``nas`` command: search, train, export, report, spaces.

``nas search`` with no spec runs the built-in demo: it trains an MLP supernet on
scikit-learn's bundled digits, searches it, writes the report and prints the Pareto front
and where the files are. Run the same command again and it resumes (or, when finished,
just prints the result). Bad input (unknown or malformed spec keys, unknown names, a
missing run, a config outside the space) prints one line on stderr and exits with code 2,
before anything on disk is touched.

The search flags are the spec's keys (`nas.runs.FIELDS`): ``--budget`` sets
``search.budget``, ``--space`` sets ``space.family`` and so on; ``nas.runs.run_spec``
takes the same names as keyword arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from nas.data import DataMismatch
from nas.devices import resolve_device
from nas.errors import ExportInputError, NASError, RunError
from nas.export import export, parse_formats
from nas.registry import FAMILIES, build_family
from nas.report import default_picks, report
from nas.rundir import RunDir
from nas.runs import SPEC, flags, load_run, load_spec, run_spec
from nas.training import CHECKPOINT

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2) instead of the usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"nas: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _spec_flags(parser: argparse.ArgumentParser, *, training: bool = False) -> None:
    parser.add_argument("--spec", metavar="FILE", help="run spec (TOML); default: the run directory's spec.toml, else the built-in demo")
    parser.add_argument("--run", metavar="DIR", help="run directory (default: runs/<name>); an existing one is resumed")
    metavars = {"device": "DEV", "precision": "P", "train_backend": "NAME", "space": "NAME", "searcher": "NAME", "backend": "NAME", "ray_address": "ADDR", "objectives": "LIST", "model": "MODULE:FUNC"}
    parser.add_argument("--constraint", dest="spec_constraints", action="append", metavar="BOUND",
                        help="a hard bound on a cost metric, e.g. params<=50000 or latency_ms<=2 (repeatable, or comma-separated); "
                        "added to the spec's search.constraints")
    for name, f in flags().items():
        if name == "constraints" or (training and name == "backend"):
            continue  # `nas train --backend` is the training backend
        allowed = f.allowed()
        choices = f" (one of: {', '.join(allowed)})" if allowed else ""
        text = f"{f.help}{choices} [{f.key}]"
        if f.kind == "strs":
            text += "; comma-separated"
        names = [f"--{name.replace('_', '-')}"] + (["--backend"] if training and name == "train_backend" else [])
        parser.add_argument(*names[::-1], dest=f"spec_{name}", metavar=metavars.get(name, "N"), help=text)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _trust_flag(parser)


def _trust_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trust", action="store_true",
                        help="let the run's spec.toml import and call the code its data.source / space.source names "
                             "(or list the package in NAS_TRUSTED_SOURCES)")


def build_parser() -> argparse.ArgumentParser:
    """The ``nas`` argument parser."""
    parser = _Parser(prog="nas", description="Neural architecture search over weight-entangled supernets.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("search", help="train a supernet (resuming) and search it (resuming); no spec: the built-in demo",
                       description="Train the spec's supernet and search it; an existing run directory resumes. "
                                   "With no --spec and no existing --run, runs the built-in demo (digits, MLP supernet).")
    _spec_flags(p)
    p.add_argument("--no-report", action="store_true", help="do not write the report (pictures, summary, CSV)")
    p.set_defaults(handler=_search)

    p = sub.add_parser("train", help="train (or finish training) a run's supernet only",
                       description="Train the spec's supernet into its run directory, resuming from the last checkpoint; "
                                   "--backend ray --workers N trains it data-parallel on Ray Train workers.")
    _spec_flags(p, training=True)
    p.set_defaults(handler=_train)

    p = sub.add_parser("export", help="export a picked subnet as a dense model (pt, TorchScript, ONNX)",
                       description="Export one subnet of a run as a standalone dense model and check it against the supernet.")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--pick", default=None, help="knee (default), best:<metric>, or constraints such as 'latency_ms<=2' or 'params<=5000,accuracy>=0.9'")
    p.add_argument("--config", default=None, metavar="JSON", help="export this config instead of a pick, e.g. '{\"depth\": 1, ...}'")
    p.add_argument("--format", default="pt,torchscript,onnx", help="comma-separated formats: pt, torchscript, onnx (default: all)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: RUN/export/<pick>)")
    p.add_argument("--device", default="cpu", metavar="DEV",
                   help="where the subnet is extracted and checked: auto, cpu (default) or cuda; model.pt always loads on the CPU")
    _trust_flag(p)
    p.set_defaults(handler=_export)

    p = sub.add_parser("report", help="write a run's pictures, Markdown summary and CSV",
                       description="Write the Pareto front, hypervolume and parallel-coordinates pictures, summary.md and evaluations.csv.")
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--pick", action="append", metavar="HOW", help="pick to mark (repeatable; default: knee and best:<first objective>)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: RUN/report)")
    _trust_flag(p)
    p.set_defaults(handler=_report)

    p = sub.add_parser("spaces", help="list the supernet families, their dimensions and sizes",
                       description="List the registered supernet families with their default dimensions and sizes.")
    p.add_argument("family", nargs="?", help="show only this family")
    p.set_defaults(handler=_spaces)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``nas`` command; returns the exit code (2 for bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2)
        return int(stop.code or 0)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.handler(args) or 0)
    except NASError as err:
        print(f"nas: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nas: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    """nas's own warnings (other data than the supernet's, the built-in data announced) as one line on stderr."""
    if issubclass(category, DataMismatch) or "nas" in Path(filename).parts:
        print(f"nas: warning: {_one_line(message)}", file=sys.stderr)  # type: ignore[arg-type]
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


# -- commands ------------------------------------------------------------------------------
def _spec(args: argparse.Namespace):
    overrides = {k[len("spec_"):]: v for k, v in vars(args).items() if k.startswith("spec_") and v is not None}
    base: Any = args.spec
    if base is None and args.run is not None and (RunDir(args.run).spec.is_file() or RunDir(args.run).identity.is_file()):
        base = args.run
    extra = [c.strip() for text in overrides.pop("constraints", []) for c in text.split(",") if c.strip()]
    spec = load_spec(base, how="flag", trust=True if args.trust else None, **overrides)
    if extra:  # added to the spec's own
        merged = list(spec["search.constraints"]) + [c for c in extra if c not in spec["search.constraints"]]
        spec = load_spec(spec, how="flag", trust=True if args.trust else None, constraints=merged)
    return spec


def _search(args: argparse.Namespace) -> int:
    spec = _spec(args)
    run = run_spec(spec, run=args.run, progress=not args.quiet)
    print(run.summary())
    front = run.front
    if front:
        print()
        for how in _picks(run):
            ev = run.pick(how)
            print(f"pick {how}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in ev.metrics.items()))
    files = [(run.run / SPEC, "the spec: `nas search --run DIR` repeats or resumes the run")]
    files += [(run.run / name, what) for name, what in run.spec.method.files.items()]
    if front and not args.no_report:
        written = report(run)
        files += [(p, "report") for p in written.values()]
    print("\nfiles:")
    for path, what in files:
        if path.exists():
            print(f"  {path}  ({what})")
    if front:
        trust = " --trust" if any(run.spec[k] is not None and ":" in run.spec[k] for k in ("data.source", "space.source")) else ""
        print(f"\nnext: nas export {run.run} --pick knee --format pt,torchscript,onnx{trust}")
    return 0


def _train(args: argparse.Namespace) -> int:
    run = run_spec(_spec(args), run=args.run, train_only=True, progress=not args.quiet)
    if run.history:
        last = run.history[-1]
        scores = ", ".join(f"{k} {_fmt(v)}" for k, v in last.items() if k.endswith("accuracy") or k.endswith("loss"))
        print(f"supernet trained for {last['epoch']} epoch{'s' if last['epoch'] != 1 else ''}: {scores}")
    else:
        print("no training (epochs = 0)")
    print(f"checkpoint: {run.run / CHECKPOINT}")
    print(f"next: nas search --run {run.run}")
    return 0


def _export(args: argparse.Namespace) -> int:
    try:
        formats = parse_formats(args.format)
    except ValueError as err:
        raise ExportInputError(f"--format: {err}") from None
    if args.config is not None and args.pick is not None:
        raise ExportInputError("give either --pick or --config, not both")
    pick: Any = args.pick or "knee"
    if args.config is not None:
        try:
            pick = json.loads(args.config)
        except json.JSONDecodeError as err:
            raise ExportInputError(f"--config is not valid JSON: {err}") from None
        if not isinstance(pick, dict):
            raise ExportInputError(f"--config must be a JSON object of dimension -> value, got {args.config!r}")
    device = resolve_device(args.device, parameter="--device")
    run = load_run(args.run, trust=args.trust)
    if isinstance(pick, dict):
        run.space.validate(pick)  # before the supernet is loaded
    run.net.to(device)  # once
    done = export(run, pick, args.out, formats)
    print(f"exported {', '.join(f'{k}={_fmt(v)}' for k, v in done.metrics.items())}")
    print(f"config: {json.dumps(done.config)}")
    checks = done.checks
    if "accuracy" in checks and "exported" in checks["accuracy"]:
        a = checks["accuracy"]
        print(f"check: validation {a['metric']} {a['exported']:.6g} = stored {a['stored']:.6g}")
    for key, what in (("torchscript_max_abs_diff", "TorchScript"), ("onnx_max_abs_diff", "ONNX (onnxruntime)"), ("load_model_max_abs_diff", "load_model")):
        if key in checks:
            print(f"check: {what} outputs within {checks[key]:.2g} of PyTorch")
    print("files:")
    for name, path in done.files.items():
        print(f"  {path}  ({name})")
    return 0


def _report(args: argparse.Namespace) -> int:
    files = report(load_run(args.run, trust=args.trust), args.out, args.pick)
    print("report:")
    for path in files.values():
        print(f"  {path}")
    return 0


def _spaces(args: argparse.Namespace) -> int:
    names = FAMILIES.names()
    if args.family is not None and args.family not in names:
        raise RunError(f"unknown family {args.family!r}; the families are: {', '.join(names)}")
    for name in [args.family] if args.family else names:
        net = build_family(name)
        doc = (type(net).__doc__ or "").strip().splitlines()[0] if type(net).__doc__ else ""
        space = net.space
        print(f"{name}: {doc}")
        print(f"  data: digits ({getattr(net, 'data_kind', '?')}), input {list(net.input_shape)}; "
              f"{space.size():,} subnets over {len(space)} dimensions; largest {net.cost(net.largest())['params']:,} params")
        for dim in space.dimensions:
            when = f"  (when {dim.when[0]} in {list(dim.when[1])})" if dim.when else ""
            print(f"    {dim.name}: {list(dim.values)}{when}")
    return 0


def _picks(run: Any) -> list[str]:
    return default_picks(run.objectives)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    if isinstance(value, (int, float)):
        return f"{int(value):,}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
