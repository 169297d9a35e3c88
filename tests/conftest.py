"""Shared fixtures: one moto server per test session, reset after every test that uses it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from snapd.testing.moto_server import FAKE_AWS_ENV, MotoWorld, moto_server

# No test may ever reach real AWS, whatever the developer's shell has configured.
for _name in ("AWS_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
    os.environ.pop(_name, None)
os.environ.update(FAKE_AWS_ENV)


@pytest.fixture(scope="session")
def moto_session() -> Iterator[MotoWorld]:
    """The session's moto server."""
    with moto_server() as world:
        yield world


@pytest.fixture
def moto(moto_session: MotoWorld) -> Iterator[MotoWorld]:
    """A clean moto world for one test."""
    moto_session.reset()
    yield moto_session
    moto_session.reset()
