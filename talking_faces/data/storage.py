"""Prepared datasets on object storage: reading their small files, fetching their experts, and
uploading a prepared folder.

prepare (local staging folder) -> **upload_dataset** -> ``s3://bucket/prefix`` ->
PreparedDataset.load (**read_text**: meta.json, manifest.jsonl, pairs.json), LitData's
``StreamingDataset`` (the shards), evaluate and fit (**fetch**: ``experts/*.ckpt``)

One client, one set of variables. ``s3://`` URLs are read and written with boto3, the client
LitData streams the shards with (``litdata.streaming.client.S3Client`` builds a plain
``boto3.Session().client("s3")``, and its obstore fast path copies that client's endpoint, region
and credentials), so the small files, the experts and the shards all resolve the endpoint and the
credentials by botocore's standard chain:

- ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``): an S3-compatible server (MinIO, Ceph, R2,
  ...); unset for AWS itself;
- ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``), else
  ``AWS_PROFILE`` and ``~/.aws/credentials``, else an instance role;
- ``AWS_DEFAULT_REGION`` (or ``AWS_REGION``).

fsspec/s3fs is not used for ``s3://`` (its variables would be a second set to keep in step);
other URL schemes LitData streams (``gs://``, ...) are read through fsspec and need its filesystem
package (``gcsfs``, ...), and uploading to them is left to their own tools.

An ``http://`` endpoint (a MinIO or moto server without TLS) needs one fix in LitData 0.2.x: its
obstore path builds the store without ``allow_http``, which object_store requires for a plain-HTTP
endpoint, so every chunk download fails with ``builder error ... BadScheme``. Importing this module
adds ``allow_http`` to LitData's obstore client options (:func:`_let_litdata_stream_over_http`);
it only permits the ``http://`` endpoint the environment names, ``https://`` ones are unchanged.

Upload order (:func:`upload_dataset`): every file but ``meta.json``, each skipped when the stored
object already carries the same sha256 (object metadata ``sha256``), then stale shard objects are
deleted, then ``meta.json`` last: readers take a prefix with ``meta.json`` as complete, so an
interrupted upload is never read as a dataset, and rerunning it sends only what is missing.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from talking_faces.errors import UserError
from talking_faces.names import EXPERTS_DIR, MANIFEST_FILE, META_FILE, PAIRS_FILE, SHARDS_DIR
from talking_faces.utils.io import TMP_PREFIX, sha256_file
from talking_faces.utils.progress import progress

#: the names a prepared dataset may hold (under a remote prefix, anything else is not ours)
DATASET_NAMES = (META_FILE, MANIFEST_FILE, PAIRS_FILE, SHARDS_DIR, EXPERTS_DIR)
#: object metadata key holding a file's sha256
SHA_KEY = "sha256"
CACHE_ENV = "TALKING_FACES_CACHE"


def is_remote(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a URL (``s3://...``) rather than a local path."""
    return "://" in str(root)


def join(root: str | os.PathLike[str], *parts: str) -> str:
    """``root/part/...`` for a local path or a URL."""
    if is_remote(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(Path(root).joinpath(*parts))


def cache_root() -> Path:
    """``$TALKING_FACES_CACHE``, else ``~/.cache/talking_faces``: staging folders of uploads and
    fetched experts."""
    given = os.environ.get(CACHE_ENV)
    return Path(given) if given else Path.home() / ".cache" / "talking_faces"


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key/...`` -> ``("bucket", "key/...")``."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UserError(f"{url} is not an s3://bucket/prefix URL")
    return parsed.netloc, parsed.path.lstrip("/")


def _let_litdata_stream_over_http() -> None:
    """Add ``allow_http`` to the client options LitData gives obstore (see the module doc)."""
    try:
        from litdata.streaming import downloader
    except ImportError:  # pragma: no cover - litdata is a dependency
        return
    options = getattr(downloader, "_OBSTORE_CLIENT_OPTIONS", None)
    if isinstance(options, dict):
        options.setdefault("allow_http", "true")


_let_litdata_stream_over_http()


# ---------------------------------------------------------------------------- client, errors
_CLIENT: dict[tuple[Any, ...], Any] = {}
#: the variables a client is built from (a new client when one of them changes)
_CLIENT_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def s3_client() -> Any:
    """The process's boto3 S3 client (endpoint, credentials and region from the environment, as
    LitData's; a few retries rather than LitData's thousand, so a wrong endpoint fails fast)."""
    # a client must not cross a fork, nor outlive the variables it was built from
    key = (os.getpid(), *(os.environ.get(v) for v in _CLIENT_VARS))
    if key not in _CLIENT:
        import boto3
        import botocore.config

        config = botocore.config.Config(retries={"max_attempts": 4, "mode": "standard"})
        _CLIENT.clear()
        _CLIENT[key] = boto3.session.Session().client("s3", config=config)
    return _CLIENT[key]


def _endpoint() -> str:
    return str(s3_client().meta.endpoint_url)


def storage_error(exc: Exception, url: str) -> UserError | None:
    """The one-line :class:`UserError` for a botocore failure on ``url``, or None when it is
    not one a user can fix (missing objects are FileNotFoundError, raised by the callers)."""
    import botocore.exceptions as be

    if isinstance(exc, be.NoCredentialsError):
        return UserError(
            f"no credentials for {url}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or "
            "AWS_PROFILE); see docs/scale-out.md"
        )
    if isinstance(exc, (be.EndpointConnectionError, be.ConnectTimeoutError)):
        return UserError(
            f"cannot reach the object store at {_endpoint()} for {url}: check AWS_ENDPOINT_URL "
            "(unset for AWS S3) and that the server is up"
        )
    if isinstance(exc, be.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code == "NoSuchBucket":
            bucket = urlparse(url).netloc
            return UserError(
                f"bucket {bucket} does not exist at {_endpoint()}: create it or fix the URL {url}"
            )
        if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return UserError(
                f"access to {url} denied ({code}): check AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY and the bucket's permissions"
            )
    return None


def _not_found(exc: Exception) -> bool:
    import botocore.exceptions as be

    if not isinstance(exc, be.ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("NoSuchKey", "404", "NotFound")


# ---------------------------------------------------------------------------- reading
def read_bytes(url: str) -> bytes:
    """The bytes of the object or file ``url``.

    Raises:
        FileNotFoundError: no such object.
        UserError: credentials, endpoint, bucket or permission problems; a scheme whose fsspec
            filesystem is not installed.
    """
    if urlparse(url).scheme == "s3":
        bucket, key = split_url(url)
        try:
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _not_found(exc):
                raise FileNotFoundError(url) from None
            err = storage_error(exc, url)
            if err is not None:
                raise err from None
            raise
    import fsspec

    try:
        with fsspec.open(url, "rb") as f:
            return f.read()
    except ImportError as exc:
        raise UserError(f"cannot read {url}: {exc}") from None


def read_text(url: str) -> str:
    """:func:`read_bytes` decoded as UTF-8."""
    return read_bytes(url).decode("utf-8")


def _head(url: str) -> dict[str, Any] | None:
    bucket, key = split_url(url)
    try:
        return s3_client().head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if _not_found(exc):
            return None
        err = storage_error(exc, url)
        if err is not None:
            raise err from None
        raise


def exists(url: str) -> bool:
    """Whether the object ``url`` exists (``s3://`` only)."""
    return _head(url) is not None


def list_objects(prefix_url: str) -> dict[str, int]:
    """``{path relative to the prefix: size}`` of every object under ``prefix_url/``."""
    bucket, prefix = split_url(prefix_url.rstrip("/") + "/")
    found: dict[str, int] = {}
    try:
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                found[obj["Key"][len(prefix) :]] = int(obj["Size"])
    except Exception as exc:
        err = storage_error(exc, prefix_url)
        if err is not None:
            raise err from None
        raise
    return found


def fetch(url: str) -> Path | None:
    """A local copy of the object ``url`` (None when there is none), kept in
    ``cache_root()/remote/<bucket>/<key>`` and fetched again when the object changes (ETag)."""
    head = _head(url)
    if head is None:
        return None
    bucket, key = split_url(url)
    etag = str(head.get("ETag", "")).strip('"').replace("/", "_") or "none"
    dest = cache_root() / "remote" / bucket / Path(key).parent / f"{etag}-{Path(key).name}"
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=dest.parent)
    os.close(fd)
    try:
        s3_client().download_file(bucket, key, tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def fetch_dataset_file(root: str, *parts: str) -> Path | None:
    """``root/parts...`` as a local path: the file itself for a local dataset (None when it does
    not exist), a cached copy for an ``s3://`` one (see :func:`fetch`)."""
    if not is_remote(root):
        path = Path(root).joinpath(*parts)
        return path if path.is_file() else None
    if urlparse(str(root)).scheme != "s3":
        raise UserError(f"cannot fetch {join(root, *parts)}: only s3:// datasets hold experts")
    return fetch(join(root, *parts))


# ---------------------------------------------------------------------------- uploading
@dataclass
class UploadSummary:
    """What :func:`upload_dataset` did."""

    url: str
    uploaded: int
    unchanged: int
    deleted: int
    bytes_sent: int

    def format(self) -> str:
        return (
            f"uploaded {self.uploaded} files ({self.bytes_sent / 1e6:.1f} MB) to {self.url}; "
            f"{self.unchanged} already there"
            + (f"; {self.deleted} stale objects deleted" if self.deleted else "")
        )


def _local_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for name in DATASET_NAMES:
        top = folder / name
        paths = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for p in paths:
            rel = p.relative_to(folder).as_posix()
            if not any(part.startswith(TMP_PREFIX) for part in rel.split("/")):
                files[rel] = p
    return files


def _foreign(keys: list[str]) -> list[str]:
    return [k for k in keys if k.split("/", 1)[0] not in DATASET_NAMES]


def upload_dataset(
    local: str | os.PathLike[str], url: str, overwrite: bool = False
) -> UploadSummary:
    """Copy the prepared dataset folder ``local`` (with its ``experts/``) to ``url``.

    See the module docstring for the order. A prefix holding another dataset (another
    ``meta.json`` settings hash) is refused unless ``overwrite``; so is one holding objects that
    are not part of a prepared dataset (``overwrite`` deletes the other dataset's objects, never
    foreign ones).

    Raises:
        UserError: ``local`` is not a complete prepared dataset, ``url`` is not ``s3://``, the
            prefix holds something else, or a storage problem (credentials, endpoint, bucket).
    """
    folder = Path(local)
    _check_uploadable(folder, url)
    url = url.rstrip("/")
    split_url(url + "/")  # s3://bucket/... only
    meta = json.loads((folder / META_FILE).read_text())
    remote = list_objects(url)
    foreign = _foreign(list(remote))
    if foreign:
        raise UserError(
            f"{url} holds objects that are not part of a prepared dataset (e.g. {foreign[0]}); "
            "choose an empty prefix"
        )
    client = s3_client()
    other_dataset = _holds_other_dataset(url, remote, meta, overwrite)
    files = _local_files(folder)
    todo, unchanged = _files_to_send(url, files, remote)
    stale = [
        k
        for k in remote
        if k not in files and (other_dataset or not k.startswith(f"{EXPERTS_DIR}/"))
    ]
    changes_data = bool(stale) or any(not rel.startswith(f"{EXPERTS_DIR}/") for rel, _, _ in todo)
    sent = sum(path.stat().st_size for _, path, _ in todo)
    try:
        withdraw_meta = META_FILE in remote and changes_data
        _send(client, url, todo, sent, stale, files[META_FILE], withdraw_meta)
    except Exception as exc:
        err = storage_error(exc, url)
        if err is not None:
            raise err from None
        raise
    return UploadSummary(
        url=url, uploaded=len(todo), unchanged=unchanged, deleted=len(stale), bytes_sent=sent
    )


def _check_uploadable(folder: Path, url: str) -> None:
    """Refuse a folder that is not a complete prepared dataset, and a URL that is not s3://."""
    if not (folder / META_FILE).is_file():
        raise UserError(
            f"{folder} is not a complete prepared dataset (no {META_FILE}); finish its "
            "`talking-faces prepare` first"
        )
    if urlparse(url).scheme != "s3":
        raise UserError(
            f"uploading to {url} is not supported: give an s3:// URL (for other stores copy the "
            f"folder with their own tool, {META_FILE} last)"
        )


def _holds_other_dataset(
    url: str, remote: dict[str, int], meta: dict[str, Any], overwrite: bool
) -> bool:
    """Whether the prefix holds a dataset prepared with other settings (whose experts were
    trained on other data: they go too); refused unless ``overwrite``."""
    if META_FILE not in remote:
        return False
    try:
        theirs = json.loads(read_text(join(url, META_FILE)))
    except json.JSONDecodeError:
        theirs = {}
    other_dataset = theirs.get("config_sha256") != meta.get("config_sha256")
    if other_dataset and not overwrite:
        raise UserError(
            f"{url} holds a dataset prepared with other settings; use another prefix or --overwrite"
        )
    return other_dataset


def _files_to_send(
    url: str, files: dict[str, Path], remote: dict[str, int]
) -> tuple[list[tuple[str, Path, str]], int]:
    """``([(relative path, local path, sha256)], unchanged)``: every file but the meta file
    whose stored object is missing or carries another sha256, and the count of the others."""
    todo: list[tuple[str, Path, str]] = []
    unchanged = 0
    for rel, path in files.items():
        if rel == META_FILE:
            continue
        digest = sha256_file(path)
        if remote.get(rel) == path.stat().st_size:
            head = _head(join(url, rel))
            if head is not None and head.get("Metadata", {}).get(SHA_KEY) == digest:
                unchanged += 1
                continue
        todo.append((rel, path, digest))
    return todo, unchanged


def _send(
    client: Any,
    url: str,
    todo: list[tuple[str, Path, str]],
    sent: int,
    stale: list[str],
    meta_path: Path,
    withdraw_meta: bool,
) -> None:
    """The uploads in the module docstring's order, the meta file last (after taking the stored
    one away first when ``withdraw_meta``: the data under it changes)."""
    bucket, prefix = split_url(url + "/")
    if withdraw_meta:
        # the prefix stops being a complete dataset until meta.json comes back, last
        client.delete_object(Bucket=bucket, Key=prefix + META_FILE)
    bar = progress(total=sent, desc=f"upload {url}", unit="B", unit_scale=True)
    try:
        for rel, path, digest in todo:
            client.upload_file(
                str(path),
                bucket,
                prefix + rel,
                ExtraArgs={"Metadata": {SHA_KEY: digest}},
                Callback=bar.update,
            )
    finally:
        bar.close()
    for key in stale:
        client.delete_object(Bucket=bucket, Key=prefix + key)
    client.upload_file(
        str(meta_path),
        bucket,
        prefix + META_FILE,
        ExtraArgs={"Metadata": {SHA_KEY: sha256_file(meta_path)}},
    )
