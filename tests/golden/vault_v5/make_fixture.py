"""Made the format-5 vault fixture of tests/test_word_layout.py with the code BEFORE format 6
(codes words stored as 64-bit BIGINT), and the search results that code gave on it.

Run with the tree of branch s25-hugeint's base b93546b (format 5) on the path::

    git archive b93546b | tar -x -C /tmp/sv-b93546b
    cd /tmp/sv-b93546b && PYTHONPATH=/tmp/sv-b93546b WORKTREE/.venv/bin/python \
        WORKTREE/tests/golden/vault_v5/make_fixture.py WORKTREE/tests/golden/vault_v5

Eight recordings (tests.fakes.tone_mix(9500 + i, 0.3 + 0.4 * (i % 3)): 1-3 windows) as 16 kHz
WAV, FakeEncoder(K=320, C=3, seed=73, clip_seconds=0.5): K = 320 is not a multiple of 128, so
format 6's last 128-bit word holds 64 bits. Passphrase "format five passphrase", cipher
rossler, gzipped; expected.json: every recording's stored words (decimal strings of the
unsigned 64-bit words) and the hits of a few queries in every mode.
"""
import gzip, json, sys
from pathlib import Path
import numpy as np
from store import schema
from store.records import QueryCode
from store.vault import Vault
from tests.fakes import FakeEncoder, tone_mix, wav_bytes
assert schema.FORMAT_VERSION == 5, schema.FORMAT_VERSION
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
enc = FakeEncoder(K=320, C=3, seed=73, clip_seconds=0.5)
d = Path("/tmp/fixwork-v5"); d.mkdir(parents=True, exist_ok=True)
files = []
for i in range(8):
    p = d / f"r{i}.wav"; p.write_bytes(wav_bytes(tone_mix(9500 + i, 0.3 + 0.4 * (i % 3)))); files.append(p)
vp = d / "v5.duckdb"
if vp.exists(): vp.unlink()
expected = {"codes": {}, "searches": []}
with Vault.create(vp, "format five passphrase", encoder=enc, cipher="rossler", kdf_log2_n=10) as v:
    assert len(v.ingest(files).added) == 8
    for r in v.list():
        c = v.codes_of(r.id)
        expected["codes"][str(r.id)] = [[str(int(x)) for x in row] for row in c.words]
    queries = [("stored r4", wav_bytes(tone_mix(9504, 0.7))), ("new", wav_bytes(tone_mix(9599, 1.1)))]
    c = v.codes_of(3)
    w = c.words.copy(); w[:, 0] ^= np.uint64(0xF0F0); w[:, -1] ^= np.uint64(1 << 63)
    queries.append(("code of r3, bits flipped", QueryCode(category=c.category, words=w, K=v.K,
                    probs=np.eye(v.C, dtype=np.float32)[c.category])))
    for label, q in queries:
        for mode in ("auto", "two-stage", "traversal", "multi-probe"):
            res = v.search(q, mode=mode, top=8, probe=2)
            expected["searches"].append({"query": label, "mode": mode, "hits": [
                [h.recording_id, h.name, h.category, h.distance, h.query_window, h.window]
                for h in res.nearest]})
(out / "vault-v5-rossler.duckdb.gz").write_bytes(gzip.compress(vp.read_bytes(), 9, mtime=0))
(out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
print(len(vp.read_bytes()), sum(len(s["hits"]) for s in expected["searches"]))
