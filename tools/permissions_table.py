"""Every file speechvault creates under umask 022 and the modes seen (issue 17, docs/reliability.md).

A thread polls WORKDIR every ~0.5 ms while init, ingest (40 files), export -o FILE, export --force,
export -o DIR, search --decrypt-to, passwd, passwd --rekey and delete run (CliRunner, FakeEncoder),
so short-lived files (the WAL before a chmod, temporary exports) are seen too.

    python tools/permissions_table.py CHECKOUT WORKDIR     # CHECKOUT: this repository, or an old tree
"""
import os, sys, threading, time, re
from pathlib import Path
root = sys.argv[1]; work = Path(sys.argv[2]); sys.path.insert(0, root)
os.umask(0o022)
import store.vault as sv
from tests.fakes import FakeEncoder, tone_mix, write_wav
enc = FakeEncoder(K=128, C=3, seed=3)
class _F:
    @classmethod
    def from_bytes(cls, *a, **k): return enc
    default = from_bytes
sv._load_encoder_class = lambda: _F
from typer.testing import CliRunner
import cli
seen = {}
stop = False
def poll():
    while not stop:
        for dp, dns, fns in os.walk(work):
            for n in dns + fns:
                p = os.path.join(dp, n)
                try: st = os.lstat(p)
                except FileNotFoundError: continue
                if os.path.islink(p): continue
                key = re.sub(r"\.[0-9a-f]{12}\.partial$", ".<random>.partial", os.path.relpath(p, work))
                key = re.sub(r"\.v\.duckdb\.[a-z0-9_]+\.init", ".v.duckdb.<random>.init", key)
                seen.setdefault(key, set()).add(oct(st.st_mode & 0o777))
        time.sleep(0.0005)
t = threading.Thread(target=poll, daemon=True); t.start()
src = work / "src"; src.mkdir()
files = []
for i in range(40):
    p = src / f"a{i}.wav"; write_wav(p, tone_mix(i, 0.3)); files.append(p)
env = {"SPEECHVAULT_PASSPHRASE": "perm table passphrase", "SPEECHVAULT_NEW_PASSPHRASE": "another passphrase"}
def run(*a, e=env):
    r = CliRunner().invoke(cli.app, [str(x) for x in a], env=e)
    if r.exit_code: print("FAILED", a[0], r.output[-200:], file=sys.stderr)
v = work / "v.duckdb"
run("init", v, "--kdf-log2n", "14")
run("ingest", v, *files)
(work / "out").mkdir()
run("export", v, "1", "-o", work / "out" / "one.wav")
run("export", v, "1", "-o", work / "out" / "one.wav", "--force")
run("export", v, "2", "-o", work / "out")
run("search", v, files[3], "--decrypt-to", work / "found")
run("passwd", v)
run("passwd", v, "--rekey", e={"SPEECHVAULT_PASSPHRASE": "another passphrase", "SPEECHVAULT_NEW_PASSPHRASE": "another passphrase"})
run("delete", v, "5", "--yes", e={"SPEECHVAULT_PASSPHRASE": "another passphrase"})
time.sleep(0.05); stop = True; t.join()
for k in sorted(seen):
    if k.startswith("src"): continue
    print(f"{k}\t{', '.join(sorted(seen[k]))}")
