"""Embedded stand-in for tensorflow/serving: the TF Serving gRPC API over ``tf.saved_model.load``."""
