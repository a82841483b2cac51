"""Shared ML library: the Keras classifier, image decoding, uncertainty maths and the TF Serving client.

Services import from here (never from each other); nothing in here imports a service.
"""
