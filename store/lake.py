"""Open a Parquet lake (``store.lake_export``) like a vault: ``lake:``, ``clickhouse:``, ``spark:``.

Why: the search logic (modes, tau, exact top-N, excerpt evidence) lives once, in ``Vault`` and
the statement builders. A ``LakeVault`` *is* a read-only ``Vault`` whose tables are the lake's
files, so ``search`` -- and the CLI's ``search``, ``--json`` and ``--decrypt-to`` -- run the same
code and return the same hits as on the vault file (a conformance test compares them).

How a lake is seen (an in-memory DuckDB connection, always -- DuckDB is a core dependency):

* ``vault_meta``: one row from ``manifest.json`` (model sha, K, C, class names, tau, cipher,
  wrapped key), so the vault's own checks and ``unlock`` apply unchanged;
* ``model``, ``recordings``: views over their Parquet files;
* ``codes``: a view over ``codes/model=<sha12>/category=*/*.parquet`` with hive partitioning, so
  ``WHERE c.category IN (...)`` reads only the probed categories' files.

URIs (``open_uri``):

* a path: the vault file (not handled here);
* ``lake:DEST``: DuckDB scans the Parquet (dialect ``DUCKDB_LAKE``: INT64 words); DEST may be
  ``s3://bucket/prefix`` (httpfs, endpoint and credentials from the AWS environment variables,
  ``store.lake_s3``): the same views over ``s3://`` URLs;
* ``clickhouse:DEST`` (or ``chdb:DEST``): ClickHouse in-process (pip ``chdb``, extra
  ``[clickhouse]``) scans the same files with the ClickHouse spelling of the same statements;
* ``spark:DEST`` (local mode, ``local[2]``) or ``spark://HOST:PORT/DEST`` (a standalone
  master; DEST must be readable at that path by every worker): Spark SQL, for batch work.

With an engine, the statements the dialect writes (``NamedParams``: the scans of ``codes``, the
labels of the hits) run on the engine; the vault's small bookkeeping statements (meta, model,
row counts from the Parquet footers) stay on the DuckDB view of the same files.

``export`` (and so ``--decrypt-to``) reads the sealed object named by the HMAC of the
recording's SHA-256 and opens it with the master key, checking tag and SHA-256 as a vault does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from speechvault.errors import LakeError, NotFoundError, SpeechVaultError, VaultFormatError
from store import sql_dialects as _dialects
from store.lake_dest import parse_manifest_text
from store.lake_export import MANIFEST, check_manifest, object_name, read_manifest
from store.lake_s3 import S3Location, duckdb_s3_connection, is_s3, parse_s3
from store.lake_uri import DEFAULT_SPARK_MASTER, ENGINES, is_lake_uri, parse_uri
from store.schema import code_word_columns
from store.vault import Vault

__all__ = ["LakeVault", "is_lake_uri", "parse_uri", "open_uri", "ENGINES"]

def _sql_str(text: str) -> str:
    """A SQL string literal (DuckDB reads file paths from literals, not parameters)."""
    return "'" + str(text).replace("'", "''") + "'"


def _at(root, rel: str) -> str:
    """The name DuckDB reads the lake file ``rel`` by: a local path or ``s3://bucket/key``."""
    return root.url(rel) if isinstance(root, S3Location) else str(Path(root) / rel)


def _duckdb_view(root, m: dict, con: duckdb.DuckDBPyConnection | None = None
                 ) -> duckdb.DuckDBPyConnection:
    """The in-memory DuckDB connection that sees the lake at ``root`` (a folder or an
    ``S3Location``; then ``con`` reads ``s3://``) as a vault's tables."""
    con = con if con is not None else duckdb.connect(":memory:")
    con.execute(
        "CREATE TABLE vault_meta AS SELECT $1::INTEGER AS format_version, "
        "$2::TIMESTAMPTZ AS created, $3::VARCHAR AS app_version, $4::VARCHAR AS cipher, "
        "$5::VARCHAR AS key_wrap, $6::VARCHAR AS model_sha256, $7::INTEGER AS k, "
        "$8::INTEGER AS c, $9::VARCHAR[] AS class_names, $10::DOUBLE AS tau, "
        "0::BIGINT AS codes_unclustered, $11::VARCHAR AS vault_id, $12::BLOB AS integrity",
        [m["vault_format_version"], m["vault_created"], m["app_version"], m["cipher"],
         json.dumps(m["key_wrap"]), m["model_sha256"], m["K"], m["C"], m["class_names"],
         m["tau"], m["blob_vault_id"],
         # sealed objects open with the binding they were sealed under (store.integrity)
         b"bound in the vault" if m["blobs_bound"] else None])
    con.execute(f"CREATE VIEW model AS SELECT * FROM read_parquet({_sql_str(_at(root, m['model']))})")
    con.execute("CREATE VIEW recordings AS SELECT * FROM "
                f"read_parquet({_sql_str(_at(root, 'recordings/recordings.parquet'))})")
    words = ", ".join(code_word_columns(m["K"]))
    if m["partitions"]:
        glob = _at(root, f"{m['codes']}/*/*.parquet")
        con.execute(
            f"CREATE VIEW codes AS SELECT recording_id, win, category, start, {words} FROM "
            f"read_parquet({_sql_str(glob)}, hive_partitioning = true, "
            "hive_types = {'category': SMALLINT})")
    else:  # an empty vault: no partition files to read
        cols = ", ".join(f"{c} BIGINT" for c in code_word_columns(m["K"]))
        con.execute("CREATE TABLE codes (recording_id BIGINT, win INTEGER, category SMALLINT, "
                    f"start INTEGER, {cols})")
    return con


def _open_s3(loc: S3Location, engine: str) -> tuple[duckdb.DuckDBPyConnection, dict]:
    """The DuckDB view of the lake at ``loc`` and its manifest (read over the S3 API)."""
    if engine != "duckdb":
        raise LakeError(f"{loc}: only lake:s3://... (DuckDB) reads a lake in object storage "
                        "here; point ClickHouse or Spark at a copy they can read (docs/scale.md)")
    con = duckdb_s3_connection()
    try:
        try:
            (text,) = con.execute(
                f"SELECT content FROM read_text({_sql_str(loc.url(MANIFEST))})").fetchone()
        except duckdb.Error as exc:
            msg = str(exc).splitlines()[0]
            if "No files found" in msg or "404" in msg or "does not exist" in msg:
                raise NotFoundError(f"{loc}: no such lake (no {MANIFEST})") from None
            raise LakeError(f"{loc}: {msg}") from None
        m = check_manifest(parse_manifest_text(text, loc), loc)
        return _duckdb_view(loc, m, con), m
    except BaseException:
        con.close()
        raise


def _open_folder(dest: Path) -> tuple[duckdb.DuckDBPyConnection, dict]:
    """The DuckDB view of the lake in folder ``dest`` and its manifest."""
    if not dest.is_dir():
        raise NotFoundError(f"{dest}: no such lake")
    m = read_manifest(dest)
    if m is None:
        raise VaultFormatError(f"{dest}: not a speechvault lake (no {MANIFEST})")
    return _duckdb_view(dest, m), m


class _Rows:
    """The rows of an engine's statement, as ``fetchall``/``fetchone`` expect."""

    def __init__(self, rows: list[tuple]) -> None:
        self._rows = rows

    def fetchall(self) -> list[tuple]:
        return list(self._rows)

    def fetchone(self) -> tuple | None:
        return self._rows[0] if self._rows else None


class _EngineConnection:
    """A ``Vault`` connection whose dialect statements (bound by name) run on an engine and
    whose other statements run on the DuckDB view of the same lake."""

    def __init__(self, duck: duckdb.DuckDBPyConnection, engine: Any) -> None:
        self.duck = duck
        self.engine = engine

    def execute(self, sql: str, params: Any = None):
        if isinstance(params, _dialects.NamedParams):
            return _Rows(self.engine.rows(sql, dict(params)))
        return self.duck.execute(sql, params if params is not None else [])

    def close(self) -> None:
        try:
            self.engine.close()
        finally:
            self.duck.close()


class LakeVault(Vault):
    """A lake opened read-only as a vault (search, list, info, get, codes_of, export)."""

    def __init__(self, dest, con: Any, manifest: dict, engine: str,
                 dialect: _dialects.Dialect) -> None:
        #: where the lake is: a folder (``Path``) or ``S3Location``
        self.location = dest
        self.manifest = manifest
        self.engine = engine
        self._dialect = dialect
        super().__init__(Path(str(dest)), con, read_only=True, encoder=None)

    @classmethod
    def open_lake(cls, dest, *, engine: str = "duckdb", spark_master: str | None = None,
                  passphrase: str | None = None) -> "LakeVault":
        """Open the lake at folder ``dest`` with ``engine`` (duckdb, clickhouse or spark);
        ``passphrase`` also unlocks it (for ``export``)."""
        dest = parse_s3(dest) if is_s3(dest) else Path(dest).absolute()
        try:
            if isinstance(dest, S3Location):
                duck, m = _open_s3(dest, engine)
            else:
                duck, m = _open_folder(dest)
        except (KeyError, TypeError) as exc:
            raise VaultFormatError(f"{dest}: damaged lake manifest ({exc})") from None
        except duckdb.Error as exc:
            raise LakeError(f"{dest}: unreadable lake ({str(exc).splitlines()[0]})") from None
        con: Any = duck
        dialect = _dialects.DUCKDB_LAKE
        try:
            if engine == "clickhouse":
                from store.lake_engines import ClickHouseLake

                con, dialect = _EngineConnection(duck, ClickHouseLake(dest, m)), _dialects.CLICKHOUSE
            elif engine == "spark":
                from store.lake_engines import SparkLake

                con = _EngineConnection(duck, SparkLake(dest, m, spark_master or DEFAULT_SPARK_MASTER))
                dialect = _dialects.SPARK
            elif engine != "duckdb":
                raise LakeError(f"unknown lake engine {engine!r}; choose one of {', '.join(ENGINES)}")
            v = cls(dest, con, m, engine, dialect)
        except BaseException:
            con.close()
            raise
        return v.unlocked_or_closed(passphrase)

    #: engines whose batch search answers every excerpt search in one statement
    #: (``store.excerpt_batch``): all three. Measured (tools/bench_lake_excerpt.py, 10 excerpts
    #: of 5 s, 1M windows): DuckDB 104 ms per query against 337 ms one statement at a time,
    #: chDB 251 against 483 ms; Spark one job instead of one per search (docs/scale.md)
    EXCERPT_BATCH_ENGINES = ("duckdb", "clickhouse", "spark")

    def prepare_batch(self, queries: list[str], *, mode: str, probe: int,
                      top: int) -> dict[str, Any]:
        """Code the query files and answer every search they will make in ONE statement per
        kind: per-window searches on Spark (``store.lake_batch``; DuckDB and chDB are fast at
        one statement per search), excerpt searches on the engines of
        ``EXCERPT_BATCH_ENGINES`` (``store.excerpt_batch``). Returns {query: its code} for
        ``search`` to take instead of the file. A query that cannot be coded is left out (its
        own search then says why)."""
        from store import excerpt_batch, lake_batch
        from store.vault import MODES

        batch_excerpts = self.engine in self.EXCERPT_BATCH_ENGINES
        if mode not in MODES or not (self.engine == "spark" or batch_excerpts):
            return {}
        coded: dict[str, Any] = {}
        windows, excerpts = [], []
        for q in queries:
            try:
                code = self._as_query(Path(q))
            except (SpeechVaultError, OSError):
                continue
            coded[q] = code
            if excerpt_batch.is_excerpt(self, code):
                excerpts += excerpt_batch.requests_for(self, code, mode, probe)
            else:
                windows += lake_batch.requests_for(self, code, mode, probe, top)
        with self._lock:
            if windows and self.engine == "spark":
                answers, seconds = lake_batch.run_batch(self._db().engine, self.K, windows)
                share = seconds / max(1, len(answers))
                self._batch_answers = {r: (found, [share]) for r, found in answers.items()}
            if excerpts and batch_excerpts:
                rows, seconds = excerpt_batch.run_batch(
                    self._batch_runner(), self.K, self._excerpt_rule(), self._dialect, excerpts)
                share = seconds / max(1, len(rows))
                self._batch_excerpts = {r: (found, share) for r, found in rows.items()}
                self._batch_labels = self._view_labels(
                    {row[0] for found in rows.values() for row in found})
        return coded

    def _view_labels(self, ids: set[int]) -> dict[int, tuple]:
        """{id: (name, category)} of ``ids`` read by the DuckDB view of the lake's recordings
        file (the engines read the same file): on Spark, no job per search for its labels."""
        con = self._db()
        duck = con.duck if isinstance(con, _EngineConnection) else con
        rows = duck.execute("SELECT id, name, category FROM recordings "
                            "WHERE id IN (SELECT unnest(?::BIGINT[]))", [sorted(ids)]).fetchall()
        return {int(r[0]): (r[1], r[2]) for r in rows}

    def _hit_labels(self, con, ids: list[int]) -> dict[int, tuple]:
        known = getattr(self, "_batch_labels", {})
        if all(int(i) in known for i in ids):
            return {int(i): known[int(i)] for i in ids}
        return super()._hit_labels(con, ids)

    def _batch_runner(self):
        """What runs a statement beside a batch's table: the engine, or DuckDB's view."""
        from store.lake_engines import DuckDBTables

        con = self._db()
        return con.engine if isinstance(con, _EngineConnection) else DuckDBTables(con)

    def _nearest_on_engine(self, con, words, probes, top: int):
        from store.lake_batch import request_key

        answer = getattr(self, "_batch_answers", {}).pop(request_key(words, probes, top), None)
        if answer is not None:
            return answer
        return super()._nearest_on_engine(con, words, probes, top)

    def _excerpt_rows(self, con, q, cats, keyed: bool, bands: int, rule):
        from store.excerpt_batch import request_key

        answer = getattr(self, "_batch_excerpts", {}).pop(request_key(q, cats, keyed, bands),
                                                          None)
        if answer is not None:
            return answer
        return super()._excerpt_rows(con, q, cats, keyed, bands, rule)

    def info(self):
        d = super().info()
        if isinstance(self.location, S3Location):
            d.path = self.location.url()
            with self._lock:
                (size,) = self._db().execute(
                    f"SELECT coalesce(sum(size), 0) FROM read_blob({_sql_str(self.location.url('**'))})"
                ).fetchone()
            d.size_bytes = int(size)
        else:
            d.size_bytes = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return d

    def _sealed_object(self, name: str) -> bytes | None:
        """The sealed object ``objects/<name>``, None if the lake does not have it."""
        if not isinstance(self.location, S3Location):
            try:
                return (self.path / "objects" / name).read_bytes()
            except FileNotFoundError:
                return None
        with self._lock:
            try:
                row = self._db().execute(
                    "SELECT content FROM read_blob("
                    f"{_sql_str(self.location.url('objects/' + name))})").fetchone()
            except duckdb.Error:
                return None
        return bytes(row[0]) if row else None

    def export(self, recording_id: int) -> bytes:
        """The original bytes of a recording from its sealed object, decrypted and checked."""
        master = self._require_key("export")
        row = self.get(recording_id)
        blob = self._sealed_object(object_name(master, row.sha256))
        if blob is None:
            raise NotFoundError(f"recording {recording_id}: its sealed object is missing from "
                                "the lake (export-lake again)") from None
        return self._open_blob(master, blob, row.sha256, int(recording_id))

    def export_chunks(self, recording_id: int):
        """``export`` as one piece: a lake keeps each recording as one sealed object."""
        return iter([self.export(recording_id)])

    def __repr__(self) -> str:
        return f"<LakeVault {str(self.location)!r} engine={self.engine} K={self.K}>"


def open_uri(uri: str, *, passphrase: str | None = None) -> LakeVault:
    """Open ``lake:DEST``, ``clickhouse:DEST``, ``spark:DEST`` or ``spark://HOST:PORT/DEST``."""
    engine, dest, master = parse_uri(uri)
    try:
        return LakeVault.open_lake(dest, engine=engine, spark_master=master,
                                   passphrase=passphrase)
    except SpeechVaultError:
        raise
    except duckdb.Error as exc:
        raise LakeError(f"{dest}: {str(exc).splitlines()[0]}") from None
