"""The IAM policies in deploy/iam grant exactly what the code calls, and no more.

Every AWS request goes through `AwsClients.call(service, region, "Operation", ...)` or
`AwsClients.pages(...)`, so scanning the source for those calls finds every operation. Each
maps to the IAM action that authorises it; the daemon policy must grant what the daemon's
modules call, the restore policy (attached beside it for operators) what `restore` adds,
and neither may grant an action that no code needs — except the implied ones listed below,
each with its reason.
"""

from __future__ import annotations

import ast
import fnmatch
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "snapd"
IAM = ROOT / "deploy" / "iam"
DAEMON_POLICY = IAM / "snapd-daemon-policy.json"
RESTORE_POLICY = IAM / "snapd-restore-policy.json"
TRUST_POLICY = IAM / "irsa-trust-policy.json"

#: Modules whose AWS calls only `snapd restore` makes (its own policy may cover them).
RESTORE_MODULES = {"snapd/restore.py"}

AWS_SERVICES = {"s3", "ec2", "kms", "sts", "rbin"}

#: S3 operations whose IAM action is not `s3:<Operation>`.
S3_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    # Writes into the DR location (the copy's source is read with s3:GetObject).
    "CopyObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "DeleteObjects": "s3:DeleteObject",
}

#: S3 actions that change objects: granted only on the DR location, never the Velero bucket.
S3_WRITES = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}

#: Actions no code calls by name that IAM still checks, what makes them necessary, and why.
IMPLIED: dict[str, tuple[frozenset[str], str]] = {
    "ec2:CreateTags": (
        frozenset({"ec2:CopySnapshot", "ec2:CreateVolume"}),
        "TagSpecifications on CopySnapshot/CreateVolume are authorised as ec2:CreateTags "
        "(limited by ec2:CreateAction)",
    ),
    **{
        action: (
            frozenset({"ec2:CopySnapshot", "ec2:CreateVolume"}),
            "EC2 uses the KMS keys of encrypted snapshots and volumes on the caller's behalf",
        )
        for action in (
            "kms:DescribeKey",
            "kms:Decrypt",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncrypt*",
            "kms:CreateGrant",
        )
    },
}


@dataclass(frozen=True)
class AwsCall:
    path: str
    line: int
    service: str | None
    operation: str | None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _literal(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _argument(call: ast.Call, index: int, name: str) -> ast.expr | None:
    if len(call.args) > index and not any(isinstance(a, ast.Starred) for a in call.args):
        return call.args[index]
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def find_aws_calls(package: Path = PACKAGE) -> Iterator[AwsCall]:
    """Every `<x>.call(...)` / `<x>.pages(...)` whose service is an AWS service literal,
    or whose operation is a literal; an AST walk, so line breaks and formatting don't matter.
    """
    for file in sorted(package.rglob("*.py")):
        relative = file.relative_to(package.parent).as_posix()
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=relative)
        nodes = sorted(
            (n for n in ast.walk(tree) if isinstance(n, ast.Call)),
            key=lambda n: (n.lineno, n.col_offset),
        )
        for node in nodes:
            if not (isinstance(node.func, ast.Attribute) and node.func.attr in {"call", "pages"}):
                continue
            service = _literal(_argument(node, 0, "service"))
            operation = _literal(_argument(node, 2, "operation"))
            is_aws = service in AWS_SERVICES or (
                service is None and operation is not None and operation[:1].isupper()
            )
            if is_aws:
                yield AwsCall(relative, node.lineno, service, operation)


def iam_action(call: AwsCall) -> str:
    assert call.operation is not None
    service = call.service or ("s3" if call.operation in S3_ACTIONS else "ec2")
    if service == "s3":
        return S3_ACTIONS.get(call.operation, f"s3:{call.operation}")
    return f"{service}:{call.operation}"


def load_policy(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def statements(path: Path) -> list[dict[str, Any]]:
    return list(load_policy(path)["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def granted(path: Path) -> set[str]:
    return {
        action
        for statement in statements(path)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }


def covers(grants: set[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action, grant) for grant in grants)


def required() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(daemon actions, restore-only actions), each with the call sites that need them."""
    daemon: dict[str, list[str]] = {}
    restore: dict[str, list[str]] = {}
    for call in find_aws_calls():
        target = restore if call.path in RESTORE_MODULES else daemon
        target.setdefault(iam_action(call), []).append(call.where)
    return daemon, restore


def implied_by(used: set[str]) -> set[str]:
    return {action for action, (triggers, _) in IMPLIED.items() if triggers & used}


def describe(actions: dict[str, list[str]] | set[str]) -> str:
    if isinstance(actions, dict):
        return "\n".join(f"  {a}  (called at {', '.join(sites)})" for a, sites in actions.items())
    return "\n".join(f"  {a}" for a in sorted(actions))


def test_every_aws_call_names_its_operation() -> None:
    """An operation passed as a variable would escape the IAM check below."""
    unnamed = [call.where for call in find_aws_calls() if call.operation is None]
    assert unnamed == [], (
        "AWS calls whose operation is not a string literal (IAM coverage cannot be checked):\n"
        + "\n".join(unnamed)
    )


def test_daemon_policy_grants_what_the_daemon_calls() -> None:
    """The running daemon never hits AccessDenied on an operation it uses."""
    daemon, _ = required()
    grants = granted(DAEMON_POLICY)
    missing = {a: s for a, s in sorted(daemon.items()) if not covers(grants, a)}
    assert not missing, f"{DAEMON_POLICY.name} lacks:\n{describe(missing)}"


def test_restore_policy_grants_what_restore_adds() -> None:
    """An operator with the daemon and restore policies can run `snapd restore`."""
    _, restore = required()
    grants = granted(DAEMON_POLICY) | granted(RESTORE_POLICY)
    missing = {a: s for a, s in sorted(restore.items()) if not covers(grants, a)}
    assert not missing, (
        f"{RESTORE_POLICY.name} (with the daemon policy) lacks:\n{describe(missing)}"
    )


def test_daemon_policy_grants_nothing_unused() -> None:
    """Least privilege: each daemon action is called by daemon code or implied by one."""
    daemon, _ = required()
    allowed = set(daemon) | implied_by(set(daemon))
    extra = {g for g in granted(DAEMON_POLICY) if not covers(allowed, g) and g not in allowed}
    assert not extra, (
        f"{DAEMON_POLICY.name} grants actions no daemon code calls or needs:\n{describe(extra)}"
    )


def test_restore_policy_grants_nothing_unused() -> None:
    """Least privilege: each restore action is called by some code or implied by one."""
    daemon, restore = required()
    used = set(daemon) | set(restore)
    allowed = used | implied_by(used)
    extra = {g for g in granted(RESTORE_POLICY) if g not in allowed}
    assert not extra, (
        f"{RESTORE_POLICY.name} grants actions no code calls or needs:\n{describe(extra)}"
    )


@pytest.mark.parametrize("path", [DAEMON_POLICY, RESTORE_POLICY], ids=lambda p: p.name)
def test_policy_shape_is_least_privilege(path: Path) -> None:
    """No wildcard actions, `*` resources only for Describe, tag and delete guards in place."""
    policy = load_policy(path)
    assert policy["Version"] == "2012-10-17"
    sids = [s["Sid"] for s in statements(path)]
    assert len(sids) == len(set(sids)), "every statement has its own Sid"
    for statement in statements(path):
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert not any(a == "*" or a.endswith(":*") for a in actions), statement["Sid"]
        if "*" in as_list(statement["Resource"]):
            # Only reads, and only where IAM has no resource to name (rbin:ListRules).
            assert all(
                a.split(":")[1].startswith("Describe") or a == "rbin:ListRules" for a in actions
            ), statement["Sid"]
        condition = json.dumps(statement.get("Condition", {}))
        if "ec2:CreateTags" in actions:
            assert "ec2:CreateAction" in condition, statement["Sid"]
        if "ec2:DeleteSnapshot" in actions or "ec2:LockSnapshot" in actions:
            assert "aws:ResourceTag/snapd.io/cluster" in condition, statement["Sid"]
        if "kms:CreateGrant" in actions:
            assert "kms:GrantIsForAWSResource" in condition, statement["Sid"]


@pytest.mark.parametrize("path", [DAEMON_POLICY, RESTORE_POLICY], ids=lambda p: p.name)
def test_no_policy_can_unlock_a_snapshot(path: Path) -> None:
    """snapd never unlocks: a stolen snapd role cannot shorten or lift a replica's lock."""
    assert not covers(granted(path), "ec2:UnlockSnapshot")
    assert all(call.operation != "UnlockSnapshot" for call in find_aws_calls())


def test_locking_actions_are_in_the_daemon_policy() -> None:
    """With SNAPD_LOCK_MODE on, the daemon locks and reads locks and Recycle Bin rules."""
    grants = granted(DAEMON_POLICY)
    for action in ("ec2:LockSnapshot", "ec2:DescribeLockedSnapshots", "rbin:ListRules"):
        assert covers(grants, action), action


def test_implied_actions_have_reasons() -> None:
    """The exceptions to 'only what the code calls' are few and explained."""
    for action, (triggers, reason) in IMPLIED.items():
        assert triggers, action
        assert len(reason) > 20, action


def test_trust_policy_is_a_template_for_one_service_account() -> None:
    """IRSA trust: only the snapd ServiceAccount of the cluster's OIDC provider."""
    text = TRUST_POLICY.read_text(encoding="utf-8")
    for placeholder in ("ACCOUNT_ID", "OIDC_PROVIDER", "NAMESPACE", "SERVICE_ACCOUNT"):
        assert placeholder in text
    [statement] = statements(TRUST_POLICY)
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"]["Federated"].startswith("arn:aws:iam::ACCOUNT_ID:oidc-provider/")
    condition = statement["Condition"]["StringEquals"]
    assert condition["OIDC_PROVIDER:sub"] == "system:serviceaccount:NAMESPACE:SERVICE_ACCOUNT"
    assert condition["OIDC_PROVIDER:aud"] == "sts.amazonaws.com"


def test_scanner_finds_calls_however_they_are_written(tmp_path: Path) -> None:
    """The scanner sees literal operations across line breaks and keyword arguments."""
    package = tmp_path / "snapd"
    package.mkdir()
    (package / "mod.py").write_text(
        "async def f(aws, r, op):\n"
        "    await aws.call(\n        'ec2',\n        r,\n        'CopySnapshot',\n    )\n"
        "    async for _ in aws.pages('s3', r, 'ListObjectsV2', Bucket='b'):\n        pass\n"
        "    await aws.call(service='ec2', region=r, operation='DeleteSnapshot')\n"
        "    await aws.call('ec2', r, op)\n"
        "    subprocess.call(['ls'])\n",
        encoding="utf-8",
    )
    calls = list(find_aws_calls(package))
    assert [(c.service, c.operation, c.line) for c in calls] == [
        ("ec2", "CopySnapshot", 2),
        ("s3", "ListObjectsV2", 7),
        ("ec2", "DeleteSnapshot", 9),
        ("ec2", None, 10),
    ]
    assert [iam_action(c) for c in calls[:3]] == [
        "ec2:CopySnapshot",
        "s3:ListBucket",
        "ec2:DeleteSnapshot",
    ]


def test_s3_writes_only_reach_the_dr_location() -> None:
    """The daemon may change objects under `DR_BUCKET/DR_PREFIX/backups/` and nowhere else:
    never the Velero bucket (the source of truth), never outside the DR backups folder."""
    daemon, _ = required()
    assert S3_WRITES & set(daemon), "the publisher's writes are found by the scanner"
    for statement in statements(DAEMON_POLICY):
        actions = set(as_list(statement["Action"]))
        resources = as_list(statement["Resource"])
        if actions & S3_WRITES:
            assert resources == ["arn:aws:s3:::DR_BUCKET/DR_PREFIX/backups/*"], statement["Sid"]
        for resource in resources:
            if resource.startswith("arn:aws:s3:::BUCKET"):
                assert actions <= {"s3:ListBucket", "s3:GetObject"}, statement["Sid"]
