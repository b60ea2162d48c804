"""Export a trained coding model to TFLite (batch size 1, float32) plus its ``ModelMeta`` JSON.

The export checks itself: the TFLite model and the Keras model must give the same hash bits on
the given verification windows (the validation set); the agreement is stored in
``meta.metrics["export_check"]`` and an export below ``min_agreement`` (99.9 %) fails.

Needs TensorFlow (the ``train`` extra); the verification runs the TFLite bytes through the same
runtime the encoder uses (``hashing.encoder``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hashing import codes
from hashing.model_meta import ModelMeta, sha256_hex
from speechvault.errors import ModelError

try:
    import keras
    import tensorflow as tf
except ImportError as exc:  # pragma: no cover
    from speechvault.errors import RuntimeMissingError

    raise RuntimeMissingError(
        "exporting needs TensorFlow: pip install 'speechvault[train]'") from exc

from model_export.models import HASH_LAYER, PROBS_LAYER, clone_for_export

__all__ = ["MAX_MODEL_BYTES", "MIN_AGREEMENT", "ExportResult", "to_tflite", "output_map",
           "keras_outputs", "tflite_outputs", "agreement", "export_model"]

MAX_MODEL_BYTES = 10 * 1024 * 1024   # a shipped model stays <= 10 MB
MIN_AGREEMENT = 0.999


@dataclasses.dataclass
class ExportResult:
    tflite_path: Path
    meta_path: Path
    meta: ModelMeta
    agreement: dict[str, Any]
    size_bytes: int


def to_tflite(model: "keras.Model", arch: str, input_shape: Sequence[int], K: int, C: int, *,
              input_mode: str = "native", optimize_size: bool | None = None,
              max_bytes: int = MAX_MODEL_BYTES) -> tuple[bytes, str]:
    """Convert ``model`` via a batch-size-1 clone. Returns (bytes, quantization).

    float32 by default; when the float32 file exceeds ``max_bytes`` (or ``optimize_size=True``)
    the weights are stored as float16 (computation stays float32 in the interpreter).
    """
    m1 = clone_for_export(model, arch, input_shape, K, C, input_mode=input_mode)
    wrapped = keras.Model(m1.inputs, {HASH_LAYER: m1.outputs[0], PROBS_LAYER: m1.outputs[1]},
                          name=m1.name)

    def convert(f16: bool) -> bytes:
        conv = tf.lite.TFLiteConverter.from_keras_model(wrapped)
        if f16:
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        return conv.convert()

    if optimize_size:
        return convert(True), "float16-weights"
    b = convert(False)
    if optimize_size is None and len(b) > max_bytes:
        return convert(True), "float16-weights"
    return b, "none"


def _interpreter(tflite_bytes: bytes, num_threads: int | None = None):
    from hashing.encoder import load_interpreter_class

    Interpreter = load_interpreter_class()
    kw: dict[str, Any] = {"model_content": tflite_bytes}
    if num_threads:
        kw["num_threads"] = num_threads
    it = Interpreter(**kw)
    it.allocate_tensors()
    return it


def output_map(tflite_bytes: bytes, K: int, C: int) -> dict[str, dict[str, Any]]:
    """Which entry of ``get_output_details()`` is the hash layer and which the probabilities.

    Uses the signature names (``hash``/``probs``); falls back to the output widths K and C.
    """
    it = _interpreter(tflite_bytes)
    outs = it.get_output_details()
    pos_of_tensor = {d["index"]: i for i, d in enumerate(outs)}
    found: dict[str, dict[str, Any]] = {}
    try:
        key = next(iter(it.get_signature_list()))
        runner_outs = it.get_signature_runner(key).get_output_details()  # name -> details
        for name in (HASH_LAYER, PROBS_LAYER):
            if name in runner_outs and runner_outs[name]["index"] in pos_of_tensor:
                i = pos_of_tensor[runner_outs[name]["index"]]
                found[name] = {"name": outs[i]["name"], "signature_key": name, "index": i}
    except Exception:  # pragma: no cover - older runtimes without signatures
        found = {}
    if set(found) != {HASH_LAYER, PROBS_LAYER}:
        widths = {i: int(d["shape"][-1]) for i, d in enumerate(outs)}
        hi = [i for i, w in widths.items() if w == K]
        pi = [i for i, w in widths.items() if w == C]
        if len(hi) != 1 or len(pi) != 1 or hi == pi:
            raise ModelError("cannot tell the hash output from the probability output")
        found = {HASH_LAYER: {"name": outs[hi[0]]["name"], "index": hi[0]},
                 PROBS_LAYER: {"name": outs[pi[0]]["name"], "index": pi[0]}}
    return {"hash": found[HASH_LAYER], "probs": found[PROBS_LAYER]}


def keras_outputs(model: "keras.Model", X: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    hs, ps = [], []
    for i in range(0, len(X), batch_size):
        h, p = model(X[i : i + batch_size], training=False)
        hs.append(np.asarray(h, dtype=np.float32))
        ps.append(np.asarray(p, dtype=np.float32))
    return np.concatenate(hs), np.concatenate(ps)


def tflite_outputs(tflite_bytes: bytes, outputs: dict, X: np.ndarray,
                   num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    it = _interpreter(tflite_bytes, num_threads)
    inp = it.get_input_details()[0]["index"]
    od = it.get_output_details()
    hi, pi = od[outputs["hash"]["index"]]["index"], od[outputs["probs"]["index"]]["index"]
    hs = np.empty((len(X), int(od[outputs["hash"]["index"]]["shape"][-1])), np.float32)
    ps = np.empty((len(X), int(od[outputs["probs"]["index"]]["shape"][-1])), np.float32)
    for i in range(len(X)):
        it.set_tensor(inp, X[i : i + 1].astype(np.float32))
        it.invoke()
        hs[i] = it.get_tensor(hi)[0]
        ps[i] = it.get_tensor(pi)[0]
    return hs, ps


def agreement(h_keras: np.ndarray, p_keras: np.ndarray, h_lite: np.ndarray,
              p_lite: np.ndarray) -> dict[str, Any]:
    """Keras vs TFLite: fraction of equal hash bits, of identical codes, of equal categories."""
    bk, bl = codes.hash_bits(h_keras), codes.hash_bits(h_lite)
    return {
        "n_windows": int(len(bk)),
        "bit_agreement": float(np.mean(bk == bl)) if bk.size else 1.0,
        "code_agreement": float(np.mean(np.all(bk == bl, axis=1))) if bk.size else 1.0,
        "category_agreement": float(np.mean(np.argmax(p_keras, 1) == np.argmax(p_lite, 1)))
        if len(p_keras) else 1.0,
        "max_abs_diff_hash": float(np.max(np.abs(h_keras - h_lite))) if h_keras.size else 0.0,
    }


def export_model(model: "keras.Model", out_path: str | Path, *, name: str, arch: str, K: int,
                 class_names: Sequence[str], features: dict, input_shape: Sequence[int],
                 input_mode: str, X_verify: np.ndarray, training: dict | None = None,
                 metrics: dict | None = None, tau: float | None = None, recipe: str = "paper",
                 min_agreement: float = MIN_AGREEMENT, optimize_size: bool | None = None
                 ) -> ExportResult:
    """Write ``out_path`` (``.tflite``) and its ``.json`` sidecar; verify Keras/TFLite agreement."""
    out = Path(out_path)
    if out.suffix != ".tflite":
        out = out.with_suffix(".tflite")
    out.parent.mkdir(parents=True, exist_ok=True)
    C = len(class_names)
    blob, quant = to_tflite(model, arch, input_shape, K, C, input_mode=input_mode,
                            optimize_size=optimize_size)
    outputs = output_map(blob, K, C)
    X = np.asarray(X_verify, dtype=np.float32)
    hk, pk = keras_outputs(model, X)
    hl, pl = tflite_outputs(blob, outputs, X)
    agr = agreement(hk, pk, hl, pl)
    agr["quantization"] = quant
    if agr["bit_agreement"] < min_agreement:
        raise ModelError(f"TFLite and Keras hash bits agree on only {agr['bit_agreement']:.4%} "
                         f"of bits (< {min_agreement:.1%}); export rejected")
    m = dict(metrics or {})
    m["export_check"] = agr
    m["tflite_bytes"] = len(blob)
    meta = ModelMeta(
        name=name, arch=arch, recipe=recipe, K=int(K), C=C, class_names=[str(c) for c in class_names],
        features=dict(features), input_shape=[int(d) for d in input_shape],
        outputs={k: {"name": v["name"], "index": int(v["index"])} for k, v in outputs.items()},
        training=dict(training or {}), metrics=m, tflite_sha256=sha256_hex(blob),
        **({} if tau is None else {"tau": float(tau)}),
    ).validate()
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(out)
    meta_path = meta.save(out.with_suffix(".json"))
    return ExportResult(out, meta_path, meta, agr, len(blob))
