"""model_export.loso: the leave-one-speaker-out split never lets a held-out speaker into
training or validation, and a tiny LOSO fold runs end to end on synthetic windows."""

from __future__ import annotations

import numpy as np
import pytest

from model_export import loso
from speechvault.errors import InvalidInputError

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def _fsdd_like(n_takes: int = 5):
    spk, lab = [], []
    for s in SPEAKERS:
        for d in range(10):
            for _ in range(n_takes):
                spk.append(s), lab.append(d)
    return np.array(spk), np.array(lab)


def test_folds_hold_out_each_speaker_once_and_train_on_all_others():
    folds = loso.loso_folds(list(SPEAKERS) * 3)
    assert [f.held_out for f in folds] == sorted(SPEAKERS)
    for f in folds:
        assert f.held_out not in f.train_speakers
        assert set(f.train_speakers) | {f.held_out} == set(SPEAKERS)
    with pytest.raises(InvalidInputError):
        loso.loso_folds(["theo", "theo"])


@pytest.mark.parametrize("held_out", SPEAKERS)
def test_split_never_leaks_the_held_out_speaker(held_out):
    spk, lab = _fsdd_like()
    tr, va, te = loso.split_fold(spk, lab, held_out, seed=3)
    assert set(spk[te]) == {held_out} and len(te) == np.sum(spk == held_out)
    assert held_out not in set(spk[tr]) and held_out not in set(spk[va])
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)
    assert len(tr) + len(va) + len(te) == len(spk)
    # validation: a stratified 10 % of every digit of the other speakers
    assert sorted(set(lab[va])) == list(range(10))
    assert np.all(np.bincount(lab[va]) == round(0.1 * 5 * 5))


def test_split_is_deterministic_and_rejects_unknown_speakers():
    spk, lab = _fsdd_like()
    a = loso.split_fold(spk, lab, "theo", seed=1)
    b = loso.split_fold(spk, lab, "theo", seed=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(InvalidInputError):
        loso.split_fold(spk, lab, "nobody")


def test_training_set_of_a_fold_holds_no_held_out_window():
    spk, lab = _fsdd_like(2)
    n = len(spk)
    # every window carries its clip number, so leaked clips would show
    bank = lambda: loso.Bank(np.arange(n, dtype=np.float16)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float16),
                             np.arange(n), n)
    esp = loso.Bank(np.full((20, 2, 2, 1), -1, np.float16), np.arange(20), 20)
    corpus = loso.Corpus(lab, spk, bank(), {}, [bank(), bank()], [bank(), bank()], esp, esp,
                         np.arange(20) % 10, esp, {}, np.arange(20) % 10, [], [])
    tr, va, te = loso.split_fold(spk, lab, "lucas")
    for recipe in loso.RECIPES:
        X, y = loso.training_set(corpus, recipe, tr)
        clips = X[:, 0, 0, 0].astype(int)
        fsdd = clips[clips >= 0]
        assert not np.isin(fsdd, te).any() and not np.isin(fsdd, va).any()
        np.testing.assert_array_equal(y[clips >= 0], lab[fsdd])
        assert len(fsdd) == 3 * len(tr)
        assert np.sum(clips < 0) == (40 if recipe == "diverse" else 0)


def test_tiny_loso_fold_end_to_end_on_synthetic_windows():
    pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    spk, lab = _fsdd_like(4)
    n = len(spk)
    H, W = 16, 16
    proto = rng.standard_normal((10, H, W, 1))

    def bank(noise, m=n, labels=lab):
        X = proto[labels] + noise * rng.standard_normal((m, H, W, 1))
        return loso.Bank(X.astype(np.float16), np.arange(m), m)

    elab = np.arange(30) % 10
    corpus = loso.Corpus(lab, spk, bank(0.3), {c: bank(0.35) for c in loso.TEST_CPOS},
                         [bank(0.4), bank(0.4)], [bank(0.5), bank(0.5)],
                         bank(0.3, 30, elab), bank(0.5, 30, elab), elab, bank(0.3, 30, elab),
                         {c: bank(0.35, 30, elab) for c in loso.TEST_CPOS}, elab, ["v"], ["w"])
    tr, va, te = loso.split_fold(spk, lab, "theo")
    X, y = loso.training_set(corpus, "diverse", tr)
    Xv, pv = corpus.clean.select(va)
    model, hist = loso.fit(X, y, Xv, lab[va][pv], K=64, epochs=8, seed=0, spec_augment=True,
                           log=lambda s: None)
    assert len(hist) == 8
    row = loso.judge(loso._keras_outputs(model), 64, corpus, te, va)
    f = row["fsdd"]
    assert f["n_clips"] == len(te)
    for v in (f["h1_accuracy"], f["mAP_h2"], f["retrieval"]["auto_traversal_share"],
              row["espeak_test"]["h1_accuracy"]):
        assert 0.0 <= v <= 1.0
    # prototypes per digit are easy: the category stage must beat chance clearly
    assert f["h1_accuracy"] > 0.3
    md = loso.to_markdown({"command": "x", "load_start": "1 1 1", "epochs": 2, "K": 64,
                           "rows": [{"held_out": "theo", "model": "diverse", **row}],
                           "summary_rows": [("diverse", [{"held_out": "theo", **row}])],
                           "espeak_test_clips": 30, "espeak_test_voices": ["v"]})
    assert "| diverse | 1 |" in md and "theo" in md


def test_eval_loso_cli_bad_data_is_one_line(tmp_path):
    pytest.importorskip("tensorflow")
    from typer.testing import CliRunner

    import cli

    (tmp_path / "only").mkdir()
    r = CliRunner().invoke(cli.app, ["eval-loso", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0
    assert "error:" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "o" / "loso.md").exists()


def _tiny_corpus(seed: int = 0):
    rng = np.random.default_rng(seed)
    spk, lab = _fsdd_like(4)
    n, H, W = len(spk), 16, 16
    proto = rng.standard_normal((10, H, W, 1))

    def bank(noise, m=n, labels=lab):
        X = proto[labels] + noise * rng.standard_normal((m, H, W, 1))
        return loso.Bank(X.astype(np.float16), np.arange(m), m)

    elab = np.arange(30) % 10
    return loso.Corpus(lab, spk, bank(0.3), {c: bank(0.35) for c in loso.TEST_CPOS},
                       [bank(0.4), bank(0.4)], [bank(0.5), bank(0.5)],
                       bank(0.3, 30, elab), bank(0.5, 30, elab), elab, bank(0.3, 30, elab),
                       {c: bank(0.35, 30, elab) for c in loso.TEST_CPOS}, elab, ["v"], ["w"])


def test_watched_held_out_figures_are_those_of_the_judge_and_patience_stops():
    """--watch-held-out records, per epoch, the held-out h1/mAP that judge reports for the same
    weights (the kept epoch's entry equals the final row); --patience stops a run whose
    validation loss no longer falls (validation labels scrambled: it rises)."""
    pytest.importorskip("tensorflow")
    corpus = _tiny_corpus()
    tr, va, te = loso.split_fold(corpus.speakers, corpus.labels, "theo")
    X, y = loso.training_set(corpus, "diverse", tr)
    Xv, pv = corpus.clean.select(va)
    watch = loso.held_out_watch(corpus, te, 64)
    model, hist = loso.fit(X, y, Xv, corpus.labels[va][pv], K=64, epochs=4, seed=0,
                           spec_augment=False, watch=watch, log=lambda s: None)
    assert all({"held_out_h1", "held_out_mAP"} <= set(h) for h in hist)
    kept = hist[int(np.argmin([h["val_loss"] for h in hist]))]
    row = loso.judge(loso._keras_outputs(model), 64, corpus, te, va)
    assert kept["held_out_h1"] == pytest.approx(row["fsdd"]["h1_accuracy"])
    assert kept["held_out_mAP"] == pytest.approx(row["fsdd"]["mAP_h2"], abs=1e-6)
    scrambled = np.random.default_rng(1).permutation(corpus.labels[va][pv])
    _, short = loso.fit(X, y, Xv, scrambled, K=64, epochs=12, seed=0, spec_augment=False,
                        patience=2, log=lambda s: None)
    best = int(np.argmin([h["val_loss"] for h in short]))
    assert len(short) < 12 and len(short) == best + 3


def test_extra_voices_train_the_diverse_recipe_only():
    """--extra-voices: the EXTRA espeak banks (clean + chained) join the diverse training set
    with their digits as labels; the baseline recipe and the held-out clips are untouched."""
    import dataclasses

    corpus = _tiny_corpus()
    xl = np.arange(20) % 10
    rng = np.random.default_rng(5)
    extra = loso.Bank(rng.standard_normal((20, 16, 16, 1)).astype(np.float16), np.arange(20), 20)
    aug = loso.Bank(rng.standard_normal((20, 16, 16, 1)).astype(np.float16), np.arange(20), 20)
    more = dataclasses.replace(corpus, esp_extra=extra, esp_extra_aug=aug, esp_extra_labels=xl)
    tr, _, _ = loso.split_fold(corpus.speakers, corpus.labels, "theo")
    X0, y0 = loso.training_set(corpus, "diverse", tr)
    X1, y1 = loso.training_set(more, "diverse", tr)
    assert len(X1) == len(X0) + 40
    np.testing.assert_array_equal(X1[-40:-20], extra.X)
    np.testing.assert_array_equal(y1[-40:], np.concatenate([xl, xl]))
    Xb0, _ = loso.training_set(corpus, "baseline", tr)
    Xb1, _ = loso.training_set(more, "baseline", tr)
    assert len(Xb1) == len(Xb0)


def test_swa_weights_are_the_mean_of_the_last_epochs():
    """--swa N: the averaged weights are exactly the mean of the weights after each of the
    last N epochs, while the returned model keeps the best validation epoch's weights."""
    pytest.importorskip("tensorflow")
    corpus = _tiny_corpus()
    tr, va, _ = loso.split_fold(corpus.speakers, corpus.labels, "theo")
    X, y = loso.training_set(corpus, "baseline", tr)
    Xv, pv = corpus.clean.select(va)
    after: list = []
    model, hist, avg = loso.fit(X, y, Xv, corpus.labels[va][pv], K=64, epochs=3, seed=0,
                                spec_augment=False, average_last=2, log=lambda s: None,
                                watch=lambda m: (after.append(m.get_weights()), {})[1])
    assert len(after) == 3
    for a, w1, w2 in zip(avg, after[1], after[2]):
        np.testing.assert_allclose(a, (w1 + w2) / 2, rtol=1e-6, atol=1e-7)
    best = int(np.argmin([h["val_loss"] for h in hist]))
    for got, want in zip(model.get_weights(), after[best]):
        np.testing.assert_array_equal(got, want)


def test_cosine_lr_decay_lowers_the_rate_each_epoch_and_constant_keeps_it():
    """--lr-decay cosine: the learning rate recorded after each epoch falls, ending near 2 % of
    1e-3 at the end of the budget; without it Adam stays at 1e-3 (the shipped recipe)."""
    pytest.importorskip("tensorflow")
    from model_export.loso_variants import Variant

    corpus = _tiny_corpus()
    tr, va, _ = loso.split_fold(corpus.speakers, corpus.labels, "theo")
    X, y = loso.training_set(corpus, "baseline", tr)
    Xv, pv = corpus.clean.select(va)
    _, cos = loso.fit(X, y, Xv, corpus.labels[va][pv], K=64, epochs=3, seed=0, spec_augment=False,
                      variant=Variant(lr_decay="cosine"), log=lambda s: None)
    lrs = [h["learning_rate"] for h in cos]
    assert lrs[0] < 1e-3 and all(b < a for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(2e-5, rel=0.05)
    _, const = loso.fit(X, y, Xv, corpus.labels[va][pv], K=64, epochs=2, seed=0, spec_augment=False,
                        log=lambda s: None)
    assert [h["learning_rate"] for h in const] == pytest.approx([1e-3, 1e-3])


def test_speaker_adversarial_speakers_line_up_with_the_training_windows():
    """Each training window's speaker (FSDD clip's speaker, espeak-ng voice) is aligned with
    ``training_set``: the held-out speaker never appears, and every speaker's windows carry the
    digits that speaker's clips have."""
    from model_export.speaker_adversarial import training_speakers

    corpus = _tiny_corpus()
    tr, _, _ = loso.split_fold(corpus.speakers, corpus.labels, "theo")
    for recipe in loso.RECIPES:
        X, y = loso.training_set(corpus, recipe, tr)
        spk, names = training_speakers(corpus, recipe, tr)
        assert len(spk) == len(X) and "fsdd:theo" not in names
        fsdd = [n for n in names if n.startswith("fsdd:")]
        assert len(fsdd) == 5  # the five others (validation takes a share of each one's clips)
        want = {f"fsdd:{s}" for s in corpus.speakers[tr]}
        assert set(fsdd) == want
        assert ("espeak:w" in names) == (recipe == "diverse")
        clean_n = len(corpus.clean.select(tr)[0])
        np.testing.assert_array_equal(np.array(names, dtype=object)[spk[:clean_n]],
                                      [f"fsdd:{s}" for s in corpus.speakers[tr]])


def test_gradient_reversal_is_identity_forward_and_negates_the_gradient():
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from model_export.speaker_adversarial import GradientReversal, reversal_weight

    layer = GradientReversal(0.7)
    x = tf.constant([[1.0, -2.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * tf.constant([[2.0, 3.0, 4.0]]))
    np.testing.assert_allclose(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [[-1.4, -2.1, -2.8]], rtol=1e-6)
    assert reversal_weight(0.5, 0.0) == 0.0
    assert 0.49 < reversal_weight(0.5, 1.0) <= 0.5
    assert reversal_weight(0.5, 0.2) < reversal_weight(0.5, 0.5)


def test_speaker_adversarial_training_keeps_the_model_and_records_the_adversary():
    """--speaker-adversarial W: the network trains with a speaker head on its reversed code
    layer (targets mixed up with the digits'), the reversal weight rises over the epochs from
    0, the adversary's accuracy is recorded, and the returned model is still the paper's two
    outputs (hash, probs)."""
    pytest.importorskip("tensorflow")
    from model_export.loso_variants import Variant
    from model_export.speaker_adversarial import training_speakers

    corpus = _tiny_corpus()
    tr, va, _ = loso.split_fold(corpus.speakers, corpus.labels, "theo")
    X, y = loso.training_set(corpus, "diverse", tr)
    spk, names = training_speakers(corpus, "diverse", tr)
    Xv, pv = corpus.clean.select(va)
    v = Variant(label_smoothing=0.1, mixup=0.2, speaker_adversarial=0.5)
    assert v.label("diverse").endswith("+sat0.5")
    model, hist = loso.fit(X, y, Xv, corpus.labels[va][pv], K=64, epochs=3, seed=0,
                           spec_augment=False, variant=v, speakers=spk, log=lambda s: None)
    assert [h["reversal_weight"] for h in hist][0] == 0.0
    ws = [h["reversal_weight"] for h in hist]
    assert all(b > a for a, b in zip(ws, ws[1:])) and ws[-1] <= 0.5
    assert all(0.0 <= h["speaker_accuracy"] <= 1.0 for h in hist)
    assert len(model.outputs) == 2 and model.outputs[0].shape[-1] == 64
    with pytest.raises(InvalidInputError):
        loso.fit(X, y, Xv, corpus.labels[va][pv], K=64, epochs=1, seed=0, spec_augment=False,
                 variant=v, speakers=spk[:-1], log=lambda s: None)


def test_soft_batches_mix_speaker_targets_with_the_digits():
    """The speaker targets of a mixed-up batch are mixed with the same weights as the digit
    targets: for a pair of windows of different digits and speakers the two mixes agree."""
    from model_export.loso_variants import Variant, soft_batches

    class Base:
        rng = np.random.default_rng(0)

        def __len__(self):
            return 1

        def __getitem__(self, i):
            x = np.zeros((8, 4, 4, 1), np.float32)
            digits = np.arange(8) % 10
            speakers = np.arange(8) % 3
            return x, digits + 10 * speakers

        def on_epoch_end(self):
            pass

    b = soft_batches(Base(), 10, Variant(mixup=0.4), True, n_speakers=3)
    _, t = b[0]
    d, s = t["probs"], t["speaker"]
    assert d.shape == (8, 10) and s.shape == (8, 3)
    np.testing.assert_allclose(d.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-6)
    for i in range(8):  # the weight on window i's own digit = the weight on its own speaker
        own_d, own_s = d[i, i % 10], s[i, i % 3]
        if own_s < 1.0 - 1e-6 and own_d < 1.0 - 1e-6:
            assert own_s >= own_d - 1e-6


def test_warped_h1_reads_the_mean_and_the_most_confident_warp():
    """test_time_warp: a stand-in model whose posterior depends on the warp; the 'confident'
    reading takes the category of the sharpest warp, 'mean' the category of the average; the
    unwarped alpha (1) gives the windows as they are, and the judge records both readings."""
    from model_export.test_time_warp import warped_h1, warped_posteriors

    post = np.array([  # 2 warps x 3 clips x 3 categories
        [[0.4, 0.35, 0.25], [0.1, 0.8, 0.1], [0.34, 0.33, 0.33]],
        [[0.05, 0.9, 0.05], [0.45, 0.1, 0.45], [0.2, 0.2, 0.6]],
    ])
    h1 = warped_h1(post)
    np.testing.assert_array_equal(h1["confident"], [1, 1, 2])
    np.testing.assert_array_equal(h1["mean"], post.mean(0).argmax(1))

    seen = []

    def run(X):
        seen.append(np.array(X, np.float32))
        p = np.stack([X[:, :4].mean((1, 2, 3)), X[:, 4:].mean((1, 2, 3))], 1)
        return None, np.exp(p) / np.exp(p).sum(1, keepdims=True)

    from hashing.features import FeatureSpec

    spec = FeatureSpec(input_mode="native", n_mels=16)
    X = np.random.default_rng(0).random((6, 16, 8, 1)).astype(np.float32)
    owner = np.array([0, 0, 1, 1, 2, 2])
    got = warped_posteriors(run, X, owner, 3, alphas=(0.9, 1.0), spec=spec)
    assert got.shape == (2, 3, 2)
    np.testing.assert_allclose(got.sum(2), 1.0)
    np.testing.assert_array_equal(seen[1], X)          # alpha 1: the windows untouched
    assert not np.allclose(seen[0], X)                 # alpha 0.9: warped

    corpus = _tiny_corpus()
    tr, va, te = loso.split_fold(corpus.speakers, corpus.labels, "theo")
    stub = lambda Xq: (np.sign(np.asarray(Xq, np.float32).reshape(len(Xq), -1)[:, :64]),
                       np.eye(10)[np.zeros(len(Xq), int)])
    row = loso.judge(stub, 64, corpus, te, va)
    w = row["fsdd"]["h1_accuracy_warps"]
    assert w["mean"] == pytest.approx(row["fsdd"]["h1_accuracy"]) == pytest.approx(0.1)
