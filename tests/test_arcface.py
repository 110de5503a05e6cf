"""ArcFace identity similarity (``csim_arcface``) through its standard weight file.

No package index holds an ArcFace backbone, so the file here is architecture-correct: InsightFace
``arcface_torch``'s IResNet-18 with random weights, saved as a state dict under the name and in the
folder the project looks in (``$TALKING_FACES_WEIGHTS/arcface_backbone.pth``). What is checked is
what does not depend on the weights: the depth is read from the state dict, the file is read with
``weights_only=True`` and its sha256 recorded, the face is aligned onto arcface_torch's five-point
112 x 112 template from dlib's 68 points (real dlib models, the registry assets), a missing or
foreign file is one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data
from skimage.transform import SimilarityTransform

from talking_faces.errors import MissingWeightsError, UserError
from talking_faces.metrics.face_models import (
    ARCFACE_TEMPLATE,
    ArcFaceEmbedder,
    arcface_weights_path,
    five_points,
)
from talking_faces.metrics.identity import identity_similarity
from talking_faces.nn.iresnet import IRESNET_LAYERS, IResNet, iresnet_depth
from talking_faces.utils.io import sha256_file

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TALKING_FACES_WEIGHTS", str(tmp_path))
    torch.manual_seed(0)
    net = IResNet(IRESNET_LAYERS["r18"]).eval()
    path = arcface_weights_path()
    torch.save(net.state_dict(), path)
    return path


def _astronaut() -> torch.Tensor:
    return torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)[None]


def test_the_standard_file_loads_and_embeds_the_astronaut(weights: Path) -> None:
    embedder = ArcFaceEmbedder()
    assert embedder.depth == "r18" and embedder.weights_sha256 == sha256_file(weights)
    assert embedder.describe()["path"] == str(weights)
    emb = torch.cat([embedder(_astronaut()), embedder(torch.zeros(1, 3, 128, 128))])
    assert emb.shape == (2, 512)
    assert torch.isfinite(emb[0]).all() and torch.isnan(emb[1]).all()  # no face in a black frame
    per_clip, scored, failed = identity_similarity(emb[:1], emb[:1, None].expand(1, 3, 512))
    assert float(per_clip[0]) == pytest.approx(1.0) and int(scored[0]) == 3 and int(failed[0]) == 0


def test_the_face_is_aligned_onto_arcface_torchs_template(weights: Path) -> None:
    embedder = ArcFaceEmbedder()
    image = data.astronaut()
    points = embedder.landmarks.frame(image)
    assert points is not None
    src = five_points(points)
    tform = SimilarityTransform.from_estimate(src, ARCFACE_TEMPLATE)
    residual = np.linalg.norm(tform(src) - ARCFACE_TEMPLATE, axis=1)
    print(f"\nfive points on the 112 px template: {residual.round(2)} px off")
    # a similarity cannot fit five points exactly; measured 3.1-6.8 px (the astronaut smiles
    # wider than the template's mouth)
    assert residual.max() < 9.0 and residual[:3].max() < 5.0
    face = embedder.aligned(image)
    assert face is not None and face.shape == (112, 112, 3) and face.std() > 20


@pytest.mark.parametrize("depth", ["r18", "r34", "r50", "r100"])
def test_the_depth_is_read_from_the_state_dict(depth: str) -> None:
    with torch.device("meta"):
        state = IResNet(IRESNET_LAYERS[depth]).state_dict()
    assert iresnet_depth(state) == depth


def test_missing_and_foreign_files_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALKING_FACES_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError) as missing:
        ArcFaceEmbedder()
    assert "arcface_backbone.pth" in str(missing.value) and "\n" not in str(missing.value)
    torch.save({"conv.weight": torch.zeros(3)}, arcface_weights_path())
    with pytest.raises(UserError, match="blocks per stage"):
        ArcFaceEmbedder()
    arcface_weights_path().write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a PyTorch state dict"):
        ArcFaceEmbedder()
