"""Made the format-3 vault fixtures of tests/test_integrity.py with the code BEFORE format 4.

Run with the tree of main at e5ce9c1 on the path and DuckDB 1.5.5 (the encrypt-index extra's
pin: a file DuckDB 1.5 writes is readable by 1.5 and 2.x; one 2.x writes is not by 1.5)::

    git archive e5ce9c1 | tar -x -C /tmp/sv-main-e5ce9c1
    cd /tmp/sv-main-e5ce9c1 && PYTHONPATH=/tmp/sv-main-e5ce9c1 VENV_WITH_DUCKDB_1_5_5/bin/python \
        WORKTREE/tests/golden/vault_v3/make_fixture.py WORKTREE/tests/golden/vault_v3

Four recordings (tests.fakes.tone_mix(9100 + i, 0.3) as 16 kHz WAV), FakeEncoder(K=128, C=3,
seed=61), passphrase "format three passphrase", one vault per cipher, gzipped.
"""
import gzip, hashlib, sys
from pathlib import Path
from store import schema
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, wav_bytes
assert schema.FORMAT_VERSION == 3, schema.FORMAT_VERSION
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
enc = FakeEncoder(K=128, C=3, seed=61)
for cipher in ("rossler", "chacha20poly1305"):
    d = Path("/tmp/fixwork") / cipher; d.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(4):
        p = d / f"r{i}.wav"; p.write_bytes(wav_bytes(tone_mix(9100 + i, 0.3))); files.append(p)
    vp = d / "v3.duckdb"
    if vp.exists(): vp.unlink()
    with Vault.create(vp, "format three passphrase", encoder=enc, cipher=cipher, kdf_log2_n=10) as v:
        v.ingest(files)
    data = vp.read_bytes()
    (out / f"vault-v3-{cipher}.duckdb.gz").write_bytes(gzip.compress(data, 9, mtime=0))
    print(cipher, len(data), len((out / f"vault-v3-{cipher}.duckdb.gz").read_bytes()),
          [hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in files])
