"""The simulated world for tests, `make demo` and `make bench` — never used in production.

moto in server mode (reached over HTTP, also by `snapd` subprocesses), an EC2 simulator
patched into that server's process, a Velero bucket builder, and a fake Kubernetes API
server. moto is imported lazily inside these modules: it lives in the `testing` extra and is
never installed in the production image.
"""
