"""
Facts about images, kept: which registry goes to which cloud, the caches, the circuit breakers and
the resolver in front of the cloud clients. I/O, but no Kubernetes.
"""
