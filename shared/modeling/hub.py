"""A Hub id becomes a local snapshot folder here, the same way in every service.

Everything goes through huggingface_hub's own cache and settings (``HF_HOME`` / ``HF_HUB_CACHE``,
``HF_HUB_OFFLINE``, ``HF_TOKEN``, ``HF_ENDPOINT``), so a deployment that puts that cache on the shared
volume downloads a model once for the trainer, the gateway and the generator, and the generator can
confine swaps to it. Only what serving and training read is fetched: safetensors weights, JSON
configs and tokenizer files; never pickled ``.bin`` / ``.pt`` weights, whose loading can run code.
Every failure is a ``ModelError`` that names the model, the revision and what to do about it.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import constants, get_token, snapshot_download
from huggingface_hub.errors import (
    DisabledRepoError,
    DryRunError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    IncompleteSnapshotError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

try:  # huggingface_hub 2 talks through httpx2; 1.x (still on some images) through httpx
    from httpx2 import TransportError as HubTransportError
except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
    from httpx import TransportError as HubTransportError  # type: ignore[assignment]

ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
"""Weights, configs (model, generation, tokenizer, the safetensors index) and tokenizer files."""
IGNORE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "original/*", "consolidated*"]
"""Pickles, and the duplicate native-format copies some repos carry beside the transformers weights."""


class ModelError(ValueError):
    """A model name that gives no loadable folder; ``field`` is the run-config field at fault, and
    ``transient`` says that trying again later (the Hub reachable again) may succeed."""

    def __init__(
        self, model: str, revision: str | None, reason: str, *, field: str = "model", transient: bool = False
    ) -> None:
        at = f" at revision {revision!r}" if revision else ""
        super().__init__(f"model {model!r}{at}: {reason}")
        self.model, self.revision, self.reason, self.field, self.transient = model, revision, reason, field, transient


def hub_cache() -> Path:
    """Where huggingface_hub keeps snapshots: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``."""
    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    return constants.is_offline_mode()


def download(
    repo_id: str, revision: str | None = None, *, cache_dir: Path | None = None, local_only: bool = False
) -> Path:
    """The snapshot folder of ``repo_id`` at ``revision`` (None: ``main``), fetching what it lacks unless
    ``local_only`` or offline; a partial download resumes. Raises ``ModelError``."""
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=ALLOW_PATTERNS,
            ignore_patterns=IGNORE_PATTERNS,
            local_files_only=local_only or offline(),
        )
    except Exception as exc:
        raise explain(exc, repo_id, revision, cache_dir, local_only or offline()) from exc
    return loadable(Path(folder), repo_id, revision)


def check(repo_id: str, revision: str | None = None, *, cache_dir: Path | None = None) -> None:
    """Cheaply, that ``download`` would succeed: from the cache alone when it holds the snapshot, else
    from the Hub's file listing (no weights are fetched). Raises ``ModelError``."""
    try:
        download(repo_id, revision, cache_dir=cache_dir, local_only=True)
        return
    except ModelError as exc:
        if offline() or not isinstance(exc.__cause__, LocalEntryNotFoundError):
            raise
    try:
        files = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=ALLOW_PATTERNS,
            ignore_patterns=IGNORE_PATTERNS,
            dry_run=True,
        )
    except Exception as exc:
        raise explain(exc, repo_id, revision, cache_dir, False) from exc
    if not any(f.filename.endswith(".safetensors") and "/" not in f.filename for f in files):
        raise ModelError(repo_id, revision, NO_SAFETENSORS)


NO_SAFETENSORS = (
    "it has no *.safetensors weights, and POP never loads pickled .bin/.pt weights (loading them can run "
    "code): name a repo or revision that publishes safetensors, or convert the weights and name that folder"
)


def loadable(folder: Path, repo_id: str, revision: str | None) -> Path:
    if not any(folder.glob("*.safetensors")):
        raise ModelError(repo_id, revision, NO_SAFETENSORS)
    if not (folder / "config.json").is_file():
        raise ModelError(repo_id, revision, f"{folder} has no config.json: it is no transformers model")
    return folder


def explain(exc: Exception, repo_id: str, revision: str | None, cache_dir: Path | None, local_only: bool) -> Exception:
    """What ``snapshot_download``'s error means for the user, and what to do; other errors unchanged."""
    if isinstance(exc, DryRunError) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # the listing failed: say why
    rev = revision or constants.DEFAULT_REVISION
    cache = cache_dir or hub_cache()
    token = "HF_TOKEN is set" if get_token() else "no HF_TOKEN is set"
    if isinstance(exc, HFValidationError):
        why = f"not an existing folder, a pop/ alias, or a valid Hub id (org/name): {exc}"
        return ModelError(repo_id, revision, why)
    if isinstance(exc, RevisionNotFoundError):
        why = f"the Hub repo has no revision {rev!r}: name one of its branches, tags or commits"
        return ModelError(repo_id, revision, why, field="model_revision")
    if isinstance(exc, GatedRepoError):
        why = f"the repo is gated ({token}): accept its terms on the Hub and set HF_TOKEN to a token of that account"
        return ModelError(repo_id, revision, why)
    if isinstance(exc, RepositoryNotFoundError):
        why = f"no such model repo on the Hub, or it is private ({token}): check the name, or set HF_TOKEN"
        return ModelError(repo_id, revision, why)
    if isinstance(exc, DisabledRepoError):
        return ModelError(repo_id, revision, "the repo is disabled on the Hub")
    if isinstance(exc, IncompleteSnapshotError):
        why = f"the cached snapshot in {cache} is incomplete ({exc}); let it reach the Hub once to complete it"
        return ModelError(repo_id, revision, why)
    if isinstance(exc, LocalEntryNotFoundError) and local_only:
        why = (
            f"not in the Hugging Face cache ({cache}) at revision {rev!r}, and it is not downloaded "
            f"({'HF_HUB_OFFLINE is set' if offline() else 'a cache lookup only'}): unset HF_HUB_OFFLINE, or fill "
            f"that cache first (`hf download {repo_id} --revision {rev}` with the same HF_HOME)"
        )
        return ModelError(repo_id, revision, why)
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code
        return ModelError(
            repo_id, revision, f"the Hub answered {status}: {exc}", transient=status >= 500 or status == 429
        )
    if isinstance(exc, (LocalEntryNotFoundError, DryRunError, HubTransportError, ConnectionError)):
        why = (
            f"the Hub could not be reached ({exc.__cause__ or exc!r}) and the cache ({cache}) lacks it: check the "
            "network (HF_ENDPOINT, a proxy), or fill the cache and set HF_HUB_OFFLINE=1"
        )
        return ModelError(repo_id, revision, why, transient=True)
    if isinstance(exc, OSError):
        why = f"the cache ({cache}) could not be written ({exc}): check that HF_HOME is writable and has room"
        return ModelError(repo_id, revision, why)
    return exc
