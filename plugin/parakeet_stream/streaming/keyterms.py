"""Per-stream keyterm boosting: names, products and jargon a stream is told to expect.

NeMo's phrase boosting for the label-looping greedy RNNT decoder does the work: a stream's phrases are compiled
into a boosting tree (``GPUBoostingTreeModel``) and added to one ``GPUBiasingMultiModel`` that gives every row of a
batched decode its own tree (or none). While a row is inside a phrase, the tokens that continue it get a bonus
among the non-blank tokens; whether to emit a token at all stays the model's decision, so boosting cannot add
words into silence. A stream's tree state is carried between steps like its decoder state.

Streams without keyterms decode exactly as without this module: a batch where no stream has keyterms runs the
plain decoder, and rows without a tree in a boosted batch get a bonus of exactly zero (their tokens and
confidences are bit-identical; tested). The boosted decoder is built on first use, so an engine whose streams
never carry keyterms pays nothing, not even the multi-model's buffers (~70 MB).
"""
from __future__ import annotations

import copy
import functools
import threading
from dataclasses import dataclass

MAX_KEYTERMS = 100  # phrases per stream
MAX_KEYTERM_CHARS = 50  # characters per phrase
DEFAULT_KEYTERM_WEIGHT = 6.0  # the stream's multiplier of NeMo's per-token phrase scores (its ``alpha``; bench/keyterms.py)
MAX_KEYTERM_WEIGHT = 10.0
CONTEXT_SCORE = 1.0  # NeMo's recommended per-token score of a phrase's first token
DEPTH_SCALING = 2.0  # NeMo's recommended scaling of the following tokens' scores, for RNNT


@dataclass(frozen=True)
class Keyterms:
    """A stream's phrases as the model spells them, and how strongly they are boosted."""

    phrases: tuple[str, ...]
    weight: float = DEFAULT_KEYTERM_WEIGHT


def check_keyterms(phrases, weight: float | None) -> Keyterms | None:
    """``phrases`` (an iterable of strings; empty or None: no boosting) and ``weight`` checked against the
    limits; a ValueError names the limit broken and what is accepted. Spelling is checked by ``Speller``."""
    if phrases is None:
        return None
    if isinstance(phrases, str):
        raise ValueError("keyterms must be a list of phrases, not one string")
    phrases = tuple(phrases)
    if not phrases:
        return None
    if len(phrases) > MAX_KEYTERMS:
        raise ValueError(f"too many keyterms: {len(phrases)}; at most {MAX_KEYTERMS} per stream")
    cleaned = []
    for p in phrases:
        if not isinstance(p, str):
            raise ValueError(f"keyterms must be strings, got {p!r}")
        words = " ".join(p.split())
        if not words:
            raise ValueError("empty keyterm: every keyterm needs at least one word")
        if len(words) > MAX_KEYTERM_CHARS:
            raise ValueError(f"keyterm too long: {words[:20]!r}... has {len(words)} characters; at most "
                             f"{MAX_KEYTERM_CHARS}")
        if words not in cleaned:
            cleaned.append(words)
    w = DEFAULT_KEYTERM_WEIGHT if weight is None else weight
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 < w <= MAX_KEYTERM_WEIGHT:
        raise ValueError(f"keyterm weight must be a number in (0, {MAX_KEYTERM_WEIGHT:g}], got {weight!r}")
    return Keyterms(tuple(cleaned), float(w))


class Speller:
    """Writes phrases in the model's own spelling (lower case for a lower-case vocabulary) and refuses characters
    its tokenizer cannot spell. Thread-safe: used by ``open_stream`` on the caller's thread."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        pieces = tokenizer.ids_to_tokens(list(range(tokenizer.vocab_size)))
        text = "".join(p for p in pieces if not (p.startswith("<") and p.endswith(">")))
        self.lower_case = not any(c.isupper() for c in text)
        self._known = set(text.replace("▁", ""))
        self._lock = threading.Lock()

    def spell(self, keyterms: Keyterms | None) -> Keyterms | None:
        if keyterms is None:
            return None
        phrases = tuple(p.lower() if self.lower_case else p for p in keyterms.phrases)
        for p in phrases:
            unknown = sorted({c for c in p if c != " " and c not in self._known})
            if unknown:
                raise ValueError(f"keyterm {p!r}: the model cannot spell {''.join(unknown)!r}")
        return Keyterms(tuple(dict.fromkeys(phrases)), keyterms.weight)

    def token_ids(self, phrases: tuple[str, ...]) -> list[list[int]]:
        with self._lock:
            return [list(self._tokenizer.text_to_ids(p)) for p in phrases]


@functools.lru_cache(maxsize=256)
def _compile(token_ids: tuple[tuple[int, ...], ...], phrases: tuple[str, ...], vocab_size: int):
    from nemo.collections.asr.parts.context_biasing.boosting_graph_batched import GPUBoostingTreeModel
    from nemo.collections.asr.parts.context_biasing.context_graph_universal import ContextGraph

    import torch

    graph = ContextGraph(context_score=CONTEXT_SCORE, depth_scaling=DEPTH_SCALING)
    graph.build(token_ids=[list(t) for t in token_ids], phrases=list(phrases), scores=[0.0] * len(phrases))
    with torch.inference_mode(False):
        return GPUBoostingTreeModel.from_context_graph(graph, vocab_size=vocab_size, use_triton=False)


def boosting_tree(speller: Speller, keyterms: Keyterms, vocab_size: int):
    """The phrases' boosting tree, compiled once per distinct phrase set (by content)."""
    ids = tuple(tuple(t) for t in speller.token_ids(keyterms.phrases))
    return _compile(ids, keyterms.phrases, vocab_size)


def _boosted_rows_only(multi_model_class):
    """NeMo's multi-model whose PyTorch advance (the CPU path) works on the rows that have a tree only.

    NeMo's own ``_advance_pytorch`` does batch x vocabulary work for every row at every label step, trees or not:
    with one boosted stream among 256 a decode took ~4x as long. Rows are independent, so computing the boosted
    rows alone and filling the others with what NeMo gives a row without a tree (score 0, state -1) is exact."""

    import torch

    class BoostedRowsOnly(multi_model_class):
        def _advance_pytorch(self, states: torch.Tensor, model_ids: torch.Tensor):
            rows = (model_ids >= 0).nonzero().squeeze(1)
            if rows.numel() == model_ids.numel():
                return super()._advance_pytorch(states=states, model_ids=model_ids)
            scores = torch.zeros([states.shape[0], self.vocab_size], device=states.device,
                                 dtype=self.all_arcs_weights.dtype)
            next_states = torch.full([states.shape[0], self.vocab_size], -1, dtype=torch.long, device=states.device)
            if rows.numel():
                row_scores, row_next = super()._advance_pytorch(states=states[rows], model_ids=model_ids[rows])
                scores[rows], next_states[rows] = row_scores, row_next
            return scores, next_states

    return BoostedRowsOnly


class BoostedDecoding:
    """The boosted twin of a plain label-looping computer and every slot's tree and tree state. Inference
    thread only (the multi-model has no lock)."""

    def __init__(self, plain) -> None:
        import torch
        from nemo.collections.asr.parts.context_biasing.biasing_multi_model import GPUBiasingMultiModel

        self.computer = copy.copy(plain)  # shares the prediction and joint networks
        if hasattr(self.computer, "reset_cuda_graphs_state"):
            self.computer.reset_cuda_graphs_state()
        device = next(plain.decoder.parameters()).device
        with torch.inference_mode(False):
            self.computer.biasing_multi_model = _boosted_rows_only(GPUBiasingMultiModel)(
                vocab_size=plain._blank_index, reallocation_callback_fn=self.computer.reset_cuda_graphs_state,
                use_triton=device.type == "cuda" or None).to(device)
        self.model_ids: list[int] = []  # per slot: its tree's id in the multi-model; -1: no keyterms
        with torch.inference_mode():  # written by the decode, which runs in inference mode
            self.tree_states = torch.zeros(0, dtype=torch.long, device=device)

    @property
    def multi_model(self):
        return self.computer.biasing_multi_model

    def ensure(self, capacity: int) -> None:
        import torch

        if capacity > len(self.model_ids):
            grow = capacity - len(self.model_ids)
            self.model_ids += [-1] * grow
            with torch.inference_mode():
                self.tree_states = torch.cat([self.tree_states, self.tree_states.new_zeros(grow)])

    def set(self, slot: int, tree, weight: float | None) -> None:
        """Give ``slot`` this tree (None: none), its tree state at the start."""
        import torch

        self.ensure(slot + 1)
        old = self.model_ids[slot]
        with torch.inference_mode(False):  # the multi-model's buffers must stay normal tensors
            if old >= 0:
                self.multi_model.remove_model(old)
            self.model_ids[slot] = -1 if tree is None else self.multi_model.add_model(tree, alpha=weight)
        self.reset(slot)

    def reset(self, slot: int) -> None:
        import torch

        if slot < self.tree_states.numel():
            with torch.inference_mode():
                self.tree_states[slot] = 0

    def boosted(self, slots: torch.Tensor) -> torch.Tensor | None:
        """Each row's model id, or None where no row of the batch has keyterms."""
        import torch

        if self.trees_in_use == 0:
            return None
        ids = [self.model_ids[s] if s < len(self.model_ids) else -1 for s in slots.tolist()]
        return torch.tensor(ids) if any(i >= 0 for i in ids) else None

    @property
    def trees_in_use(self) -> int:
        return sum(1 for i in self.model_ids if i >= 0)
