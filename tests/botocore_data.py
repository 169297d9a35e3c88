"""botocore's data files, read once per test process instead of once per session.

botocore parses its data files (service models, endpoints, endpoint rules) into a cache that
belongs to one session's loader: EC2's model alone is 0.06 s of JSON, and making a session's
first EC2 client costs ~0.1 s of CPU. snapd makes one session per `AwsClients`, so every
`snapd` command and every test's `aws` fixture parsed them all again. `share_botocore_data`
gives every session of this process one loader, as botocore itself gives every client of
one session one loader: the same data, the same requests, less parsing. A session given a
data path of its own (`AWS_DATA_PATH`) still gets its own loader.

Used by the test workers (tests/conftest.py) and the snapd fork server, which calls it
before it forks so its children inherit the parsed data (tests/integration/forkserver.py).
"""

from __future__ import annotations

#: The AWS services snapd calls, whose data is read at once.
AWS_SERVICES = ("ec2", "s3", "rbin", "sts")


def share_botocore_data() -> None:
    """One loader for every botocore session of this process, holding snapd's services."""
    import botocore.loaders
    import botocore.session

    if getattr(botocore.session.create_loader, "shared", False):
        return
    shared = botocore.loaders.create_loader()
    own_loader = botocore.session.create_loader

    def create_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        return shared if search_path_string is None else own_loader(search_path_string)

    create_loader.shared = True  # type: ignore[attr-defined]
    botocore.session.create_loader = create_loader
    session = botocore.session.get_session()
    for service in AWS_SERVICES:
        # Explicit keys: building a client must not look for credentials (or reach IMDS).
        session.create_client(
            service, region_name="us-east-1", aws_access_key_id="-", aws_secret_access_key="-"
        )
