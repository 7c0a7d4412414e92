"""
The Kubernetes side: kopf's admission handlers, the policy controller and its indexes, Events.
No cloud signing and no application wiring: what these report goes through Protocols.

This package's ``__init__`` imports nothing, so ``image_gate.kube.readiness`` can be read without
loading kopf.
"""
