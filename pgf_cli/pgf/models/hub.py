"""Models by Hugging Face Hub id: `ORG/NAME[@REVISION]` through huggingface_hub and its cache.

The standard cache and settings apply (`HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE=1`, `HF_TOKEN`,
`HF_ENDPOINT`), with a rich progress bar on a terminal. Only what pgf reads is fetched: config.json, the weights (safetensors when the
repository has them, else the torch pickle, read with weights_only=True) and tokenizer files.
Repository code is never run: pgf loads the weights into its own implementations. A download that
stops half-way leaves no snapshot that pgf loads (huggingface_hub moves a file into the snapshot
only once complete); the next run resumes it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pgf.errors import ModelError
from pgf.models.download_progress import RichDownloadBar, start_display, stop_display

CONFIG = ["config.json"]
SAFETENSORS = ["model.safetensors"]
PICKLE = ["pytorch_model.bin"]
TOKENIZER = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "vocab.txt"]
_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*)(?:@(?P<revision>[A-Za-z0-9_./-]+))?$")


@dataclass(frozen=True)
class HubSnapshot:
    """A model repository resolved to one commit in the local cache."""

    repo_id: str
    revision: str | None  # as asked (None: the default branch)
    commit: str  # the commit sha the files come from
    folder: Path


def parse_model_id(spec: str) -> tuple[str, str | None] | None:
    """(repo id, revision) of `ORG/NAME[@REVISION]`; None for anything else (a path, a built-in name)."""
    match = _ID.match(spec)
    return (match["repo"], match["revision"]) if match else None


def is_model_id(spec: str) -> bool:
    """Whether `spec` names a Hub model rather than a local directory (a directory of that name wins)."""
    return parse_model_id(spec) is not None and not Path(spec).exists()


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _wanted_files(repo_id: str, revision: str | None) -> list[str]:
    """The files to fetch, from the repository's listing: safetensors over pickles."""
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo_id, revision=revision)
    names = {sibling.rfilename for sibling in info.siblings or []}
    weights = SAFETENSORS if any(name.endswith(".safetensors") for name in names) else PICKLE
    return CONFIG + weights + TOKENIZER


def _message(exc: Exception, repo_id: str, revision: str | None) -> str:
    from huggingface_hub import utils as errors

    shown = repo_id + (f"@{revision}" if revision else "")
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"model {shown}: revision {revision!r} does not exist in {repo_id}"
    if isinstance(exc, errors.GatedRepoError):
        return (f"model {shown} is gated: accept its terms on the Hub, then set HF_TOKEN to a token of that "
                "account (or run `hf auth login`)")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return (f"model {shown} not found on the Hub (or private: set HF_TOKEN to a token that can read it); "
                "a local model is a directory path")
    if isinstance(exc, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)) or _offline():
        return (f"model {shown} is not in the local cache and the Hub cannot be reached "
                f"{'(HF_HUB_OFFLINE is set)' if _offline() else '(no network)'}; run `pgf models pull {shown}` "
                "on a machine with a network (the same HF_HOME), then run again")
    return f"model {shown}: the download failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); rerun to resume it"


def _cached(repo_id: str, revision: str | None) -> Path | None:
    """The cached snapshot folder of `repo_id` at `revision` with its config and weights, or None."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if not isinstance(config, str):
        return None
    folder = Path(config).parent
    return folder if any((folder / name).is_file() for name in SAFETENSORS + PICKLE) else None


def resolve(spec: str) -> HubSnapshot:
    """Download (or find in the cache) what pgf needs of the model `spec` (`ORG/NAME[@REVISION]`).
    Offline, or when the Hub cannot be reached, the cached snapshot of that revision is used."""
    from huggingface_hub import snapshot_download
    from huggingface_hub import utils as errors

    parsed = parse_model_id(spec)
    if parsed is None:
        raise ModelError(f"{spec!r} is not a Hub model id (ORG/NAME or ORG/NAME@REVISION)")
    repo_id, revision = parsed
    folder = _cached(repo_id, revision) if _offline() else None
    if folder is None:
        if _offline():
            raise ModelError(_message(errors.OfflineModeIsEnabled("HF_HUB_OFFLINE"), repo_id, revision))
        try:
            # by the revision's name, so that the cache records where it points (what offline use reads)
            wanted = _wanted_files(repo_id, revision)
            display = start_display()
            try:
                folder = Path(snapshot_download(repo_id, revision=revision, allow_patterns=wanted,
                                                tqdm_class=RichDownloadBar))
            finally:
                stop_display(display)
        except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:  # gated is a kind of not-found
            raise ModelError(_message(exc, repo_id, revision)) from exc
        except Exception as exc:  # the network's errors and the Hub's: the cache if it has the model, else one line
            folder = _cached(repo_id, revision)
            if folder is None:
                raise ModelError(_message(exc, repo_id, revision)) from exc
    if not (folder / "config.json").is_file():
        raise ModelError(f"model {spec}: the repository has no config.json; pgf loads repositories of the model "
                         "families it implements (see `pgf models show`)")
    return HubSnapshot(repo_id, revision, folder.name, folder)
