"""A swap request can make the generator read only checkpoints and models: paths are confined to the
weight roots after symlinks are resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.generator.swap import SwapError, confine


@pytest.fixture
def roots(tmp_path: Path) -> list[Path]:
    for name in ("checkpoints/run/v000001", "models/tiny", "elsewhere/secret"):
        (tmp_path / name).mkdir(parents=True)
    return [tmp_path / "checkpoints", tmp_path / "models"]


def test_paths_under_a_root_are_served(roots: list[Path]):
    assert confine(str(roots[0] / "run" / "v000001"), roots) == (roots[0] / "run" / "v000001").resolve()
    assert confine(str(roots[1] / "tiny"), roots) == (roots[1] / "tiny").resolve()


@pytest.mark.parametrize(
    "raw",
    [
        "relative/v000001",
        "{root}/run/../../elsewhere/secret",
        "{root}/../elsewhere/secret",
        "/etc",
        "{tmp}/elsewhere/secret",
    ],
)
def test_paths_outside_the_roots_are_refused(roots: list[Path], raw: str):
    path = raw.format(root=roots[0], tmp=roots[0].parent)
    with pytest.raises(SwapError) as refused:
        confine(path, roots)
    assert refused.value.status == 400 and refused.value.title == "Checkpoint path refused"


def test_a_symlink_out_of_a_root_is_refused(roots: list[Path]):
    link = roots[0] / "run" / "v000002"
    link.symlink_to(roots[0].parent / "elsewhere" / "secret", target_is_directory=True)
    with pytest.raises(SwapError, match="outside the weight roots"):
        confine(str(link), roots)
