"""Run directories: one spec repeats a whole run, and a killed run resumes where it stopped.

A run lives in ``runs/<name>/``: ``spec.toml`` (everything needed to repeat it), the
supernet checkpoint ``supernet.pt``, the evaluations database ``evaluations.sqlite``,
``front.json``, the report and exports. `run_spec` trains the supernet (resuming from its
checkpoint) and searches it (resuming from the stored evaluations); `load_run` gives the
result back with the trained supernet loadable.

The spec has one schema (`FIELDS`), validated in one place (`RunSpec`), and reached three
ways that take the same names: a TOML file, the ``nas`` command's flags, and keyword
arguments of `run_spec` / `load_spec`:

========================  ======================  ===========================================
spec key                  flag / keyword          meaning
========================  ======================  ===========================================
``name``                                          run name: the run directory is ``runs/<name>``
``seed``                  ``--seed``              seed of the supernet's init, training and search
``space.family``          ``--space``             supernet family (``nas spaces``)
``space.args``                                    the family's arguments
``space.source``          ``--model``             ``"package.module:function"`` returning your model (`nas.from_model`)
``space.convert``                                 `nas.from_model`'s options for it (widths, depth, ranks, ...)
``data.source``                                   ``"digits"``, ``"mnist1d"`` or ``"package.module:function"``
``data.args``                                     arguments of the data source
``train.*``               ``--epochs``            training recipe (strategy, epochs, lr, ...)
``evaluate.*``                                    evaluation settings (BatchNorm calibration, latency)
``search.searcher``       ``--searcher``          searcher name (``nas.searchers.names()``)
``search.objectives``     ``--objectives``        e.g. ``["accuracy:max", "params:min"]``
``search.constraints``    ``--constraint``        hard cost bounds, e.g. ``["params<=50000", "latency_ms<=2"]``
``search.budget``         ``--budget``            total evaluations
``search.args``                                   the searcher's arguments
``backend.name``          ``--backend``           ``"local"`` or ``"ray"``
``backend.address``       ``--ray-address``       Ray cluster address (``"auto"``)
``backend.args``                                  the backend's own arguments
========================  ======================  ===========================================

The searcher chooses the method (`nas.methods.for_searcher`), which checks ``search.args``
against its own fields and says whether there is a training phase. A method that trains
the supernet in its search (the gradient search of `nas.methods.names()`) takes
``search.budget`` as its epochs and its recipe from ``search.args``; the ``[train]``
section does not apply to it (a ``train.*`` key or ``--epochs`` is refused, and ``nas train`` too).

``search.constraints`` (keyword ``constraints=``; on the command line ``--constraint``,
repeatable or comma-separated, added to the spec's) are checked before any training: an
unknown metric or a bound no subnet meets is one `SpecError` line. Configs that break one
are never evaluated, the front and the picks meet them, and they are part of the run's
identity (changing them on an existing run is refused).

Example:
    >>> spec = load_spec({"name": "tiny", "space": {"args": {"depths": [1], "widths": [16], "ranks": [4]}}}, budget=4)
    >>> spec["search.budget"], spec["space.family"], spec["train.strategy"]
    (4, 'mlp', 'progressive')
    >>> load_spec({"search": {"budgt": 4}})
    Traceback (most recent call last):
    ...
    nas.runs.SpecError: unknown spec key 'search.budgt'; the keys of [search] are: searcher, objectives, constraints, budget, batch_size, args
"""

from nas._toml import dumps_toml
from nas.errors import RunError, SpecError
from nas.runs._identity import IDENTITY, SpecChanged
from nas.runs._run import Run, load_run, prepare, run_dir, run_spec
from nas.runs._schema import FIELDS, flags
from nas.runs._spec import DEMO, SPEC, RunSpec, load_spec
from nas.runs._trust import TRUST_ENV, UntrustedSource, trusted_packages
from nas.schema import Field

__all__ = [
    "DEMO",
    "FIELDS",
    "IDENTITY",
    "SPEC",
    "SpecChanged",
    "Field",
    "Run",
    "RunError",
    "RunSpec",
    "SpecError",
    "TRUST_ENV",
    "UntrustedSource",
    "dumps_toml",
    "flags",
    "load_run",
    "load_spec",
    "prepare",
    "run_dir",
    "run_spec",
    "trusted_packages",
]
