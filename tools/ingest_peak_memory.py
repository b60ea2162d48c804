"""Ingest one file into a new vault with the default model, from the checkout CHECKOUT (this
repository, or an old tree from `git archive`): run under `/usr/bin/time -v` for the peak RSS.

    /usr/bin/time -v python tools/ingest_peak_memory.py CHECKOUT NEW_VAULT AUDIO
"""
import sys, time
root, vault, audio = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, root)
from store.vault import Vault
import store.vault
assert store.vault.__file__.startswith(root), store.vault.__file__
t0 = time.perf_counter()
with Vault.create(vault, "memory test passphrase", kdf_log2_n=10) as v:
    rep = v.ingest([audio])
print("added", len(rep.added), "errors", rep.errors, "windows", rep.added[0].n_windows if rep.added else None,
      "seconds", round(time.perf_counter() - t0, 1), flush=True)
