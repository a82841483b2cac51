"""S3 client on the ``minio`` SDK (SeaweedFS locally, MinIO or any S3 in production)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

from minio import Minio
from minio.error import S3Error

from lumenal.core.config import CommonSettings
from lumenal.core.errors import NotFound

FRAMES_BUCKET = "lumenal-frames"
MODELS_BUCKET = "lumenal-models"
BROKER_BUCKET = "lumenal-broker"  # tansu's s3:// storage engine in the embedded stack
BUCKETS = (FRAMES_BUCKET, MODELS_BUCKET)


@dataclass
class ObjectStore:
    """Small typed wrapper: bytes and JSON in, bytes and JSON out."""

    client: Minio

    @classmethod
    def from_settings(cls, s: CommonSettings) -> ObjectStore:
        return cls(Minio(s.s3_endpoint, access_key=s.s3_access_key, secret_key=s.s3_secret_key,
                         secure=s.s3_secure, region=s.s3_region))

    def ensure_bucket(self, bucket: str) -> None:
        if not self.client.bucket_exists(bucket):
            try:
                self.client.make_bucket(bucket)
            except S3Error as exc:  # another replica created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream",
                  metadata: dict[str, str] | None = None) -> None:
        self.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                               metadata=metadata)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        try:
            resp = self.client.get_object(bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket"):
                raise NotFound(f"no object {bucket}/{key}") from None
            raise
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def put_json(self, bucket: str, key: str, obj: object) -> None:
        self.put_bytes(bucket, key, json.dumps(obj, sort_keys=True).encode(), "application/json")

    def get_json(self, bucket: str, key: str) -> object:
        return json.loads(self.get_bytes(bucket, key))

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self.client.stat_object(bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
                return False
            raise

    def list_keys(self, bucket: str, prefix: str = "", recursive: bool = True) -> Iterator[str]:
        for obj in self.client.list_objects(bucket, prefix=prefix, recursive=recursive):
            yield obj.object_name

    def remove(self, bucket: str, key: str) -> None:
        self.client.remove_object(bucket, key)

    def presigned_get(self, bucket: str, key: str, ttl_s: int = 3600) -> str:
        return self.client.presigned_get_object(bucket, key, expires=timedelta(seconds=ttl_s))

    def healthy(self) -> bool:
        """True when the endpoint answers (used by health probes)."""
        try:
            self.client.bucket_exists(FRAMES_BUCKET)
            return True
        except Exception:  # noqa: BLE001 - any failure means unhealthy
            return False
