"""Clip storage behind one small interface: a local folder, or an S3 bucket through boto3.

    storage = make_storage(cfg.storage, run_dir, run_name)
    key = storage.put("/tmp/it00003-p001-left.mp4")    # -> "<prefix>/<run>/it00003-p001-left.mp4"
    url = storage.url(key)                             # what a worker's browser fetches

Keys are stable (run name + pair id), so a restarted iteration uploads to the same keys and the
tasks it already created keep working. S3 credentials come from boto3's own environment
variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and never pass through
this module's arguments; URLs are computed when needed and never written to the run directory
(a presigned URL carries the access key id).
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
from typing import Protocol

from rlhp_jax import config_errors as v
from rlhp_jax.crowd.config import StorageConfig
from rlhp_jax.crowd.retry import CrowdError, retry_call


class ClipStorage(Protocol):
  def put(self, path: str) -> str:
    """Stores a local file; returns its key."""

  def url(self, key: str) -> str:
    """A URL a browser can GET the clip from."""

  def exists(self, key: str) -> bool:
    ...


class LocalStorage:
  """A folder; URLs are ``file://`` paths unless ``base_url`` (e.g. the web page) serves it."""

  def __init__(self, root: str, base_url: str = ""):
    self.root = os.path.abspath(root)
    self.base_url = base_url.rstrip("/")
    os.makedirs(self.root, exist_ok=True)

  def put(self, path: str) -> str:
    key = os.path.basename(path)
    dest = os.path.join(self.root, key)
    if os.path.abspath(path) != dest:
      shutil.copyfile(path, dest + ".part")
      os.replace(dest + ".part", dest)
    return key

  def exists(self, key: str) -> bool:
    return os.path.exists(os.path.join(self.root, key))

  def url(self, key: str) -> str:
    if self.base_url:
      return f"{self.base_url}/{urllib.parse.quote(key)}"
    return "file://" + urllib.parse.quote(os.path.join(self.root, key))


class S3Storage:
  """An S3 (or S3-compatible) bucket: clips under ``<prefix>/<run name>/``."""

  def __init__(self, cfg: StorageConfig, run_name: str, client=None):
    cfg.check_ready()
    self.cfg = cfg
    self.prefix = "/".join(p for p in (cfg.prefix.strip("/"), run_name) if p)
    self.client = client or make_s3_client(cfg)

  def key_for(self, path: str) -> str:
    return f"{self.prefix}/{os.path.basename(path)}"

  def put(self, path: str) -> str:
    """Uploads unless the key already holds an object (a resumed batch uploads nothing
    twice); transient errors are retried, others become one ``CrowdError`` line."""
    key = self.key_for(path)
    if self.exists(key):
      return key
    with open(path, "rb") as f:
      body = f.read()
    self._call("upload", lambda: self.client.put_object(
        Bucket=self.cfg.bucket, Key=key, Body=body, ContentType="video/mp4"))
    return key

  def exists(self, key: str) -> bool:
    from botocore.exceptions import ClientError

    def head():
      try:
        self.client.head_object(Bucket=self.cfg.bucket, Key=key)
        return True
      except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
          return False
        raise
    return self._call("head_object", head)

  def check(self) -> None:
    """Fails fast, before a run directory exists, if the bucket is missing or not ours."""
    self._call("head_bucket", lambda: self.client.head_bucket(Bucket=self.cfg.bucket))

  def _call(self, what: str, fn):
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    try:
      return retry_call(fn, what=f"S3 {what}")
    except NoCredentialsError:
      raise CrowdError(f"S3 {what}: no credentials; export AWS_ACCESS_KEY_ID and "
                       "AWS_SECRET_ACCESS_KEY") from None
    except ClientError as e:
      raise CrowdError(f"S3 {what} (bucket {self.cfg.bucket!r}): {_s3_problem(e)}") from None
    except BotoCoreError as e:
      raise CrowdError(f"S3 {what} (bucket {self.cfg.bucket!r}): {e}; check "
                       "storage.endpoint_url and storage.region") from None

  def url(self, key: str) -> str:
    if self.cfg.public_base_url:
      return f"{self.cfg.public_base_url.rstrip('/')}/{urllib.parse.quote(key)}"
    return self.client.generate_presigned_url(
        "get_object", Params={"Bucket": self.cfg.bucket, "Key": key},
        ExpiresIn=self.cfg.presign_expiry_s)


_S3_FIXES = {
    "NoSuchBucket": "the bucket does not exist; create it or fix storage.bucket",
    "404": "the bucket does not exist; create it or fix storage.bucket",
    "AccessDenied": "access denied; give the key's user s3:PutObject/GetObject on the bucket",
    "403": "access denied; check the keys and the bucket policy (s3:PutObject, s3:GetObject)",
    "InvalidAccessKeyId": "the access key id is unknown; export a valid AWS_ACCESS_KEY_ID",
    "SignatureDoesNotMatch": "the secret key does not match; export the right "
                             "AWS_SECRET_ACCESS_KEY",
    "ExpiredToken": "the session token expired; export fresh credentials",
    "PermanentRedirect": "the bucket is in another region; set storage.region",
    "301": "the bucket is in another region; set storage.region",
    "400": "the request was refused (400); check storage.region and storage.endpoint_url",
}


def _s3_problem(error) -> str:
  detail = error.response.get("Error", {})
  code = str(detail.get("Code", ""))
  return _S3_FIXES.get(code, f"{code or 'error'}: {detail.get('Message', error)}")


def make_s3_client(cfg: StorageConfig):
  """A boto3 S3 client for the configured endpoint; credentials from the environment only."""
  import boto3
  import botocore.config
  kwargs = {"config": botocore.config.Config(retries={"max_attempts": 5, "mode": "standard"},
                                             signature_version="s3v4")}
  if cfg.endpoint_url:
    kwargs["endpoint_url"] = cfg.endpoint_url
  if cfg.region:
    kwargs["region_name"] = cfg.region
  session = boto3.session.Session()
  v.require(session.get_credentials() is not None, "storage",
            "no S3 credentials: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (they are "
            "read from the environment only, never from the config)")
  return session.client("s3", **kwargs)


def make_storage(cfg: StorageConfig, run_dir: str, run_name: str) -> ClipStorage:
  if cfg.kind == "s3":
    return S3Storage(cfg, run_name)
  return LocalStorage(cfg.local_dir or os.path.join(run_dir, "clips"), cfg.public_base_url)
