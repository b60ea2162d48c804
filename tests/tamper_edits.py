"""The edits of the index/model/meta tamper matrix (issue 17, items 1 and 2), made with DuckDB.

One function per edit, each ``edit(con, ctx)`` on a read-write DuckDB connection to a copy of a
clean vault (recordings 1..n, n >= 4). ``ctx``: ``old_copy`` (path of a copy taken before
recording 3 was deleted with the passphrase, for "reinsert-deleted"), ``other_tflite`` (bytes of
another model of the same shape, for "tflite-swapped-fixed-up"). Used by tests/test_integrity.py
(fake encoder) and tests/tamper_matrix.py (the shipped model, the table in docs/reliability.md).

"fixed up" edits also rewrite every hash a keyless reader could check (the TFLite and
fingerprint hashes in the model's metadata, the model id in ``model`` and ``vault_meta``), as an
attacker with write access to the file would: only the MACs under the master key can catch them.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any, Callable

import duckdb
import numpy as np

Edit = Callable[[duckdb.DuckDBPyConnection, dict], None]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def fix_up_model(con: duckdb.DuckDBPyConnection, *, tflite: bytes | None = None,
                 fingerprint: bytes | None = None, meta_edit: Callable[[dict], None] | None = None) -> None:
    """Replace parts of the model row and rewrite every hash that refers to them."""
    sha, meta_json, old_tflite, old_fp = con.execute(
        "SELECT m.sha256, m.meta_json, m.tflite, m.fingerprint FROM model m "
        "JOIN vault_meta v ON m.sha256 = v.model_sha256").fetchone()
    meta = json.loads(meta_json)
    tfl = bytes(old_tflite) if tflite is None else tflite
    fp = (None if old_fp is None else bytes(old_fp)) if fingerprint is None else fingerprint
    if meta_edit is not None:
        meta_edit(meta)
    meta["tflite_sha256"] = _sha(tfl)
    if meta.get("fingerprint") and fp is not None:
        meta["fingerprint"]["sha256"] = _sha(fp)
        model_id = _sha(f"{_sha(tfl)}+{_sha(fp)}".encode())
    else:
        model_id = _sha(tfl)
    con.execute("DELETE FROM model WHERE sha256 = ?", [sha])
    con.execute("INSERT INTO model (sha256, meta_json, tflite, fingerprint) VALUES (?, ?, ?, ?)",
                [model_id, json.dumps(meta), tfl, fp])
    con.execute("UPDATE vault_meta SET model_sha256 = ?", [model_id])


def _fingerprint_edit(how: str, fixed_up: bool) -> Edit:
    def edit(con, ctx):
        fp = con.execute("SELECT fingerprint FROM model").fetchone()[0]
        if fp is None:  # a model without a fingerprint: store one where there was none
            new = b"not a fingerprint"
        else:
            with np.load(io.BytesIO(bytes(fp)), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            proj = arrays["projection"]
            if how == "inverted":
                arrays["projection"] = -proj
            else:
                rng = np.random.default_rng(5)
                arrays["projection"] = proj[:, rng.permutation(proj.shape[1])]
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            new = buf.getvalue()
        if fixed_up:
            fix_up_model(con, fingerprint=new)
        else:
            con.execute("UPDATE model SET fingerprint = ?", [new])
    return edit


def _feature_edit(key: str, value: Any) -> Edit:
    def edit(con, ctx):
        def change(meta):
            meta.setdefault("features", {})[key] = value
        fix_up_model(con, meta_edit=change)
    return edit


def _tflite_swapped(con, ctx):
    other = ctx.get("other_tflite")
    if other is None:  # fake models: another fake model's bytes
        other = b"FAKE-TFLITE|another model"
    fix_up_model(con, tflite=other)


def _swap_blobs(con, ctx):
    """(blob, sha256) of rows 1 and 2 exchanged (one statement: sha256 is UNIQUE)."""
    con.execute("""UPDATE recordings AS r SET blob = o.blob, sha256 = o.sha256
                   FROM recordings AS o WHERE (r.id, o.id) IN ((1, 2), (2, 1))""")


def _reinsert_deleted(con, ctx):
    """Recording 3 was deleted with the passphrase; its rows come back from an old copy."""
    con.execute(f"ATTACH '{ctx['old_copy']}' AS old (READ_ONLY)")
    try:
        con.execute("INSERT INTO recordings SELECT * FROM old.recordings WHERE id = 3")
        con.execute("INSERT INTO codes SELECT * FROM old.codes WHERE recording_id = 3")
        con.execute("INSERT INTO record_macs SELECT * FROM old.record_macs WHERE recording_id = 3")
    finally:
        con.execute("DETACH old")


def _word_cols(con) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'codes' "
        "AND regexp_full_match(column_name, 'w[0-9]+') ORDER BY column_name").fetchall()]


def _codes_inverted(con, ctx):
    sets = ", ".join(f"{c} = xor({c}, -1::BIGINT)" for c in _word_cols(con))
    con.execute(f"UPDATE codes SET {sets} WHERE recording_id = 2")


def _codes_copied(con, ctx):
    """Recording 1's index rows copied onto recording 2 (its own rows removed)."""
    con.execute("DELETE FROM codes WHERE recording_id = 2")
    con.execute("CREATE TEMP TABLE c1 AS SELECT * FROM codes WHERE recording_id = 1")
    con.execute("UPDATE c1 SET recording_id = 2")
    con.execute("INSERT INTO codes SELECT * FROM c1")
    con.execute("UPDATE recordings SET n_windows = (SELECT count(*) FROM c1) WHERE id = 2")


def _silent_delete(con, ctx):
    for sql in ("DELETE FROM codes WHERE recording_id = 4", "DELETE FROM record_macs WHERE "
                "recording_id = 4", "DELETE FROM recordings WHERE id = 4"):
        con.execute(sql)


def _class_names_both(con, ctx):
    """Two class names exchanged in vault_meta and in the model's metadata (consistent)."""
    names = con.execute("SELECT class_names FROM vault_meta").fetchone()[0]
    swapped = [names[1], names[0], *names[2:]]
    con.execute("UPDATE vault_meta SET class_names = ?", [swapped])
    fix_up_model(con, meta_edit=lambda m: m.__setitem__("class_names", swapped))


def _record_and_tau(con, ctx):
    rec = json.loads(con.execute("SELECT integrity FROM vault_meta").fetchone()[0])
    rec["settings"]["tau"] = 0.49
    con.execute("UPDATE vault_meta SET tau = 0.49, integrity = ?", [json.dumps(rec)])


def _sql(*statements: str) -> Edit:
    def edit(con, ctx):
        for s in statements:
            con.execute(s)
    return edit


#: edits that need a recording deleted *with the passphrase* (through ``Vault.delete``) first
DELETE_WITH_KEY_FIRST = {"reinsert-deleted": 3}

#: name -> (edit, what it attacks). Order = the table's order.
EDITS: dict[str, tuple[Edit, str]] = {
    "swap-blob": (_swap_blobs, "(blob, sha256) of recordings 1 and 2 exchanged"),
    "reinsert-deleted": (_reinsert_deleted, "recording 3 deleted (with the key), rows put back "
                                            "from an old copy"),
    "silent-delete": (_silent_delete, "recording 4, its codes and its MAC row removed"),
    "cipher-downgrade": (_sql("UPDATE vault_meta SET cipher = 'rossler'"),
                         "vault_meta.cipher = 'rossler' on a chacha20poly1305 vault"),
    "tau-0.49": (_sql("UPDATE vault_meta SET tau = 0.49"), "vault_meta.tau raised to 0.49"),
    "class-names-meta": (_sql("UPDATE vault_meta SET class_names = list_reverse(class_names)"),
                         "class names reversed in vault_meta only"),
    "class-names-both": (_class_names_both, "two class names exchanged in vault_meta and the "
                                            "model JSON"),
    "vault-id": (_sql("UPDATE vault_meta SET vault_id = '00000000000000000000000000000000'"),
                 "vault_meta.vault_id replaced"),
    "integrity-null": (_sql("UPDATE vault_meta SET integrity = NULL"),
                       "integrity record removed (pretend legacy vault)"),
    "integrity-edited": (_record_and_tau, "tau raised to 0.49 in vault_meta and in the "
                                          "integrity record's copy"),
    "feature-pre_emphasis": (_feature_edit("pre_emphasis", 0.97),
                             "model JSON pre_emphasis 0 -> 0.97 (hashes fixed up)"),
    "feature-fmin": (_feature_edit("fmin", 300.0), "model JSON fmin 0 -> 300 (hashes fixed up)"),
    "feature-top_db": (_feature_edit("top_db", 80.0),
                       "model JSON top_db 30 -> 80 (hashes fixed up)"),
    "tflite-swapped-fixed-up": (_tflite_swapped, "TFLite bytes of another model, hashes fixed up"),
    "tflite-swapped": (_sql("UPDATE model SET tflite = tflite || '\\x00'::BLOB"),
                       "TFLite bytes changed, hashes left"),
    "fingerprint-inverted": (_fingerprint_edit("inverted", False),
                             "fingerprint projection negated, hashes left"),
    "fingerprint-inverted-fixed-up": (_fingerprint_edit("inverted", True),
                                      "fingerprint projection negated, hashes fixed up"),
    "fingerprint-scrambled-fixed-up": (_fingerprint_edit("scrambled", True),
                                       "fingerprint columns permuted, hashes fixed up"),
    "codes-inverted": (_codes_inverted, "every code word of recording 2 inverted"),
    "codes-copied": (_codes_copied, "recording 1's index rows copied onto recording 2"),
    "codes-category": (_sql("UPDATE codes SET category = (category + 1) % "
                            "(SELECT c FROM vault_meta) WHERE recording_id = 2"),
                       "h1 category of recording 2's rows shifted"),
    "codes-row-deleted": (_sql("DELETE FROM codes WHERE recording_id = 2 AND win = 0"),
                          "one index row of recording 2 removed"),
    "codes-slice-key": (_sql("UPDATE codes SET k0 = xor(k0, 1::USMALLINT) "
                             "WHERE recording_id = 2"),
                        "the first 16-bit slice key of recording 2's rows changed (words kept)"),
    "name": (_sql("UPDATE recordings SET name = 'renamed.wav' WHERE id = 2"),
             "recording 2 renamed"),
    "category-label": (_sql("UPDATE recordings SET category = 'other' WHERE id = 2"),
                       "recording 2's category label changed"),
    "n-windows": (_sql("UPDATE recordings SET n_windows = n_windows + 1 WHERE id = 2"),
                  "recording 2's window count changed"),
}
