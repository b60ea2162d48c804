"""Folder-per-category speech datasets, splits, and a cached feature pipeline for training.

Layout: ``DATA_DIR/<category>/<file>``; the folder name is the label. File names of the form
``{label}_{speaker}_{take}.ext`` (the Free Spoken Digit Dataset convention) also give a speaker
and a take; other names have speaker ``None``.

Splits (validation or held-out test) are given as
* ``{"speakers": ["theo", ...]}`` - by speaker;
* ``{"glob": "*_4?.wav"}``        - by file name (``fnmatch`` on the name, or on
  ``category/name`` when the pattern contains a ``/``);
* ``{"regex": r"_(4\\d)\\.wav$"}`` - by ``re.search`` on ``category/name``;
* a string: ``"re:<regex>"``, ``"speakers:a,b"`` or otherwise a glob.

Features come from THE model-input function ``hashing.features.model_windows`` (no feature code
here); audio from ``hashing.audio.load_audio``; augmentation from ``hashing.cpo.random_cpo``.
Computed windows are cached as ``.npy`` under a cache directory, keyed by the feature settings,
the file list (path, size, mtime) and the augmentation (seed, copy index), because MP3
round trips are slow.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from speechvault.errors import InvalidInputError, NotFoundError

__all__ = ["AUDIO_EXTS", "Item", "list_items", "class_names_of", "parse_name", "parse_split",
           "split_items", "WindowSet", "compute_windows", "default_cache_dir", "expand_channels",
           "labels_of", "iter_speakers", "speed_then_cpo", "spec_augment"]

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus")
_NAME_RE = re.compile(r"^(?P<label>[^_]+)_(?P<speaker>.+)_(?P<take>\d+)$")


@dataclasses.dataclass(frozen=True)
class Item:
    path: Path
    label: str
    speaker: str | None
    take: int | None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def relname(self) -> str:
        return f"{self.label}/{self.path.name}"


def parse_name(stem: str) -> tuple[str | None, int | None]:
    """``'3_theo_12'`` -> ``('theo', 12)``; other names -> ``(None, None)``."""
    m = _NAME_RE.match(stem)
    if not m:
        return None, None
    return m.group("speaker"), int(m.group("take"))


def _natural_key(s: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]


def class_names_of(data_dir: str | Path) -> list[str]:
    root = Path(data_dir)
    if not root.is_dir():
        raise NotFoundError(f"dataset folder not found: {root}")
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(names, key=_natural_key)


def list_items(data_dir: str | Path, exts: Sequence[str] = AUDIO_EXTS) -> tuple[list[Item], list[str]]:
    """All audio files of a folder-per-category dataset: (items sorted by label/name, classes)."""
    root = Path(data_dir)
    classes = class_names_of(root)
    if len(classes) < 2:
        raise InvalidInputError(f"{root}: need at least two category folders, found {len(classes)}")
    items: list[Item] = []
    for c in classes:
        for p in sorted((root / c).iterdir(), key=lambda q: _natural_key(q.name)):
            if p.is_file() and p.suffix.lower() in exts:
                spk, take = parse_name(p.stem)
                items.append(Item(p, c, spk, take))
    empty = [c for c in classes if not any(it.label == c for it in items)]
    if empty:
        raise InvalidInputError(f"{root}: category folders without audio: {', '.join(empty)}")
    return items, classes


def parse_split(spec: Any) -> dict[str, Any] | None:
    """Normalise a split specification (see the module docstring) to a dict or None."""
    if spec is None or spec == {} or spec == "":
        return None
    if isinstance(spec, str):
        if spec.startswith("re:"):
            spec = {"regex": spec[3:]}
        elif spec.startswith("speakers:"):
            spec = {"speakers": [s for s in spec[9:].split(",") if s]}
        else:
            spec = {"glob": spec}
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("speakers", "glob", "regex"):
        raise InvalidInputError("a split is {'speakers': [...]}, {'glob': '...'} or {'regex': '...'}")
    key, val = next(iter(spec.items()))
    if key == "speakers":
        if isinstance(val, str):
            val = [val]
        val = [str(v) for v in val]
        if not val:
            raise InvalidInputError("a speaker split needs at least one speaker")
        return {"speakers": val}
    if not isinstance(val, str) or not val:
        raise InvalidInputError(f"a {key} split needs a non-empty pattern")
    if key == "regex":
        try:
            re.compile(val)
        except re.error as exc:
            raise InvalidInputError(f"bad split regex {val!r}: {exc}") from None
    return {key: val}


def _matches(item: Item, split: dict[str, Any]) -> bool:
    if "speakers" in split:
        return item.speaker in split["speakers"]
    if "glob" in split:
        pat = split["glob"]
        return fnmatch.fnmatch(item.relname if "/" in pat else item.name, pat)
    return re.search(split["regex"], item.relname) is not None


def split_items(items: Sequence[Item], split: Any) -> tuple[list[Item], list[Item]]:
    """(matching, rest). Unknown speakers or empty matches raise ``InvalidInputError``."""
    s = parse_split(split)
    if s is None:
        return [], list(items)
    if "speakers" in s:
        known = {it.speaker for it in items}
        unknown = [sp for sp in s["speakers"] if sp not in known]
        if unknown:
            raise InvalidInputError(f"unknown speaker(s) {', '.join(unknown)}; the dataset has "
                                    f"{', '.join(sorted(str(k) for k in known if k))}")
    sel = [it for it in items if _matches(it, s)]
    if not sel:
        raise InvalidInputError(f"the split {s} matches no file")
    rest = [it for it in items if not _matches(it, s)]
    return sel, rest


# --------------------------------------------------------------------------- features


def default_cache_dir() -> Path:
    env = os.environ.get("SPEECHVAULT_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "speechvault"


@dataclasses.dataclass
class WindowSet:
    """Model windows of a list of items: X (n_windows, H, W, c), item index per window."""

    X: np.ndarray
    item_index: np.ndarray

    def __len__(self) -> int:
        return int(self.X.shape[0])


def _code_version() -> str:
    """Hash of the modules whose behaviour the cached windows depend on (audio, features, CPOs):
    editing any of them invalidates the cache."""
    import hashing.audio
    import hashing.cpo
    import hashing.features

    h = hashlib.sha256()
    for mod in (hashing.audio, hashing.features, hashing.cpo):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:16]


def _fingerprint(items: Sequence[Item], spec_dict: dict, tag: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(spec_dict, sort_keys=True).encode())
    h.update(tag.encode())
    h.update(_code_version().encode())
    for it in items:
        st = it.path.stat()
        h.update(f"{it.path.resolve()}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:20]


def compute_windows(items: Sequence[Item], spec, *, augment_seed: int | None = None,
                    copy_index: int = 0, cache_dir: str | Path | None = None,
                    store_dtype: str = "float32", single_channel: bool = False,
                    progress: Callable[[int, int], None] | None = None,
                    cpo_factory: Callable[[np.random.Generator], Any] | None = None,
                    aug_name: str | None = None) -> WindowSet:
    """Windows of every item via ``load_audio`` -> [random CPO] -> ``model_windows``.

    ``augment_seed`` None: the clean audio. Otherwise one random CPO per clip, drawn from
    ``np.random.default_rng([augment_seed, copy_index, item number])`` with
    ``hashing.cpo.random_cpo`` (or ``cpo_factory``). ``single_channel`` keeps only channel 0
    (paper mode repeats one image over 3 channels; :func:`expand_channels` restores it) and
    ``store_dtype`` "float16" halves the cache (paper mode is large). ``cache_dir`` None: no
    cache. ``aug_name`` names the augmentation in the cache key (default: the factory's
    qualified name; give closures that differ by their parameters their own name).
    """
    from hashing.audio import load_audio
    from hashing.features import model_windows

    spec_dict = spec.to_dict()
    if aug_name is None:
        aug_name = ("hashing.cpo.random_cpo" if cpo_factory is None else
                    f"{getattr(cpo_factory, '__module__', '?')}.{getattr(cpo_factory, '__qualname__', repr(cpo_factory))}")
    aug = f"{aug_name}:{augment_seed}:{copy_index}" if augment_seed is not None else "clean"
    tag = f"aug={aug}|{store_dtype}|{single_channel}|v1"
    path = None
    if cache_dir is not None:
        key = _fingerprint(items, spec_dict, tag)
        path = Path(cache_dir) / f"windows-{key}"
        xp, ip = path.with_suffix(".X.npy"), path.with_suffix(".idx.npy")
        if xp.is_file() and ip.is_file():
            return WindowSet(np.load(xp, mmap_mode=None), np.load(ip))
    if augment_seed is not None and cpo_factory is None:
        from hashing.cpo import random_cpo

        cpo_factory = random_cpo
    xs: list[np.ndarray] = []
    idx: list[np.ndarray] = []
    sr = int(spec.sample_rate)
    for i, it in enumerate(items):
        y = load_audio(it.path, sr)
        if augment_seed is not None:
            rng = np.random.default_rng([int(augment_seed), int(copy_index), i])
            y = np.asarray(cpo_factory(rng)(y, sr), dtype=np.float32)
        w = model_windows(y, spec)
        if single_channel:
            w = w[..., :1]
        xs.append(w.astype(store_dtype, copy=False))
        idx.append(np.full(len(w), i, dtype=np.int64))
        if progress is not None:
            progress(i + 1, len(items))
    X = np.concatenate(xs) if xs else np.zeros((0,), dtype=store_dtype)
    I = np.concatenate(idx) if idx else np.zeros((0,), dtype=np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for arr, suffix in ((X, ".X.npy"), (I, ".idx.npy")):
            tmp = path.with_suffix(suffix + ".tmp")
            with open(tmp, "wb") as f:
                np.save(f, arr)
            tmp.replace(path.with_suffix(suffix))
    return WindowSet(X, I)


def expand_channels(X: np.ndarray, channels: int) -> np.ndarray:
    """float32 copy of ``X`` with its single channel repeated to ``channels``."""
    X = np.asarray(X, dtype=np.float32)
    if X.shape[-1] == channels:
        return X
    if X.shape[-1] != 1:
        raise InvalidInputError(f"cannot expand {X.shape[-1]} channels to {channels}")
    return np.repeat(X, channels, axis=-1)


def labels_of(items: Sequence[Item], classes: Sequence[str]) -> np.ndarray:
    pos = {c: i for i, c in enumerate(classes)}
    return np.array([pos[it.label] for it in items], dtype=np.int64)


def iter_speakers(items: Iterable[Item]) -> list[str]:
    return sorted({it.speaker for it in items if it.speaker})


def speed_then_cpo(speed_range: tuple[float, float] = (0.85, 1.15)):
    """A CPO factory: a random speed change (resampling by a factor in ``speed_range``: tempo,
    pitch and formants move together, a cheap stand-in for another speaker's voice) followed by
    ``hashing.cpo.random_cpo``. For training augmentation only (not a content preserving
    operation of the paper)."""
    lo, hi = (float(v) for v in speed_range)
    if not 0.5 <= lo <= hi <= 2.0:
        raise InvalidInputError(f"bad speed range {speed_range}")

    def factory(rng: np.random.Generator):
        import soxr

        from hashing.cpo import CPO, random_cpo

        factor = float(rng.uniform(lo, hi))
        cpo = random_cpo(rng)

        def run(y: np.ndarray, sr: int) -> np.ndarray:
            z = soxr.resample(np.asarray(y, np.float32), sr * factor, sr, quality="HQ")
            return np.asarray(cpo(np.clip(z, -1.0, 1.0).astype(np.float32), sr), np.float32)

        return CPO(f"speed{factor:.3f}+{cpo.name}", run)

    return factory


def spec_augment(X: np.ndarray, rng: np.random.Generator, max_freq: int = 16, max_time: int = 4,
                 value: float = 0.0) -> np.ndarray:
    """SpecAugment-style masking of model windows (in place on a float32 batch): one band of
    up to ``max_freq`` Mel rows and one span of up to ``max_time`` frames per window are set to
    ``value`` (0 = the window's mean level after normalisation). Training only."""
    n, H, W = X.shape[0], X.shape[1], X.shape[2]
    for i in range(n):
        f = int(rng.integers(0, max_freq + 1))
        if f:
            f0 = int(rng.integers(0, max(1, H - f)))
            X[i, f0 : f0 + f] = value
        t = int(rng.integers(0, max_time + 1))
        if t:
            t0 = int(rng.integers(0, max(1, W - t)))
            X[i, :, t0 : t0 + t] = value
    return X
