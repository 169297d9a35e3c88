"""Shared fixtures: one moto server per test session, reset after every test that uses it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.moto_server import FAKE_AWS_ENV, MotoWorld, moto_server

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


@pytest.fixture
def ec2sim(moto: MotoWorld) -> Iterator[Ec2Simulator]:
    """The EC2 simulator patched into the moto server, on a clean world; removed after."""
    sim = Ec2Simulator.install()
    try:
        yield sim
    finally:
        sim.uninstall()


# No test may ever reach a real Kubernetes cluster through the developer's kubeconfig or an
# in-cluster service account: tests that need Kubernetes use the `fake_kube` fixture.
os.environ.pop("KUBERNETES_SERVICE_HOST", None)
os.environ["KUBECONFIG"] = "/nonexistent/snapd-tests/kubeconfig"

# Appended below the AWS fixtures (this file is shared; imports at the top belong to others).
from simworld.fake_kube import FakeKube, fake_kube_server  # noqa: E402


@pytest.fixture(scope="session")
def fake_kube_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeKube]:
    """The session's fake Kubernetes API server (its kubeconfig in a temp dir)."""
    with fake_kube_server(tmp_path_factory.mktemp("fake-kube")) as kube:
        yield kube


@pytest.fixture
def fake_kube(fake_kube_session: FakeKube, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKube]:
    """An empty fake Kubernetes API for one test, with KUBECONFIG pointing at it."""
    fake_kube_session.reset()
    monkeypatch.setenv("KUBECONFIG", str(fake_kube_session.kubeconfig_path))
    yield fake_kube_session
    fake_kube_session.reset()
