"""The storage service: video and image ingest, frames in S3, presigned URLs.

Owns the ``lumenal-frames`` bucket. Its index lives in the bucket too
(one manifest per video), so any replica rebuilds its state after a restart.
"""
