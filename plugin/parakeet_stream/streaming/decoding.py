"""One batched greedy RNNT decode per step, read straight from NeMo's batched result.

NeMo's ``rnnt_decoder_predictions_tensor`` runs the label-looping decoder over the whole batch and then builds a
``Hypothesis`` per stream (tensor slices, per-frame confidence lists grouped with ``unique_consecutive``), merges
it into the carried one, decodes its text and aggregates its confidences: all Python per stream, on the thread
every stream waits for (a decode of 256 streams of the demo model on a 2-core CPU: 10.4 ms, 5.5 ms without it;
1024 streams: 36.9 and 18.2 ms). The engine needs
only each stream's new tokens (id, frame, probability) and its decoder state, so ``BatchedGreedyDecoder`` calls
the same label-looping computer (``decoding_computer``) and reads its batched tensors once: the same tokens,
frames and probabilities (``non_blank_step_confidence_precomputed`` is what NeMo's per-token confidence is for
greedy RNNT with blank excluded; tested against NeMo's path).

Between steps each stream's decoder state stays in one row of preallocated tensors (``DecoderSlots``, indexed by
the stream's cache slot, as the encoder caches are in ``slots.py``): a step gathers its streams' rows and writes
the new state back. NeMo's ``split_batched_state`` / ``merge_to_batched_state`` would build and stack small
tensors per stream instead (26 ms a step at 512 streams of the demo model on a 2-core CPU).
"""
from __future__ import annotations

import torch

from .keyterms import BoostedDecoding
from .transcript import Token


class BatchedGreedyDecoder:
    """``decode(enc, enc_len, slots)`` → each stream's new tokens; ``reset(slot)`` starts a stream's decoding
    afresh (a new stream, or a new epoch after a flush)."""

    def __init__(self, model) -> None:
        self.computer = _label_looping_computer(model)
        self.states: DecoderSlots | None = None  # made on the first reset: on the thread that runs the model
        self.boosted: BoostedDecoding | None = None  # made when a stream first gets keyterms (keyterms.py)

    @property
    def available(self) -> bool:
        return self.computer is not None

    def reset(self, slot: int) -> None:
        if self.states is None:
            self.states = DecoderSlots(self.computer, _device_of(self.computer))
        self.states.reset(slot)
        if self.boosted is not None:
            self.boosted.reset(slot)

    def set_keyterms(self, slot: int, tree, weight: float | None = None) -> None:
        """Boost ``slot``'s stream with this boosting tree from its next step (None: no boosting)."""
        if self.boosted is None:
            if tree is None:
                return
            self.boosted = BoostedDecoding(self.computer)
        self.boosted.set(slot, tree, weight)

    def decode(self, enc: torch.Tensor, enc_len: torch.Tensor, slots: torch.Tensor) -> list[list[Token]]:
        """``enc`` [B, D, T] and ``enc_len`` [B] of one step of the streams whose decoder states are in rows
        ``slots`` [B] (each reset before its stream's first step). Frames count from the stream's first step of
        the epoch (the state carries the decoded length)."""
        boosted = self.boosted.boosted(slots) if self.boosted is not None else None
        with torch.inference_mode():
            if boosted is None:  # no stream of the batch has keyterms: the plain decoder, as without them
                hyps, state = self.computer(x=enc.transpose(1, 2), out_len=enc_len,
                                            prev_batched_state=self.states.gather(slots))
            else:
                self.boosted.ensure(self.states.capacity)
                state = self.states.gather(slots)
                state.fusion_states_list = [self.boosted.tree_states.index_select(0, slots)]
                hyps, state = self.boosted.computer(x=enc.transpose(1, 2), out_len=enc_len,
                                                    prev_batched_state=state,
                                                    multi_biasing_ids=boosted.to(enc.device))
                self.boosted.tree_states.index_copy_(0, slots, state.fusion_states_list[0][:slots.shape[0]])
            self.states.scatter(slots, state)  # (the plain leaves only: a tree state is not among its rows)
        return self._tokens(hyps, enc.shape[0])

    def decode_whole(self, enc: torch.Tensor, enc_len: torch.Tensor, tree, weight: float) -> list[Token]:
        """One utterance's tokens decoded at once with this boosting tree (offline decoding with keyterms)."""
        if self.boosted is None:
            self.boosted = BoostedDecoding(self.computer)
        with torch.inference_mode(False):
            model_id = self.boosted.multi_model.add_model(tree, alpha=weight)
        try:
            with torch.inference_mode():
                hyps, _ = self.boosted.computer(x=enc.transpose(1, 2), out_len=enc_len,
                                                multi_biasing_ids=torch.tensor([model_id], device=enc.device))
            return self._tokens(hyps, 1)[0]
        finally:
            with torch.inference_mode(False):
                self.boosted.multi_model.remove_model(model_id)

    @staticmethod
    def _tokens(hyps, batch: int) -> list[list[Token]]:
        with torch.inference_mode():
            lengths, labels, frames, _, probs = hyps.get_data_without_blank()
        lengths = lengths[:batch].tolist()
        width = max(lengths, default=0)
        labels = labels[:batch, :width].tolist()
        frames = frames[:batch, :width].tolist()
        probs = probs[:batch, :width].float().tolist()
        # (tolist gives Python ints and floats already)
        return [list(map(Token, labels[b][:n], frames[b][:n], probs[b][:n])) if n else []
                for b, n in enumerate(lengths)]


class DecoderSlots:
    """The label-looping decoder state of every stream, one row per slot of tensors shaped like NeMo's
    ``BatchedLabelLoopingState``. Which dimension of each tensor is the batch is read from the state NeMo builds
    for one row and for two, so any prediction network's state layout works. Rows grow by doubling."""

    def __init__(self, computer, device: torch.device) -> None:
        one, two = (computer._get_batched_decoding_state_after_sos(device=device, batch_size=n) for n in (1, 2))
        self._sos = _leaves(one)  # a stream that has decoded nothing: <SOS> fed, zero decoded frames
        self._dims = [next(d for d in range(a.dim()) if a.shape[d] != b.shape[d])
                      for a, b in zip(self._sos, _leaves(two))]
        self._kind, self._predictor = type(one), one.predictor_states
        self._rows = [t.narrow(d, 0, 0) for t, d in zip(self._sos, self._dims)]
        self.capacity = 0

    def reset(self, slot: int) -> None:
        if slot >= self.capacity:
            self._grow(max(slot + 1, 2 * self.capacity))
        for rows, sos, d in zip(self._rows, self._sos, self._dims):
            rows.select(d, slot).copy_(sos.select(d, 0))

    def gather(self, slots: torch.Tensor):
        return self._state([rows.index_select(d, slots) for rows, d in zip(self._rows, self._dims)])

    def scatter(self, slots: torch.Tensor, state) -> None:
        """Write back the state a decode returned (on CUDA sized for the largest batch: its first rows count)."""
        for rows, new, d in zip(self._rows, _leaves(state), self._dims):
            rows.index_copy_(d, slots, new.narrow(d, 0, slots.shape[0]).to(rows.dtype))

    def _grow(self, capacity: int) -> None:
        grown = []
        for rows, sos, d in zip(self._rows, self._sos, self._dims):
            shape = list(sos.shape)
            shape[d] = capacity
            new = sos.new_zeros(shape)
            new.narrow(d, 0, self.capacity).copy_(rows)
            grown.append(new)
        self._rows, self.capacity = grown, capacity

    def _state(self, leaves: list[torch.Tensor]):
        """The inverse of ``_leaves``."""
        if isinstance(self._predictor, (list, tuple)):
            n = len(self._predictor)
            predictor = type(self._predictor)(leaves[:n])
        else:
            n, predictor = 1, leaves[0]
        outputs, labels, lengths, *fusion = leaves[n:]
        return self._kind(predictor_states=predictor, predictor_outputs=outputs, labels=labels,
                          decoded_lengths=lengths, fusion_states_list=fusion, time_jumps=None)


def _leaves(state) -> list[torch.Tensor]:
    """A ``BatchedLabelLoopingState``'s tensors in a fixed order (predictor state, output, label, length, fusion)."""
    predictor = state.predictor_states
    predictor = list(predictor) if isinstance(predictor, (list, tuple)) else [predictor]
    return [*predictor, state.predictor_outputs, state.labels, state.decoded_lengths, *state.fusion_states_list]


def _device_of(computer) -> torch.device:
    return next(computer.decoder.parameters()).device


def _label_looping_computer(model):
    """NeMo's label-looping greedy RNNT computer with per-step confidence, where the engine's decoding uses it
    (``engine._use_greedy_rnnt_with_confidence``); else None (NeMo's own path is used)."""
    decoding = getattr(model, "decoding", None)
    greedy = getattr(decoding, "decoding", None)
    computer = getattr(greedy, "decoding_computer", None)
    label_looping = getattr(greedy, "_greedy_decode_blank_as_pad_loop_labels", None)
    if (computer is None or label_looping is None or getattr(greedy, "_greedy_decode", None) != label_looping
            or getattr(computer, "per_stream_biasing_enabled", False)  # boosting is ours: keyterms.py
            or not getattr(decoding, "exclude_blank_from_confidence", False)
            or getattr(decoding, "_is_tdt", False) or getattr(decoding, "big_blank_durations", None)
            or not getattr(computer, "preserve_step_confidence", False)):
        return None
    return computer
