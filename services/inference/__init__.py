"""Inference service: scores frames through TF Serving and answers TopK over the pool index."""
