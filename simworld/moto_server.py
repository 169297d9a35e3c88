"""A moto server on loopback that aioboto3 and `snapd` subprocesses reach over HTTP.

moto's in-process mock does not work with aiobotocore (docs/ebs.md#moto), so every
test, the demo and the benchmark use server mode. `MotoWorld.env()` is the environment a
`snapd` subprocess needs to talk to it: endpoint, fake credentials, no real AWS.
"""

from __future__ import annotations

import logging
import os
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

ACCOUNT_ID = "123456789012"

#: Variables that make any AWS SDK in this process or a child talk to moto, never to AWS.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class MotoWorld:
    """A running ThreadedMotoServer; `url` is its endpoint."""

    def __init__(self, server: Any, url: str) -> None:
        self._server = server
        self.url = url

    def env(self) -> dict[str, str]:
        """Environment for a child process (or this one) to use this server."""
        return {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": self.url}

    def reset(self) -> None:
        """Forget every bucket, snapshot and volume (moto's own reset endpoint)."""
        # The URL is the loopback http:// address this module built, never user input.
        reset_url = f"{self.url}/moto-api/reset"
        # S310: the URL is the local moto server's, built here, never a user's.
        request = urllib.request.Request(reset_url, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def stop(self) -> None:
        self._server.stop()


def _list_moto_modules_once() -> None:
    """Make moto's dispatcher read moto's package directory once, not on every request.

    To find the backend of a request, moto's server asks whether the host names one of
    moto's modules by listing its package directory (~180 entries, a stat each): ~0.8 ms of
    CPU a request, a fifth of what a request costs, under the dispatcher's lock. The
    directory does not change while the server runs, so its listing is kept.
    """
    from moto import backends

    if getattr(backends.list_of_moto_modules, "kept", False):
        return
    modules = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> Iterable[str]:
        return iter(modules)

    list_of_moto_modules.kept = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules


@contextmanager
def moto_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[MotoWorld]:
    """Start moto on `host` (a free port by default) with this process pointed at it."""
    os.environ.update(FAKE_AWS_ENV)
    from moto.server import ThreadedMotoServer

    from simworld import s3index

    s3index.install()

    # One access-log line per request drowns the demo's and the tests' own output.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    _list_moto_modules_once()

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    world = MotoWorld(server, f"http://{bound_host}:{bound_port}")
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = world.url
    try:
        yield world
    finally:
        world.stop()
        if previous is None:
            os.environ.pop("AWS_ENDPOINT_URL", None)
        else:
            os.environ["AWS_ENDPOINT_URL"] = previous
