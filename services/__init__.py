"""Lumenal: continuous active learning for video capsule endoscopy."""
