"""What ``store.vault`` and its rooms share: the search modes, the ingest batch size, the
columns of a recording row, and the two guards of every write (umask 077 while DuckDB may create a
file; the chmod after a commit).

Why a module of its own: ``Vault`` is assembled from rooms (``store.vault_ingest``,
``store.vault_search``, ``store.vault_export``, ``store.vault_keys``) that ``store.vault``
imports, so what they need when their classes are defined (the ``_private_writes`` decorator, a
default argument) must live where none of them imports ``store.vault``. ``store.vault``
re-exports ``MODES`` and ``DEFAULT_BATCH_SIZE``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from store import private_files as _private

#: "auto": two-stage, and when no recording of the query's category is within tau, traversal of
#: every row (issue 7: a noisy copy may change category - 3.4 % of noise-20-dB copies with the
#: default model - and the identification code still finds its original among all rows).
MODES = ("auto", "two-stage", "traversal", "multi-probe")
#: files per ingest transaction
DEFAULT_BATCH_SIZE = 32
_REC_COLS = "id, name, category, sha256, sample_rate, channels, duration, size, added, n_windows"


def _private_writes(method: Callable) -> Callable:
    """Run ``method`` under umask 077: DuckDB creates the WAL (and temporary files) at a commit,
    with the process umask, so a chmod afterwards would leave them briefly world-readable."""
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _private.private_umask():
            return method(*args, **kwargs)

    return wrapper


def chmod_private(path: Path) -> None:
    """``store.vault._chmod_private(path)``, looked up at each call: the rooms' writes go through
    the one function a test replaces there (``tests/test_permissions.py``, ``no_chmod``: to see
    the mode DuckDB created the WAL with)."""
    from store import vault  # lazy: store.vault imports the rooms

    vault._chmod_private(path)
