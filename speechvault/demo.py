"""The offline demo, as a library function: ``run_demo()`` -> :class:`DemoReport`.

What it does, from the example clips shipped in ``speechvault/examples`` (espeak-ng digits and two
sentences, see ``tools/make_examples.sh``), with no network and no files outside ``workdir``:

1. creates a vault in a temporary directory (or ``workdir``) with a random passphrase generated
   in-process and the *default* scrypt cost (2**17: 0.5-1 s and 128 MiB, like a real vault);
   a vault that is kept gets its passphrase in ``demo.key`` next to it (mode 0600), so it can
   be opened afterwards (``--key-file``);
2. ingests every example clip with ``Encoder.default()``;
3. degrades one clip (MP3 round trip, then -3 dB, then white noise at 20 dB SNR, from
   ``hashing.cpo``), writes it as ``query.wav`` and searches the vault with it, two-stage, tau
   from the model;
4. decrypts the matching recording and checks that it is byte-identical (SHA-256) to the file
   that was ingested.

The CLI (``speechvault demo``) only prints the report; the tests call :func:`run_demo` directly.
Nothing here imports TensorFlow or Textual.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from speechvault import paper
from speechvault.errors import InvalidInputError, NotFoundError
from speechvault.hit_rows import evidence_words
from speechvault.passphrase import generate_passphrase

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
MANIFEST = "manifest.json"
DEMO_VAULT_NAME = "demo.duckdb"
QUERY_NAME = "query.wav"
KEY_FILE_NAME = "demo.key"
DEFAULT_QUERY_CLIP = "7_en-us_3.wav"

MP3_BITRATE_KBPS = 128
GAIN_DB = -3.0
NOISE_SNR_DB = 20.0
NOISE_SEED = 20200  # fixed: the demo is reproducible run to run
DEGRADATION = f"MP3 round trip ({MP3_BITRATE_KBPS} kbit/s), {GAIN_DB:+.0f} dB gain, white noise at {NOISE_SNR_DB:.0f} dB SNR"


def examples_dir() -> Path:
    return EXAMPLES_DIR


def load_manifest(directory: Path | None = None) -> dict[str, Any]:
    d = EXAMPLES_DIR if directory is None else Path(directory)
    path = d / MANIFEST
    if not path.is_file():
        raise NotFoundError(f"example clips not found: {path} is missing (reinstall speechvault)")
    return json.loads(path.read_text(encoding="utf-8"))


def example_clips(directory: Path | None = None, kind: str | None = None) -> list[Path]:
    """Paths of the shipped example clips, in manifest order (``kind``: "digit" | "sentence")."""
    d = EXAMPLES_DIR if directory is None else Path(directory)
    clips = [c for c in load_manifest(d)["clips"] if kind is None or c["kind"] == kind]
    paths = [d / c["file"] for c in clips]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise NotFoundError(f"example clips missing from {d}: {', '.join(missing[:5])}")
    return paths


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    return obj


@dataclass
class DemoReport:
    workdir: str | None            # None when the temporary directory was removed
    vault_path: str
    kept: bool
    key_file: str | None           # the passphrase of a kept vault (0600); None otherwise
    model_name: str
    model_sha256: str
    cipher: str
    kdf_log2n: int
    n_clips: int
    added: int
    duplicates: int
    errors: list[tuple[str, str]]
    query_source: str              # the example clip that was degraded
    query_file: str                # the degraded WAV actually searched
    degradation: str
    expected_id: int | None        # vault id of query_source
    matched: bool                  # some hit under tau
    correct: bool                  # the best hit is query_source and it is a match
    top_name: str | None
    top_ber: float | None
    tau: float
    mode: str
    query_category: Any
    hits: list[dict[str, Any]]     # the hits as SearchResult returned them (to_dict)
    search_timings: dict[str, float]
    original_sha256: str | None
    exported_sha256: str | None
    byte_identical: bool
    timings: dict[str, float] = field(default_factory=dict)  # wall time of each demo step
    #: what decided the best hit: "tau 0.031" (BER < tau) or its evidence over the windows
    #: (the default model's excerpt rule, ``store.excerpt``)
    decision: str = ""

    @property
    def ok(self) -> bool:
        return self.matched and self.correct and self.byte_identical and not self.errors

    def to_dict(self) -> dict[str, Any]:
        d = _to_jsonable(asdict(self))
        d["ok"] = self.ok
        return d


def write_key_file(path: Path, passphrase: str) -> None:
    """The passphrase in a new file only its owner may read (created 0600, never replaced):
    a kept demo vault whose random passphrase nobody knows could never be opened again."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(passphrase + "\n")


def _degrade(y, sample_rate: int):
    """MP3 round trip, then gain, then noise (hashing.cpo). Kept in one place: if the CPO
    signatures change, only this function changes."""
    import numpy as np

    from hashing import cpo

    out = cpo.mp3_roundtrip(y, sample_rate, bitrate_kbps=MP3_BITRATE_KBPS)
    out = cpo.gain_db(out, GAIN_DB)
    out = cpo.add_noise_snr(out, NOISE_SNR_DB, rng=np.random.default_rng(NOISE_SEED))
    return np.asarray(out, dtype=np.float32)


def run_demo(
    workdir: str | Path | None = None,
    *,
    query_clip: str | None = None,
    keep: bool | None = None,
    on_step: Callable[[str], None] | None = None,
    ingest_progress: Callable[[Any], None] | None = None,
    examples: Path | None = None,
) -> DemoReport:
    """Run the demo end to end and return its report (see the module docstring).

    ``workdir``: where to build the vault; must not already hold ``demo.duckdb``. Default: a new
    temporary directory, removed at the end unless ``keep``. ``keep`` defaults to True when a
    workdir is given. ``on_step`` receives one human-readable line per step (the CLI prints them);
    ``ingest_progress`` is passed to ``Vault.ingest(progress=...)``.
    """
    from hashing.audio import load_audio, write_wav
    from hashing.encoder import Encoder
    from store.vault import Vault

    step = on_step or (lambda _msg: None)
    ex_dir = EXAMPLES_DIR if examples is None else Path(examples)
    manifest = load_manifest(ex_dir)
    clips = example_clips(ex_dir)
    query_name = query_clip or manifest.get("demo_query") or DEFAULT_QUERY_CLIP
    query_source = ex_dir / query_name
    if not query_source.is_file():
        raise NotFoundError(f"demo query clip {query_name}: not among the example clips")

    own_tmp = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="speechvault-demo-")) if own_tmp else Path(workdir)
    keep = (not own_tmp) if keep is None else keep
    if not own_tmp:
        if wd.exists() and not wd.is_dir():
            raise InvalidInputError(f"--workdir {wd}: exists and is not a directory")
        wd.mkdir(parents=True, exist_ok=True)
    vault_path = wd / DEMO_VAULT_NAME
    key_path = wd / KEY_FILE_NAME
    for existing in (vault_path, Path(str(vault_path) + ".wal"), *([key_path] if keep else [])):
        if existing.exists():
            raise InvalidInputError(f"{existing} already exists: choose another --workdir or "
                                    "remove it")
    query_file = wd / QUERY_NAME

    timings: dict[str, float] = {}
    try:
        step(f"building a demo vault from {len(clips)} example clips in {wd} "
             "(the default key derivation takes about a second)")
        passphrase = generate_passphrase()
        if keep:
            write_key_file(key_path, passphrase)
            step(f"passphrase written to {key_path} (mode 0600): --key-file {key_path}")

        t = time.perf_counter()
        encoder = Encoder.default()
        timings["load_model"] = time.perf_counter() - t
        step(f"model: {encoder.meta.name} (K={encoder.meta.K}, sha256 {encoder.sha256[:12]})")

        t = time.perf_counter()
        vault = Vault.create(vault_path, passphrase, encoder=encoder)
        timings["create"] = time.perf_counter() - t
        with vault:
            info = vault.info()
            cipher = str(info.cipher)
            kdf_log2n = int(dict(info.kdf or {}).get("log2_n", 17))
            step(f"created {vault_path} (random passphrase, scrypt 2^{kdf_log2n}: "
                 f"{timings['create']:.2f} s)")

            t = time.perf_counter()
            ingest = vault.ingest(clips, progress=ingest_progress)
            timings["ingest"] = time.perf_counter() - t
            step(f"ingested {len(ingest.added)} of {len(clips)} example clips "
                 f"in {timings['ingest']:.2f} s")

            original = query_source.read_bytes()
            original_sha = _sha256(original)
            expected = next((r for r in ingest.added if r.sha256 == original_sha), None)
            if expected is None:
                expected = next((r for r in ingest.added if r.name == query_source.name), None)
            expected_id = None if expected is None else int(expected.id)

            t = time.perf_counter()
            sr = paper.SAMPLE_RATE
            write_wav(query_file, _degrade(load_audio(query_source, sr), sr), sr)
            timings["degrade"] = time.perf_counter() - t
            step(f"query: {query_name} degraded ({DEGRADATION}) -> {query_file.name}")

            t = time.perf_counter()
            result = vault.search(query_file)
            timings["search"] = time.perf_counter() - t
            hits = list(result.hits)
            top = hits[0] if hits else None
            correct = bool(result.matched and top is not None and top.is_match
                           and expected_id is not None and int(top.recording_id) == expected_id)
            why = ""
            if top is not None:
                verdict = 'match' if top.is_match else 'no match'
                why = (f"tau {float(result.tau):.3f}" if result.excerpt_rule() is None
                       else evidence_words(top))
                step(f"search: best hit {top.name} BER {float(top.ber):.4f} ({verdict}, {why})")

            exported_sha = None
            t = time.perf_counter()
            if expected_id is not None and correct:
                exported_sha = _sha256(vault.export(expected_id))
            timings["export"] = time.perf_counter() - t
            identical = exported_sha is not None and exported_sha == original_sha
            step("decrypted the match: " + ("byte-identical to the ingested file (sha256)"
                                            if identical else "NOT identical / not decrypted"))

            meta = encoder.meta
            report = DemoReport(
                workdir=str(wd) if keep else None,
                vault_path=str(vault_path),
                kept=keep,
                key_file=str(key_path) if keep else None,
                model_name=str(meta.name),
                model_sha256=str(encoder.sha256),
                cipher=str(cipher),
                kdf_log2n=int(kdf_log2n),
                n_clips=len(clips),
                added=len(ingest.added),
                duplicates=len(ingest.skipped_duplicates),
                errors=[(str(p), str(m)) for p, m in ingest.errors],
                query_source=query_name,
                query_file=str(query_file),
                degradation=DEGRADATION,
                expected_id=expected_id,
                matched=bool(result.matched),
                correct=correct,
                top_name=None if top is None else str(top.name),
                top_ber=None if top is None else float(top.ber),
                tau=float(result.tau),
                mode=str(result.mode),
                query_category=_to_jsonable(result.query_category),
                hits=[_to_jsonable(h) for h in hits],
                search_timings={k: float(v) for k, v in dict(result.timings).items()},
                original_sha256=original_sha,
                exported_sha256=exported_sha,
                byte_identical=identical,
                timings=timings,
                decision=why,
            )
        return report
    finally:
        if own_tmp and not keep:
            shutil.rmtree(wd, ignore_errors=True)
