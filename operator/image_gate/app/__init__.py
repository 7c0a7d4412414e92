"""
The application: the command line, settings, the wiring of clients, resolver and handlers, the
runner that starts kopf, health, metrics, logs, certificates and policy files. Nothing imports it.
"""
