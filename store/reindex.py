"""Re-code every recording of a vault with another model (``speechvault reindex``, issue 12).

Why: a vault's codes are only comparable with codes of the model that made them, so moving a
vault to a better model (a format-2 vault to the excerpt-searchable identification windows of
format 3) means decrypting each recording and coding it again. The audio and its blobs do not
change; the index, the stored model and the settings that come with it (K, tau) do.

Crash safety: the new codes go to a side table ``codes_reindex`` in committed batches; the old
index, model and settings stay in force until one final transaction swaps everything at once
(new codes, ``recordings.n_windows``, the model row, ``vault_meta``). A kill at any point
leaves either the old vault or the new one, both complete; a leftover side table is dropped by
the next run. Needs the passphrase (each blob is opened and authenticated).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import numpy as np

from store import schema as _schema
from store import search as _search

__all__ = ["ReindexReport", "reindex"]

SIDE_TABLE = "codes_reindex"
BATCH = 32


@dataclasses.dataclass
class ReindexReport:
    recordings: int
    windows: int
    old_model: str
    new_model: str
    old_k: int
    new_k: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _insert(con, rows: list[tuple[int, Any]], K: int) -> int:
    """Append the codes of ``rows`` ((recording id, WindowCodes)) to the side table."""
    framed = all(getattr(wc, "frames", None) is not None for _, wc in rows)
    return _schema.insert_codes(
        con, SIDE_TABLE, K,
        np.concatenate([np.full(wc.n_windows, rid, np.int64) for rid, wc in rows]),
        np.concatenate([np.arange(wc.n_windows) for _, wc in rows]),
        np.concatenate([wc.category for _, wc in rows]),
        np.concatenate([wc.words for _, wc in rows]),
        np.concatenate([wc.frames for _, wc in rows]) if framed else None)


def reindex(vault, encoder, *, progress: Callable[[int, int], None] | None = None,
            open_blob: Callable[[int], bytes]) -> ReindexReport:
    """Re-code ``vault`` (open read-write, unlocked) with ``encoder``; ``open_blob(id)`` returns
    a recording's original bytes (authenticated). Returns what changed."""
    from hashing.audio import load_audio

    con = vault._db()
    K = int(encoder.K)
    old_sha, old_k, old_name = vault.model_sha256, vault.K, vault.model_name
    con.execute(f"DROP TABLE IF EXISTS {SIDE_TABLE}")
    con.execute(_schema.codes_ddl(K, SIDE_TABLE))
    ids = [int(r[0]) for r in con.execute("SELECT id FROM recordings ORDER BY id").fetchall()]
    windows, pending = 0, []
    for done, rid in enumerate(ids, 1):
        import io

        y = load_audio(io.BytesIO(open_blob(rid)), encoder.sample_rate)
        pending.append((rid, encoder.encode_audio(y)))
        if len(pending) >= BATCH or done == len(ids):
            con.execute("BEGIN TRANSACTION")
            windows += _insert(con, pending, K)
            con.execute("COMMIT")
            pending = []
        if progress is not None:
            progress(done, len(ids))
    _swap(con, encoder, K, vault._require_key("reindex"))
    return ReindexReport(recordings=len(ids), windows=windows, old_model=old_name or old_sha[:12],
                         new_model=encoder.meta.name, old_k=old_k, new_k=K)


def _swap(con, encoder, K: int, master: bytes) -> None:
    """One transaction: the side table becomes the index, the new model the vault's model, and
    every integrity MAC is recomputed (``store.integrity``)."""
    from store.integrity import authenticate_all

    meta = encoder.meta
    meta_json = meta.to_json() if hasattr(meta, "to_json") else json.dumps(meta.to_dict())
    sha = str(encoder.sha256)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DROP TABLE codes")
        con.execute(f"ALTER TABLE {SIDE_TABLE} RENAME TO codes")
        con.execute("UPDATE recordings SET n_windows = (SELECT count(*) FROM codes "
                    "WHERE codes.recording_id = recordings.id)")
        con.execute("DELETE FROM model WHERE sha256 = ?", [sha])
        con.execute("INSERT INTO model (sha256, meta_json, tflite, fingerprint) VALUES (?, ?, ?, ?)",
                    [sha, meta_json, bytes(encoder.tflite_bytes), encoder.fingerprint_bytes])
        con.execute("UPDATE vault_meta SET model_sha256 = ?, k = ?, c = ?, class_names = ?, "
                    "tau = ?, codes_unclustered = (SELECT count(*) FROM codes)",
                    [sha, K, int(meta.C), [str(c) for c in meta.class_names], float(meta.tau)])
        con.execute("DELETE FROM model WHERE sha256 <> ?", [sha])
        authenticate_all(con, master)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")
    _search.compact(con, K)
