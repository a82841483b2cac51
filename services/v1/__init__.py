"""Generated from proto/lumenal/v1 by proto/generate.py. Do not edit."""
