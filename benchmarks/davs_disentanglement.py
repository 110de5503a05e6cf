"""Is a trained davs disentangled? Linear probes on its frozen codes, and identity swaps.

trained davs checkpoint + its prepared dataset -> **probes and swaps** -> numbers (stdout) and
``benchmarks/results/davs_disentanglement-<name>.json``

1. Probes. Every frame of every clip of the train split gives its PID code (identity encoder on
   the frame), its video WID code (video encoder on the frame) and its audio WID code (audio
   encoder on the frame's window), labelled with the word spoken at that frame (GRID and the
   synthetic corpus: the alignment; LRW: the clip's word) and the speaker. A logistic-regression
   probe (scikit-learn, standardised inputs) is trained per (code, label) on the train split and
   scored on the test split's frames, beside chance (the most frequent test label). A
   disentangled model has PID near chance for words and well above for speakers, WID the other
   way round.
2. Identity swaps. For test clips A and B of different speakers: ``swap = G(PID(A's first frame),
   audio of B)``, ``own = G(PID(A), audio of A)``. Outside the mouth box, the mean absolute error
   of ``swap`` to A's first frame is compared with ``own``'s (same identity) and with the error to
   B's first frame (the other identity); and the LSE-C of ``swap`` with B's audio (the dataset's
   SyncNet expert) with that of the static baseline (A's frame repeated) and of B's real clip.

    python benchmarks/davs_disentanglement.py RUN/checkpoints/last.ckpt --data PREP
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import permutations
from pathlib import Path

import numpy as np
import torch

from talking_faces.data.dataset import PreparedDataset, WindowConfig, clip_items
from talking_faces.nn.lipread import box_mask
from talking_faces.registry import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def float_clips(prepared: PreparedDataset, split: str, audio: dict):
    for item in clip_items(prepared, split, WindowConfig(**audio)):
        item["frames"] = item["frames"].float() / 255.0
        yield item


@torch.no_grad()
def codes_of_split(model, prepared: PreparedDataset, split: str, audio: dict) -> dict:
    pid, wid_v, wid_a, words, speakers = [], [], [], [], []
    for clip in float_clips(prepared, split, audio):
        pid.append(model.pid(clip["frames"])[0])
        wid_v.append(model.video_wid(clip["frames"]))
        wid_a.append(model.audio_wid(clip["audio"]))
        words.append(clip["words"])
        speakers += [clip["speaker"]] * len(clip["words"])
    return {
        "pid": torch.cat(pid).numpy(),
        "wid_video": torch.cat(wid_v).numpy(),
        "wid_audio": torch.cat(wid_a).numpy(),
        "word": torch.cat(words).numpy(),
        "speaker": np.asarray(speakers),
    }


def probe(train: dict, test: dict, code: str, label: str) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep_tr, keep_te = train[label] >= 0, test[label] >= 0
    x_tr, y_tr = train[code][keep_tr], train[label][keep_tr]
    x_te, y_te = test[code][keep_te], test[label][keep_te]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=1.0))
    clf.fit(x_tr, y_tr)
    acc = float((clf.predict(x_te) == y_te).mean())
    chance = float(np.bincount(y_te).max() / len(y_te))
    return {
        "accuracy": acc,
        "chance": chance,
        "train_frames": int(len(y_tr)),
        "test_frames": int(len(y_te)),
    }


@torch.no_grad()
def identity_swaps(model, prepared: PreparedDataset, audio: dict, pairs: int) -> dict:
    from talking_faces.evaluation.scorers import build_scorers
    from talking_faces.metrics import MetricSuite

    scorers = build_scorers("synthetic", prepared.root)
    suite = MetricSuite(scorers.protocol, syncnet=scorers.syncnet, lpips=False)
    test_clips = list(float_clips(prepared, "test", audio))
    chosen = [
        (a, b)
        for a, b in permutations(range(len(test_clips)), 2)
        if test_clips[a]["speaker"] != test_clips[b]["speaker"]
    ]
    rng = np.random.default_rng(0)
    chosen = [chosen[i] for i in rng.permutation(len(chosen))[:pairs]]
    size = test_clips[0]["frames"].shape[-1]
    outside = 1.0 - box_mask(size, size, model.config.mouth_box)[0]
    rows = []
    for a, b in chosen:
        ca, cb = test_clips[a], test_clips[b]
        t = min(len(cb["audio"]), len(ca["audio"]))
        ident = ca["frames"][:1]
        swap = model.generate(ident, cb["audio"][None, :t])[0, 0]
        own = model.generate(ident, ca["audio"][None, :t])[0, 0]

        def err(x, ref):
            return float(((x - ref).abs() * outside).sum() / (outside.sum() * 3 * len(x)))

        wave = cb["waveform"][None, : t * 640]
        lse = suite.sample_lse_c(
            torch.stack([swap, ident.expand(t, -1, -1, -1), cb["frames"][:t]])[None], wave
        )[0]
        rows.append(
            {
                "swap_vs_A": err(swap, ca["frames"][0]),
                "own_vs_A": err(own, ca["frames"][0]),
                "swap_vs_B": err(swap, cb["frames"][0]),
                "lse_c_swap": float(lse[0]),
                "lse_c_static": float(lse[1]),
                "lse_c_real_B": float(lse[2]),
            }
        )
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} | {"pairs": len(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt")
    parser.add_argument("--data", required=True)
    parser.add_argument("--pairs", type=int, default=24, help="identity swaps to score")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = load_model(args.ckpt)
    data = (model.run_config or {}).get("data", {})
    audio = {
        "audio_feature": data.get("audio_feature", "mfcc"),
        "audio_window": int(model.config.audio_window),
        "audio_pad": data.get("audio_pad", "edge"),
        "drop_c0": data.get("drop_c0", True),
    }
    prepared = PreparedDataset.load(args.data)
    train = codes_of_split(model, prepared, "train", audio)
    test = codes_of_split(model, prepared, "test", audio)
    probes = {
        f"{code}->{label}": probe(train, test, code, label)
        for code in ("pid", "wid_audio", "wid_video")
        for label in ("word", "speaker")
        if (test[label] >= 0).any() and len(np.unique(train[label][train[label] >= 0])) > 1
    }
    swaps = identity_swaps(model, prepared, audio, args.pairs)
    out = {
        "checkpoint": args.ckpt,
        "data": args.data,
        "probes": probes,
        "identity_swap": swaps,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(f"{'probe':24s} {'accuracy':>9s} {'chance':>7s}")
    for name, p in probes.items():
        print(f"{name:24s} {p['accuracy']:9.3f} {p['chance']:7.3f}")
    print(
        "identity swap (mean over pairs):", json.dumps({k: round(v, 4) for k, v in swaps.items()})
    )
    RESULTS.mkdir(exist_ok=True)
    name = Path(args.ckpt).parents[1].name
    path = RESULTS / f"davs_disentanglement-{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
