"""What a lake URI names: the engine, the lake folder, the Spark master (no heavy imports).

Why a module of its own: the CLI decides "vault file or lake?" before importing DuckDB or an
engine, and a URI's grammar should be written down once::

    lake:DEST                    DuckDB reading the Parquet lake at folder DEST, or at
                                 s3://BUCKET/PREFIX (httpfs; store.lake_s3)
    clickhouse:DEST, chdb:DEST   ClickHouse in-process (chDB) reading the same files
    spark:DEST                   Spark SQL in local mode (local[2])
    spark://HOST:PORT/DEST       Spark SQL on a standalone master (DEST: an absolute path that
                                 every worker can read)

``lake://DEST`` is read as ``lake:/DEST`` (an absolute path); ``clickhouse://HOST`` (a server) is
refused with a one-line error: not implemented yet (docs/scale.md has the server recipe).
"""

from __future__ import annotations

from speechvault.errors import LakeError

__all__ = ["ENGINES", "DEFAULT_SPARK_MASTER", "is_lake_uri", "parse_uri"]

ENGINES = ("duckdb", "clickhouse", "spark")
_PREFIXES = {"lake:": "duckdb", "duckdb:": "duckdb", "clickhouse:": "clickhouse",
             "chdb:": "clickhouse", "spark:": "spark"}
DEFAULT_SPARK_MASTER = "local[2]"


def is_lake_uri(text: str) -> bool:
    """Whether ``text`` names a lake (``lake:``, ``clickhouse:``, ``spark:``...), not a file."""
    return any(str(text).startswith(p) for p in _PREFIXES)


def parse_uri(text: str) -> tuple[str, str, str | None]:
    """``(engine, DEST, spark master or None)``. ``spark://h:p/DEST`` -> master ``spark://h:p``;
    ``lake://DEST`` reads as a path with a leading ``/``; ``clickhouse://`` is refused."""
    text = str(text)
    for prefix, engine in _PREFIXES.items():
        if text.startswith(prefix):
            rest = text[len(prefix):]
            master = None
            if engine == "spark" and rest.startswith("//"):
                host, _, path = rest[2:].partition("/")
                if not host or not path:
                    raise LakeError(f"{text}: expected spark://HOST:PORT/PATH/OF/LAKE")
                master, rest = f"spark://{host}", "/" + path
            elif rest.startswith("//") and engine == "clickhouse":
                raise LakeError(f"{text}: a ClickHouse server URI is not supported yet; use "
                                f"{prefix}/PATH/OF/LAKE (ClickHouse in-process, chDB)")
            elif rest.startswith("//"):
                rest = rest[1:]
            if not rest:
                raise LakeError(f"{text}: no lake folder after {prefix}")
            return engine, rest, master
    raise LakeError(f"{text}: not a lake URI (lake:DEST, clickhouse:DEST, spark:DEST)")


