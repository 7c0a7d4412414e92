"""
The pure core: image references, policies, workloads, lookup outcomes, evaluation and the words
users read. No I/O, no kopf, no httpx: every function here is a function of its arguments (time
comes in as a clock), so the webhook and ``image-gate check`` share it and tests need no fakes.
"""
