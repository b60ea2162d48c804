"""The engines that scan a lake besides DuckDB: ClickHouse (in-process, chDB) and Spark SQL.

Why: an archive that outgrows one machine runs on an existing distributed engine, never on a
home-made scatter-gather (issue 14). Each engine here only (1) exposes the lake's files as the
tables ``codes`` and ``recordings`` the statements name, and (2) runs a statement written in its
dialect (``store.sql_dialects``) with named parameters, returning plain tuples. Which statements
run and what their rows mean is decided by ``Vault`` and the statement builders, once.

* ``ClickHouseLake``: chDB (``pip install 'speechvault[clickhouse]'``), the ClickHouse engine
  in-process: the same SQL a ClickHouse server or cluster runs over ``file()``/``s3Cluster()``.
  ``codes`` is a view over ``file('.../category=*/*.parquet')``: ClickHouse reads the
  ``category=k`` directory names as a column and skips the files a filter excludes.
* ``SparkLake``: pyspark (``pip install 'speechvault[spark]'``, Java 17), local mode or a
  standalone master; ``codes`` is a temporary view over the partitioned folder (Spark's
  partition discovery gives ``category`` and prunes by it). Meant for batch work: a local
  session starts in seconds and every statement is a job.

A missing extra is a one-line ``RuntimeMissingError`` naming it; an engine's own error becomes
a one-line ``LakeError``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from speechvault.errors import LakeError
from speechvault.extras import require
from store.schema import code_word_columns

__all__ = ["ClickHouseLake", "DuckDBTables", "SparkLake"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _ch_str(text: str) -> str:
    """A ClickHouse string literal."""
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


class ClickHouseLake:
    """chDB reading the lake: ``codes`` and ``recordings`` as views over the Parquet files."""

    #: 64-bit integers as JSON numbers (the rows are parsed from JSONCompact)
    SETTINGS = {"output_format_json_quote_64bit_integers": 0}

    def __init__(self, dest: Path, manifest: dict) -> None:
        require("search clickhouse:...", "clickhouse")
        from chdb import session

        self._session = session.Session()
        try:
            for k, v in self.SETTINGS.items():
                self._session.query(f"SET {k} = {int(v)}")
            words = ", ".join(code_word_columns(int(manifest["K"])))
            codes = Path(dest) / manifest["codes"]
            if manifest["partitions"]:
                self._session.query(
                    "CREATE VIEW codes AS SELECT recording_id, win, toInt16(category) AS category, "
                    f"start, {words} FROM file({_ch_str(codes / '*' / '*.parquet')}, Parquet)")
            else:
                cols = ", ".join(f"{c} Int64" for c in code_word_columns(int(manifest["K"])))
                self._session.query("CREATE TABLE codes (recording_id Int64, win Int32, "
                                    f"category Int16, start Int32, {cols}) ENGINE = Memory")
            rec = Path(dest) / "recordings" / "recordings.parquet"
            self._session.query(
                f"CREATE VIEW recordings AS SELECT * FROM file({_ch_str(rec)}, Parquet)")
        except Exception as exc:
            self.close()
            raise LakeError(f"{dest}: ClickHouse cannot read the lake ({_first_line(exc)})") from None

    def rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        return self._query_rows(sql, params)

    def _query_rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        try:
            out = self._session.query(sql, "JSONCompact", params=params)
        except Exception as exc:
            raise LakeError(f"ClickHouse: {_first_line(exc)}") from None
        data = out.bytes() if hasattr(out, "bytes") else bytes(out)
        if not data.strip():
            return []
        return [tuple(r) for r in json.loads(data)["data"]]

    def rows_joined(self, table: str, columns: list[str], table_rows: list[tuple], sql: str,
                    params: dict[str, Any], conf: dict[str, str] | None = None) -> list[tuple]:
        """Run ``sql`` with ``table_rows`` in the Memory table ``table`` (its ``columns`` as
        "name Type"), dropped after; ``conf`` is Spark's (ignored). The rows go in as array
        parameters, one per column, so no value is formatted into SQL text."""
        names = [c.split()[0] for c in columns]
        types = [c.split(None, 1)[1] for c in columns]
        picks = ", ".join(f"{{c{i}:Array({t})}}[i]" for i, t in enumerate(types))
        values = {f"c{i}": [r[i] for r in table_rows] for i in range(len(columns))}
        try:
            self._session.query(f"CREATE TABLE {table} ({', '.join(columns)}) ENGINE = Memory")
            try:
                self._session.query(
                    f"INSERT INTO {table} ({', '.join(names)}) SELECT {picks} FROM "
                    f"(SELECT arrayJoin(range(1, length({{c0:Array({types[0]})}}) + 1)) AS i)",
                    params=values)
                return self._query_rows(sql, params)
            finally:
                self._session.query(f"DROP TABLE IF EXISTS {table}")
        except LakeError:
            raise
        except Exception as exc:
            raise LakeError(f"ClickHouse: {_first_line(exc)}") from None

    def close(self) -> None:
        s, self._session = getattr(self, "_session", None), None
        if s is not None:
            s.close()


class DuckDBTables:
    """DuckDB on the lake, with ``rows_joined`` as the engines have it (a batch's table)."""

    def __init__(self, con) -> None:
        self._con = con

    def rows_joined(self, table: str, columns: list[str], table_rows: list[tuple], sql: str,
                    params: list, conf: dict[str, str] | None = None) -> list[tuple]:
        """Run ``sql`` with ``table_rows`` in the temporary table ``table`` (its ``columns``
        as "name TYPE"), dropped after; ``conf`` is Spark's (ignored). The rows go in as one
        list parameter per column, unnested in parallel."""
        picks = ", ".join(f"unnest(${i + 1}::{c.split(None, 1)[1]}[]) AS {c.split()[0]}"
                          for i, c in enumerate(columns))
        values = [[r[i] for r in table_rows] for i in range(len(columns))]
        self._con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {picks}", values)
        try:
            return self._con.execute(sql, params).fetchall()
        finally:
            self._con.execute(f"DROP TABLE IF EXISTS {table}")


class SparkLake:
    """Spark SQL reading the lake (local mode or a standalone master)."""

    def __init__(self, dest: Path, manifest: dict, master: str) -> None:
        require("search spark:...", "spark")
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None and active.sparkContext.master != master:
            active.stop()  # one SparkContext per process: the URI's master wins
        try:
            self._spark = (SparkSession.builder.master(master).appName("speechvault-lake")
                           .config("spark.ui.enabled", "false")
                           .config("spark.sql.session.timeZone", "UTC")
                           .config("spark.sql.shuffle.partitions", "4")
                           .config("spark.ui.showConsoleProgress", "false")
                           .getOrCreate())
            self._spark.sparkContext.setLogLevel("ERROR")
            codes = Path(dest) / manifest["codes"]
            if manifest["partitions"]:
                self._spark.read.parquet(str(codes)).createOrReplaceTempView("codes")
            else:
                words = ", ".join(f"CAST(NULL AS BIGINT) AS {c}"
                                  for c in code_word_columns(int(manifest["K"])))
                self._spark.sql(
                    "SELECT CAST(NULL AS BIGINT) AS recording_id, CAST(NULL AS INT) AS win, "
                    f"CAST(NULL AS SMALLINT) AS category, CAST(NULL AS INT) AS start, {words} "
                    "WHERE false").createOrReplaceTempView("codes")
            self._spark.read.parquet(str(Path(dest) / "recordings" / "recordings.parquet")) \
                .createOrReplaceTempView("recordings")
        except LakeError:
            raise
        except Exception as exc:
            raise LakeError(f"{dest}: Spark cannot read the lake ({_first_line(exc)})") from None

    def rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        try:
            return [tuple(r) for r in self._spark.sql(sql, args=params).collect()]
        except Exception as exc:
            raise LakeError(f"Spark: {_first_line(exc)}") from None

    def rows_joined(self, table: str, columns: list[str], table_rows: list[tuple], sql: str,
                    params: dict[str, Any], conf: dict[str, str] | None = None) -> list[tuple]:
        """Run ``sql`` with ``table_rows`` visible as the temporary view ``table`` (its
        ``columns`` as "name TYPE") under the session settings ``conf`` (restored after): a
        batch's query windows joined to the codes. The statement's Spark job ids are kept in
        ``last_jobs`` (its job group), so a caller can see how many jobs it took."""
        spark = self._spark
        saved = {k: spark.conf.get(k, None) for k in (conf or {})}
        group = f"speechvault-batch-{id(table_rows)}"
        try:
            spark.createDataFrame(table_rows, schema=", ".join(columns)) \
                .createOrReplaceTempView(table)
            for k, v in (conf or {}).items():
                spark.conf.set(k, v)
            spark.sparkContext.setJobGroup(group, "speechvault batch search")
            try:
                rows = [tuple(r) for r in spark.sql(sql, args=params).collect()]
                self.last_jobs = list(spark.sparkContext.statusTracker().getJobIdsForGroup(group))
                return rows
            finally:
                spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
                for k, v in saved.items():
                    spark.conf.unset(k) if v is None else spark.conf.set(k, v)
                spark.catalog.dropTempView(table)
        except Exception as exc:
            raise LakeError(f"Spark: {_first_line(exc)}") from None

    def close(self) -> None:
        """The session stays up for the process (a second lake reuses it); views are dropped."""
        spark = getattr(self, "_spark", None)
        if spark is not None:
            for view in ("codes", "recordings"):
                spark.catalog.dropTempView(view)
