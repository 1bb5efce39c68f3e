"""Distillation across tokenizers: the source model teaches the adapted model on the same bytes.

The teacher is the source model on the source tokenization of the text the student reads
(vocabadapt.training.byte_align pairs the positions). Three losses, each usable alone or together
(weights in vocab_adaptation.distill), behind the LOSSES registry:

- `hidden`: hidden-state MSE at shared boundaries, divided by the teacher's mean square so the
  weight does not depend on the model's hidden scale (Token Distillation, ICLR 2026; tokenkit's
  `alm_latents`). At a shared boundary both models have read exactly the same bytes.
- `chunk`: likelihood matching of the chunks between consecutive shared boundaries,
  distance(log p_student(chunk), log p_teacher(chunk)) (tokenkit's ALM, Minixhofer et al. 2025,
  "Universal cross-tokenizer distillation via approximate likelihood matching"): `abs` is the plain
  distance, `binary_kl` its binarised form (KL between Bernoulli(p_t) and Bernoulli(p_s) of the chunk
  probabilities at a temperature).
- `kl`: KL(teacher || student) of the next-token distributions where the next target token and the
  next source token cover the same bytes, restricted to the shared vocabulary (target ids with an
  identical source token; for an extension, every target id below the source vocabulary size) and
  renormalised there; temperature-scaled as Hinton et al. (x T^2).

Teachers: `SharedBodyTeacher` (stage 1: the body is frozen, so the student's body IS the source body;
only the source input embedding and head are kept, as frozen tensors outside the model, never
saved in checkpoints) and `ModelTeacher` (stage 2: the body trains, so a frozen copy of the source
model runs beside the student). Both run under no_grad.

Every loss is exactly zero when student and teacher are the same model with the same tokenizer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from ..errors import InputError, StageError

log = logging.getLogger(__name__)


@dataclass
class Forward:
    """What the losses read of one forward pass: the chosen hidden layers and the logits."""

    hidden: list[torch.Tensor]  # each (batch, length, hidden)
    logits: torch.Tensor | None  # (batch, length, vocab); None when no loss reads them (hidden only)


class Teacher(Protocol):
    def __call__(self, source_ids: torch.Tensor, layers: list[int], logits: bool = True) -> Forward: ...


def _body(model: Any) -> Any:
    """The transformer without its head (LlamaModel, GPTNeoXModel, ...)."""
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if body is None or body is model:
        raise InputError(f"{type(model).__name__}: cannot find the body (base_model_prefix) to share with the teacher")
    return body


class SharedBodyTeacher:
    """The source model made of the student's frozen body and the source embedding and head (stage 1).

    Args:
        student: the model being trained (its body must be frozen and equal to the source body).
        embedding: (source_vocab, hidden) the source input embedding.
        head: (source_vocab, hidden) the source output head (the same tensor when tied); head_bias or None.
    """

    def __init__(self, student: Any, embedding: torch.Tensor, head: torch.Tensor, head_bias: torch.Tensor | None):
        self.student = student
        self.embedding, self.head, self.head_bias = embedding, head, head_bias

    def to(self, device: torch.device) -> SharedBodyTeacher:
        self.embedding = self.embedding.to(device)
        self.head = self.head.to(device) if self.head is not self.embedding else self.embedding
        self.head_bias = self.head_bias.to(device) if self.head_bias is not None else None
        return self

    @torch.no_grad()
    def __call__(self, source_ids: torch.Tensor, layers: list[int], logits: bool = True) -> Forward:
        if self.embedding.device != source_ids.device:
            self.to(source_ids.device)
        embeds = F.embedding(source_ids, self.embedding)  # (batch, source_len, hidden)
        body = _body(self.student)
        was_training = body.training
        body.eval()  # the teacher is deterministic: no dropout, whatever the student's mode
        try:
            out = body(inputs_embeds=embeds, output_hidden_states=True, use_cache=False)
        finally:
            body.train(was_training)
        states = out.hidden_states  # (layers + 1) x (batch, source_len, hidden); [-1] is after the final norm
        # (batch, source_len, source_vocab): on a small model the head is a large share of the forward's cost
        out_logits = F.linear(states[-1], self.head, self.head_bias) if logits else None
        return Forward([states[i] for i in layers], out_logits)


class ModelTeacher:
    """A frozen copy of the source model beside the student (stage 2, where the body trains)."""

    def __init__(self, model: Any):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def __call__(self, source_ids: torch.Tensor, layers: list[int], logits: bool = True) -> Forward:
        dev = next(self.model.parameters()).device
        if dev != source_ids.device:
            self.model.to(source_ids.device)
        if not logits:
            body = _body(self.model)(input_ids=source_ids, output_hidden_states=True, use_cache=False)
            return Forward([body.hidden_states[i] for i in layers], None)
        out = self.model(input_ids=source_ids, output_hidden_states=True, use_cache=False)
        return Forward([out.hidden_states[i] for i in layers], out.logits)


# --------------------------------------------------------------------------------------------------
# losses: (student, teacher, batch, settings) -> scalar


@dataclass
class LossInputs:
    """One micro-batch as the losses see it."""

    student: Forward
    teacher: Forward
    input_ids: torch.Tensor  # (batch, length) target ids
    source_ids: torch.Tensor  # (batch, source_len)
    align: dict[str, torch.Tensor]  # vocabadapt.training.byte_align.Alignment.tensors
    shared_t: torch.Tensor  # (shared,) target ids of the shared vocabulary
    shared_s: torch.Tensor  # (shared,) their source ids
    temperature: float
    chunk_distance: str
    _student_next: torch.Tensor | None = None

    def student_logits(self) -> torch.Tensor:
        assert self.student.logits is not None  # the student's forward always has them
        return self.student.logits

    def student_next(self) -> torch.Tensor:
        """(batch, length) the student's next-token log-probabilities, computed once per micro-batch."""
        if self._student_next is None:
            self._student_next = next_logprobs(self.student_logits(), self.input_ids)
        return self._student_next


def next_token_loss(x: LossInputs) -> torch.Tensor:
    """The next-token (cross-entropy) loss of the student: mean over every position but the last of each row."""
    return -x.student_next()[:, :-1].mean()


def _zero(x: LossInputs) -> torch.Tensor:
    # A zero that is still attached to the graph, so backward works on a batch without any signal.
    return x.student_logits().sum() * 0.0


def hidden_loss(x: LossInputs) -> torch.Tensor:
    """Mean over layers of MSE(student, teacher) at shared boundaries / mean square of the teacher there."""
    t_idx, s_idx = x.align["hidden_t"], x.align["hidden_s"]
    if t_idx.numel() == 0:
        return _zero(x)
    total = _zero(x)
    for hs, ht in zip(x.student.hidden, x.teacher.hidden):
        s = hs.flatten(0, 1)[t_idx].float()  # (boundaries, hidden)
        t = ht.flatten(0, 1)[s_idx].float()
        total = total + (s - t).pow(2).mean() / t.pow(2).mean().clamp_min(1e-12)
    return total / len(x.student.hidden)


def next_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t + 1] | ids[:, :t + 1]) at every position t: (batch, length) (the last column is unused).

    Over the whole (batch, length, vocab) tensor: the chunks cover nearly every position, and indexing the
    vocab-wide rows first would copy them (and scatter them back in backward). The next-token loss of
    distill+ce is the mean of the same numbers, so the vocabulary-wide logsumexp runs once.
    """
    lse = torch.logsumexp(logits.float(), dim=-1)  # (batch, length)
    nxt = torch.roll(ids, shifts=-1, dims=1)  # (batch, length): the next token
    return logits.gather(-1, nxt[..., None])[..., 0].float() - lse


def _chunk_logprobs(x: LossInputs) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(x.align["chunks"])
    dev = x.student_logits().device
    s_lp = x.student_next().flatten()[x.align["chunk_t"]]  # (chunk positions,)
    assert x.teacher.logits is not None  # the teacher computes logits whenever chunk or kl has a weight
    t_lp = next_logprobs(x.teacher.logits, x.source_ids).flatten()[x.align["chunk_s"]]
    s = torch.zeros(n, device=dev, dtype=s_lp.dtype).index_add(0, x.align["chunk_t_id"], s_lp)  # (chunks,)
    t = torch.zeros(n, device=dev, dtype=t_lp.dtype).index_add(0, x.align["chunk_s_id"], t_lp)
    return s, t


def _abs_distance(s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    return (s - t).abs()


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable near 0 (a chunk of probability ~1)."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _binary_kl_distance(s: torch.Tensor, t: torch.Tensor, temperature: float) -> torch.Tensor:
    # KL(Bernoulli(p_t) || Bernoulli(p_s)) with p = exp(log p(chunk) / T): the chunk either happens or not.
    ls, lt = s / temperature, t / temperature
    pt = lt.exp()
    return pt * (lt - ls) + (1 - pt) * (_log1mexp(lt) - _log1mexp(ls))


CHUNK_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "abs": _abs_distance,
    "binary_kl": _binary_kl_distance,
}


def chunk_loss(x: LossInputs) -> torch.Tensor:
    """Mean over chunks of distance(log p_student(chunk), log p_teacher(chunk))."""
    if int(x.align["chunks"]) == 0:
        return _zero(x)
    s, t = _chunk_logprobs(x)
    return CHUNK_DISTANCES[x.chunk_distance](s, t, x.temperature).mean()


def kl_loss(x: LossInputs) -> torch.Tensor:
    """T^2 x mean KL(teacher || student) over the shared vocabulary where the next tokens cover the same bytes."""
    t_idx, s_idx = x.align["kl_t"], x.align["kl_s"]
    if t_idx.numel() == 0 or x.shared_t.numel() == 0:
        return _zero(x)
    assert x.teacher.logits is not None
    T = x.temperature
    s = x.student_logits().flatten(0, 1)[t_idx][:, x.shared_t].float() / T  # (pairs, shared)
    t = x.teacher.logits.flatten(0, 1)[s_idx][:, x.shared_s].float() / T
    lt, ls = F.log_softmax(t, dim=1), F.log_softmax(s, dim=1)
    return (lt.exp() * (lt - ls)).sum(1).mean() * T * T


# name -> (loss, the vocab_adaptation.distill field holding its weight)
LOSSES: dict[str, tuple[Callable[[LossInputs], torch.Tensor], str]] = {
    "hidden": (hidden_loss, "hidden_weight"),
    "chunk": (chunk_loss, "chunk_weight"),
    "kl": (kl_loss, "kl_weight"),
}


def shared_vocabulary(
    target_tokenizer: Any, source_tokenizer: Any, source_rows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(target ids, source ids) of the tokens both vocabularies spell the same way (the KL's support).

    Identical tokens by canonical form (vocabadapt.text.vocab.identical_tokens); for an extension of the
    source that is every target id below the source vocabulary, mapped to itself.
    """
    from ..text.vocab import identical_tokens

    pairs = sorted((t, s) for t, s in identical_tokens(target_tokenizer, source_tokenizer).items() if s < source_rows)
    t_ids = torch.tensor([t for t, _ in pairs], dtype=torch.int64)
    s_ids = torch.tensor([s for _, s in pairs], dtype=torch.int64)
    return t_ids, s_ids


@dataclass(frozen=True)
class TeacherSource:
    """Where the teacher comes from: the source model's HF directory and the run's source tokenizer."""

    model_dir: Path
    tokenizer: Any


def build_teacher(student: Any, source: Any, shared_body: bool) -> Teacher:
    """The teacher for a stage: the student's frozen body with the source rows, or the source model itself.

    Args:
        student: the model being trained.
        source: the loaded source model (fp32); with shared_body only its embedding and head are kept.
        shared_body: the stage freezes the body (stage 1), so the student's body is the source body.
    Raises:
        StageError: shared_body but the student's body differs from the source model's (model/init was not
            transplanted from this source model).
    """
    if not shared_body:
        return ModelTeacher(source)
    s_params = dict(source.named_parameters())
    skip = {id(source.get_input_embeddings().weight), id(source.get_output_embeddings().weight)}
    st_emb = {id(student.get_input_embeddings().weight), id(student.get_output_embeddings().weight)}
    for name, p in student.named_parameters():
        if id(p) in st_emb:
            continue
        q = s_params.get(name)
        if q is None or id(q) in skip or q.shape != p.shape or not torch.equal(q.detach(), p.detach().to(q.dtype)):
            raise StageError(
                f"distillation in a frozen-body stage shares the body with the teacher, but the student's {name} "
                f"differs from the source model's; the input model was not transplanted from models.source_model "
                f"(rerun the transplant stage, or use objective ce)"
            )
        break  # one body tensor is enough to tell a different model; the shapes of all were checked by load
    emb = source.get_input_embeddings().weight.detach().clone()  # (source_vocab, hidden)
    head_module = source.get_output_embeddings()
    tied = head_module.weight is source.get_input_embeddings().weight
    head = emb if tied else head_module.weight.detach().clone()  # (source_vocab, hidden)
    bias = getattr(head_module, "bias", None)
    return SharedBodyTeacher(student, emb, head, bias.detach().clone() if bias is not None else None)
