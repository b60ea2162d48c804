"""The JSON sidecar of a deep hashing coding model (``name.json`` next to ``name.tflite``).

A model is the pair (TFLite bytes, ModelMeta). The metadata says how to turn audio into model
input (``features``: a ``FeatureSpec.to_dict()``), which TFLite outputs hold the tanh hash layer
and the softmax probabilities, the code length K, the categories, the retrieval threshold tau,
where the model came from (data, licence, exact training command) and what it scored.

Format ``speechvault-model/1``::

    {
      "format": "speechvault-model/1",
      "name": "fsdd-cnn-k384",
      "arch": "cnn" | "crnn",
      "recipe": "paper",
      "K": 384, "C": 10, "class_names": ["0", ..., "9"],
      "features": {...FeatureSpec.to_dict()...},
      "input_shape": [128, 32, 1],
      "outputs": {"hash": {"name": "...", "index": 0}, "probs": {"name": "...", "index": 1}},
      "tau": 0.26,
      "training": {"data": ..., "license": ..., "command": ..., "held_out_speakers": [...],
                   "epochs": ..., ...},
      "metrics": {...},
      "tflite_sha256": "<hex>",
      "fingerprint": null | {"method": "dda" | "dda-windows" | "cnn-windows", "K": 384, "sha256": "<hex of NAME.fingerprint.npz>",
                             "training": {...}}
    }

With a ``fingerprint`` (``hashing.fingerprint``, issue 7) the model has two codes: h2 (K bits,
the paper's hash, still the "hash" output) and the identification fingerprint (fingerprint.K
bits). The vault indexes and searches the fingerprint (``code_bits``, ``code_name``) and ``tau``
is the fingerprint's threshold; without one it indexes h2 as the paper does.

numpy-free and TensorFlow-free.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from speechvault import paper
from speechvault.errors import ModelError

__all__ = ["FORMAT", "ModelMeta", "FSDD_LICENSE", "sha256_hex"]

FORMAT = "speechvault-model/1"
ARCHS = ("cnn", "crnn")
FSDD_LICENSE = "CC BY-SA 4.0 (FSDD, Jackson et al.)"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _default_outputs() -> dict[str, dict[str, Any]]:
    return {"hash": {"name": "hash", "index": 0}, "probs": {"name": "probs", "index": 1}}


@dataclasses.dataclass
class ModelMeta:
    name: str
    arch: str
    K: int
    C: int
    class_names: list[str]
    features: dict[str, Any]
    input_shape: list[int]
    outputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=_default_outputs)
    recipe: str = "paper"
    tau: float = paper.TAU_DEFAULT
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    tflite_sha256: str = ""
    format: str = FORMAT
    fingerprint: dict[str, Any] | None = None

    # ------------------------------------------------------------------ validation
    def validate(self) -> "ModelMeta":
        """Check every field; raise ``ModelError`` naming the first bad one. Returns self."""
        if self.format != FORMAT:
            raise ModelError(f"model metadata format {self.format!r} is not {FORMAT!r}")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ModelError("model metadata: 'name' must be a non-empty string")
        if self.arch not in ARCHS:
            raise ModelError(f"model metadata: 'arch' must be one of {ARCHS}, got {self.arch!r}")
        if not isinstance(self.recipe, str) or not self.recipe:
            raise ModelError("model metadata: 'recipe' must be a non-empty string")
        for field in ("K", "C"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ModelError(f"model metadata: {field!r} must be a positive integer, got {v!r}")
        if self.C < 2:
            raise ModelError(f"model metadata: 'C' must be at least 2, got {self.C}")
        if (not isinstance(self.class_names, list) or len(self.class_names) != self.C
                or not all(isinstance(c, str) and c for c in self.class_names)):
            raise ModelError("model metadata: 'class_names' must list C non-empty strings")
        if len(set(self.class_names)) != len(self.class_names):
            raise ModelError("model metadata: 'class_names' has duplicates")
        if not isinstance(self.features, dict) or not self.features:
            raise ModelError("model metadata: 'features' must be a FeatureSpec dictionary")
        if (not isinstance(self.input_shape, list) or not self.input_shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                           for d in self.input_shape)):
            raise ModelError(f"model metadata: 'input_shape' must list positive integers, "
                             f"got {self.input_shape!r}")
        if not isinstance(self.outputs, dict) or set(self.outputs) != {"hash", "probs"}:
            raise ModelError("model metadata: 'outputs' must have exactly 'hash' and 'probs'")
        idx = []
        for key, out in self.outputs.items():
            if (not isinstance(out, dict) or not isinstance(out.get("name"), str)
                    or isinstance(out.get("index"), bool) or not isinstance(out.get("index"), int)
                    or out["index"] < 0):
                raise ModelError(f"model metadata: outputs.{key} needs a 'name' and an 'index' >= 0")
            idx.append(out["index"])
        if idx[0] == idx[1]:
            raise ModelError("model metadata: outputs 'hash' and 'probs' have the same index")
        if (isinstance(self.tau, bool) or not isinstance(self.tau, (int, float))
                or not math.isfinite(self.tau) or not 0.0 < float(self.tau) < 0.5):
            raise ModelError(f"model metadata: 'tau' must be in (0, 0.5), got {self.tau!r}")
        if not isinstance(self.training, dict) or not isinstance(self.metrics, dict):
            raise ModelError("model metadata: 'training' and 'metrics' must be objects")
        if self.tflite_sha256 and not _HEX64.match(self.tflite_sha256):
            raise ModelError("model metadata: 'tflite_sha256' must be 64 lowercase hex digits")
        if self.fingerprint is not None:
            fp = self.fingerprint
            if (not isinstance(fp, dict) or not isinstance(fp.get("method"), str)
                    or isinstance(fp.get("K"), bool) or not isinstance(fp.get("K"), int)
                    or fp["K"] <= 0 or not _HEX64.match(str(fp.get("sha256", "")))):
                raise ModelError("model metadata: 'fingerprint' needs a 'method', a positive 'K' "
                                 "and the 'sha256' of its file")
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        order = ["format", "name", "arch", "recipe", "K", "C", "class_names", "features",
                 "input_shape", "outputs", "tau", "training", "metrics", "tflite_sha256"]
        if self.fingerprint is not None:
            order.append("fingerprint")
        return {k: copy.deepcopy(d[k]) for k in order}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, d: Any) -> "ModelMeta":
        if not isinstance(d, dict):
            raise ModelError("model metadata must be a JSON object")
        fmt = d.get("format")
        if fmt != FORMAT:
            raise ModelError(f"model metadata format {fmt!r} is not {FORMAT!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {"name", "arch", "K", "C", "class_names", "features", "input_shape"}
        missing = sorted(required - set(d))
        if missing:
            raise ModelError(f"model metadata is missing {', '.join(missing)}")
        unknown = sorted(set(d) - names)
        if unknown:
            raise ModelError(f"model metadata has unknown fields: {', '.join(unknown)}")
        kw = copy.deepcopy(d)
        if isinstance(kw.get("input_shape"), (list, tuple)):
            kw["input_shape"] = list(kw["input_shape"])
        try:
            meta = cls(**kw)
        except TypeError as exc:  # pragma: no cover - guarded above
            raise ModelError(f"model metadata is malformed: {exc}") from None
        return meta.validate()

    @classmethod
    def from_json(cls, text: str | bytes) -> "ModelMeta":
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"model metadata is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    @classmethod
    def load(cls, path: str | Path) -> "ModelMeta":
        p = Path(path)
        try:
            text = p.read_bytes()
        except FileNotFoundError:
            raise ModelError(f"model metadata not found: {p}") from None
        except OSError as exc:
            raise ModelError(f"cannot read model metadata {p}: {exc.strerror}") from None
        return cls.from_json(text)

    def save(self, path: str | Path) -> Path:
        self.validate()
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(p)
        return p

    # ------------------------------------------------------------------ helpers
    def feature_spec(self):
        """The ``hashing.features.FeatureSpec`` this model expects (imported lazily)."""
        from hashing.features import FeatureSpec

        try:
            return FeatureSpec.from_dict(self.features)
        except Exception as exc:  # a foreign or damaged dictionary
            raise ModelError(f"model metadata: bad 'features': {exc}") from None

    @property
    def n_words(self) -> int:
        return (self.K + 63) // 64

    @property
    def code_name(self) -> str:
        """The code the vault indexes: "fingerprint" when the model has one, else "h2"."""
        return "h2" if self.fingerprint is None else "fingerprint"

    @property
    def code_bits(self) -> int:
        """Bits of the indexed code (``code_name``)."""
        return self.K if self.fingerprint is None else int(self.fingerprint["K"])

    def model_id(self, tflite_sha256: str) -> str:
        """The identity of the whole model: the TFLite sha256, or with a fingerprint the sha256
        of "tflite_sha256+fingerprint_sha256" (the same TFLite with and without a fingerprint
        codes differently, so they must not pass for one model)."""
        if self.fingerprint is None:
            return tflite_sha256
        return sha256_hex(f"{tflite_sha256}+{self.fingerprint['sha256']}".encode())

    def check_sha256(self, tflite_bytes: bytes) -> str:
        """Return the SHA-256 of ``tflite_bytes``; ModelError if the metadata names another one."""
        digest = sha256_hex(tflite_bytes)
        if self.tflite_sha256 and self.tflite_sha256 != digest:
            raise ModelError(f"model file does not match its metadata (sha256 {digest[:12]}... "
                             f"!= {self.tflite_sha256[:12]}...)")
        return digest
