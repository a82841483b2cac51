"""Shared core: settings, logging, gRPC bootstrap, Kafka events, S3, auth.

Lower layer: it never imports a service package.
"""
