"""Fixtures that several integration test files share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from simworld.ec2sim import Ec2Simulator
from simworld.fake_kube import FakeKube
from simworld.moto_server import MotoWorld
from tests.integration.cli import ForkServer, use_fork_server
from tests.integration.test_restore import DST, SCOPE, SRC, World


@pytest.fixture
def world(moto: MotoWorld, ec2sim: Ec2Simulator, fake_kube: FakeKube, tmp_path: Path) -> World:
    """Fast copies and volumes; snapd configured for SRC → DST with a short poll interval."""
    ec2sim.copy_duration = 0.4
    ec2sim.volume_duration = 0.2
    env = {
        **moto.env(),
        **fake_kube.env(),
        "SNAPD_CLUSTER": SCOPE,
        "SNAPD_SOURCE_REGION": SRC,
        "SNAPD_DESTINATION_REGION": DST,
        "SNAPD_POLL_INTERVAL": "0.1",
    }
    return World(ec2sim, fake_kube, env, tmp_path)


@pytest.fixture(scope="session", autouse=True)
def snapd_fork_server() -> Iterator[None]:
    """`run_snapd` forks its commands from one server per worker that imported snapd once
    (tests/integration/forkserver.py): each command is still a process of its own."""
    server = ForkServer()
    use_fork_server(server)
    try:
        yield
    finally:
        use_fork_server(None)
        server.close()
