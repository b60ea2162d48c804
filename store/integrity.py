"""Integrity of everything in the vault besides the blobs (issue 17, items 1 and 2).

Why: a blob's tag used to cover only the SHA-256 in its own row, so a (blob, sha256) pair
swapped between two rows decrypted as the other recording and verified; and the index, the
model and the settings were not authenticated at all (an inverted code, a changed feature
setting in the stored model JSON, tau raised, the cipher downgraded to rossler: every command
exited 0). This module holds the three answers, all under keys derived from the master key:

* **bound blobs**: the associated data of every sealed blob (both ciphers, ``store.envelope``)
  is ``blob_ad`` = label, the vault's random id (``vault_meta.vault_id``), the record id and the
  SHA-256 of the original. A blob moved to another row or another vault fails its tag. A vault
  made before format 4 keeps its old ("legacy") blobs, sealed with the SHA-256 alone, until a
  command with the passphrase binds them (``bind``: every blob re-sealed in one transaction by
  ``store.rekey.reseal_all``); ``vault_meta.integrity`` is NULL exactly while that is pending.
* **the integrity record** (``vault_meta.integrity``, JSON): the security-relevant settings
  (format, vault id, cipher, tau, K, C, class names, model id), SHA-256 digests of each part of
  the model row (TFLite bytes, metadata JSON with the feature settings, fingerprint, id) and a
  digest of the ``record_macs`` table, with an HMAC over all of it. Because the record keeps the
  authenticated *values*, ``verify`` names the field that changed, not just "mismatch".
* **per-recording MACs** (``record_macs``): one HMAC over a recording's listing (name, category,
  sha256, rate, channels, duration, size, window count) and one over its index rows (window,
  category, start, code words, in window order), both bound to the vault id and record id. Per
  recording rather than one over the whole index: an ingest then costs one HMAC over the rows it
  adds (not a pass over the whole index), and ``verify`` names the recording whose codes changed.

A keyless reader (search, list, info) cannot check any MAC. It checks what needs no key
(``keyless_check``: the stored model's bytes against the hashes in its metadata and the vault's
model id -- done by ``hashing.encoder.Encoder`` -- and K, C, class names against the model's
metadata, tau within (0, 0.5)). See the README's security section.

Deletion stays keyless (the TUI and ``delete`` may run without the passphrase): a recording
deleted without the key keeps its ``record_macs`` row, which ``verify`` reports as "deleted since
the last keyed write" (a note), and the next keyed write prunes it and re-authenticates the set.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from speechvault.errors import IntegrityError, VaultFormatError
from store import schema as _schema
from store.keys import hkdf_sha256

__all__ = [
    "RECORD_VERSION",
    "blob_ad",
    "legacy_ad",
    "integrity_key",
    "load_state",
    "authenticate_all",
    "add_records",
    "after_delete",
    "check_for_write",
    "verify_integrity",
    "keyless_check",
    "IntegrityFindings",
]

RECORD_VERSION = 1
_KEY_INFO = b"speechvault/integrity/v1 mac key"
_AD_LABEL = b"speechvault/record/v2"
_SETTINGS_LABEL = b"speechvault/integrity/v1 settings"
_LISTING_LABEL = b"speechvault/integrity/v1 listing"
_CODES_LABEL = b"speechvault/integrity/v1 codes"
_SET_LABEL = b"speechvault/integrity/v1 record set"
_VAULT_ID_HEX = 32
_SETTINGS_COLS = "format_version, vault_id, cipher, tau, k, c, class_names, model_sha256"
_LISTING_COLS = "id, name, category, sha256, sample_rate, channels, duration, size, n_windows"


# ----------------------------------------------------------------------------- keys and AD
def integrity_key(master: bytes) -> bytes:
    """The MAC key of this module: HKDF of the master key under its own label (never a blob key)."""
    return hkdf_sha256(master, info=_KEY_INFO)


def _vault_id_bytes(vault_id: str) -> bytes:
    if not isinstance(vault_id, str) or len(vault_id) != _VAULT_ID_HEX:
        raise IntegrityError("the vault id is malformed")
    try:
        return bytes.fromhex(vault_id)
    except ValueError:
        raise IntegrityError("the vault id is malformed") from None


def blob_ad(vault_id: str, record_id: int, sha256_hex: str) -> bytes:
    """Associated data of a bound blob: label || vault id (16 B) || record id (i64) || SHA-256."""
    return (_AD_LABEL + _vault_id_bytes(vault_id) + struct.pack(">q", int(record_id))
            + bytes.fromhex(sha256_hex))


def legacy_ad(sha256_hex: str) -> bytes:
    """Associated data of a blob sealed before format 4: the SHA-256 of the original alone."""
    return bytes.fromhex(sha256_hex)


def _mac(key: bytes, label: bytes, *parts: bytes) -> bytes:
    m = hmac.new(key, label, hashlib.sha256)
    for p in parts:
        m.update(struct.pack(">Q", len(p)))
        m.update(p)
    return m.digest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


# ----------------------------------------------------------------------------- state
def load_state(con: duckdb.DuckDBPyConnection, where: str) -> tuple[str, bool]:
    """(vault id, bound) of an open vault; ``VaultFormatError`` for a malformed vault id.
    ``bound``: the integrity record exists, so every blob must open with ``blob_ad``."""
    vault_id, record = con.execute("SELECT vault_id, integrity FROM vault_meta").fetchone()
    if not isinstance(vault_id, str) or len(vault_id) != _VAULT_ID_HEX \
            or any(c not in "0123456789abcdef" for c in vault_id):
        raise VaultFormatError(f"{where}: damaged vault metadata (vault_id is not 32 hex digits)")
    return vault_id, record is not None


def _settings(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    row = con.execute(f"SELECT {_SETTINGS_COLS} FROM vault_meta").fetchone()
    keys = [c.strip() for c in _SETTINGS_COLS.split(",")]
    d = dict(zip(keys, row))
    d["class_names"] = [str(c) for c in (d["class_names"] or [])]
    d["tau"] = float(d["tau"]) if isinstance(d["tau"], (int, float)) and math.isfinite(d["tau"]) \
        else str(d["tau"])
    return d


def _model_digests(con: duckdb.DuckDBPyConnection, sha: str) -> dict[str, Any]:
    """SHA-256 of each part of the model row named by ``sha`` (None: no such row)."""
    row = con.execute("SELECT sha256, meta_json, tflite, fingerprint FROM model WHERE sha256 = ?",
                      [sha]).fetchone()
    if row is None:
        return {"row": None}
    h = lambda b: None if b is None else hashlib.sha256(bytes(b)).hexdigest()  # noqa: E731
    return {"row": str(row[0]), "meta_json": h(str(row[1]).encode("utf-8", "surrogatepass")),
            "tflite": h(row[2]), "fingerprint": h(row[3])}


def _set_digest(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """A digest of every ``record_macs`` row, in id order (the set of authenticated recordings)."""
    rows = con.execute("SELECT recording_id, listing_mac, codes_mac FROM record_macs "
                       "ORDER BY recording_id").fetchall()
    h = hashlib.sha256(_SET_LABEL)
    for rid, a, b in rows:
        h.update(struct.pack(">q", int(rid)) + bytes(a) + bytes(b))
    return {"n": len(rows), "digest": h.hexdigest()}


def _sign(ikey: bytes, body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "mac": _mac(ikey, _SETTINGS_LABEL, _canonical(body)).hex()}


def _write_record(con: duckdb.DuckDBPyConnection, ikey: bytes, *,
                  model: dict[str, Any] | None = None) -> None:
    """Store a freshly signed record of the current settings, model and record set. ``model``:
    digests already computed (ingest reuses the checked ones instead of hashing the model again)."""
    settings = _settings(con)
    body = {"v": RECORD_VERSION, "settings": settings,
            "model": model if model is not None else _model_digests(con, settings["model_sha256"]),
            "recordings": _set_digest(con)}
    con.execute("UPDATE vault_meta SET integrity = ?", [json.dumps(_sign(ikey, body))])


def _read_record(con: duckdb.DuckDBPyConnection, ikey: bytes) -> tuple[dict | None, str | None]:
    """(record, None) if the stored record is authentic, else (None, why)."""
    raw = con.execute("SELECT integrity FROM vault_meta").fetchone()[0]
    if raw is None:
        return None, "no integrity record"
    try:
        rec = json.loads(raw)
        body = {k: v for k, v in rec.items() if k != "mac"}
        tag = bytes.fromhex(rec["mac"])
        good = hmac.compare_digest(_mac(ikey, _SETTINGS_LABEL, _canonical(body)), tag)
    except (ValueError, TypeError, KeyError, AttributeError):
        return None, "the integrity record is malformed"
    if not good or body.get("v") != RECORD_VERSION:
        return None, "the integrity record was altered (its MAC does not match)"
    return body, None


# ----------------------------------------------------------------------------- per recording
def _listing_bytes(vault_id: str, row: tuple) -> bytes:
    rid, name, category, sha, rate, channels, duration, size, n_windows = row
    enc = lambda s: str(s).encode("utf-8", "surrogatepass")  # noqa: E731
    return b"".join([
        _vault_id_bytes(vault_id), struct.pack(">q", int(rid)),
        struct.pack(">Q", len(enc(name))), enc(name),
        struct.pack(">Q", len(enc(category))), enc(category), enc(sha),
        struct.pack(">qqdqq", int(rate), int(channels), float(duration), int(size),
                    int(n_windows))])


def _codes_bytes(vault_id: str, rid: int, win, cat, start, start_null, words) -> bytes:
    n = int(np.asarray(win).shape[0])
    return b"".join([
        _vault_id_bytes(vault_id), struct.pack(">qQ", int(rid), n),
        np.asarray(win).astype(">i8").tobytes(), np.asarray(cat).astype(">i8").tobytes(),
        np.asarray(start_null).astype(np.uint8).tobytes(),
        np.where(np.asarray(start_null, bool), 0, np.asarray(start)).astype(">i8").tobytes(),
        np.ascontiguousarray(np.asarray(words).astype(">u8")).tobytes()])


def _insert_macs(con: duckdb.DuckDBPyConnection, rows: list[tuple[int, bytes, bytes]]) -> None:
    """One statement (``executemany`` costs milliseconds per row in DuckDB)."""
    if rows:
        values = ", ".join(["(?, ?, ?)"] * len(rows))
        con.execute("INSERT INTO record_macs (recording_id, listing_mac, codes_mac) "
                    f"VALUES {values}", [x for r in rows for x in r])


def _stored_codes(con: duckdb.DuckDBPyConnection, K: int) -> dict[int, tuple]:
    """Every index row grouped by recording, in window order: rid -> (win, cat, start, null, words)."""
    res = con.execute(
        f"SELECT recording_id, win, category, coalesce(start, 0) AS s, start IS NULL AS sn, "
        f"{', '.join(_schema.code_words_sql(K))} FROM codes ORDER BY recording_id, win"
    ).fetchnumpy()
    rid = np.asarray(res["recording_id"], np.int64)
    # the code's unsigned 64-bit words, however the format stores them: the MACs are over them
    words = _schema.code_words_array(res, K)
    ids, first = np.unique(rid, return_index=True)
    bounds = list(first) + [len(rid)]
    out = {}
    for i, r in enumerate(ids):
        a, b = bounds[i], bounds[i + 1]
        out[int(r)] = (res["win"][a:b], res["category"][a:b], res["s"][a:b], res["sn"][a:b],
                       words[a:b])
    return out


def _record_macs(ikey: bytes, vault_id: str, listing: tuple, codes: tuple | None) -> tuple[bytes, bytes]:
    rid = int(listing[0])
    if codes is None:
        codes = (np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, bool), np.zeros((0, 1)))
    return (_mac(ikey, _LISTING_LABEL, _listing_bytes(vault_id, listing)),
            _mac(ikey, _CODES_LABEL, _codes_bytes(vault_id, rid, *codes)))


def authenticate_all(con: duckdb.DuckDBPyConnection, master: bytes) -> int:
    """Inside the caller's transaction: recompute every recording's MACs from what is stored and
    sign a new integrity record (after a bind, a rekey, a reindex, or at init). Returns the count."""
    ikey = integrity_key(master)
    vault_id = con.execute("SELECT vault_id FROM vault_meta").fetchone()[0]
    K = int(con.execute("SELECT k FROM vault_meta").fetchone()[0])
    codes = _stored_codes(con, K)
    listings = con.execute(f"SELECT {_LISTING_COLS} FROM recordings ORDER BY id").fetchall()
    con.execute("DELETE FROM record_macs")
    _insert_macs(con, [(int(r[0]), *_record_macs(ikey, vault_id, r, codes.get(int(r[0]))))
                       for r in listings])
    _write_record(con, ikey)
    return len(listings)


def add_records(con: duckdb.DuckDBPyConnection, vault: Any, items: list[dict], rows: list) -> None:
    """Inside an ingest transaction: the MACs of the recordings just inserted (from the arrays
    ingest wrote, no read-back) and the refreshed record set. Needs the vault unlocked."""
    ikey = integrity_key(vault._require_key("ingest"))
    macs = []
    for it, r in zip(items, rows):
        n = int(it["words"].shape[0])
        frames = it.get("frames")
        framed = all(x.get("frames") is not None for x in items)  # as store.schema.insert_codes
        start = np.asarray(frames) if framed else np.zeros(n, np.int64)
        listing = (r.id, it["name"], it["category"], it["sha256"], it["sample_rate"],
                   it["channels"], it["duration"], it["size"], n)
        codes = (np.arange(n), np.asarray(it["cats"]).astype(np.int16), start,
                 np.full(n, not framed), it["words"])
        macs.append((int(r.id), *_record_macs(ikey, vault.vault_id, listing, codes)))
    _insert_macs(con, macs)
    _refresh_set(con, ikey)


def _refresh_set(con: duckdb.DuckDBPyConnection, ikey: bytes) -> None:
    """Re-sign the record with the current record set, keeping its (already checked) model part."""
    rec, why = _read_record(con, ikey)
    if rec is None:
        raise IntegrityError(f"the vault's settings fail their integrity check ({why})")
    # recordings deleted without the key leave their MAC rows until now
    con.execute("DELETE FROM record_macs WHERE recording_id NOT IN (SELECT id FROM recordings)")
    _write_record(con, ikey, model=rec["model"])


def after_delete(con: duckdb.DuckDBPyConnection, vault: Any, rid: int) -> None:
    """Inside the delete transaction: with the key, forget the recording's MACs and re-sign the
    set; without it, keep its row (``verify`` reports it as deleted without the passphrase)."""
    if vault._master is None or not vault.bound:
        return
    con.execute("DELETE FROM record_macs WHERE recording_id = ?", [int(rid)])
    _refresh_set(con, integrity_key(vault._master))


# ----------------------------------------------------------------------------- checks
@dataclass
class IntegrityFindings:
    """What ``verify_integrity`` found: ``problems`` (id, what, message) fail verify; ``notes``
    do not (legacy blobs, recordings deleted without the passphrase)."""

    problems: list[tuple[int, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _upgraded(con: duckdb.DuckDBPyConnection, old: Any, new: Any) -> bool:
    """Whether the live ``format_version`` is the authenticated one upgraded by
    ``store.schema.upgrade``, which runs at open without the key (formats 5 and 6 change how the
    code words are stored, 5 adds the empty ``blob_chunks`` table; the index MACs are over the
    code's 64-bit words, read back the same, so they still verify):
    forward only, up to this code's version, every step recorded in ``schema_migrations``. The
    next keyed write signs the new version."""
    if not (isinstance(old, int) and isinstance(new, int)
            and old < new <= _schema.FORMAT_VERSION):
        return False
    done = {int(r[0]) for r in con.execute(
        "SELECT version FROM schema_migrations WHERE version > ? AND version <= ?",
        [old, new]).fetchall()}
    return done == set(range(old + 1, new + 1))


def _settings_problems(con: duckdb.DuckDBPyConnection, rec: dict) -> list[str]:
    """Each setting or model part that differs from its authenticated value, named."""
    out = []
    live = _settings(con)
    for key, good in sorted(rec.get("settings", {}).items()):
        if live.get(key) != good and not (key == "format_version"
                                          and _upgraded(con, good, live.get(key))):
            out.append(f"setting {key} changed: {live.get(key)!r} now, {good!r} authenticated")
    model = _model_digests(con, str(live.get("model_sha256")))  # the model search would use
    names = {"row": "the model row (id)", "tflite": "the model's TFLite bytes",
             "meta_json": "the model's metadata JSON (feature settings)",
             "fingerprint": "the model's fingerprint"}
    good_model = rec.get("model", {})
    if model.get("row") is None:
        out.append("the vault's model row is missing")
    else:
        out += [f"{names[k]} changed" for k in names if model.get(k) != good_model.get(k)]
    return out


def check_for_write(vault: Any, master: bytes) -> dict[str, Any]:
    """Refuse to write into a bound vault whose settings, model or record set no longer verify
    (one line; a write would re-sign them and hide the change); returns the checked model
    digests. A legacy vault is bound first by the caller."""
    con = vault._db()
    rec, why = _read_record(con, integrity_key(master))
    problems = [why] if rec is None else _settings_problems(con, rec)
    if rec is not None and _set_digest(con) != rec.get("recordings"):
        problems.append("the table of recording MACs was edited")
    if problems:
        raise IntegrityError(f"the vault's settings fail their integrity check ({problems[0]}"
                             f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); "
                             "nothing was written -- run `speechvault verify`")
    return rec["model"]


def verify_integrity(con: duckdb.DuckDBPyConnection, master: bytes, vault_id: str, K: int,
                     bound: bool) -> IntegrityFindings:
    """Check the integrity record, the model, the record set and every recording's MACs."""
    f = IntegrityFindings()
    n = int(con.execute("SELECT count(*) FROM recordings").fetchone()[0])
    if not bound:
        f.notes.append(f"{n} recording(s) unbound (legacy): blobs sealed before format 4 are not "
                       "bound to their record, and the settings, model and index are not "
                       "authenticated; `speechvault upgrade` (or any ingest) binds them")
        return f
    ikey = integrity_key(master)
    rec, why = _read_record(con, ikey)
    if rec is None:
        f.problems.append((-1, "settings", why))
        return f
    f.problems += [(-1, "settings", m) for m in _settings_problems(con, rec)]
    if _set_digest(con) != rec.get("recordings"):
        f.problems.append((-1, "index", "the table of recording MACs (record_macs) was edited: "
                                        "recordings were removed, re-inserted or replaced"))
    _check_recordings(con, ikey, vault_id, K, f)
    return f


def _stray_slice_keys(con: duckdb.DuckDBPyConnection, K: int) -> set[int]:
    """Recordings with an index row whose slice keys (format 7's ``k`` columns) differ from its
    words. The keys are derived, so the codes MAC does not cover them: an edited key cannot
    make a false match (every candidate is verified on the words) but can hide a recording
    from excerpt search."""
    keys = _schema.stored_slice_keys_sql(K)
    if not keys:
        return set()
    differ = " OR ".join(f"{c} <> {expr}" for c, expr in keys.items())
    return {int(r[0]) for r in con.execute(
        f"SELECT DISTINCT recording_id FROM codes WHERE {differ}").fetchall()}


def _check_recordings(con, ikey: bytes, vault_id: str, K: int, f: IntegrityFindings) -> None:
    macs = {int(r[0]): (bytes(r[1]), bytes(r[2])) for r in con.execute(
        "SELECT recording_id, listing_mac, codes_mac FROM record_macs").fetchall()}
    codes = _stored_codes(con, K)
    stray_keys = _stray_slice_keys(con, K)
    listings = con.execute(f"SELECT {_LISTING_COLS} FROM recordings ORDER BY id").fetchall()
    for row in listings:
        rid, name = int(row[0]), str(row[1])
        if rid not in macs:
            f.problems.append((rid, name, f"recording {rid}: no integrity MAC (added or "
                               "re-inserted without the passphrase)"))
            continue
        try:
            listing_mac, codes_mac = _record_macs(ikey, vault_id, row, codes.get(rid))
        except (ValueError, TypeError, IntegrityError) as exc:
            f.problems.append((rid, name, f"recording {rid}: unreadable listing ({exc})"))
            continue
        if not hmac.compare_digest(listing_mac, macs[rid][0]):
            f.problems.append((rid, name, f"recording {rid}: its listing (name, category, "
                               "sha256, sizes or window count) changed"))
        if not hmac.compare_digest(codes_mac, macs[rid][1]):
            f.problems.append((rid, name, f"recording {rid}: its index rows (codes) changed"))
        elif rid in stray_keys:
            f.problems.append((rid, name, f"recording {rid}: its index rows' slice keys no "
                               "longer match their codes (excerpt search could miss it; "
                               "`speechvault reindex` rebuilds them)"))
    gone = sorted(set(macs) - {int(r[0]) for r in listings})
    if gone:
        f.notes.append(f"{len(gone)} recording(s) deleted without the passphrase since the last "
                       f"keyed write: {', '.join(map(str, gone[:10]))}{' ...' if len(gone) > 10 else ''}")


def keyless_check(where: str, vault_meta: dict[str, Any], encoder: Any) -> None:
    """What a reader without the key can still check before searching: the settings against the
    stored model's own metadata (the model's bytes against its hashes are checked by the
    encoder itself) and tau within its documented range. ``VaultFormatError`` names the field."""
    meta = getattr(encoder, "meta", None)
    checks = [("k", int(getattr(encoder, "K", vault_meta["K"])), vault_meta["K"])]
    if meta is not None:
        checks += [("c", int(meta.C), vault_meta["C"]),
                   ("class_names", [str(c) for c in meta.class_names], vault_meta["class_names"])]
    for name, model_value, stored in checks:
        if model_value != stored:
            raise VaultFormatError(f"{where}: vault setting {name} does not match the stored "
                                   f"model ({stored!r} vs {model_value!r}); run `speechvault verify`")
    if not 0.0 < vault_meta["tau"] < 0.5:
        raise VaultFormatError(f"{where}: vault setting tau = {vault_meta['tau']} is outside "
                               "(0, 0.5)")

