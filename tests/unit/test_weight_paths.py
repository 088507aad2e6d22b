"""A swap request can make the generator read only checkpoints and models: paths, and the files in them,
are confined to the weight roots after symlinks are resolved (a Hugging Face snapshot links into blobs/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.generator.swap import SwapError, check_checkpoint, confine
from tests.hub import COMMIT, plant


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


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    """A Hugging Face cache holding ``org/tiny``: snapshot files are symlinks into the repo's ``blobs/``."""
    source = tmp_path / "source"
    source.mkdir()
    (source / "config.json").write_text("{}")
    (source / "model.safetensors").write_bytes(b"weights")
    plant(tmp_path / "hf" / "hub", "org/tiny", source)
    return tmp_path / "hf" / "hub"


def test_a_hub_snapshot_linked_into_blobs_is_served(roots: list[Path], hub: Path):
    snapshot = hub / "models--org--tiny" / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").is_symlink()
    assert confine(str(snapshot), [*roots, hub]) == snapshot
    assert check_checkpoint(snapshot) == [snapshot / "model.safetensors"]
    with pytest.raises(SwapError, match="outside the weight roots"):
        confine(str(snapshot), roots)  # the hub cache is a root only where the generator makes it one


def test_a_file_linked_out_of_the_roots_is_refused(roots: list[Path], hub: Path):
    """A folder inside a root is not enough: each file in it must resolve inside one too."""
    snapshot = hub / "models--org--tiny" / "snapshots" / COMMIT
    (snapshot / "tokenizer.json").symlink_to(roots[0].parent / "elsewhere" / "secret")
    with pytest.raises(SwapError, match=r"tokenizer.json resolves to .*elsewhere/secret, outside the weight roots"):
        confine(str(snapshot), [*roots, hub])
    checkpoint = roots[0] / "run" / "v000001"
    (checkpoint / "model.safetensors").symlink_to(hub / "models--org--tiny" / "snapshots" / COMMIT / "config.json")
    assert confine(str(checkpoint), [*roots, hub]) == checkpoint.resolve()  # from one root into another: fine
