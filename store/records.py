"""The dataclasses the vault API returns (all with a JSON-safe ``to_dict()``).

numpy is used only for the code arrays; nothing here touches DuckDB or the cipher.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "RecordingRow",
    "IngestEvent",
    "IngestReport",
    "QueryCode",
    "Hit",
    "SearchResult",
    "VaultInfo",
    "VerifyReport",
    "StoredCodes",
]


def _jsonable(v: Any) -> Any:
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return v.to_dict() if hasattr(v, "to_dict") else _jsonable(dataclasses.asdict(v))
    return v


@dataclass(frozen=True)
class RecordingRow:
    """One stored recording (never its bytes: those are in the encrypted blob)."""

    id: int
    name: str
    category: str
    sha256: str
    sample_rate: int
    channels: int
    duration: float
    size: int
    added: _dt.datetime
    n_windows: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class IngestEvent:
    """Progress of ``Vault.ingest``: one event per source (and one ``committed`` per batch).

    ``kind``: "added" | "duplicate" | "error" | "committed" | "cancelled".
    ``index`` counts sources from 1; ``total`` is None when the input had no length.
    """

    kind: str
    index: int
    total: int | None
    path: str | None = None
    recording_id: int | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class IngestReport:
    added: list[RecordingRow] = field(default_factory=list)
    skipped_duplicates: list[tuple[str, int]] = field(default_factory=list)  # (path, existing id)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [r.to_dict() for r in self.added],
            "skipped_duplicates": [{"path": p, "existing_id": i} for p, i in self.skipped_duplicates],
            "errors": [{"path": p, "message": m} for p, m in self.errors],
            "cancelled": self.cancelled,
        }


@dataclass
class QueryCode:
    """The code of a query: one row per window of the query recording.

    ``category`` (n,) int64 predicted class ids (h1), ``probs`` (n, C) float32 or None,
    ``words`` (n, W) uint64 (h2 packed as in ``hashing.codes.pack_words``), ``K`` bits.
    """

    category: np.ndarray
    words: np.ndarray
    K: int
    probs: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    name: str | None = None
    #: identification windows (``hashing.windowing``): start frame of each query window
    frames: np.ndarray | None = None
    #: and the fraction of its frames that hold speech (0 everywhere: a silent query)
    activity: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.category = np.atleast_1d(np.asarray(self.category, dtype=np.int64))
        if self.frames is not None:
            self.frames = np.atleast_1d(np.asarray(self.frames, dtype=np.int64))
        w = np.asarray(self.words)
        if w.ndim == 1:
            w = w[None, :]
        self.words = np.ascontiguousarray(w.astype(np.uint64, copy=False))
        if self.probs is not None:
            p = np.asarray(self.probs, dtype=np.float32)
            self.probs = p[None, :] if p.ndim == 1 else p
        self.K = int(self.K)

    @property
    def n_windows(self) -> int:
        return int(self.words.shape[0])

    @property
    def silent(self) -> bool:
        """No window holds a frame of speech: silence matches silence at BER 0, and proves
        nothing (issue 15), so such a query matches no recording."""
        return self.activity is not None and not np.any(np.asarray(self.activity) > 0)

    @classmethod
    def from_window_codes(cls, wc: Any, *, name: str | None = None) -> "QueryCode":
        t = getattr(wc, "timings", None) or {}
        return cls(category=wc.category, words=wc.words, K=int(wc.K),
                   probs=getattr(wc, "probs", None), timings=dict(t), name=name,
                   frames=getattr(wc, "frames", None), activity=getattr(wc, "activity", None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "K": self.K,
            "category": self.category.tolist(),
            "words": [[f"{int(x):016x}" for x in row] for row in self.words],
            "probs": None if self.probs is None else self.probs.tolist(),
            "timings": dict(self.timings),
        }


@dataclass(frozen=True)
class Hit:
    recording_id: int
    name: str
    category: str          # the recording's stored category label
    ber: float             # normalized Hamming distance of the best window pair (eq. 16)
    window: int            # the stored window that matched best
    is_match: bool         # ber < tau
    query_window: int = 0  # the query window that matched best
    distance: int = 0      # Hamming distance in bits (ber * K)
    #: excerpt search (identification windows): where the query starts in the recording
    #: (seconds), the evidence that decided, how many stored windows it covered, and how many
    #: of those are near-identical to the query (the rule's ``strong_ber``; a window shared
    #: with other recordings counts as its share)
    offset: float | None = None
    evidence: float | None = None
    windows: int | None = None
    near_identical: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """``hits``: the matches (ber < tau), best first; when nothing is under tau, ``matched`` is
    False and ``hits`` holds the nearest recordings instead (each with ``is_match`` False).
    ``nearest``: the nearest recordings whatever tau (at most ``top``)."""

    hits: list[Hit]
    matched: bool
    tau: float
    mode: str
    query_category: str | None
    timings: dict[str, float]
    nearest: list[Hit]
    query_categories: list[str] = field(default_factory=list)  # per query window
    probed_categories: list[str] = field(default_factory=list)  # union searched (empty = all)
    candidates: int = 0  # index rows (windows) the Hamming stage compared, summed over windows
    total_rows: int = 0  # index rows in the vault
    fell_back: bool = False  # mode "auto": nothing matched in the category, every row was searched
    #: excerpt search: the rule that decided (``store.excerpt.ExcerptRule`` as a dict): a hit
    #: matches by its evidence over the windows, not by ``ber < tau`` (``tau`` then only bounds
    #: the best window's BER when the caller set it: the dict's ``best_ber_under``). None: a
    #: match is ``ber < tau``.
    rule: dict | None = None

    def excerpt_rule(self):
        """The ``store.excerpt.ExcerptRule`` that decided the matches (an excerpt search), or
        None when a match is ``ber < tau``."""
        if self.rule is None:
            return None
        from store.excerpt import ExcerptRule

        return ExcerptRule.from_dict(self.rule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "tau": self.tau,
            "mode": self.mode,
            "query_category": self.query_category,
            "query_categories": list(self.query_categories),
            "probed_categories": list(self.probed_categories),
            "candidates": self.candidates,
            "total_rows": self.total_rows,
            "fell_back": self.fell_back,
            "rule": self.rule,
            "hits": [h.to_dict() for h in self.hits],
            "nearest": [h.to_dict() for h in self.nearest],
            "timings": dict(self.timings),
        }


@dataclass
class VaultInfo:
    path: str
    format_version: int
    created: _dt.datetime
    app_version: str
    cipher: str
    kdf: dict[str, Any]
    model_sha256: str
    model_name: str
    K: int
    C: int
    class_names: list[str]
    tau: float
    recordings: int
    windows: int
    size_bytes: int
    read_only: bool
    unlocked: bool
    category_counts: dict[str, int] = field(default_factory=dict)
    unclustered_windows: int = 0
    #: the whole file is under DuckDB's database encryption (``init --encrypt-index``)
    index_encrypted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


@dataclass
class VerifyReport:
    checked: int = 0
    failures: list[tuple[int, str, str]] = field(default_factory=list)  # (id, name, message)
    #: findings that do not fail verify: legacy (unbound) blobs, recordings deleted without the
    #: passphrase since the last keyed write (``store.integrity``)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "failures": [{"id": i, "name": n, "message": m} for i, n, m in self.failures],
            "notes": list(self.notes),
        }


@dataclass
class StoredCodes:
    """The index rows of one recording (``Vault.codes_of``), WindowCodes-like."""

    recording_id: int
    category: np.ndarray  # (n,) int64 model class ids (h1) per window
    words: np.ndarray     # (n, W) uint64
    K: int
    window: np.ndarray    # (n,) int64 window indices

    def to_dict(self) -> dict[str, Any]:
        return {
            "recording_id": self.recording_id,
            "K": self.K,
            "window": self.window.tolist(),
            "category": self.category.tolist(),
            "words": [[f"{int(x):016x}" for x in row] for row in self.words],
        }
