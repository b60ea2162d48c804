"""Give a newly trained coding model the identification fingerprint of a shipped one (issue 16).

    python -m model_export.attach_fingerprint NEW.tflite --from hashing/models/default.tflite \\
        --name fsdd-crnn-k384-diverse --out DIR
    python -m model_export.ship DIR/fsdd-crnn-k384-diverse.tflite            # a named model
    python -m model_export.ship DIR/fsdd-crnn-k384-diverse.tflite --as default  # the default

The DDA fingerprint (``hashing.fingerprint``) is computed from the Log-Mel input, not from the
CRNN, so a better category stage can replace the CRNN while the vault keeps indexing the same
fingerprint at the same tau: stored codes, excerpt identification and its calibrated rule stay
valid; only h1 (and h2) change. The new metadata takes the donor's ``fingerprint`` block and its
``tau`` (the fingerprint's threshold); the new model's own h2 threshold is kept in
``metrics["h2_tau"]``. Runtime only (no TensorFlow).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Sequence

from hashing.fingerprint import FINGERPRINT_SUFFIX
from hashing.model_meta import ModelMeta, sha256_hex
from speechvault.errors import ModelError, SpeechVaultError

__all__ = ["attach_fingerprint", "main"]


def attach_fingerprint(model: str | Path, donor: str | Path, out_dir: str | Path,
                       name: str | None = None, model_input: str | None = None) -> Path:
    """Write ``out_dir/NAME.tflite`` (the new model's bytes), ``NAME.json`` and
    ``NAME.fingerprint.npz`` (the donor's bytes; with ``model_input``, its windowing's
    ``model_input`` set so: ``hashing.windowing.WindowingSpec``). Returns the .tflite path."""
    model, donor = Path(model), Path(donor)
    blob = model.read_bytes()
    meta = ModelMeta.load(model.with_suffix(".json"))
    meta.check_sha256(blob)
    dmeta = ModelMeta.load(donor.with_suffix(".json"))
    if dmeta.fingerprint is None:
        raise ModelError(f"{donor.name} has no fingerprint to give")
    if (meta.features, meta.input_shape) != (dmeta.features, dmeta.input_shape):
        raise ModelError("the two models read different features; the fingerprint would not fit")
    fp_src = donor.with_name(donor.stem + FINGERPRINT_SUFFIX)
    name = name or meta.name
    metrics = dict(meta.metrics)
    # a model that already carries a fingerprint had its own h2 threshold put aside then
    metrics["h2_tau"] = meta.metrics.get("h2_tau", meta.tau) if meta.fingerprint else meta.tau
    training = dict(meta.training)
    if donor.resolve() != model.resolve() or "fingerprint_from" not in training:
        training["fingerprint_from"] = {"model": dmeta.name, "tflite_sha256": dmeta.tflite_sha256,
                                        "note": "fingerprint and tau taken unchanged (Log-Mel "
                                                "input, independent of the CRNN)"}
    else:  # its own fingerprint, re-written (``model_input``): where it came from stays
        training["fingerprint_from"] = dict(training["fingerprint_from"])
    fp_bytes, fingerprint = fp_src.read_bytes(), dict(dmeta.fingerprint)
    if model_input is not None:
        fp_bytes = _with_model_input(fp_bytes, model_input)
        fingerprint["sha256"] = sha256_hex(fp_bytes)
        training["fingerprint_from"]["model_input"] = model_input
    new = dataclasses.replace(meta, name=name, fingerprint=fingerprint, tau=dmeta.tau,
                              metrics=metrics, training=training).validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = out / f"{name}.tflite"
    if t.resolve() != model.resolve():
        t.write_bytes(blob)
    (out / f"{name}{FINGERPRINT_SUFFIX}").write_bytes(fp_bytes)
    new.save(out / f"{name}.json")
    return t


def _with_model_input(fp_bytes: bytes, model_input: str) -> bytes:
    """The fingerprint file with its windowing's ``model_input`` set (checked by
    ``WindowingSpec``); projection, mean and rule unchanged."""
    from hashing.fingerprint import load_fingerprint
    from hashing.windowing import WindowingSpec

    fp = load_fingerprint(fp_bytes)
    if fp.windowing is None:
        raise ModelError("the donor's fingerprint has no identification windows")
    spec = WindowingSpec.from_dict({**fp.windowing, "model_input": model_input})
    return dataclasses.replace(fp, windowing=spec.to_dict()).to_bytes()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.attach_fingerprint")
    p.add_argument("model", help="the new .tflite (its .json next to it)")
    p.add_argument("--from", dest="donor", required=True, help="a .tflite whose fingerprint to take")
    p.add_argument("--out", required=True)
    p.add_argument("--name", default=None)
    p.add_argument("--model-input", choices=("take", "grid"), default=None,
                   help="where the model looks (hashing.windowing.WindowingSpec.model_input); "
                        "default: as the donor")
    a = p.parse_args(argv)
    try:
        t = attach_fingerprint(a.model, a.donor, a.out, a.name, a.model_input)
    except (SpeechVaultError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
