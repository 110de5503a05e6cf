"""Contact sheet of the synthetic corpus: a few speakers, mouth closed and open, landmarks overlaid.

Place in the data flow: a side output of ``talking-faces synth --preview PNG`` for the README and
for eyeballing a corpus; nothing downstream reads it. Frames are re-rendered from the clip plan
(rendering is deterministic), so they are the exact frames and landmarks that were encoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from talking_faces.data.synthetic.corpus import Clip, ClipSpec, render_clip
from talking_faces.data.synthetic.face import LANDMARK_GROUPS, inner_lip_opening
from talking_faces.utils.io import atomic_path

_GROUP_COLOURS = {
    "jaw": (255, 220, 0),
    "right_brow": (255, 120, 0),
    "left_brow": (255, 120, 0),
    "nose_bridge": (0, 230, 255),
    "nose_base": (0, 230, 255),
    "right_eye": (60, 255, 60),
    "left_eye": (60, 255, 60),
    "outer_lips": (255, 40, 200),
    "inner_lips": (255, 255, 255),
}


def closed_and_open_frames(clip: Clip) -> tuple[int, int]:
    """Frame indices with the smallest and the largest inner-lip opening (eyes open preferred)."""
    opening = inner_lip_opening(clip.landmarks.astype(np.float64))
    eyes_open = clip.motion.blink < 0.2
    candidates = np.flatnonzero(eyes_open) if eyes_open.any() else np.arange(len(opening))
    closed = int(candidates[np.argmin(opening[candidates])])
    wide = int(candidates[np.argmax(opening[candidates])])
    return closed, wide


def draw_landmarks(frame: np.ndarray, landmarks: np.ndarray, cell: int) -> Image.Image:
    """``frame`` (H, W, 3) uint8 resized to ``cell`` px with the 68 ``landmarks`` drawn as dots."""
    size = frame.shape[0]
    ss = 3  # dots drawn at 3x and box-filtered down: smooth at any cell size
    img = Image.fromarray(frame).resize((cell * ss, cell * ss), Image.Resampling.BICUBIC)
    d = ImageDraw.Draw(img)
    k = cell * ss / size
    r = max(1.2, 0.009 * cell) * ss
    for group, idx in LANDMARK_GROUPS.items():
        for x, y in landmarks[list(idx)]:
            cx, cy = (x + 0.5) * k - 0.5, (y + 0.5) * k - 0.5
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_GROUP_COLOURS[group])
    return img.reduce(ss)


def contact_sheet(
    specs: Sequence[ClipSpec], size: int, max_speakers: int = 4, cell: int | None = None
) -> Image.Image:
    """A sheet of the first clip of up to ``max_speakers`` speakers.

    Columns: per speaker, the mouth-closed and the mouth-open frame (chosen from the ground-truth
    inner-lip opening). Rows: the frames, then the same frames with the landmarks. Each cell is
    ``cell`` px (default ``min(size, 160)``), with a one-line label above each column.
    """
    cell = min(size, 160) if cell is None else int(cell)
    first: dict[int, ClipSpec] = {}
    for spec in specs:
        first.setdefault(spec.speaker, spec)
    chosen = [first[s] for s in sorted(first)[:max_speakers]]
    columns: list[tuple[str, np.ndarray, np.ndarray]] = []
    for spec in chosen:
        clip = render_clip(spec, size)
        closed, wide = closed_and_open_frames(clip)
        for label, i in ((f"s{spec.speaker} closed", closed), (f"s{spec.speaker} open", wide)):
            columns.append((label, clip.frames[i], clip.landmarks[i]))
    label_h = 14
    sheet = Image.new("RGB", (cell * len(columns), label_h + 2 * cell), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for c, (label, frame, marks) in enumerate(columns):
        x = c * cell
        d.text((x + 4, 2), label, fill=(0, 0, 0))
        plain = Image.fromarray(frame).resize((cell, cell), Image.Resampling.LANCZOS)
        sheet.paste(plain, (x, label_h))
        sheet.paste(draw_landmarks(frame, marks, cell), (x, label_h + cell))
    return sheet


def write_contact_sheet(
    path: str | os.PathLike[str], specs: Sequence[ClipSpec], size: int, max_speakers: int = 4
) -> Path:
    """Render :func:`contact_sheet` and save it as an optimised PNG at ``path`` (atomically)."""
    dest = Path(path)
    img = contact_sheet(specs, size, max_speakers)
    with atomic_path(dest) as tmp:
        img.save(tmp, format="PNG", optimize=True)
    return dest
