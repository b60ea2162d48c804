"""What the integrity MACs (store/integrity.py) cost, and why per recording (issue 17, item 2).

1. Ingest of the 32 shipped example clips with the default model: total time and the time spent
   in ``integrity.add_records`` (MACs of the new rows + the re-signed record set) and in
   ``integrity.check_for_write`` (once per ingest: the record, the model digests).
2. The alternative, one MAC over the whole index: the cost of reading and MACing every index
   row, which each ingest batch would pay, for a synthetic index of N rows (K = 384), next to
   the per-recording MAC of one recording's rows.
3. ``verify`` of the vault of step 1: total, and the part in ``integrity.verify_integrity``.

Run: ``nice -n 10 .venv/bin/python docs/measure_integrity.py`` (prints JSON).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from store import integrity  # noqa: E402
from store import schema  # noqa: E402


def _timed(module, name: str, acc: dict):
    real = getattr(module, name)

    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)
    return real


def ingest_and_verify(tmp: Path) -> dict:
    from store.vault import Vault

    files = sorted((REPO / "speechvault" / "examples").glob("*.wav"))
    acc: dict = {}
    _timed(integrity, "add_records", acc)
    _timed(integrity, "check_for_write", acc)
    _timed(integrity, "verify_integrity", acc)
    with Vault.create(tmp / "v.duckdb", "measure", kdf_log2_n=10) as v:
        t0 = time.perf_counter()
        v.ingest(files, batch_size=8)
        t_ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        rep = v.verify()
        t_verify = time.perf_counter() - t0
        windows = v.info().windows
    return {"files": len(files), "windows": windows, "ingest_s": round(t_ingest, 3),
            "add_records_s": round(acc["add_records"], 4),
            "add_records_per_file_ms": round(1000 * acc["add_records"] / len(files), 2),
            "check_for_write_s": round(acc["check_for_write"], 4),
            "verify_s": round(t_verify, 3), "verify_integrity_s": round(acc["verify_integrity"], 4),
            "verify_ok": rep.ok}


def whole_index_mac(rows: int, K: int = 384) -> dict:
    """Read every row of a synthetic index and MAC it (the cost a whole-index MAC puts on every
    ingest batch) vs the MAC of one recording's 50 rows."""
    import duckdb

    con = duckdb.connect()
    con.execute(schema.codes_ddl(K))
    rng = np.random.default_rng(0)
    W = schema.n_words(K, schema.CODE_WORD_BITS)
    rid = np.repeat(np.arange(rows // 50), 50)[:rows]
    schema.insert_codes(con, "codes", K, rid, np.tile(np.arange(50), rows // 50 + 1)[:rows],
                        rng.integers(0, 10, rows), rng.integers(0, 2**63, (rows, W), dtype=np.uint64),
                        None)
    key = os.urandom(32)
    t0 = time.perf_counter()
    grouped = integrity._stored_codes(con, K)
    m = hmac.new(key, b"", hashlib.sha256)
    for r, parts in grouped.items():
        m.update(integrity._codes_bytes("0" * 32, r, *parts))
    t_all = time.perf_counter() - t0
    one = grouped[0]
    t0 = time.perf_counter()
    for _ in range(100):
        integrity._mac(key, b"x", integrity._codes_bytes("0" * 32, 0, *one))
    t_one = (time.perf_counter() - t0) / 100
    return {"rows": rows, "whole_index_mac_s": round(t_all, 3),
            "one_recording_mac_ms": round(1000 * t_one, 3)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = {"ingest_verify": ingest_and_verify(Path(tmp)),
               "whole_index": [whole_index_mac(n) for n in (10_000, 100_000, 1_000_000)],
               "loadavg": open("/proc/loadavg").read().split()[:3]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
