"""``talking-faces generate CKPT --image IMG --audio AUDIO --out OUT.mp4``: a face and speech to
a video.

trained checkpoint + face photo + speech file -> :func:`talking_faces.inference.generate.generate`
-> mp4 (H.264 + the speech as AAC); one file per sample, or the samples side by side.
"""

from __future__ import annotations

import argparse

#: the landmark backends that can find a face photo's landmarks (``--landmark-backend``)
LANDMARK_BACKENDS = ("fan", "dlib")

EPILOG = """\
examples:
  # a face photo, aligned with face-alignment's FAN (weights in the torch hub cache)
  talking-faces generate runs/ldm/checkpoints/last.ckpt --image me.jpg --audio speech.mp3 \\
      --out me.mp4
  # the same with dlib's detector and 68-point model (assets: talking-faces weights --fetch)
  talking-faces generate CKPT --image me.jpg --landmark-backend dlib --audio speech.mp3 \\
      --out me.mp4
  # the landmarks of the face from a file: a synthetic clip's sidecar, frame 10
  talking-faces generate CKPT --image frame.png --landmarks s1/bbaf2n.landmarks.npz \\
      --landmarks-frame 10 --audio s1/bbaf2n.wav --out frame.mp4
  # a crop already aligned like the training data; three samples side by side
  talking-faces generate CKPT --image crop.png --aligned --audio speech.wav --out three.mp4 \\
      --samples 3 --side-by-side

Landmark files hold 68 (x, y) points in pixels of the image, iBUG order: .npy (68x2, or Nx68x2
with --landmarks-frame), .npz (the synthetic corpus' <clip>.landmarks.npz sidecars, or one
array), .json (a list of 68 [x, y] pairs, or {"landmarks": [...]}).

The face is aligned and cropped as `prepare` does it, and the audio is resampled to 16 kHz mono
and featurised with the parameters of the checkpoint's training dataset. Long audio is generated
in chunks (--chunk-frames, default 75 = 3 s); every chunk starts again from the identity image.
With --samples K (stochastic methods), the samples go to OUT_1.mp4 ... OUT_K.mp4, or into one
video side by side with --side-by-side.
"""


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="a face image and speech to an mp4 (audio muxed in) with a trained method",
        description="Animate a face photo with speech: the face is aligned as prepare aligns it "
        "(FAN or dlib landmarks, a landmarks file, or an aligned crop as it is), the audio "
        "(any file PyAV reads) is featurised as the training data was, and the method's samples "
        "are written as mp4 with the audio muxed in, chunk by chunk.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ckpt", metavar="CKPT", help="checkpoint of a method written by fit")
    p.add_argument("--image", required=True, metavar="IMG", help="face photo (PNG, JPEG, ...)")
    p.add_argument(
        "--audio", required=True, metavar="AUDIO", help="speech (wav, mp3, m4a, mp4, ...)"
    )
    p.add_argument("--out", required=True, metavar="OUT.mp4", help="video to write")
    p.add_argument(
        "--samples",
        type=int,
        default=1,
        metavar="K",
        help="samples to draw (stochastic methods); K files OUT_1.mp4 ... unless --side-by-side",
    )
    p.add_argument(
        "--side-by-side", action="store_true", help="the K samples side by side in one video"
    )
    face = p.add_mutually_exclusive_group()
    face.add_argument(
        "--aligned",
        action="store_true",
        help="the image is already an aligned square face crop: only resize it",
    )
    face.add_argument(
        "--landmarks",
        metavar="FILE",
        help="68 landmarks of the face in image pixels (.npy, .npz sidecar, .json) instead of FAN",
    )
    face.add_argument(
        "--landmark-backend",
        choices=LANDMARK_BACKENDS,
        default=None,
        help="what finds the face's landmarks: fan (face-alignment's S3FD + FAN, default) or "
        "dlib (dlib's CNN detector + 68-point predictor, CPU; talking-faces weights --fetch)",
    )
    p.add_argument(
        "--landmarks-frame",
        type=int,
        default=0,
        metavar="N",
        help="which set of a file holding several (a sidecar's frame; default 0)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples (default 0)")
    p.add_argument(
        "--chunk-frames",
        type=int,
        default=75,
        metavar="N",
        help="frames generated per call (default 75); memory does not grow with the audio",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    # talking_faces.inference.generate imports torch only inside its functions: bad arguments are
    # answered before it is loaded
    from talking_faces.inference.generate import GenerateRequest, check_request, generate

    req = GenerateRequest(
        ckpt=args.ckpt,
        image=args.image,
        audio=args.audio,
        out=args.out,
        num_samples=args.samples,
        side_by_side=args.side_by_side,
        aligned=args.aligned,
        landmarks=args.landmarks,
        landmarks_frame=args.landmarks_frame,
        landmark_backend=args.landmark_backend or "fan",
        device=args.device,
        seed=args.seed,
        chunk_frames=args.chunk_frames,
    )
    check_request(req)
    paths = generate(req)
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0
