"""Prepared datasets on S3-compatible storage, against a local moto server (conftest's s3_server).

``prepare SOURCE s3://...`` processes in a staging folder and uploads it; the upload is atomic
(``meta.json`` last: an interrupted one does not read as a dataset) and resumable (only missing
objects are sent again); the dataset reads back as the local folder does (small files through
boto3, shards through LitData); what a user can get wrong is one line. The DDP fit and the sharded
evaluation from S3 are in test_distributed.py.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from s3_server import S3Server, upload_prepared

from talking_faces.cli.main import main
from talking_faces.data import dataset, storage
from talking_faces.data.dataset import PreparedDataset, WindowConfig
from talking_faces.errors import UserError

BUCKET = "tf-storage"
PREPARE = ["--layout", "grid", "--landmarks", "sidecar", "--size", "64"]


@pytest.fixture
def s3(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's client variables for the server (caches in tmp_path); the bucket exists."""
    variables = s3_server.env(tmp_path / "client")
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    s3_server.create_bucket(BUCKET)
    return variables


def assert_reads_like(url: str, folder: Path, chunks: Path) -> None:
    """The dataset at ``url`` holds what ``folder`` holds: small files and the shards' pairs."""
    remote, local = PreparedDataset.load(url), PreparedDataset.load(folder)
    assert remote.manifest == local.manifest and remote.pairs == local.pairs
    assert {k: v for k, v in remote.meta.items() if k != "created"} == {
        k: v for k, v in local.meta.items() if k != "created"
    }
    window = WindowConfig()
    ours = dataset.TestPairDataset(remote, window, cache_dir=str(chunks))
    theirs = dataset.TestPairDataset(local, window)
    for i in range(len(theirs)):
        a, b = ours[i], theirs[i]
        for key in ("frames", "identity", "audio", "waveform", "landmarks"):
            assert torch.equal(a[key], b[key]), (i, key)


@pytest.mark.slow
def test_prepare_to_s3_uploads_a_dataset_that_reads_like_the_folder(
    s3: dict[str, str],
    synthetic_grid_raw: Path,
    prepared_grid: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"s3://{BUCKET}/grid"
    assert main(["prepare", str(synthetic_grid_raw), url, *PREPARE]) == 0
    out = capsys.readouterr().out
    assert "processed 6 clips" in out and f"prepared dataset: {url}" in out
    assert "uploaded 8 files" in out  # manifest, pairs, index + chunk of 3 splits; then meta
    # the default staging folder is gone once uploaded
    assert not (tmp_path / "client" / "talking_faces" / "staging" / BUCKET / "grid").exists()
    assert_reads_like(url, prepared_grid, tmp_path / "chunks")

    # the same command again: nothing to process or send
    assert main(["prepare", str(synthetic_grid_raw), url, *PREPARE]) == 0
    out = capsys.readouterr().out
    assert f"{url} is already complete" in out and "processed" not in out


def test_interrupted_upload_is_not_a_dataset_and_resumes(
    s3: dict[str, str],
    s3_server: S3Server,
    synthetic_grid_raw: Path,
    prepared_grid: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"s3://{BUCKET}/resumed"
    command = ["prepare", str(synthetic_grid_raw), url, *PREPARE, "--staging", str(prepared_grid)]
    assert main(command) == 0
    assert "uploaded 8 files" in capsys.readouterr().out
    assert (prepared_grid / "meta.json").is_file()  # a staging folder that was given is kept

    # as if killed during the upload: meta.json (sent last) and one chunk are not there
    client = s3_server.client()
    for key in ("meta.json", "shards/train/chunk-0-0.bin"):
        client.delete_object(Bucket=BUCKET, Key=f"resumed/{key}")
    with pytest.raises(UserError, match="meta.json not found.*meta.json is written last"):
        PreparedDataset.load(url)

    assert main(command) == 0
    assert "uploaded 1 files" in capsys.readouterr().out  # the chunk; 7 were already there
    assert_reads_like(url, prepared_grid, tmp_path / "chunks")


def test_object_storage_mistakes_are_one_line(
    s3: dict[str, str],
    s3_server: S3Server,
    synthetic_grid_raw: Path,
    prepared_grid: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = str(synthetic_grid_raw)

    def error(args: list[str]) -> str:
        assert main(args) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    url = f"s3://{BUCKET}/plain"
    upload_prepared(s3, synthetic_grid_raw, prepared_grid, url)
    capsys.readouterr()
    staging = ["--staging", str(prepared_grid)]
    assert "applies to an s3:// OUT only" in error(
        ["prepare", raw, str(tmp_path / "x"), *PREPARE, *staging]
    )
    assert "bucket no-such-bucket does not exist" in error(
        ["prepare", raw, "s3://no-such-bucket/grid", *PREPARE, *staging]
    )
    client = s3_server.client()
    client.put_object(Bucket=BUCKET, Key="foreign/notes.txt", Body=b"mine")
    assert "not part of a prepared dataset" in error(
        ["prepare", raw, f"s3://{BUCKET}/foreign", *PREPARE, *staging]
    )
    other = [a if a != "64" else "32" for a in PREPARE]
    assert "prepared with other settings (size 64 -> 32" in error(["prepare", raw, url, *other])

    # a dataset on S3 without experts: evaluate says where it looked and what to pass
    out = str(tmp_path / "static.json")
    message = error(["evaluate", "--baseline", "static", "--data", url, "--out", out])
    assert f"no SyncNet expert at {url}/experts/syncnet.ckpt" in message
    assert "--syncnet PATH" in message

    # nothing listens there
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    message = error(["evaluate", "--baseline", "static", "--data", url, "--out", out])
    assert f"cannot reach the object store at {closed}" in message


def test_storage_urls_and_fetch(s3: dict[str, str], s3_server: S3Server, tmp_path: Path) -> None:
    assert storage.join("s3://b/p/", "meta.json") == "s3://b/p/meta.json"
    assert storage.join(tmp_path, "a", "b") == str(tmp_path / "a" / "b")
    assert storage.split_url("s3://b/p/q") == ("b", "p/q")
    with pytest.raises(UserError, match="not an s3://bucket/prefix URL"):
        storage.split_url("gs://b/p")

    client = s3_server.client()
    client.put_object(Bucket=BUCKET, Key="fetch/experts/x.ckpt", Body=b"first")
    url = f"s3://{BUCKET}/fetch/experts/x.ckpt"
    first = storage.fetch(url)
    assert first is not None and first.read_bytes() == b"first"
    assert storage.fetch(url) == first  # cached while the object is unchanged
    client.put_object(Bucket=BUCKET, Key="fetch/experts/x.ckpt", Body=b"second")
    second = storage.fetch(url)
    assert second is not None and second != first and second.read_bytes() == b"second"
    assert storage.fetch(f"s3://{BUCKET}/fetch/experts/none.ckpt") is None
    assert json.loads(json.dumps(storage.list_objects(f"s3://{BUCKET}/fetch"))) == {
        "experts/x.ckpt": 6
    }
