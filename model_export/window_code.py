"""Train the learned window code (fingerprint format 3, ``hashing.learned_fingerprint``; issue 12).

    python -m model_export.window_code /work/shared/data/fsdd --out DIR/cnn8.fingerprint.npz
        [--width 8] [--epochs 6] [--views 6] [--babble-share 0.3] [--telephone-share 0.2]
        [--voices 0] [--seed 0] [--batch 384] [--speaker-batches 0] [--pairs-cache PAIRS.npz]
    python -m model_export.excerpt_fingerprint BASE.tflite FSDD --out DIR --name NAME
        --projection DIR/cnn8.fingerprint.npz          # calibrates the excerpt rule on it

What it learns: a small CNN (four stride-2 3x3 convolutions of W, 2W, 4W, 8W channels with
batch norm and ReLU, then a K-unit linear layer) maps an identification window (the band-limited
Log-Mel of ``hashing.windowing``) to K real units; bit j is unit j above its median over the fit
windows. It is trained with NT-Xent (Chen et al. 2020; as the neural audio fingerprint of Chang
et al., ICASSP 2021: temperature 0.05, batch 384, Adam 1e-3 with cosine decay) on pairs of a
stored window and the window at the same place in a degraded copy, shifted by up to half a
query hop: the pairs the DDA is fitted on (``model_export.excerpt_fingerprint.distortion_pairs``
on the FIT recordings, never a calibration or test voice), with more babble (``babble_share`` of
the views at 0-15 dB) and telephone-band views, the copies the linear code keeps worst.

Measured (docs/results/excerpt_rule_trials.md, session 26): width 8 keeps 0.968 of 10 dB babble
copy windows under the impostors' 1e-4 quantile (DDA 0.953) at 10.2 ms per 5 s query (DDA 9.4).
``--speaker-batches 0.5`` (session 30) keeps other takes of a word further away (CALIB whole-clip
recall 0.614-0.634, the shipped network 0.550) but leaves the excerpt recall where the recipe's
seeds lie (0.853-0.858) and finds far fewer excerpts in 0 dB babble (21-42 of 60 against 35-56,
``docs/measure_calib_stress.py``), so it is off by default.
Needs TensorFlow (``pip install -e '.[train]'``) and espeak-ng for the FIT voices.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hashing import cpo
from hashing.learned_fingerprint import LearnedFingerprint
from hashing.windowing import WindowingSpec
from model_export import excerpt_fingerprint as xf
from model_export import long_speech as ls

__all__ = ["training_distortion", "training_pairs", "voice_copies", "cached_pairs",
           "epoch_batches", "train_window_cnn", "to_litert", "window_code", "main"]

TEMPERATURE = 0.05   # NT-Xent temperature (Chang et al. 2021)
BATCH = 384          # pairs per step: 766 negatives per positive
LEARNING_RATE = 1e-3


def training_distortion(babble_share: float = 0.3, telephone_share: float = 0.2) -> Callable:
    """A ``distortion`` for ``distortion_pairs``: babble of three FIT talkers at 0-15 dB with
    probability ``babble_share``, the telephone band alone with ``telephone_share`` of the rest,
    otherwise the fit's usual copies (``fit_distortion``)."""

    def pick(rng: np.random.Generator, babble: Sequence[np.ndarray]):
        if rng.random() < babble_share and len(babble) >= 3:
            snr, seed = float(rng.uniform(0, 15)), int(rng.integers(1 << 30))
            talkers = [babble[int(i)] for i in rng.choice(len(babble), 3, replace=False)]
            return (lambda y, sr: cpo.babble_noise(y, sr, snr, seed, talkers)), 1.0
        if telephone_share and rng.random() < telephone_share:
            return cpo.telephone_band, 1.0
        return xf.fit_distortion(rng, babble)
    return pick


#: the voice changes of ``voice_copies`` (``model_export.augment``): vocal-tract length as in
#: the CRNN's speaker chain (Jaitly & Hinton 2013), pitch in semitones
VOICE_VTLP = (0.85, 1.18)
VOICE_SEMITONES = (-3.0, 3.0)


def voice_copies(recordings: Sequence[np.ndarray], copies: int, seed: int = 1
                 ) -> list[np.ndarray]:
    """Each real FIT recording again as ``copies`` other voices: one VTLP factor and one pitch
    shift per copy. Why: the window code's only real voices are FSDD's four FIT speakers, and
    its misses on held-out voices are a real speaker's takes under babble. The copies join the
    training as recordings of their own (anchors with their own degraded views, and negatives
    of the original: a fingerprint must still tell two voices' takes apart), not as positives.
    Measured with one copy: no gain on CALIB or TEST (excerpt_rule_trials.md, session 28)."""
    from model_export import augment

    rng = np.random.default_rng(seed)
    out = []
    for y in recordings:
        for _ in range(copies):
            alpha, semis = float(rng.uniform(*VOICE_VTLP)), float(rng.uniform(*VOICE_SEMITONES))
            z = augment.pitch_shift(augment.vtlp(y, ls.SAMPLE_RATE, alpha), semis)
            out.append(np.clip(z, -1.0, 1.0).astype(np.float32))
    return out


def training_pairs(fsdd_dir, spec: WindowingSpec, *, views: int = 6, babble_share: float = 0.3,
                   telephone_share: float = 0.2, seed: int = 1, voices: int = 0,
                   log=print) -> dict[str, np.ndarray]:
    """The FIT pairs: ``clean`` stored windows, ``original`` / ``distorted`` windows (float16,
    ~0.7 GB at 6 views), per pair its ``window_id`` (the views of one original window share
    it) and ``speaker`` (the index of its FSDD FIT speaker, -1 for a synthetic voice), for
    ``speaker_batches``. ``voices``: each FSDD FIT recording also as that many other voices
    (``voice_copies``; speaker -1)."""
    real = xf.fit_long_recordings(fsdd_dir, seed=seed, n_espeak=0, log=log)
    speech = [r.samples for r in real]
    fit = speech + xf.fit_recordings(None, seed=seed, n_espeak=27, log=log)
    if voices:
        fit += voice_copies(speech, voices, seed=seed)
    clean, orig, dist, ids = xf.distortion_pairs(
        fit, spec, views, 11, fit, distortion=training_distortion(babble_share, telephone_share),
        with_ids=True)
    speaker_of = np.full(len(fit), -1, np.int8)
    speaker_of[:len(real)] = [ls.FSDD_FIT_SPEAKERS.index(r.voice) for r in real]
    return {"clean": clean.astype(np.float16), "original": orig.astype(np.float16),
            "distorted": dist.astype(np.float16), "window_id": ids,
            "speaker": speaker_of[ids >> 20]}


def cached_pairs(path: str | None, build: Callable[[], dict]) -> dict[str, np.ndarray]:
    """The pairs of ``build()`` but their ``clean`` windows (which training does not use), read
    from ``path`` when it exists, else built (and written there when a path is given). The
    cache does not record the options that made it: one cache per set of pair options (views,
    shares, voices), the seed of the training aside. A path without the ``.npz`` suffix gets
    it (as ``np.savez`` would add it)."""
    file = None
    if path:
        file = Path(path) if str(path).endswith(".npz") else Path(f"{path}.npz")
    if file is not None and file.exists():
        with np.load(file) as z:
            return {k: z[k] for k in z.files}
    pairs = {k: v for k, v in build().items() if k != "clean"}
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(file.name + ".tmp.npz")  # a killed write never looks like a cache
        np.savez(tmp, **pairs)
        tmp.replace(file)
    return pairs


def epoch_batches(n: int, batch: int, rng: np.random.Generator, speaker_share: float = 0.0,
                  window_id: np.ndarray | None = None,
                  speaker: np.ndarray | None = None) -> list[np.ndarray]:
    """One epoch's batches (sorted pair indices): a random permutation cut into ``batch``-sized
    steps; then each step, with probability ``speaker_share``, is replaced by ``batch`` pairs of
    one FSDD FIT speaker, no two views of the same window (``window_id``).

    Why: in a random batch the negatives are mostly other voices and other words, so nothing
    teaches the code to tell two takes of one word by one speaker apart, and a code trained on
    more degraded views merges them (session 30: session 29's 12-view code put two takes of
    "two" by the CALIB speaker at BER 0.036, and no whole-clip rule could be set). A one-speaker
    batch makes those takes each other's negatives (hard negatives, as in FaceNet's batches,
    Schroff et al. 2015). Measured: whole clips found more often, excerpts not, and excerpts in
    loud babble less often (session 30)."""
    order = rng.permutation(n)
    steps = [np.sort(order[i:i + batch]) for i in range(0, n - batch + 1, batch)]
    if speaker_share <= 0:
        return steps
    groups = [np.flatnonzero(speaker == s) for s in np.unique(speaker[speaker >= 0])]
    for k in range(len(steps)):
        if rng.random() < speaker_share:
            g = groups[int(rng.integers(len(groups)))]
            g = g[rng.permutation(len(g))]
            _, first = np.unique(window_id[g], return_index=True)
            steps[k] = np.sort(g[np.sort(first)][:batch])
    return steps


def _network(spec: WindowingSpec, K: int, width: int):
    """Four stride-2 3x3 convolutions (batch norm, ReLU) and a K-unit linear layer."""
    import tensorflow as tf

    x = inp = tf.keras.Input((spec.n_mels, spec.window_frames, 1))
    for c in (width, 2 * width, 4 * width, 8 * width):
        x = tf.keras.layers.Conv2D(c, 3, strides=2, padding="same", use_bias=False)(x)
        x = tf.keras.layers.ReLU()(tf.keras.layers.BatchNormalization()(x))
    return tf.keras.Model(inp, tf.keras.layers.Dense(K)(tf.keras.layers.Flatten()(x)))


def train_window_cnn(original: np.ndarray, distorted: np.ndarray, spec: WindowingSpec, *,
                     K: int = 384, width: int = 8, epochs: int = 6, threads: int = 2,
                     seed: int = 0, batch: int = BATCH, speaker_share: float = 0.0,
                     window_id: np.ndarray | None = None, speaker: np.ndarray | None = None,
                     log=print):
    """The NT-Xent CNN and its per-unit medians over (up to 20,000) original windows.

    ``seed`` seeds the batch order and TensorFlow's initialisation (the same seed and pairs
    give the same network on one machine): trainings of one recipe differ by more than some
    recipe changes do (docs/results/excerpt_rule_trials.md, session 29: CALIB excerpt recall
    0.835-0.860 over seven seeds, 0.895 for the shipped network). ``speaker_share``: the share
    of steps whose batch is one FSDD speaker's windows (``epoch_batches``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already started in this process: its count stays
        pass
    m = _network(spec, K, width)
    opt = tf.keras.optimizers.Adam(LEARNING_RATE)

    @tf.function
    def step(a, b):
        with tf.GradientTape() as tape:
            z = tf.math.l2_normalize(tf.concat([m(a, training=True), m(b, training=True)], 0), 1)
            n = tf.shape(a)[0]
            s = tf.matmul(z, z, transpose_b=True) / TEMPERATURE - 1e9 * tf.eye(2 * n)
            lab = tf.concat([tf.range(n, 2 * n), tf.range(0, n)], 0)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(lab, s))
        opt.apply_gradients(zip(tape.gradient(loss, m.trainable_variables), m.trainable_variables))
        return loss

    rng, n = np.random.default_rng(seed), len(original)
    total, k = max(1, epochs * (n // batch)), 0
    shape = (-1, spec.n_mels, spec.window_frames, 1)
    for ep in range(epochs):
        t0, losses = time.time(), []
        for idx in epoch_batches(n, batch, rng, speaker_share, window_id, speaker):
            opt.learning_rate.assign(LEARNING_RATE * 0.5 * (1 + np.cos(np.pi * k / total)))
            k += 1
            losses.append(float(step(original[idx].astype(np.float32).reshape(shape),
                                      distorted[idx].astype(np.float32).reshape(shape))))
        log(f"  epoch {ep}: NT-Xent loss {np.mean(losses):.3f} ({time.time() - t0:.0f} s)")
    z = m.predict(original[:20000].astype(np.float32).reshape(shape), batch_size=512, verbose=0)
    return m, np.median(z, axis=0).astype(np.float32)


def to_litert(model) -> bytes:
    """The Keras network as a float32 LiteRT flatbuffer (int8 measured no faster, session 26)."""
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def window_code(model, centre: np.ndarray, spec: WindowingSpec,
                training: dict | None = None) -> LearnedFingerprint:
    """The fingerprint file's content: LiteRT bytes, medians, windowing, how it was trained
    (the rule is calibrated later, ``model_export.excerpt_fingerprint --projection``)."""
    return LearnedFingerprint(model=to_litert(model), centre=np.asarray(centre, np.float32),
                              windowing=spec.to_dict(), training=training)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_export.window_code",
                                description="Train the learned window code (fingerprint format 3).")
    p.add_argument("data_dir", help="FSDD (its FIT speakers only are used)")
    p.add_argument("--out", required=True, help="the .fingerprint.npz to write")
    p.add_argument("--bits", type=int, default=384)
    p.add_argument("--width", type=int, default=8, help="channels of the first convolution")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--views", type=int, default=6, help="degraded copies of each FIT recording")
    p.add_argument("--babble-share", type=float, default=0.3)
    p.add_argument("--telephone-share", type=float, default=0.2)
    p.add_argument("--voices", type=int, default=0,
                   help="each FSDD FIT recording also as this many other voices (VTLP + pitch)")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    p.add_argument("--batch", type=int, default=BATCH,
                   help="pairs per step (2 x batch - 2 negatives per positive)")
    p.add_argument("--speaker-batches", type=float, default=0.0, metavar="SHARE",
                   help="share of steps whose batch holds one FSDD FIT speaker's windows only "
                        "(other takes of the same words as negatives)")
    p.add_argument("--pairs-cache", help="an .npz of the training pairs: read if it exists, "
                                         "else written (a seed sweep builds them once)")
    p.add_argument("--n-mels", type=int, default=WindowingSpec.n_mels)
    p.add_argument("--keras", help="export this trained Keras model (its medians in "
                                   "STEM_centre.npy next to it) instead of training")
    p.add_argument("--trained-by", help="with --keras: the command that trained it (recorded)")
    a = p.parse_args(argv)
    spec = WindowingSpec(n_mels=a.n_mels)
    if a.keras:
        import tensorflow as tf

        model = tf.keras.models.load_model(a.keras)
        centre = np.load(Path(a.keras).with_name(Path(a.keras).stem + "_centre.npy"))
    else:
        pairs = cached_pairs(a.pairs_cache, lambda: training_pairs(
            a.data_dir, spec, views=a.views, babble_share=a.babble_share,
            telephone_share=a.telephone_share, voices=a.voices))
        if a.speaker_batches > 0 and "speaker" not in pairs:
            raise SystemExit(f"{a.pairs_cache} holds no speakers (made before --speaker-batches): "
                             "give another --pairs-cache path")
        print(f"  {len(pairs['original'])} training pairs", flush=True)
        model, centre = train_window_cnn(
            pairs["original"], pairs["distorted"], spec, K=a.bits, width=a.width,
            epochs=a.epochs, seed=a.seed, batch=a.batch, speaker_share=a.speaker_batches,
            window_id=pairs.get("window_id"), speaker=pairs.get("speaker"))
    training = {"command": "python -m model_export.window_code " + " ".join(
                    shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])),
                "method": "NT-Xent CNN (Chang et al., ICASSP 2021)", "width": a.width,
                "epochs": a.epochs, "views": a.views, "babble_share": a.babble_share,
                "telephone_share": a.telephone_share, "temperature": TEMPERATURE,
                "voices": a.voices, "seed": None if a.keras else a.seed,
                "batch": a.batch, "speaker_batches": a.speaker_batches,
                "fsdd_speakers": list(ls.FSDD_FIT_SPEAKERS),
                "espeak_voices": list(ls.ESPEAK_FIT_VOICES)}
    if a.trained_by:
        training["trained_by"] = a.trained_by
    fp = window_code(model, centre, spec, training)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_bytes(fp.to_bytes())
    print(f"wrote {a.out} ({fp.K} bits, network {len(fp.model):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
