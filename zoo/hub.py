"""The Hugging Face Hub, through `huggingface_hub` only: download into its cache (revision
pinned, offline-capable), verify once, and push checkpoints.

Downloads land in huggingface_hub's own cache, so `HF_HUB_OFFLINE=1`, `hf cache` and every
other HF tool see them; huggingface_hub writes each blob as `*.incomplete` and renames it when
whole, and resumes interrupted transfers. On top of that zoo checks every file of a new snapshot
against its content address (blobs are named by their sha256 for LFS files, by their git sha1
otherwise) and against zoo.yaml's manifest, once per snapshot; a snapshot that fails is removed
from the cache, so a damaged download is never loaded, offline or not.

Pushing uploads one commit (create_repo + create_commit): LFS objects the server already has
are skipped, so re-running an interrupted push sends only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from . import catalog
from .checkpoint import (
    SPEC_FILE,
    CheckpointError,
    hash_files,
    load_document,
    read_document,
    verify_files,
)
from .checkpoint.card import model_card
from .checkpoint.finite import zoo_cache
from .compiler import compile_ir
from .compiler.errors import UnknownModelError, ZooError
from .compiler.paths import name_problem
from .compiler.schema import ModelSpec
from .formats import detect
from .formats.export import save
from .formats.hf import hf_unsupported

# what a zoo, transformers or Meta checkpoint needs: weights, JSON configs and indexes, tokenizer
# models, the spec and card. Only top-level consolidated.*.pth, so repos that keep Meta's
# originals in a subfolder beside their safetensors are not downloaded twice; no *.bin pickles.
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.model", "*.tiktoken", SPEC_FILE, "README.md", "consolidated.*.pth"]


class HubError(ZooError, RuntimeError):
    """The Hub could not give or take a repository: not found, private, offline, refused."""


#: seconds to connect, and to wait for each read of an answer (env: ZOO_HUB_CONNECT_TIMEOUT, ZOO_HUB_READ_TIMEOUT)
CONNECT_TIMEOUT = float(os.environ.get("ZOO_HUB_CONNECT_TIMEOUT") or 10)
READ_TIMEOUT = float(os.environ.get("ZOO_HUB_READ_TIMEOUT") or 60)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


def check_repo_id(repo_id: str, name: str | None = None) -> str:
    """A Hub repo id is `namespace/name` (letters, digits, `-`, `_`, `.`): HubError otherwise
    (naming `name`, what the user wrote, when given)."""
    if not isinstance(repo_id, str) or not _REPO_ID.fullmatch(repo_id) or ".." in repo_id or "--" in repo_id:
        raise HubError(f"{str(name or repo_id)[:100]!r} is not a Hub repo id (namespace/name, letters, digits, '-', "
                       "'_', '.'), nor a catalog name or a local folder")
    return repo_id


def _with_timeouts() -> None:
    """huggingface_hub's HTTP client sends most requests with no timeout at all, so a server
    that accepts and never answers hangs a load forever; fill every request's missing timeouts
    (unless the user installed a client of their own)."""
    from huggingface_hub.utils import _http

    if _http._GLOBAL_CLIENT_FACTORY is not _http.default_client_factory:
        return

    def bounded(request: Any) -> None:
        given = request.extensions.get("timeout") or {}
        limits = {"connect": CONNECT_TIMEOUT, "read": READ_TIMEOUT, "write": READ_TIMEOUT, "pool": CONNECT_TIMEOUT}
        request.extensions = {**request.extensions,
                              "timeout": {k: given.get(k) if given.get(k) is not None else v for k, v in limits.items()}}

    def factory() -> Any:
        client = _http.default_client_factory()
        hooks = client.event_hooks
        client.event_hooks = {**hooks, "request": [*hooks.get("request", []), bounded]}
        return client

    _http.set_client_factory(factory)


@contextmanager
def hub_errors(repo_id: str, revision: str | None = None, token: Any = None) -> Iterator[None]:
    """huggingface_hub's exceptions (and its HTTP client's), as one HubError that says what to
    do; the client gets timeouts first."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    _with_timeouts()
    at = f"{repo_id}@{revision}" if revision else repo_id
    try:
        yield
    except GatedRepoError:
        raise HubError(f"{repo_id}: gated repository; accept its terms on the Hub, then pass token= "
                       "(or set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        auth = "the token given cannot read it" if token or os.environ.get("HF_TOKEN") else \
            "no token was sent: pass token=, set HF_TOKEN or run `hf auth login`"
        raise HubError(f"{repo_id}: repository not found on {constants.ENDPOINT}, or it is private and "
                       f"{auth}") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id}: no revision {revision!r} (expected a branch, tag or commit sha)") from None
    except LocalEntryNotFoundError as e:
        why = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise HubError(f"{at}: not in the local cache and {why}; download it once online "
                       f"(`zoo pull {repo_id}`) [{type(e).__name__}]") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", "?")
        raise HubError(f"{at}: the Hub answered HTTP {status}: {str(e).splitlines()[0][:300]}") from None
    except HFValidationError as e:
        raise HubError(f"{at}: {str(e).splitlines()[0][:300]}") from None
    except httpx2.TimeoutException as e:
        raise HubError(f"{at}: the Hub did not answer in time ({type(e).__name__}; connect {CONNECT_TIMEOUT:g} s, "
                       f"read {READ_TIMEOUT:g} s: ZOO_HUB_CONNECT_TIMEOUT / ZOO_HUB_READ_TIMEOUT)") from None
    except httpx2.HTTPError as e:  # connection refused, cut short, protocol errors
        raise HubError(f"{at}: the Hub could not be reached ({type(e).__name__}: {str(e)[:300]})") from None
    except ValueError as e:  # an answer that is not the JSON the client expects
        raise HubError(f"{at}: the Hub's answer could not be read ({type(e).__name__}: {str(e)[:200]})") from None
    except OSError as e:  # DNS, disk
        raise HubError(f"{at}: {type(e).__name__}: {str(e)[:300]}") from None


def resolve_name(name: str) -> tuple[str, str | None, ModelSpec | None]:
    """(repo id, pinned revision, catalog spec) for a catalog name or a repo id (`org/name`,
    or `org/name/subfolder` for repos holding several models)."""
    try:
        spec = catalog.get_spec(name)
    except UnknownModelError:
        if name.count("/") not in (1, 2):
            raise
        check_repo_id("/".join(name.split("/")[:2]), name)
        return name, None, None
    if spec.weights is None:
        raise HubError(f"{name}: its spec has no `weights:` (no Hub repo to download from); "
                       f"use zoo.build({name!r}) for random weights")
    return spec.weights.repo, spec.weights.revision, spec


def download(name: str, *, revision: str | None = None, token: str | bool | None = None,
             cache_dir: str | Path | None = None, force_download: bool = False,
             verify: bool | None = None) -> tuple[Path, ModelSpec | None]:
    """(snapshot folder, catalog spec or None) for a catalog name or a Hub repo id."""
    from huggingface_hub import snapshot_download

    repo_id, pinned, spec = resolve_name(name)
    sub = spec.weights.subfolder if spec is not None and spec.weights else None
    if spec is None and repo_id.count("/") == 2:
        repo_id, sub = repo_id.rsplit("/", 1)
    if sub is not None and name_problem(sub):
        raise HubError(f"{name}: the subfolder {name_problem(sub)}")
    revision = revision or pinned or "main"
    # a model in a subfolder: its files, plus the repo-level tokenizer Meta-style repos share
    patterns = [f"{sub}/{p}" for p in ALLOW_PATTERNS] + ["tokenizer.model"] if sub else ALLOW_PATTERNS
    with hub_errors(repo_id, revision, token):
        folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                        force_download=force_download, allow_patterns=patterns,
                                        library_name="zoo"))
    if verify is not False:
        verify_snapshot(folder, repo_id, force=bool(verify) or force_download)
    if sub:
        if not (folder / sub).is_dir():
            raise HubError(f"{repo_id}@{revision}: no folder {sub!r} in the repository")
        return folder / sub, spec
    return folder, spec


def snapshot_root(folder: Path) -> Path | None:
    """The repository folder of huggingface_hub's cache (`models--org--name`) when `folder` is a
    snapshot of it (or a subfolder of one): its files are links into the repo's `blobs/`."""
    folder = Path(folder).absolute()
    for p in (folder, *folder.parents):
        if p.parent.name == "snapshots" and p.parent.parent.name.startswith(("models--", "datasets--")):
            return p.parent.parent
    return None


def _marker(folder: Path) -> Path:
    """Where the verification of this snapshot folder is recorded: per folder (a second cache
    holding the same commit is checked on its own), named by the repo and commit."""
    folder = Path(folder).absolute()
    repo_dir = folder.parent.parent  # <cache>/models--org--name/snapshots/<commit>
    where = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return zoo_cache() / "verified" / repo_dir.name / f"{folder.name}-{where}.json"


def _listing(folder: Path) -> dict[str, list[Any]]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            blob = p.resolve()
            out[p.relative_to(folder).as_posix()] = [blob.name, blob.stat().st_size]
    return out


def verify_snapshot(folder: Path, repo_id: str, force: bool = False) -> None:
    """Check a downloaded snapshot once: content addresses, then zoo.yaml's manifest. On failure
    the snapshot (and any blob whose bytes are wrong) leaves the cache and a CheckpointError
    names each file."""
    folder = Path(folder)
    listing = _listing(folder)
    marker = _marker(folder)
    if not force and marker.is_file():
        try:
            if json.loads(marker.read_text()) == listing:
                return
        except (OSError, json.JSONDecodeError):
            pass
    files = {rel: folder / rel for rel in listing}
    digests = hash_files(list(files.values()))
    problems, bad_blobs = [], []
    for rel, p in files.items():
        sha256, sha1, _ = digests[p]
        etag = listing[rel][0]
        got = sha256 if len(etag) == 64 else sha1 if len(etag) == 40 else None  # else: not a content address
        if got is not None and got != etag:
            problems.append(f"{rel}: the downloaded bytes do not match the Hub's checksum ({etag[:12]}…, got {got[:12]}…)")
            bad_blobs.append(p.resolve())
    for spec_file in folder.rglob(SPEC_FILE):  # every zoo checkpoint in the snapshot (subfolders too)
        sub = spec_file.parent.relative_to(folder).as_posix()
        prefix = "" if sub == "." else sub + "/"
        problems += [prefix + msg for msg in _manifest_problems(spec_file.parent, {
            rel[len(prefix):]: digests[p] for rel, p in files.items() if rel.startswith(prefix)})]
    if problems:
        for blob in bad_blobs:
            blob.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        marker.unlink(missing_ok=True)
        raise CheckpointError(f"{repo_id}@{folder.name[:12]}: integrity check failed; the snapshot was removed from "
                              f"the cache ({folder.parent}):\n  " + "\n  ".join(problems))
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(listing))
    os.replace(tmp, marker)


def _manifest_problems(folder: Path, digests: dict[str, tuple[str, str, int]]) -> list[str]:
    try:
        files = load_document(folder).get("files") or {}
    except CheckpointError as e:
        return [str(e)]
    if not isinstance(files, dict) or not all(isinstance(m, dict) for m in files.values()):
        return [f"{SPEC_FILE}: files: expected a mapping of file -> {{size, sha256}}"]
    out = []
    for rel, meta in files.items():
        got = digests.get(rel)
        if got is None:
            out.append(f"{rel}: listed in {SPEC_FILE} but not in the repository (or not downloaded)")
        elif got[2] != meta.get("size") or got[0] != meta.get("sha256"):
            out.append(f"{rel}: sha256 mismatch ({SPEC_FILE} says {str(meta.get('sha256'))[:12]}…, "
                       f"the file hashes to {got[0][:12]}…)")
    return out


def push(obj: Any, repo_id: str, *, private: bool | None = None, token: str | bool | None = None,
         branch: str | None = None, commit_message: str | None = None, max_shard_size: int | str = "5GB",
         progress: bool | None = None) -> str:
    """Publish a model (saved first, in a temporary folder) or a checkpoint folder to `repo_id`
    as one commit on `branch` (default main). Returns the commit sha (pin it as `revision=`)."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
        if isinstance(obj, (str, Path)):
            folder = _checked_folder(Path(obj))
            readme = _card_for(folder, repo_id)
        else:
            folder = save(obj, Path(tmp) / "checkpoint", max_shard_size=max_shard_size, repo_id=repo_id,
                          progress=progress)
            readme = None
        name = obj.spec.name if hasattr(obj, "spec") else folder.name
        ops = [CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
               for p in sorted(folder.rglob("*")) if p.is_file() and not _hidden(p.relative_to(folder))
               and not (readme is not None and p.name == "README.md" and p.parent == folder)]
        if readme is not None:
            ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode()))
        with hub_errors(repo_id, branch, token):
            api.create_repo(repo_id, private=private, exist_ok=True)
            if branch and branch != "main":
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            info = api.create_commit(repo_id, operations=ops, revision=branch,
                                     commit_message=commit_message or f"zoo: upload {name}")
    return info.oid


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _checked_folder(folder: Path) -> Path:
    """A folder worth pushing: a recognised checkpoint whose files match zoo.yaml."""
    kind = detect(folder)
    if kind == "zoo":
        verify_files(folder, read_document(folder).files, checksums=False)
    return folder


def _card_for(folder: Path, repo_id: str) -> str | None:
    """A zoo folder's card, re-rendered to name the repo it is pushed to."""
    if not (folder / SPEC_FILE).is_file():
        return None
    doc = read_document(folder)
    hf = (folder / "config.json").is_file()
    files = {k: v["size"] for k, v in doc.files.items() if k != "README.md"}
    return model_card(doc.spec, params=compile_ir(doc.spec)[1].params, layout=doc.layout, hf_loadable=hf,
                      hf_reason=None if hf else hf_unsupported(doc.spec), repo_id=repo_id, files=files,
                      base_model=doc.base_model)
