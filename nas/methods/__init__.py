"""Methods: how a run searches a supernet, registered by name like searchers.

A `Method` declares its options (schema fields), whether the supernet is trained before
the search, what it checkpoints and which files it writes, and how it runs and reopens.
`nas.search`, `nas.run_spec`, `nas.load_run`, the report and the ``nas`` command go
through the method the searcher name chooses (`for_searcher`) and name none themselves.

    >>> import nas.methods
    >>> nas.methods.for_searcher("guided").name
    'blackbox'
"""

from nas.methods._base import METHODS, Method, for_searcher, get, names, register, searcher_names

__all__ = ["METHODS", "Method", "for_searcher", "get", "names", "register", "searcher_names"]
