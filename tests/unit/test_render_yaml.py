"""The YAML snapd prints and writes (pvc.yaml, `--dry-run` manifests, `dr-manifests`) is the
same text whichever PyYAML emitter makes it: libyaml's when PyYAML has it, for speed."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from snapd import manifests, render

TRICKY_VALUES = [
    "plain",
    "y: z",
    "0123",
    "true",
    "null",
    "~",
    "- dash",
    "#hash",
    'it\'s "quoted"\nand two lines',
    "ünïcode ✓ and emoji 🚀",
    "a" * 300,
    "trailing space ",
    "",
]


def pvc_documents() -> list[dict[str, Any]]:
    documents = []
    for index, value in enumerate(TRICKY_VALUES):
        pvc = manifests.build_pvc(
            namespace="shop",
            name=f"data-db-{index}",
            volume_name=f"snapd-shop-data-db-{index}-9d85253e",
            size_gib=10 + index,
            storage_class="gp3",
            access_modes=("ReadWriteOnce",),
            volume_mode="Filesystem",
            labels={"app": "db"},
            annotations={"note": value},
        )
        documents.append({**pvc, "extra": {"number": 1.5, "none": None, "flag": False}})
    return documents


def test_the_yaml_stream_is_the_text_pyyaml_s_pure_python_emitter_writes() -> None:
    documents = pvc_documents()
    expected = yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)
    assert render.yaml_stream(documents) == expected
    assert list(yaml.safe_load_all(render.yaml_stream(documents))) == documents


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML was built without libyaml")
def test_libyaml_makes_the_stream_when_pyyaml_has_it() -> None:
    assert render._SAFE_DUMPER is yaml.CSafeDumper
