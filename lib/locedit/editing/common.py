"""Pieces shared by the editors: requests, subject token lookup, context templates, the edited weight."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from locedit._checks import string
from locedit.editing.edit import EditError
from locedit.models import Model
from locedit.tokens import target_ids


@dataclass(frozen=True)
class Request:
    """One requested rewrite: ``prompt`` with ``{}`` where ``subject`` goes, and the new object."""

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None

    @property
    def text(self) -> str:
        return self.prompt.format(self.subject)


def as_request(fact) -> Request:
    """Accept a :class:`Request`, a CounterFact record, its ``requested_rewrite`` dict, or a plain dict.

    A plain dict may give ``prompt`` with the subject written out instead of ``{}``; the subject's first
    occurrence is then replaced by ``{}``.

    Refused: fields that are not strings (``TypeError`` naming the field), and a request whose ``target_new`` is
    its ``target_true`` (``EditError``: it would change nothing). A request the model already answers with
    ``target_new`` is not refused here (that needs the model): the editors warn about it
    (:func:`warn_if_already_predicted`).
    """
    if isinstance(fact, Request):
        request = fact
    elif isinstance(fact, dict):
        rw = fact.get("requested_rewrite", fact)
        new, true = rw.get("target_new"), rw.get("target_true")
        new = new.get("str") if isinstance(new, dict) else new
        true = true.get("str") if isinstance(true, dict) else true
        if new is None:
            raise EditError(
                "the request has no target_new (a known_1000 record?): give the new object, e.g. "
                "'target_new': {'str': 'Rome'}"
            )
        subject = rw.get("subject")
        request = Request(rw.get("prompt", ""), "" if subject is None else subject, new, true)
    else:
        raise EditError(f"cannot read a request from {type(fact).__name__}: pass a CounterFact record or a Request")
    prompt = string(request.prompt, "the request's prompt", "The capital of {} is")
    subject = string(request.subject, "the request's subject", "France")
    string(request.target_new, "the request's target_new", "Rome")
    if request.target_true is not None:
        string(request.target_true, "the request's target_true", "Paris")
    if not subject:
        raise EditError("the request has no subject: give 'subject', e.g. {'subject': 'France', ...}")
    if "{}" not in prompt:
        if subject not in prompt:
            raise EditError(
                f"subject {subject!r} is not in the prompt {prompt!r}: write the prompt with '{{}}' where the "
                "subject goes, e.g. 'The capital of {} is'"
            )
        prompt = prompt.replace(subject, "{}", 1)
    if prompt.count("{}") != 1 or prompt.replace("{}", "").count("{") or prompt.replace("{}", "").count("}"):
        raise EditError(f"the prompt {prompt!r} must hold exactly one '{{}}' and no other braces")
    if not request.target_new or not request.target_new.strip():
        raise EditError("empty target: give target_new a non-empty string such as 'Rome'")
    if request.target_true is not None and request.target_new.strip() == request.target_true.strip():
        raise EditError(
            f"target_new {request.target_new.strip()!r} is target_true for {prompt.format(subject)!r}: the request "
            "would change nothing; give another new object"
        )
    return Request(prompt, subject, request.target_new.strip(), request.target_true)


def fact_list(facts, editor: str, one: str | None = None) -> list:
    """``facts`` as a list; a single fact (a dict, a :class:`Request`) is wrapped when ``one`` is None, refused with
    a ``TypeError`` pointing to ``one`` (the single-fact editor) otherwise."""
    if isinstance(facts, (dict, Request, str)):
        if one is not None:
            raise TypeError(f"{editor} takes a list of facts; for one fact call {one}, or pass [fact]")
        return [facts]
    if not isinstance(facts, Sequence):
        raise TypeError(f"{editor} takes a list of facts (CounterFact records or Requests), got {type(facts).__name__}")
    return list(facts)


@torch.no_grad()
def warn_if_already_predicted(model: Model, requests: Sequence[Request], method: str, batch_size: int = 64) -> None:
    """Warn, naming the fact, for each request whose ``target_new`` already starts with the model's top-1 next token
    after the prompt: the edit has (almost) nothing to change, which usually means the wrong target was asked for.
    A warning, not an error: re-asserting a fact the model knows is a legitimate edit."""
    for start in range(0, len(requests), batch_size):
        chunk = list(requests[start : start + batch_size])
        top = model.next_token_probs([r.text for r in chunk]).argmax(-1).tolist()
        for request, predicted in zip(chunk, top, strict=True):
            ids = target_ids(model, request.target_new)
            if ids and ids[0] == predicted:
                warnings.warn(
                    f"the model already predicts {model.tokenizer.decode([predicted])!r} (top-1) after "
                    f"{request.text!r}: the {method} request {request.subject!r} → {request.target_new!r} has little "
                    "to change (is target_new the object you meant?)",
                    stacklevel=3,
                )


def check_edit_layer(model: Model, layer: int, what: str = "the edited layer") -> None:
    """Raise :class:`EditError` naming the fix when ``layer`` is outside the model."""
    try:
        model.spec.check_layer(layer)
    except IndexError as err:
        raise EditError(f"{err}; pick {what} inside that range") from err


def edited_weight(model: Model, layer: int) -> tuple[str, nn.Parameter, bool]:
    """(parameter name, weight, transposed) of the MLP output projection at ``layer``.

    ``transposed`` is true for GPT-2's Conv1D, whose weight is [in, out]; otherwise the weight is [d_model, d_mlp].
    """
    model.spec.check_layer(layer)
    try:
        module = model.spec.part(model.hf, "mlp_down", layer)
    except (ValueError, AttributeError) as err:
        raise EditError(
            f"family {model.spec.family!r} has no MLP output projection in its arch table ({err}); add 'mlp_down' "
            "to its FamilyTable in lib/locedit/arch.py"
        ) from err
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise EditError(
            f"the MLP output projection of family {model.spec.family!r} has no 2-D weight; ROME-style editors "
            "need a linear layer there"
        )
    name = next(n for n, p in model.hf.named_parameters() if p is weight)
    return name, weight, model.spec.table.weights_transposed


def token_index(model: Model, template: str, subject: str, strategy: str = "subject_last") -> int:
    """Index of the token a fact is read at in ``template.format(subject)`` (ROME's ``fact_token``).

    ``"subject_last"`` (the default, ROME's), ``"subject_first"``, or ``"last"`` (the prompt's last token).
    """
    tok = model.tokenizer
    if strategy == "last":
        return len(tok(template.format(subject))["input_ids"]) - 1
    prefix = template[: template.index("{}")]
    if strategy == "subject_last":
        return len(tok(prefix + subject)["input_ids"]) - 1
    if strategy == "subject_first":
        return len(tok(prefix + subject[:1])["input_ids"]) - 1 if subject else len(tok(prefix)["input_ids"])
    raise EditError(f"unknown fact_token {strategy!r}: use 'subject_last', 'subject_first' or 'last'")


_TEMPLATE_CACHE: dict[tuple, list[str]] = {}


@torch.no_grad()
def context_templates(
    model: Model,
    length_params: tuple[tuple[int, int], ...] = ((5, 10), (10, 10)),
    starts: tuple[str, ...] | None = None,
    top_k: int = 5,
    seed: int = 0,
) -> list[str]:
    """ROME's prefixes: ``"{}"`` plus, for each (length, count), ``count`` texts of ``length`` tokens sampled from
    the model (top-k), each followed by ``". {}"``.

    Every sample starts at the document boundary: ``<|endoftext|>``, else the tokenizer's BOS, else its EOS token.
    ROME starts there alone (``starts=None``); MEMIT's code starts at the words ``("The", "Therefore", "Because",
    "I", "You")`` (``starts``), which here follow the boundary token. ``length`` counts the tokens of the start
    and of the sampled text, as the code's ``max_out_len`` does (the boundary token before a start word is ours, and
    not counted). The released code runs GPT-2 and GPT-J, for which a bare "The" opens a document; an
    instruct model like SmolLM2 continues a bare "The" with junk ("The-the-future-of-the-internet"), and the same
    word after ``<|endoftext|>`` with ordinary text ("The first thing I do is make sure everything I need"), which
    is what the prefixes are for. Cached per model and settings.
    """
    key = (model.name, id(model.hf), tuple(map(tuple, length_params)), starts, top_k, seed)
    if key in _TEMPLATE_CACHE:
        return _TEMPLATE_CACHE[key]
    tok = model.tokenizer
    special = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    boundary = tok.get_vocab().get("<|endoftext|>", special)
    if boundary is None and starts is None:
        raise EditError(
            "the tokenizer has no <|endoftext|>, BOS or EOS token to start the prefixes from: pass "
            "starts=('The', 'Therefore', ...) (MEMIT's choice) or set tokenizer.bos_token"
        )
    templates = ["{}"]
    opening = [] if starts is None or boundary is None else [boundary]  # not counted in ``length``
    for length, count in length_params:
        if starts is None:
            prompts = [[boundary]] * count
        else:
            words = [tok(starts[i % len(starts)], add_special_tokens=False)["input_ids"] for i in range(count)]
            prompts = [opening + w for w in words]
        torch.manual_seed(seed + length)
        for ids in prompts:
            inputs = torch.tensor([ids], device=model.device)
            new_tokens = max(1, length - (len(ids) - len(opening)))
            out = model.hf.generate(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                do_sample=True,
                top_k=top_k,
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                pad_token_id=tok.pad_token_id,
            )
            text = tok.decode(out[0], skip_special_tokens=True).replace("{", "").replace("}", "")
            text = " ".join(text.split())
            templates.append(text + ". {}")
    _TEMPLATE_CACHE[key] = templates
    return templates
