"""``export-lake``: a vault's index as a Parquet lake that DuckDB, ClickHouse and Spark read.

Why (issue 14): one vault file is right for one machine; an archive of millions of hours must be
searched by an existing distributed engine. Those engines all read Parquet from a folder or an
object store, so the lake is plain files (``DEST`` is a folder or ``s3://bucket/prefix``: the
same layout under the prefix, written through ``store.lake_dest``)::

    DEST/manifest.json                          one per vault: format, model sha, K, C, class
                                                names, tau, cipher, wrapped key, digests
    DEST/model/<sha12>.parquet                  the coding model (as in the vault: public)
    DEST/codes/model=<sha12>/category=<k>/data_0.parquet
                                                the index, one partition per category h1:
                                                recording_id, win, start, w0..w{W-1}
    DEST/recordings/recordings.parquet          the recordings table without blobs
    DEST/objects/<hmac>                         each sealed blob, byte-identical

Choices, each measured or forced (issue 14):

* words are the code's 64-bit words as INT64 (two's complement of its unsigned words; the vault
  stores two in each HUGEINT since format 6, split on export): Spark reads UINT64 as DECIMAL and
  ``^`` then fails; XOR and popcount do not care about the sign (``store.sql_dialects``);
* uncompressed, row groups of ``ROW_GROUP_ROWS``: a search is a scan of whole word columns, so
  decompression would be pure cost, and the category filter prunes whole files (hive
  partitions), not row groups;
* an object's name is HMAC-SHA256(k, SHA-256 of the original) with k derived from the vault's
  master key: listing the bucket does not tell which known files are present, and only the
  passphrase holder can compute the name (no key leaves the user; the manifest holds the same
  passphrase-wrapped key as the vault);
* incremental: a partition is rewritten only when its digest (its recording ids: a recording's
  codes never change under one model) differs; objects already there are kept (their name
  fixes their content), objects and partitions no longer in the vault are deleted; the manifest
  is written last, so a reader sees the previous export or the new one.

A vault whose index is encrypted (``init --encrypt-index``) is refused: the lake holds the index
in the clear, which is exactly what that vault chose not to do.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import speechvault
from speechvault.errors import InvalidInputError, VaultFormatError
from store import private_files as _private
from store.keys import hkdf_sha256
from store.schema import ROW_GROUP_ROWS, code_words_sql

__all__ = ["LAKE_FORMAT", "LAKE_VERSION", "LakeExportReport", "export_lake", "export_lake_file",
           "object_name", "lake_id", "read_manifest", "check_manifest", "signed_words_sql"]

LAKE_FORMAT = "speechvault-lake"
LAKE_VERSION = 1
MANIFEST = "manifest.json"
_OBJECT_LABEL = b"speechvault lake object names v1"
_ID_LABEL = b"speechvault lake vault id v1"
_HEX64 = frozenset("0123456789abcdef")

ENCRYPTED_INDEX_REFUSAL = (
    "export-lake refuses a vault whose index is encrypted (--encrypt-index): the lake stores "
    "the index in the clear for other engines to scan, which that vault chose not to allow")


@dataclass
class LakeExportReport:
    """What one export wrote and removed (a re-export of an unchanged vault writes nothing)."""

    dest: str
    model: str
    recordings: int = 0
    windows: int = 0
    partitions_written: list[int] = field(default_factory=list)
    partitions_removed: list[int] = field(default_factory=list)
    partitions_kept: int = 0
    recordings_written: bool = False
    objects_written: int = 0
    objects_removed: int = 0
    bytes_written: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def object_name(master: bytes, sha256_hex: str) -> str:
    """The lake's name of a sealed blob: HMAC of the original's SHA-256 under a key derived
    from the master key (only a passphrase holder can tell which object is which file)."""
    key = hkdf_sha256(master, info=_OBJECT_LABEL)
    return hmac.new(key, bytes.fromhex(sha256_hex), hashlib.sha256).hexdigest()


def lake_id(master: bytes) -> str:
    """Which vault a lake belongs to: derived from the master key (stable across passphrase
    changes, reveals nothing about it), so an export never overwrites another vault's lake."""
    return hkdf_sha256(master, info=_ID_LABEL, length=16).hex()


def signed_words_sql(K: int) -> str:
    """The lake's ``w0 .. w{ceil(K/64)-1}``: the code's 64-bit words as INT64 with the same
    bits, split from the vault's 128-bit words (format 6, ``store.schema.code_words_sql``)."""
    return ", ".join(code_words_sql(K, signed=True))


def read_manifest(dest) -> dict | None:
    """The lake's manifest, None if ``dest`` (a folder, or a ``LocalDest``/``S3Dest``) has
    none; ``VaultFormatError`` if it is not ours."""
    from store.lake_dest import LocalDest, parse_manifest_text

    d = dest if hasattr(dest, "manifest_text") else LocalDest(dest)
    return check_manifest(parse_manifest_text(d.manifest_text(MANIFEST), d), d)


def check_manifest(m: dict | None, where) -> dict | None:
    """``m`` if it is a manifest of a lake this speechvault reads (None stays None)."""
    if m is None:
        return None
    if not isinstance(m, dict) or m.get("format") != LAKE_FORMAT:
        raise VaultFormatError(f"{where}: not a speechvault lake (manifest format)")
    if not isinstance(m.get("version"), int) or m["version"] > LAKE_VERSION:
        raise VaultFormatError(f"{where}: lake format version {m.get('version')!r} is newer than "
                               f"this speechvault supports ({LAKE_VERSION})")
    return m


def _check_dest(dest, master: bytes) -> dict | None:
    """The previous manifest (None: a new lake); refuse a folder that is something else."""
    dest.check_writable()
    old = read_manifest(dest)
    if old is None and not dest.is_empty():
        raise InvalidInputError(f"{dest}: not empty and not a speechvault lake; choose an empty "
                                "or new folder")
    if old is not None and old.get("vault_id") != lake_id(master):
        raise InvalidInputError(f"{dest}: holds the lake of another vault; choose another folder")
    return old


def _digests(con, sql: str) -> dict[int, tuple[int, str]]:
    return {int(k): (int(n), str(d)) for k, n, d in con.execute(sql).fetchall()}


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _export_codes(con, K: int, sha12: str, dest, old: dict | None,
                  report: LakeExportReport) -> dict:
    """Rewrite the category partitions whose digest changed; drop the ones gone."""
    now = _digests(con, "SELECT category, count(*), md5(list_sort(list(DISTINCT recording_id))"
                        "::VARCHAR) FROM codes GROUP BY category")
    before = {} if old is None or old.get("model_sha256", "")[:12] != sha12 else {
        int(k): (int(v["rows"]), str(v["digest"])) for k, v in old.get("partitions", {}).items()}
    model_dir = f"codes/model={sha12}"
    present = set(dest.dirs(model_dir))
    changed = sorted(k for k, v in now.items()
                     if before.get(k) != v or f"category={k}" not in present)
    if changed:
        with dest.staging() as staging:
            rel = con.sql(
                f"SELECT recording_id, win, category, start, {signed_words_sql(K)} FROM codes "
                f"WHERE list_contains($1::SMALLINT[], category) "
                "ORDER BY category, recording_id, win", params=[changed])
            rel.write_parquet(str(staging / "codes"), compression="uncompressed",
                              row_group_size=ROW_GROUP_ROWS, partition_by=["category"])
            for k in changed:
                part = staging / "codes" / f"category={k}"
                report.bytes_written += _dir_bytes(part)
                dest.put_dir(part, f"{model_dir}/category={k}")
    report.partitions_written = changed
    for name in sorted(present):
        k = name.removeprefix("category=")
        if k.lstrip("-").isdigit() and int(k) not in now:
            dest.remove_dir(f"{model_dir}/{name}")
            report.partitions_removed.append(int(k))
    for name in dest.dirs("codes"):  # codes of a previous model (after reindex)
        if name != f"model={sha12}" and name.startswith("model="):
            dest.remove_dir(f"codes/{name}")
    report.partitions_kept = len(now) - len(changed)
    report.windows = sum(n for n, _ in now.values())
    return {str(k): {"rows": n, "digest": d} for k, (n, d) in sorted(now.items())}


_REC_COLS = "id, name, category, sha256, sample_rate, channels, duration, size, added, n_windows"


def _export_recordings(con, dest, old: dict | None, report: LakeExportReport) -> dict:
    n, digest = con.execute(
        f"SELECT count(*), md5(coalesce(string_agg(concat_ws('|', {_REC_COLS}), chr(10) "
        "ORDER BY id), '')) FROM recordings").fetchall()[0]
    rel_path = "recordings/recordings.parquet"
    report.recordings = int(n)
    prev = (old or {}).get("recordings", {})
    if prev.get("digest") != digest or not dest.has(rel_path):
        with dest.staging() as staging:
            tmp = staging / "recordings.parquet"
            con.sql(f"SELECT {_REC_COLS} FROM recordings ORDER BY id").write_parquet(
                str(tmp), compression="uncompressed")
            report.bytes_written += tmp.stat().st_size
            dest.put_file(tmp, rel_path)
        report.recordings_written = True
    return {"rows": int(n), "digest": str(digest)}


def _export_model(con, vault, dest, sha12: str, report: LakeExportReport) -> str:
    name = f"{sha12}.parquet"
    present = dest.files("model")
    if name not in present:
        with dest.staging() as staging:
            tmp = staging / name
            con.sql("SELECT sha256, meta_json, tflite, fingerprint FROM model "
                    "WHERE sha256 = $1", params=[vault.model_sha256]).write_parquet(str(tmp))
            report.bytes_written += tmp.stat().st_size
            dest.put_file(tmp, f"model/{name}")
    for f in present:  # a previous model's file
        if f != name and f.endswith(".parquet"):
            dest.remove_file(f"model/{f}")
    return f"model/{name}"


def _export_objects(con, vault, master: bytes, dest, report: LakeExportReport) -> int:
    """Copy each sealed blob not yet there; delete the objects of deleted recordings."""
    wanted = {object_name(master, sha): int(rid)
              for rid, sha in con.execute("SELECT id, sha256 FROM recordings").fetchall()}
    present = set(dest.files("objects"))
    missing = {wanted[name]: name for name in set(wanted) - present}
    if missing:  # one statement, read in batches: the blobs of a big vault do not fit in RAM
        cur = con.execute("SELECT id, blob FROM recordings WHERE id IN (SELECT unnest($1::BIGINT[]))",
                          [sorted(missing)])
        while batch := cur.fetchmany(256):
            for rid, blob in batch:
                name = missing[int(rid)]
                if len(blob) == 0:  # a large recording stored in chunks: one sealed object here
                    blob = vault._seal_blob(vault.export(int(rid)), vault.get(int(rid)).sha256,
                                            int(rid), master)
                dest.put_bytes(f"objects/{name}", bytes(blob))
                report.objects_written += 1
                report.bytes_written += len(blob)
    for name in sorted(present - set(wanted)):
        if len(name) == 64 and set(name) <= _HEX64:  # ours; anything else is left alone
            dest.remove_file(f"objects/{name}")
            report.objects_removed += 1
    return len(wanted)


def export_lake(vault, dest) -> LakeExportReport:
    """Export (or bring up to date) the lake of an open, unlocked ``vault`` at ``dest``: a
    local folder or ``s3://bucket/prefix`` (``store.lake_dest``)."""
    from store.lake_dest import dest_for

    if vault.index_encrypted:
        raise InvalidInputError(ENCRYPTED_INDEX_REFUSAL)
    master = vault._require_key("export-lake")
    t0 = time.perf_counter()
    where = dest_for(dest)
    old = _check_dest(where, master)
    sha12 = vault.model_sha256[:12]
    report = LakeExportReport(dest=str(where), model=sha12)
    with _private.private_umask():
        where.prepare()
        with vault._lock:
            con = vault._db().cursor()  # its own cursor: no pending result of the vault's
            try:
                model_path = _export_model(con, vault, where, sha12, report)
                partitions = _export_codes(con, vault.K, sha12, where, old, report)
                recordings = _export_recordings(con, where, old, report)
                n_objects = _export_objects(con, vault, master, where, report)
            finally:
                con.close()
        manifest = _manifest(vault, master, model_path, partitions, recordings, n_objects)
        if _changed(old, manifest):  # an unchanged vault leaves the lake untouched
            where.put_bytes(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n")
                            .encode("utf-8"))
    report.seconds = time.perf_counter() - t0
    return report


def _changed(old: dict | None, new: dict) -> bool:
    """Whether the manifest says something new (its export time aside)."""
    if old is None:
        return True
    strip = lambda m: {k: v for k, v in m.items() if k != "exported"}  # noqa: E731
    return strip(old) != strip(new)


def _manifest(vault, master: bytes, model_path: str, partitions: dict, recordings: dict,
              n_objects: int) -> dict[str, Any]:
    created = vault.created
    return {
        "format": LAKE_FORMAT, "version": LAKE_VERSION, "vault_id": lake_id(master),
        "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "app_version": speechvault.__version__, "vault_format_version": int(vault.format_version),
        "vault_created": created.isoformat() if hasattr(created, "isoformat") else str(created),
        "model_sha256": vault.model_sha256, "model": model_path, "K": int(vault.K),
        "C": int(vault.C), "class_names": list(vault.class_names), "tau": float(vault.tau),
        "cipher": vault.cipher, "key_wrap": vault._key_wrap,
        # the vault's random id and whether its blobs are bound to it and their record ids (the
        # authenticated data of every sealed object, issue 17)
        "blob_vault_id": vault.vault_id, "blobs_bound": bool(vault.bound),
        "words": "int64 (two's complement of the K-bit code's 64-bit words, bit i in word i//64)",
        "codes": f"codes/model={vault.model_sha256[:12]}", "partitions": partitions,
        "recordings": recordings, "objects": n_objects, "row_group_rows": ROW_GROUP_ROWS,
        "object_names": "hex HMAC-SHA256(HKDF(master key, 'speechvault lake object names v1'), "
                        "SHA-256 of the original)",
    }


def export_lake_file(path, dest, get_passphrase) -> LakeExportReport:
    """``export-lake``: open the vault file at ``path``, unlock it with ``get_passphrase()``
    (asked only once the vault is known to be exportable), export to ``dest``."""
    from store.vault import Vault

    from store.lake_dest import dest_for

    if Vault.index_is_encrypted(path):
        raise InvalidInputError(ENCRYPTED_INDEX_REFUSAL)
    where = dest_for(dest)  # a missing [lake] extra is said before the passphrase is asked
    with Vault.open(path, read_only=True) as v:
        v.unlock(get_passphrase())
        return export_lake(v, where)
