"""Training service: retrain on resolved labels, validate, publish, hot-swap, roll back.

Owns the model registry in S3 (bucket ``lumenal-models``). See docs/training.md.
"""
