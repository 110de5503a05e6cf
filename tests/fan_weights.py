"""Weight files of face-alignment's real architectures (S3FD detector, 2D FAN), written into a
temporary torch hub cache, so the ``fan`` landmark code paths run with no download.

Used by tests/test_landmarks_fan.py (``prepare --landmarks fan``) and tests/test_generate.py
(``generate`` aligning a face photo). The weights are random (only the detector's output layers are
set by hand so that it finds exactly one box per image, or none), so nothing built on them is
about accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch

from talking_faces.data.prepare.landmarks import fan_weight_files


def s3fd_state(finds_a_face: bool) -> dict[str, torch.Tensor]:
    """A random-init S3FD whose box heads ignore the image.

    Every level says "background", except (when ``finds_a_face``) the coarsest one, which says
    "face" with its prior box: one detection per frame after non-maximum suppression.
    """
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    net = s3fd()
    with torch.no_grad():
        for name, module in net.named_children():
            if "_mbox_" in name:
                module.weight.zero_()
                module.bias.zero_()
                if name.endswith("_conf"):
                    module.bias[0] = 10.0
        if finds_a_face:
            net.conv7_2_mbox_conf.bias.copy_(torch.tensor([-10.0, 10.0]))
    return net.state_dict()


def write_fan_hubs(root: Path) -> dict[str, Path]:
    """Torch hub folders (``$TORCH_HOME/hub``) under ``root``: ``face`` finds a face in every
    image, ``none`` finds none; both hold the same random 2D FAN."""
    from face_alignment.models import FAN

    files = fan_weight_files()
    out = {}
    for kind in ("face", "none"):
        hub = root / kind / "hub"
        (hub / "checkpoints").mkdir(parents=True)
        torch.save(s3fd_state(kind == "face"), hub / "checkpoints" / files["s3fd"][0])
        out[kind] = hub
    torch.manual_seed(0)
    fan_file = out["face"] / "checkpoints" / files["2DFAN-4"][0]
    torch.save(FAN(4).state_dict(), fan_file)
    (out["none"] / "checkpoints" / fan_file.name).symlink_to(fan_file)
    return out
