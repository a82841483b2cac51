"""Demo material: the SYNTHETIC capsule-like video and the demo loop.

No real capsule endoscopy data can be installed on these machines; every
demo asset generated here is synthetic and says so.
"""
