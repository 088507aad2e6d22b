"""Model names resolve to a local folder: a pop/ alias to the built model, a folder to itself, a Hub id
to its snapshot in the Hugging Face cache (planted here, offline) at the revision asked for; a name
that resolves to nothing is refused with the model, the revision and what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.modeling import ModelError, check_model, models_dir, resolve_model
from shared.modeling.hub import check, download
from tests.hub import COMMIT, plant

SECOND = "2" * 40


@pytest.fixture(scope="module")
def tiny() -> Path:
    return Path(resolve_model("pop/tiny"))


@pytest.fixture
def cache(tmp_path: Path, tiny: Path) -> Path:
    """``org/tiny`` at two commits: ``main`` points at the first, the tag ``v2`` at the second."""
    cache = tmp_path / "hub"
    plant(cache, "org/tiny", tiny)
    second = tmp_path / "second"
    second.mkdir()
    for file in tiny.iterdir():
        (second / file.name).write_bytes(file.read_bytes())
    config = json.loads((second / "config.json").read_text())
    (second / "config.json").write_text(json.dumps({**config, "planted_as": "v2"}))
    plant(cache, "org/tiny", second, commit=SECOND, refs=["v2"])
    return cache


def test_an_alias_is_the_built_model_and_takes_no_revision():
    assert resolve_model("pop/tiny") == str(models_dir() / "tiny-qwen2")
    check_model("pop/tiny")
    with pytest.raises(ModelError, match=r"'pop/nope'.*no such built-in model.*pop/tiny") as unknown:
        check_model("pop/nope")
    assert unknown.value.field == "model"
    with pytest.raises(ModelError, match="a revision applies to Hub ids only") as pinned:
        resolve_model("pop/tiny", "v2")
    assert pinned.value.field == "model_revision"


def test_a_local_folder_is_used_as_it_is(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    assert resolve_model(str(tiny)) == str(tiny)
    monkeypatch.chdir(tiny.parent)
    assert resolve_model(tiny.name) == str(tiny)  # relative: made absolute, for the generator's path check
    check_model(str(tiny))
    with pytest.raises(ModelError, match="no such folder"):
        check_model(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match=r"holds no config\.json"):
        check_model(str(tmp_path))  # a folder, but no model
    with pytest.raises(ModelError, match="a revision applies to Hub ids only"):
        check_model(str(tiny), "main")


def test_a_hub_id_is_its_snapshot_in_the_cache(cache: Path):
    snapshot = download("org/tiny", cache_dir=cache, local_only=True)
    assert snapshot == cache / "models--org--tiny" / "snapshots" / COMMIT
    weights = snapshot / "model.safetensors"
    assert weights.is_symlink() and weights.resolve().parent == cache / "models--org--tiny" / "blobs"
    check("org/tiny", cache_dir=cache)


def test_a_pinned_revision_picks_its_snapshot(cache: Path):
    by_tag = download("org/tiny", "v2", cache_dir=cache, local_only=True)
    assert by_tag.name == SECOND and json.loads((by_tag / "config.json").read_text())["planted_as"] == "v2"
    assert download("org/tiny", SECOND, cache_dir=cache, local_only=True) == by_tag  # a commit, no ref needed
    assert download("org/tiny", "main", cache_dir=cache, local_only=True).name == COMMIT
    with pytest.raises(ModelError, match=r"'org/tiny' at revision 'v3': not in the Hugging Face cache"):
        download("org/tiny", "v3", cache_dir=cache, local_only=True)


def test_offline_and_not_in_the_cache_says_what_to_do(cache: Path):
    with pytest.raises(ModelError) as missing:
        check("org/absent", cache_dir=cache)
    message = str(missing.value)
    assert message.startswith("model 'org/absent': not in the Hugging Face cache")
    assert str(cache) in message and "'main'" in message and "HF_HUB_OFFLINE is set" in message
    assert "hf download org/absent --revision main" in message
    assert not missing.value.transient
    with pytest.raises(ModelError, match="not an existing folder, a pop/ alias, or a valid Hub id"):
        check_model("org/name/extra")


def test_a_repo_without_safetensors_is_refused(tiny: Path, tmp_path: Path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_bytes((tiny / "config.json").read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"a pickle that is never unpickled")
    plant(tmp_path / "hub", "org/pickled", pickled)
    for resolve in (download, check):
        with pytest.raises(ModelError, match=r"'org/pickled': it has no \*\.safetensors weights"):
            resolve("org/pickled", cache_dir=tmp_path / "hub")


def test_resolve_model_honours_hf_home_and_offline_from_the_environment(cache: Path):
    """A fresh process (as each service is) finds ``org/tiny`` under ``$HF_HOME/hub``, and resolves it once."""
    code = (
        "from shared.modeling import resolve_model, ModelError\n"
        "from shared.modeling.hub import hub_cache\n"
        "print(hub_cache())\n"
        "print(resolve_model('org/tiny'))\n"
        "print(resolve_model('org/tiny', 'v2'))\n"
        "try:\n    resolve_model('org/absent')\nexcept ModelError as exc:\n    print(exc)\n"
    )
    env = {"HF_HOME": str(cache.parent), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    lines = out.stdout.splitlines()
    assert lines[:3] == [
        str(cache),
        str(cache / "models--org--tiny" / "snapshots" / COMMIT),
        str(cache.parent / "hub" / "models--org--tiny" / "snapshots" / SECOND),
    ]
    assert (
        lines[3].startswith("model 'org/absent': not in the Hugging Face cache") and "HF_HUB_OFFLINE is set" in lines[3]
    )
