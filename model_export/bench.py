"""``speechvault bench``: search speed (paper Table 4), FAISS comparison, ingest and cipher
throughput, end-to-end query latency, peak memory. numpy + DuckDB + the TFLite runtime only:
this module never imports TensorFlow (a test checks it).

    speechvault bench --out docs/results            # full: 10k real codes, then 100k and 1M rows
    speechvault bench --quick --out /tmp/bench      # CI size (no FSDD needed)

Library use::

    from model_export.bench import run_bench
    report = run_bench("docs/results", quick=False)   # -> BenchReport; writes bench.json + bench.md

What is measured (and how it differs from the paper):

* **Table 4** - seconds per query, traversal vs two-stage, at each K in {64, 128, 256, 384, 512},
  on a real vault (``Vault.create`` + the SQL of ``store.search``) holding ``size`` recordings in
  10 categories of ``size / 10``. At the default model's K (384) the codes are **real**: FSDD
  clips (or the bundled examples) and content-preserving copies of them (-3 dB, +3 dB, R.Q,
  noise at 30/20 dB, ...) encoded with the shipped default model, until every category has
  ``size / 10`` recordings. At any other K there is no shipped model, so the codes are
  **synthetic** (uniform random bits; the category of each row copied from the real 384-bit
  vault so the category stage keeps the same selectivity); the vault's stored model is then a
  codes-only placeholder (search works, encoding does not). Queries are stored codes with 5 % of
  their bits flipped (a CPO-like copy), given as ``QueryCode`` so only the search is timed:
  ``Vault.search`` wall time (category stage + Hamming stage + the label lookup).
* **Larger vaults** (100k, 1M rows): synthetic codes inserted directly with :func:`bulk_insert_codes`
  into a real vault's ``codes`` table, with minimal placeholder ``recordings`` rows (empty blob,
  ``sha256 = 'synthetic:<i>'``, name ``synthetic-<i>``): the same schema, the same SQL.
* **FAISS** ``IndexBinaryFlat`` (exhaustive Hamming, top 10) on the same codes in the same run,
  one query at a time like the vault; two-stage = one FAISS index per category. Optional
  (``pip install faiss-cpu``): skipped with a note when not installed.
* Ingest throughput (``Vault.ingest`` of real files: decode, encode, seal, insert), Rossler
  keystream and ``seal`` throughput, end-to-end query latency (an audio file in, hits out:
  decode + features + inference + search), peak memory (``ru_maxrss``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from speechvault import paper

__all__ = ["BenchReport", "run_bench", "bulk_insert_codes", "machine_info", "json_default", "PAPER_TABLE4",
           "DEFAULT_SIZES", "QUICK_SIZES"]

#: Table 4 of the paper: K -> (traversal s/query, two-stage s/query); 10,000 files, 10 categories.
PAPER_TABLE4 = {64: (0.0591, 0.0465), 128: (0.0720, 0.0479), 256: (0.0880, 0.0502),
                384: (0.1020, 0.0544), 512: (0.1201, 0.0590)}
PAPER_CATEGORY_STAGE = 0.0380

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
MODES = ("traversal", "two-stage")
FLIP_FRACTION = 0.05
TOP = 10
BENCH_PASSPHRASE = "speechvault-bench"

# CPO copies used to grow the real-code library, in this order (cheap ones first; MP3 is slow).
_GROW_CPOS = ("-3dB", "+3dB", "R.Q", "noise30dB", "noise20dB", "-6dB", "+6dB", "noise25dB")


# ----------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, cores, load average, platform: printed at the top of every report."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gb = None
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "load_avg_1_5_15": load,
            "memory_gb": mem_gb, "platform": platform.platform(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def peak_rss_mb() -> float:
    """Peak resident memory of this process (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / (2**20 if sys.platform == "darwin" else 2**10), 1)


def _pct(xs: Sequence[float]) -> dict[str, float]:
    a = np.asarray(xs, np.float64)
    return {"p50": float(np.median(a)), "p95": float(np.quantile(a, 0.95)), "mean": float(a.mean()),
            "n": int(a.size)}


# ----------------------------------------------------------------------------- report
@dataclasses.dataclass
class BenchReport:
    command: str
    machine: dict[str, Any]
    quick: bool
    config: dict[str, Any]
    table4: list[dict[str, Any]]          # rows: size, K, codes, mode, p50, p95, paper, faiss
    ingest: dict[str, Any]
    cipher: dict[str, Any]
    end_to_end: dict[str, Any]
    memory: dict[str, Any]
    faiss: dict[str, Any]
    notes: list[str]
    seconds: float = 0.0
    json_path: str | None = None
    md_path: str | None = None
    #: issue 13's figures: {"idle": {...}, "busy": {...}, "spinner": [...], "sizes": [...]}
    targets: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: issue 12's figures (``model_export.bench_excerpt``): a 5 s excerpt against N recordings
    excerpt: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d, default=json_default))

    def to_markdown(self) -> str:
        return _markdown(self)

    def table(self) -> str:
        """The Table 4 rows as a plain-text table (what the CLI prints)."""
        lines = [f"{'rows':>9} {'K':>4} {'codes':>9} {'mode':>10} {'p50 ms':>9} {'p95 ms':>9} "
                 f"{'paper ms':>9} {'faiss p50':>10} {'vault/faiss':>11}"]
        for r in self.table4:
            fz = r.get("faiss") or {}
            pap = f"{1e3 * r['paper']:.1f}" if r.get("paper") else "-"
            fp = f"{1e3 * fz['p50']:.3f}" if fz else "-"
            ratio = f"{r['vault_over_faiss']:.1f}x" if r.get("vault_over_faiss") else "-"
            lines.append(
                f"{r['size']:>9} {r['K']:>4} {r['codes']:>9} {r['mode']:>10} {1e3 * r['p50']:>9.2f} "
                f"{1e3 * r['p95']:>9.2f} {pap:>9} {fp:>10} {ratio:>11}")
        return "\n".join(lines)


def json_default(o):
    """``json.dumps(default=...)`` for numpy scalars and arrays; anything else as its string."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ----------------------------------------------------------------------------- bulk helper
def _advance_id_sequence(con, last_id: int) -> None:
    """Move ``recordings_id_seq`` so the next id is ``last_id + 1``. DuckDB < 2 has no
    ``setval``: draw the missing values with ``nextval`` in one statement instead."""
    row = con.execute("SELECT coalesce(last_value, 0) FROM duckdb_sequences() "
                      "WHERE sequence_name = 'recordings_id_seq' "
                      "AND database_name = current_database()").fetchone()
    missing = int(last_id) - int(row[0] if row else 0)
    if missing > 0:
        con.execute("SELECT max(nextval('recordings_id_seq')) FROM range(?)", [missing])


def bulk_insert_codes(vault, words: np.ndarray, window_category: np.ndarray, *,
                      owner: np.ndarray | None = None, labels: Sequence[str] | None = None,
                      names: Sequence[str] | None = None, compact: bool = True) -> int:
    """Insert index rows directly into ``vault``'s ``codes`` table (benchmarks only).

    ``words`` (n, W) uint64 packed K-bit codes; ``window_category`` (n,) model class ids;
    ``owner`` (n,) recording number 0..R-1 per row (default: one row per recording). For each
    recording a minimal placeholder ``recordings`` row is written - ``name`` (default
    ``synthetic-<i>``), ``category`` label (default the class name of its first row),
    ``sha256 = 'synthetic:<id>'`` (flags it: no real file has such a digest), empty blob, size 0 -
    so ``search`` returns names and labels while ``export``/``verify`` would report the blobs as
    damaged: never do this to a vault you keep. One transaction; then re-clusters the index by
    category (``Vault.compact``), as ingest does. Returns the number of recordings added."""
    from store import schema

    con = vault._db()
    words = np.ascontiguousarray(np.asarray(words, np.uint64))
    n = words.shape[0]
    W = schema.n_words(vault.K, schema.CODE_WORD_BITS)
    if words.ndim != 2 or words.shape[1] != W:
        raise ValueError(f"words must be (n, {W}) uint64 for K = {vault.K}")
    cat = np.asarray(window_category, np.int16).reshape(-1)
    owner = np.arange(n, dtype=np.int64) if owner is None else np.asarray(owner, np.int64)
    R = int(owner.max()) + 1 if n else 0
    first = np.searchsorted(owner, np.arange(R))
    win = (np.arange(n) - first[owner]).astype(np.int32)
    base = int(con.execute("SELECT coalesce(max(id), 0) FROM recordings").fetchone()[0])
    ids = base + 1 + np.arange(R, dtype=np.int64)
    lab = list(labels) if labels is not None else [vault.class_names[int(c)] for c in cat[first]]
    nam = list(names) if names is not None else [f"synthetic-{int(i)}" for i in ids]
    n_win = np.bincount(owner, minlength=R).astype(np.int32)
    rec = {"id": ids, "name": np.array(nam, dtype=object), "category": np.array(lab, dtype=object),
           "sha256": np.array([f"synthetic:{int(i)}" for i in ids], dtype=object),
           "n_windows": n_win}
    with vault._lock:
        con.execute("BEGIN TRANSACTION")
        try:
            con.register("_sv_bench_rec", rec)
            con.execute(
                "INSERT INTO recordings (id, name, category, sha256, sample_rate, channels, duration, "
                "size, added, n_windows, blob) SELECT id, name, category, sha256, 16000, 1, 0.0, 0, "
                "now(), n_windows, ''::BLOB FROM _sv_bench_rec")
            # the stored words and slice keys as every write makes them (store.schema)
            schema.insert_codes(con, "codes", vault.K, ids[owner], win, cat, words, None)
            con.execute("UPDATE vault_meta SET codes_unclustered = codes_unclustered + ?", [int(n)])
            if R:
                _advance_id_sequence(con, int(ids[-1]))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            try:
                con.unregister("_sv_bench_rec")
            except Exception:
                pass
    vault._rows_cache = vault._labels = None  # what the handle holds (store.vault, store.labels)
    if compact:
        vault.compact()
    else:
        con.execute("CHECKPOINT")
    return R


class _CodesOnlyModel:
    """Stands in for an encoder when a bench vault holds synthetic codes at a K that no shipped
    model produces: the vault stores this placeholder (``tflite`` = a marker text) and can be
    searched with ``QueryCode``s, never asked to encode audio."""

    def __init__(self, meta) -> None:
        self.meta = meta
        self.tflite_bytes = f"speechvault-bench codes-only placeholder K={meta.K}".encode()
        self.sha256 = hashlib.sha256(self.tflite_bytes).hexdigest()
        self.K = int(meta.K)
        self.fingerprint_bytes = None


def _placeholder_model(K: int, C: int, class_names: Sequence[str]):
    from hashing.model_meta import ModelMeta

    meta = ModelMeta(name=f"bench-synthetic-k{K}", arch="cnn", K=int(K), C=int(C),
                     class_names=[str(c) for c in class_names],
                     features={"note": "codes-only bench placeholder"}, input_shape=[1],
                     recipe="bench-synthetic")
    return _CodesOnlyModel(meta)


def _new_vault(path: Path, encoder):
    from store.vault import Vault

    v = Vault.create(path, BENCH_PASSPHRASE, encoder=encoder, kdf_log2_n=10,
                     cipher="chacha20poly1305")
    v._db().execute("SET enable_progress_bar = false")  # no DuckDB bar on the terminal
    return v


# ----------------------------------------------------------------------------- data
def _find_data(data_dir) -> tuple[list[Path], list[str], str]:
    """Audio files with their labels: ``data_dir`` (folder per category), else FSDD next to the
    repository, else the bundled examples."""
    cands = []
    if str(data_dir) == "examples":
        pass
    elif data_dir is not None:
        cands.append(Path(data_dir))
    else:
        env = os.environ.get("SPEECHVAULT_FSDD")
        if env:
            cands.append(Path(env))
        cands.append(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd")
    for d in cands:
        files = sorted(d.glob("*/*.wav"))
        if files:
            return files, [f.parent.name for f in files], str(d)
    ex = Path(__file__).resolve().parents[1] / "speechvault" / "examples"
    files = sorted(p for p in ex.glob("*.wav") if p.name[0].isdigit())
    return files, [p.name.split("_")[0] for p in files], f"{ex} (bundled examples)"


def _cpo(name: str):
    from hashing import cpo

    if name in cpo.ALL_TEST_CPOS:
        return cpo.ALL_TEST_CPOS[name]
    if name.startswith("noise"):
        snr = float(name[5:-2])
        return lambda y, sr: cpo.add_noise_snr(y, snr, np.random.default_rng(int(snr)))
    db = float(name[:-2])
    return lambda y, sr: cpo.gain_db(y, db)


def real_codes(encoder, files: Sequence[Path], labels: Sequence[str], per_category: int, *,
               cache_dir: Path | None, log=print) -> dict[str, Any]:
    """Encode originals, then CPO copies (``_GROW_CPOS`` order), until every category holds
    ``per_category`` recordings (or the copies run out). Cached as .npz by model + files."""
    from hashing.audio import load_audio

    key = hashlib.sha256((encoder.sha256 + str(per_category) + "|".join(
        f"{f.name}:{f.stat().st_size}" for f in files)).encode()).hexdigest()[:20]
    cache = cache_dir / f"bench-codes-{key}.npz" if cache_dir is not None else None
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        log(f"  real codes loaded from {cache}")
        return {k: z[k] for k in z.files}
    classes = list(encoder.meta.class_names)
    want = {c: per_category for c in classes}
    words, wcat, owner, rlab, rname, variant = [], [], [], [], [], []
    signals = [load_audio(f, encoder.sample_rate) for f in files]
    t0 = time.perf_counter()
    r = 0
    for vname in ("original", *_GROW_CPOS):
        op = None if vname == "original" else _cpo(vname)
        for f, lab, y in zip(files, labels, signals):
            if want.get(lab, 0) <= 0:
                continue
            c = encoder.encode_audio(y if op is None else op(y, encoder.sample_rate))
            words.append(np.asarray(c.words, np.uint64))
            wcat.append(np.asarray(c.category, np.int64))
            owner.append(np.full(c.n_windows, r, np.int64))
            rlab.append(lab)
            rname.append(f.name if op is None else f"{f.stem}[{vname}]{f.suffix}")
            variant.append(vname)
            want[lab] -= 1
            r += 1
        if all(v <= 0 for v in want.values()):
            break
        log(f"  real codes: {r} recordings after '{vname}' ({time.perf_counter() - t0:.0f} s)")
    out = {"words": np.concatenate(words), "category": np.concatenate(wcat),
           "owner": np.concatenate(owner), "labels": np.array(rlab), "names": np.array(rname),
           "variant": np.array(variant), "encode_seconds": np.array(time.perf_counter() - t0)}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **out)
    return out


def synthetic_words(n: int, K: int, rng: np.random.Generator) -> np.ndarray:
    W = (K + 63) // 64
    w = rng.integers(0, np.iinfo(np.uint64).max, size=(n, W), dtype=np.uint64, endpoint=True)
    if K % 64:
        w[:, -1] &= np.uint64((1 << (K % 64)) - 1)
    return w


def _flip(words: np.ndarray, K: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    from hashing.codes import pack_words, unpack_words

    bits = unpack_words(words[None, :], K)[0].copy()
    idx = rng.choice(K, size=max(1, int(round(frac * K))), replace=False)
    bits[idx] ^= 1
    return pack_words(bits[None, :])[0]


# ----------------------------------------------------------------------------- timing
def _time_vault(vault, queries, mode: str) -> tuple[dict[str, float], dict[str, float]]:
    for q in queries[:3]:
        vault.search(q, mode=mode, top=TOP)
    ts, cat, ham = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        res = vault.search(q, mode=mode, top=TOP)
        ts.append(time.perf_counter() - t0)
        cat.append(res.timings.get("category_stage", 0.0))
        ham.append(res.timings.get("hamming_stage", 0.0))
    return _pct(ts), {"category_stage_p50": float(np.median(cat)),
                      "hamming_stage_p50": float(np.median(ham))}


def _faiss_mod():
    try:
        import faiss  # type: ignore

        return faiss
    except ImportError:
        return None


def _time_faiss(faiss, words: np.ndarray, cats: np.ndarray, K: int, queries, mode: str) -> dict[str, float]:
    """Per-query latency of IndexBinaryFlat top-10 on the same rows (bits as bytes)."""
    faiss.omp_set_num_threads(1)  # one query per call: threads only add scheduling jitter
    Kb = ((K + 63) // 64) * 64  # FAISS needs d % 8 == 0; words are zero-padded beyond K
    data = np.ascontiguousarray(words).view(np.uint8).reshape(len(words), Kb // 8)
    if mode == "traversal":
        idx = {None: faiss.IndexBinaryFlat(Kb)}
        idx[None].add(data)
    else:
        idx = {}
        for c in np.unique(cats):
            ix = faiss.IndexBinaryFlat(Kb)
            ix.add(np.ascontiguousarray(data[cats == c]))
            idx[int(c)] = ix
    qs = [(None if mode == "traversal" else int(q.category[0]),
           np.ascontiguousarray(q.words[:1]).view(np.uint8).reshape(1, Kb // 8)) for q in queries]
    for c, x in qs[:3]:
        idx[c].search(x, TOP)
    ts = []
    for c, x in qs:
        t0 = time.perf_counter()
        idx[c].search(x, TOP)
        ts.append(time.perf_counter() - t0)
    return _pct(ts)


# ----------------------------------------------------------------------------- sections
def _ingest_bench(encoder, files: Sequence[Path], n: int, tmp: Path, log) -> dict[str, Any]:
    from store.vault import Vault

    pick = list(files)[:: max(1, len(files) // n)][:n]
    path = tmp / "ingest.duckdb"
    v = Vault.create(path, BENCH_PASSPHRASE, encoder=encoder, kdf_log2_n=10, cipher="rossler")
    try:
        t0 = time.perf_counter()
        rep = v.ingest(pick)
        dt = time.perf_counter() - t0
    finally:
        v.close()
    nbytes = sum(p.stat().st_size for p in pick)
    added = len(rep.added)
    log(f"  ingest: {added} files in {dt:.1f} s")
    return {"files": added, "errors": len(rep.errors), "bytes": nbytes, "seconds": dt,
            "files_per_s": added / dt if dt else None, "MB_per_s": nbytes / dt / 1e6 if dt else None,
            "cipher": "rossler", "note": "Vault.ingest: decode + features + inference + seal + "
            "insert, batches of 32, one CHECKPOINT; the passphrase KDF (scrypt) is not included"}


def _cipher_bench(quick: bool) -> dict[str, Any]:
    from store.envelope import seal
    from store.rossler import RosslerStream

    key, nonce = bytes(range(32)), bytes(16)
    n = (4 if quick else 32) << 20
    data = os.urandom(n)
    out: dict[str, Any] = {"bytes": n}
    reps = 2 if quick else 3
    for label, fn in (("rossler_keystream_xor", lambda: RosslerStream(key, nonce).xor(data)),
                      ("seal_rossler", lambda: seal(data, key, cipher="rossler")),
                      ("seal_chacha20poly1305", lambda: seal(data, key, cipher="chacha20poly1305"))):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        out[label + "_MB_per_s"] = n / min(ts) / 1e6
    return out


def _long_recording(files: Sequence[Path], sr: int, seconds: float = 10.0) -> bytes:
    """A ~10 s WAV made by concatenating clips with 0.2 s pauses (the paper's query length)."""
    from hashing.audio import load_audio, write_wav

    parts, total = [], 0
    gap = np.zeros(int(0.2 * sr), np.float32)
    i = 0
    while total < seconds * sr and i < 10 * len(files):
        y = load_audio(files[i % len(files)], sr)
        parts += [y, gap]
        total += len(y) + len(gap)
        i += 1
    y = np.concatenate(parts)[: int(seconds * sr)]
    buf = io.BytesIO()
    write_wav(buf, y, sr)
    return buf.getvalue()


def _e2e_bench(vault, files: Sequence[Path], n: int, log) -> dict[str, Any]:
    """Audio in, hits out, on the 384-bit real-code vault: decode + features + inference + search."""
    out: dict[str, Any] = {"vault_rows": int(vault.info().windows)}
    enc = vault.encoder
    pick = list(files)[1:: max(1, len(files) // n)][:n]
    long_wav = _long_recording(files, enc.sample_rate)
    for label, queries in (("clip", [Path(p) for p in pick]), ("10s_recording", [long_wav] * max(3, n // 4))):
        vault.search(queries[0], top=TOP, mode="two-stage")
        ts, stages = [], {k: [] for k in ("decode", "features", "inference", "category_stage",
                                           "hamming_stage")}
        for q in queries:
            t0 = time.perf_counter()
            res = vault.search(q, top=TOP, mode="two-stage")  # the paper's Table 5 mode
            ts.append(time.perf_counter() - t0)
            for k in stages:
                stages[k].append(res.timings.get(k, 0.0))
        out[label] = {**_pct(ts), **{f"{k}_p50": float(np.median(v)) for k, v in stages.items()}}
        log(f"  end-to-end {label}: p50 {1e3 * out[label]['p50']:.1f} ms")
    out["mode"] = "two-stage"
    return out


# ----------------------------------------------------------------------------- main entry
#: the model of Table 4 / Table 5: codes per model window, one window per query (the paper)
TABLE4_MODEL = "fsdd-crnn-k384-dda"
#: the excerpt bench (issue 12): full = 10,000 recordings of 30 s; quick = CI-sized
EXCERPT_FULL = {"n_recordings": 10_000, "n_real": 12, "n_queries": 20, "strategies": ("keys",)}
EXCERPT_QUICK = {"n_recordings": 24, "n_real": 3, "n_queries": 3}


def run_bench(out_dir: str | Path | None, quick: bool = False, *,
              sizes: Sequence[int] | None = None, ks: Sequence[int] = paper.HASH_BITS_CHOICES,
              large_ks: Sequence[int] = (paper.HASH_BITS_DEFAULT,), n_queries: int | None = None,
              data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
              use_faiss: bool = True, ingest_files: int | None = None, seed: int = 0,
              command: str | None = None, log: Callable[[str], None] = print,
              work_dir: str | Path | None = None, busy: bool = False) -> BenchReport:
    """Run every benchmark; write ``bench.json`` and ``bench.md`` into ``out_dir`` (unless None).

    ``sizes``: vault sizes in recordings; the first is the real-code Table 4 vault (default
    10k; quick 1k) at every K in ``ks``, the others use synthetic codes at ``large_ks``.
    ``busy``: measure issue 13's target figures (``model_export.bench_targets``) a second time
    with one core taken by a spinning process."""
    from model_export import bench_targets as bt
    from hashing.encoder import Encoder
    from store.records import QueryCode

    t_start = time.perf_counter()
    sizes = tuple(sizes or (QUICK_SIZES if quick else DEFAULT_SIZES))
    nq = int(n_queries or (20 if quick else 100))
    rng = np.random.default_rng(seed)
    cache = Path(cache_dir) if cache_dir is not None else _default_cache()
    machine = machine_info()
    notes: list[str] = []
    # Table 4 and 5 are the paper's one-window searches: the model whose codes are per model
    # window (the default's identification windows are measured by the excerpt bench below)
    enc = Encoder.shipped(TABLE4_MODEL, num_threads=1)
    K0, C = enc.K, enc.meta.C  # K0: bits of the indexed code
    files, labels, data_desc = _find_data(data_dir)
    log(f"bench: data {data_desc} ({len(files)} files), model {enc.meta.name} K={K0}, sizes {sizes}")
    faiss = _faiss_mod() if use_faiss else None
    faiss_info = {"available": faiss is not None,
                  "version": getattr(faiss, "__version__", None) if faiss else None,
                  "index": "IndexBinaryFlat (exhaustive Hamming), top 10, one query per call, "
                           "1 OpenMP thread; two-stage = one index per category"}
    if faiss is None:
        notes.append("FAISS not installed (pip install faiss-cpu, or the 'bench' extra): "
                     "the FAISS columns are empty.")

    tmp = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="sv-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    e2e: dict[str, Any] = {}
    targets: dict[str, Any] = {"idle": {}, "busy": {}}
    rounds = 1 if quick else 2
    try:
        # --- Table 4 vault: real codes at the default K ----------------------------------
        size0 = sizes[0]
        per_cat = size0 // C
        rc = real_codes(enc, files, labels, per_cat, cache_dir=cache, log=log)
        n_real = len(rc["labels"])
        words0, wcat0, owner0 = rc["words"], rc["category"], rc["owner"]
        lab0, names0 = list(rc["labels"]), list(rc["names"])
        if n_real < size0:
            fill = size0 - n_real
            notes.append(f"Only {n_real} real recordings could be coded from {data_desc} "
                         f"({len(files)} files x {1 + len(_GROW_CPOS)} variants); the "
                         f"{size0}-recording vault is filled with {fill} synthetic codes.")
            fcat = rng.integers(0, C, fill)
            words0 = np.concatenate([words0, synthetic_words(fill, K0, rng)])
            wcat0 = np.concatenate([wcat0, fcat])
            owner0 = np.concatenate([owner0, n_real + np.arange(fill)])
            lab0 += [enc.meta.class_names[int(c)] for c in fcat]
            names0 += [f"synthetic-{i}" for i in range(fill)]
        variants = {str(k): int(v) for k, v in zip(*np.unique(rc["variant"], return_counts=True))}
        log(f"  Table 4 vault: {size0} recordings ({n_real} real: {variants}), {len(words0)} rows")
        first = np.searchsorted(owner0, np.arange(size0))
        rec_cat = wcat0[first]  # category of each recording's first row

        def queries_for(words, wcat, owner, K, n):
            firsts = np.searchsorted(owner, np.arange(int(owner.max()) + 1))
            pick = rng.choice(len(firsts), size=n, replace=False)
            return [QueryCode(category=np.array([wcat[firsts[i]]]), K=K,
                              words=_flip(words[firsts[i]], K, FLIP_FRACTION, rng)[None, :])
                    for i in pick]

        for K in ks:
            if K == K0:
                v = _new_vault(tmp / f"t4-k{K}.duckdb", enc)
                words, wcat, owner, codes_kind = words0, wcat0, owner0, "real"
                bulk_insert_codes(v, words, wcat, owner=owner, labels=lab0, names=names0)
            else:
                v = _new_vault(tmp / f"t4-k{K}.duckdb", _placeholder_model(K, C, enc.meta.class_names))
                words, wcat, owner = synthetic_words(size0, K, rng), rec_cat, np.arange(size0)
                codes_kind = "synthetic"
                bulk_insert_codes(v, words, wcat, labels=lab0)
            qs = queries_for(words, wcat, owner, K, nq)
            for mode in MODES:
                st, split = _time_vault(v, qs, mode)
                row = {"size": size0, "rows": int(len(words)), "K": int(K), "codes": codes_kind,
                       "mode": mode, **st, **split,
                       "paper": PAPER_TABLE4[K][0 if mode == "traversal" else 1] if K in PAPER_TABLE4 else None}
                if faiss is not None:
                    row["faiss"] = _time_faiss(faiss, words, wcat, K, qs, mode)
                    row["vault_over_faiss"] = row["p50"] / row["faiss"]["p50"]
                rows.append(row)
                log(f"  {size0} K={K} {mode}: p50 {1e3 * st['p50']:.2f} ms p95 {1e3 * st['p95']:.2f} ms"
                    + (f", faiss p50 {1e3 * row['faiss']['p50']:.3f} ms" if faiss else ""))
            if K == K0:
                e2e = _e2e_bench(v, files, 8 if quick else 40, log)
                clips = bt.one_second_clips(files, enc.sample_rate, 20 if quick else 200,
                                            tmp / "clips")
                wav10 = _long_recording(files, enc.sample_rate)
                bt.measure_twice(lambda: bt.measure_small_vault(v, qs, clips, wav10,
                                                                5 if quick else 20),
                                 busy, targets, log, rounds)
            v.close()
            if K == K0:  # a subprocess opens the vault: after it is closed here
                bt.measure_twice(lambda: bt.measure_cli(tmp / f"t4-k{K}.duckdb", clips[0],
                                                        2 if quick else 7),
                                 busy, targets, log, rounds)

        # --- larger vaults: synthetic codes ------------------------------------------------
        for size in sizes[1:]:
            for K in large_ks:
                v = _new_vault(tmp / f"large-{size}-k{K}.duckdb",
                               enc if K == K0 else _placeholder_model(K, C, enc.meta.class_names))
                wcat = rng.integers(0, C, size)
                words = synthetic_words(size, K, rng)
                t0 = time.perf_counter()
                bulk_insert_codes(v, words, wcat)
                t_build = time.perf_counter() - t0
                qs = queries_for(words, wcat, np.arange(size), K, nq)
                if size == max(sizes[1:]) and K == K0:
                    bt.measure_twice(lambda: bt.measure_large_vault(v, words, wcat, K, qs, faiss),
                                     busy, targets, log, rounds)
                for mode in MODES:
                    st, split = _time_vault(v, qs, mode)
                    row = {"size": size, "rows": size, "K": int(K), "codes": "synthetic", "mode": mode,
                           **st, **split, "paper": None, "build_seconds": t_build}
                    if faiss is not None:
                        row["faiss"] = _time_faiss(faiss, words, wcat, K, qs, mode)
                        row["vault_over_faiss"] = row["p50"] / row["faiss"]["p50"]
                    rows.append(row)
                    log(f"  {size} K={K} {mode}: p50 {1e3 * st['p50']:.2f} ms p95 {1e3 * st['p95']:.2f} ms")
                v.close()
                del words, wcat
                for p in tmp.glob(f"large-{size}-k{K}.duckdb*"):
                    p.unlink()

        # --- ingest, cipher --------------------------------------------------------------
        ingest = _ingest_bench(enc, files, int(ingest_files or (20 if quick else 300)), tmp, log)
        wavs = bt.ten_second_wavs(files, enc.sample_rate, 6 if quick else 30, tmp / "wav10")
        bt.measure_twice(lambda: bt.measure_ingest(enc, wavs, tmp), busy, targets, log, rounds)
        cipher = _cipher_bench(quick)
        log(f"  keystream {cipher['rossler_keystream_xor_MB_per_s']:.0f} MB/s")
    finally:
        if work_dir is None:
            shutil.rmtree(tmp, ignore_errors=True)

    notes += [
        "Table 4 rows at K != 384 use synthetic codes (no shipped model at that K): the "
        "category of each row is copied from the real 384-bit vault, the bits are uniform random.",
        f"Queries: {nq} stored codes per row with {int(FLIP_FRACTION * 100)} % of their bits flipped, "
        "given as codes (QueryCode): the time is Vault.search alone (one SQL statement: category "
        "filter and Hamming ranking; the best window per recording is picked from its ranked "
        "rows; the labels come from the handle's store.labels cache: the first search looks up "
        "its hits, the second reads every label of a vault of up to 200,000 recordings, a "
        "larger one looks up the hits it lacks; its time is the Hamming "
        "stage column, the category stage column is 0), top 10. 3 warm-up queries are not counted.",
        "Rows beyond the first size: synthetic codes bulk-inserted into a real vault (model_export.bench."
        "bulk_insert_codes: placeholder recordings rows, sha256 'synthetic:<id>', empty blobs); "
        "same schema, same SQL (store.search).",
        "The paper's times are for 10 s files on an unspecified 2.5 GHz CPU (Table 5) with their "
        "own implementation; ours are a DuckDB vault on the machine above.",
    ]
    if machine.get("load_avg_1_5_15") and machine["load_avg_1_5_15"][0] > (machine.get("cores") or 1):
        notes.append(f"The machine was loaded (1-min load {machine['load_avg_1_5_15'][0]} on "
                     f"{machine['cores']} cores) while measuring: times are pessimistic.")
    report = BenchReport(
        command=command or ("speechvault bench" + (" --quick" if quick else "")),
        machine=machine, quick=bool(quick),
        config={"sizes": list(sizes), "ks": list(ks), "large_ks": list(large_ks), "queries": nq,
                "top": TOP, "flip_fraction": FLIP_FRACTION, "data": data_desc,
                "model": {"name": enc.meta.name, "K": K0, "sha256": enc.sha256},
                "real_codes": {"recordings": int(n_real), "variants": variants,
                               "encode_seconds": float(rc["encode_seconds"])},
                "faiss": faiss_info},
        table4=rows, ingest=ingest, cipher=cipher, end_to_end=e2e,
        memory={"peak_rss_mb": peak_rss_mb(), "source": "resource.getrusage(RUSAGE_SELF).ru_maxrss"},
        faiss=faiss_info, notes=notes, seconds=time.perf_counter() - t_start,
        targets={**targets, "sizes": list(sizes)})
    from model_export.bench_excerpt import bench_excerpt

    report.excerpt = bench_excerpt(**(EXCERPT_QUICK if quick else EXCERPT_FULL), busy=busy,
                                   log=log)
    machine["load_avg_end"] = machine_info()["load_avg_1_5_15"]
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.json_path = str(out / "bench.json")
        report.md_path = str(out / "bench.md")
        Path(report.json_path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        Path(report.md_path).write_text(report.to_markdown())
    return report


def _default_cache() -> Path:
    env = os.environ.get("SPEECHVAULT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "speechvault"


# ----------------------------------------------------------------------------- markdown
def _ratio(x) -> str:
    v = x.get("vault_over_faiss")
    return f"{v:.1f}x" if v else "-"


def _ms(x) -> str:
    return "-" if x is None else f"{1e3 * x:.2f}"


def _targets_markdown(r: BenchReport) -> list[str]:
    from model_export.bench_targets import markdown

    sizes = r.targets.get("sizes") or r.config["sizes"]
    L = markdown(r.targets, sizes[0], max(sizes[1:]) if len(sizes) > 1 else None)
    load, cores = r.machine.get("load_avg_1_5_15"), r.machine.get("cores") or 1
    if load and load[0] > cores:
        L += [f"Other processes kept the machine loaded during this run (1-min load {load[0]} on "
              f"{cores} cores): \"idle\" means without our spinner, not an idle machine, and "
              "the busy / idle ratios are within the noise of that load.", ""]
    return L


def _markdown(r: BenchReport) -> str:
    m = r.machine
    L = [
        "# speechvault bench: search speed (paper Table 4), FAISS, ingest, cipher, latency, memory",
        "",
        f"Command: `{r.command}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m.get('memory_gb')} GB; load average "
        f"(1/5/15 min) {m.get('load_avg_1_5_15')} at the start, {m.get('load_avg_end')} at the end; "
        f"{m['platform']}, Python {m['python']}; {m['date']}  ",
        f"Run time: {r.seconds:.0f} s. Model: `{r.config['model']['name']}` (K = {r.config['model']['K']}). "
        f"Data: {r.config['data']}.",
        "",
        *(_targets_markdown(r) if r.targets else []),
        "## Table 4: seconds per query, traversal vs two-stage (ms here; paper in ms)",
        "",
        "| recordings | index rows | K | codes | mode | p50 ms | p95 ms | category stage p50 ms | "
        "Hamming stage p50 ms | paper ms | FAISS p50 ms | vault / FAISS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r.table4:
        fz = x.get("faiss") or {}
        L.append(f"| {x['size']:,} | {x['rows']:,} | {x['K']} | {x['codes']} | {x['mode']} | "
                 f"{_ms(x['p50'])} | {_ms(x['p95'])} | {_ms(x.get('category_stage_p50'))} | "
                 f"{_ms(x.get('hamming_stage_p50'))} | {_ms(x.get('paper'))} | "
                 f"{_ms(fz.get('p50')) if fz else '-'} | {_ratio(x)} |")
    L += ["", f"Paper (Table 4, 10,000 files of 10 s, 10 categories): two-stage = {PAPER_CATEGORY_STAGE * 1e3:.0f} ms "
          "category stage + the semantic stage.", ""]
    ing, ci, e = r.ingest, r.cipher, r.end_to_end
    L += ["## Throughput", "",
          "| what | ours | paper |", "|---|---|---|",
          f"| ingest ({ing['files']} files, {ing['bytes'] / 1e6:.2f} MB) | {ing['files_per_s']:.1f} files/s, "
          f"{ing['MB_per_s']:.3f} MB/s | - |",
          f"| Rossler keystream XOR ({ci['bytes'] >> 20} MiB) | {ci['rossler_keystream_xor_MB_per_s']:.0f} MB/s | - |",
          f"| seal, rossler (keystream + HMAC-SHA256) | {ci['seal_rossler_MB_per_s']:.0f} MB/s | - |",
          f"| seal, chacha20poly1305 | {ci['seal_chacha20poly1305_MB_per_s']:.0f} MB/s | - |",
          "", f"Ingest: {ing['note']}.", ""]
    if e:
        L += [f"## End-to-end query latency (audio file in, hits out; two-stage; vault of "
              f"{e['vault_rows']:,} index rows)", "",
              "| query | p50 ms | p95 ms | decode | features | inference | category stage | Hamming stage | paper |",
              "|---|---|---|---|---|---|---|---|---|"]
        for k, lab, pap in (("clip", "FSDD clip", "-"),
                            ("10s_recording", "10 s recording", "439.4 (CNN), 527.4 (CRNN)")):
            s = e[k]
            L.append(f"| {lab} | {_ms(s['p50'])} | {_ms(s['p95'])} | {_ms(s['decode_p50'])} | "
                     f"{_ms(s['features_p50'])} | {_ms(s['inference_p50'])} | "
                     f"{_ms(s['category_stage_p50'])} | {_ms(s['hamming_stage_p50'])} | {pap} |")
        L += ["", "Stage columns are medians in ms (from SearchResult.timings). The category "
              "stage is 0: the category filter runs inside the search's one SQL statement "
              "(store.search.ranked_statement), whose time is the Hamming stage column.", ""]
    if r.excerpt:
        from model_export.bench_excerpt import to_markdown as excerpt_md

        L += ["## Excerpt search (issue 12)", "",
              *excerpt_md(r.excerpt, r.command).splitlines()[4:], ""]
    L += ["## Memory", "", f"Peak resident memory of the bench process: {r.memory['peak_rss_mb']} MB "
          f"({r.memory['source']}).", "", "## FAISS", "",
          (f"faiss-cpu {r.faiss['version']}: {r.faiss['index']}." if r.faiss["available"]
           else "Not installed: `pip install faiss-cpu` (or `pip install 'speechvault[bench]'`)."), "",
          "## Notes", ""]
    L += [f"- {n}" for n in r.notes]
    L.append("")
    return "\n".join(L)


def main(argv: Sequence[str] | None = None) -> int:  # python -m model_export.bench
    import argparse
    import shlex

    p = argparse.ArgumentParser(prog="python -m model_export.bench")
    p.add_argument("--out", default="docs/results")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sizes", default=None, help="comma-separated vault sizes")
    p.add_argument("--data", default=None)
    p.add_argument("--queries", type=int, default=None)
    p.add_argument("--busy", action="store_true")
    args = p.parse_args(argv)
    argv_l = list(sys.argv[1:] if argv is None else argv)
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    rep = run_bench(args.out, args.quick, sizes=sizes, data_dir=args.data, n_queries=args.queries,
                    busy=args.busy,
                    command="python -m model_export.bench " + " ".join(shlex.quote(a) for a in argv_l))
    print(rep.table())
    print(f"wrote {rep.json_path} and {rep.md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
