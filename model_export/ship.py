"""Copy an exported model (``.tflite`` + ``.json``) into ``hashing/models/`` for shipping.

    python -m model_export.ship /work/cache/sv_models/crnn/fsdd-crnn-k384.tflite --as default
    python -m model_export.ship /work/cache/sv_models/cnn/fsdd-cnn-k384.tflite

Checks before copying: the metadata validates, the sha256 matches the bytes, the file is at most
10 MB, and the runtime encoder loads it and encodes a test signal. A model with a fingerprint
(``NAME.fingerprint.npz``, ``hashing.fingerprint``) is shipped with it. ``--as NAME`` ships it as
``NAME.tflite``/``NAME.json`` (``default`` is what ``Encoder.default()`` loads); the model's own
``name`` inside the metadata is kept. Runtime only (no TensorFlow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from hashing.encoder import Encoder
from hashing.fingerprint import FINGERPRINT_SUFFIX
from hashing.model_meta import ModelMeta
from speechvault.errors import ModelError

__all__ = ["MAX_BYTES", "FSDD_DESCRIPTION", "ship", "main"]

MAX_BYTES = 10 * 1024 * 1024
MODELS_DIR = Path(__file__).resolve().parents[1] / "hashing" / "models"
FSDD_DESCRIPTION = ("Free Spoken Digit Dataset (FSDD, Z. Jackson et al., "
                    "https://github.com/Jakobovski/free-spoken-digit-dataset): 3,000 recordings of "
                    "the digits 0-9, 6 speakers x 50 takes, 8 kHz mono WAV, CC BY-SA 4.0")


def ship(src: str | Path, as_name: str | None = None, dest_dir: str | Path = MODELS_DIR,
         data_description: str | None = None) -> tuple[Path, Path]:
    src = Path(src)
    blob = src.read_bytes()
    if len(blob) > MAX_BYTES:
        raise ModelError(f"{src.name} is {len(blob) / 1e6:.1f} MB; a shipped model is at most 10 MB")
    meta = ModelMeta.load(src.with_suffix(".json"))
    meta.check_sha256(blob)
    if data_description is None and str(meta.training.get("data", "")).lower() == "fsdd":
        data_description = FSDD_DESCRIPTION
    if data_description:
        meta.training["data_description"] = data_description
    fp_path = src.with_name(src.stem + FINGERPRINT_SUFFIX)
    fp = fp_path.read_bytes() if meta.fingerprint is not None else None
    if fp is not None and len(blob) + len(fp) > MAX_BYTES:
        raise ModelError(f"{src.name} with its fingerprint is {(len(blob) + len(fp)) / 1e6:.1f} MB; "
                         "a shipped model is at most 10 MB")
    enc = Encoder.from_bytes(blob, meta, num_threads=1, fingerprint=fp)
    t = np.arange(enc.sample_rate) / enc.sample_rate
    codes = enc.encode_audio((0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(len(t))).astype(np.float32))
    if codes.bits.shape != (1, meta.code_bits) or codes.hash_words.shape != (1, meta.n_words):
        raise ModelError(f"{src.name}: unexpected code shape {codes.bits.shape}")
    name = as_name or src.stem
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    t_path, j_path = dest / f"{name}.tflite", dest / f"{name}.json"
    tmp = t_path.with_name(t_path.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(t_path)
    f_path = dest / f"{name}{FINGERPRINT_SUFFIX}"
    if fp is not None:
        f_path.write_bytes(fp)
    elif f_path.exists():
        f_path.unlink()  # a stale fingerprint of a model shipped earlier under this name
    meta.save(j_path)
    return t_path, j_path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.ship")
    p.add_argument("model", help="exported .tflite (its .json next to it)")
    p.add_argument("--as", dest="as_name", default=None, help="file name in hashing/models (e.g. default)")
    p.add_argument("--dest", default=str(MODELS_DIR))
    args = p.parse_args(argv)
    t, j = ship(args.model, args.as_name, args.dest)
    print(f"shipped {t} and {j}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
