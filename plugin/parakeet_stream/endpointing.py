"""When does a segment end? Silero VAD, the model's <EOU> token, trailing blank frames, or the caller.

The model state is never reset at these automatic endpoints: they only cut the running transcript into
segments, so the stream's tokens stay exactly those of offline decoding. Only ``Stream.flush()`` restarts the
model state (it must decode the pending audio to the end, which needs the final ``keep_all_outputs`` step).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields, replace

import numpy as np

logger = logging.getLogger("parakeet_stream")

VAD_WINDOW = 512  # samples at 16 kHz: the window Silero VAD v5 is trained on


@dataclass(frozen=True)
class EndpointingOptions:
    vad: bool = False
    vad_threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    speech_pad_ms: int = 30
    eou: bool = True
    trailing_blank_ms: int | None = 800
    max_segment_s: float | None = None

    def __post_init__(self) -> None:
        _check_range("vad_threshold", self.vad_threshold, 0.0, 1.0)
        _check_range("min_speech_ms", self.min_speech_ms, 0, 10_000)
        _check_range("min_silence_ms", self.min_silence_ms, 0, 10_000)
        _check_range("speech_pad_ms", self.speech_pad_ms, 0, 2_000)
        if self.trailing_blank_ms is not None:
            _check_range("trailing_blank_ms", self.trailing_blank_ms, 80, 60_000)
        if self.max_segment_s is not None:
            _check_range("max_segment_s", self.max_segment_s, 1.0, 3600.0)


def updated_options(opts: EndpointingOptions, changes: dict) -> EndpointingOptions:
    """``opts`` with ``changes`` applied, for a live stream: every option but ``vad`` itself may change."""
    names = [f.name for f in fields(EndpointingOptions)]
    unknown = sorted(set(changes) - set(names))
    if unknown:
        live = [n for n in names if n != "vad"]
        raise ValueError(f"unknown endpointing option(s) {', '.join(unknown)}; accepted: {', '.join(live)}")
    if "vad" in changes and changes["vad"] != opts.vad:
        raise ValueError("vad cannot be switched on or off on a live stream (open a new stream for that); "
                         "its threshold and durations can change")
    return replace(opts, **changes)


def _check_range(name: str, value, lo, hi) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"endpointing option {name}={value!r} is out of range; accepted: {lo}..{hi}")


_prototype = None


def _silero_prototype():
    global _prototype
    if _prototype is None:
        import torch

        # silero_vad's model module calls torch.set_num_threads(1) when imported. That sets torch's process-wide
        # default, which every thread created afterwards starts from: the next engine's inference thread would
        # step the ASR model on one core (measured: half the CPU throughput on 2 cores). Keep the caller's.
        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad
        finally:
            torch.set_num_threads(threads)
        _prototype = load_silero_vad()
    return _prototype


VAD_CONTEXT = 64  # samples of the previous window Silero prepends to each 16 kHz window


def _silero_network():
    """Silero's 16 kHz network. Its recurrent state is an argument and a result (the TorchScript wrapper that
    ``load_silero_vad`` returns keeps it inside instead), so one network serves every stream, batched."""
    return _silero_prototype()._model


_networks: dict[str, object] = {}


def vad_network(device: str = "cpu"):
    """Silero's network on ``device`` (the engine's): batched over a thousand streams, its CPU cost would take
    much of the inference thread (~19 us per stream and 32 ms window on 2 cores: ~0.6 s a second at 1024 streams),
    while on a GPU one call is a few kernels. It is loaded there and checked against the CPU network on a probe; if
    that fails the CPU network serves, with a log line. ``PARAKEET_VAD_DEVICE=cpu`` keeps it on the CPU."""
    device = os.environ.get("PARAKEET_VAD_DEVICE", device)
    if device not in _networks:
        _networks[device] = _network_on(device)
    return _networks[device]


def _network_on(device: str):
    import torch

    cpu = _silero_network()
    if torch.device(device).type == "cpu":
        return cpu
    try:  # loaded again with every tensor mapped there (a TorchScript module's ``.to`` misses some)
        from importlib.resources import files

        net = torch.jit.load(str(files("silero_vad.data").joinpath("silero_vad.jit")), map_location=device)._model
        net.eval()
        probe = torch.sin(torch.arange(2 * (VAD_CONTEXT + VAD_WINDOW), dtype=torch.float32) * 0.05).reshape(2, -1)
        state = torch.zeros(2, 2, 128)
        with torch.inference_mode():
            want, _ = cpu(probe, state)
            got, _ = net(probe.to(device), state.to(device))
        diff = float((got.float().cpu() - want).abs().max())
        if not diff <= 1e-3:
            raise RuntimeError(f"its probabilities differ from the CPU network's by {diff:.2e}")
        logger.info("Silero VAD runs on the engine's device", extra={"device": device})
        return net
    except Exception as e:  # the CPU network is always there
        logger.warning("Silero VAD stays on the CPU: %s: %s", type(e).__name__, e, extra={"device": device})
        return cpu


class VoiceActivity:
    """Streaming Silero VAD with hysteresis; reports confirmed speech starts and ends as sample positions.

    ``feed`` buffers audio; ``detect`` runs the pending windows of many detectors together, one network call per
    round (the k-th pending window of each), which is what the inference thread does for all its streams.
    ``process`` is both for a single detector."""

    def __init__(self, opts: EndpointingOptions, sample_rate: int = 16000, device: str = "cpu") -> None:
        _silero_network()  # loaded by the caller (seconds, once); moved to ``device`` at the first ``detect``
        self.device = device
        # Silero's recurrent state [2, 1, 128]: a numpy view of the last batched call's output (per-stream torch
        # copies would cost ~3 us each per 32 ms window)
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(VAD_CONTEXT, np.float32)
        self._rate = sample_rate
        self.retune(opts)
        self._buf = np.zeros(0, np.float32)
        self._pos = 0  # samples consumed by the model
        self.in_speech = False
        self._candidate: int | None = None  # where possible speech began
        self._silence_from: int | None = None

    def retune(self, opts: EndpointingOptions) -> None:
        """New threshold and durations, from the next window analysed on (the recurrent state and a speech start
        or silence already under way are kept)."""
        self._threshold = opts.vad_threshold
        self._neg_threshold = max(opts.vad_threshold - 0.15, 0.01)
        self._min_speech = opts.min_speech_ms * self._rate // 1000
        self._min_silence = opts.min_silence_ms * self._rate // 1000
        self._pad = opts.speech_pad_ms * self._rate // 1000

    def feed(self, samples: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, samples])

    @property
    def windows_ready(self) -> int:
        return self._buf.shape[0] // VAD_WINDOW

    def process(self, samples: np.ndarray) -> list[tuple[str, int]]:
        """Feed 16 kHz samples; returns [("start", sample) | ("end", sample)] in order."""
        self.feed(samples)
        return detect([self])[0]

    def _next_input(self, out: np.ndarray) -> None:
        """Write the next window, after the context Silero prepends to it, into ``out`` (a row of the batch)."""
        out[:VAD_CONTEXT] = self._context
        out[VAD_CONTEXT:] = self._buf[:VAD_WINDOW]
        self._context = self._buf[VAD_WINDOW - VAD_CONTEXT:VAD_WINDOW]
        self._buf = self._buf[VAD_WINDOW:]

    def _advance(self, p: float) -> list[tuple[str, int]]:
        """The hysteresis after one window of speech probability ``p``."""
        at = self._pos
        self._pos += VAD_WINDOW
        if not self.in_speech:
            if p >= self._threshold:
                self._candidate = at if self._candidate is None else self._candidate
                if self._pos - self._candidate >= self._min_speech:
                    self.in_speech = True
                    self._silence_from = None
                    return [("start", max(0, self._candidate - self._pad))]
            elif p < self._neg_threshold:
                self._candidate = None
        else:
            if p < self._neg_threshold:
                self._silence_from = at if self._silence_from is None else self._silence_from
                if self._pos - self._silence_from >= self._min_silence:
                    self.in_speech = False
                    self._candidate = None
                    # halfway into the confirmed silence (at least the pad): RNNT emits a word's last tokens a
                    # frame or two after its audio, and they must stay in this utterance
                    return [("end", self._silence_from + max(self._pad, self._min_silence // 2))]
            elif p >= self._threshold:
                self._silence_from = None
        return []


def detect(detectors: list[VoiceActivity]) -> list[list[tuple[str, int]]]:
    """Every full window buffered by ``detectors``, one Silero call per round; returns each detector's changes.
    A batch of one gives exactly the unbatched model's probabilities; larger batches differ by ~1e-5."""
    import torch

    changes: list[list[tuple[str, int]]] = [[] for _ in detectors]
    pending = [i for i, d in enumerate(detectors) if d.windows_ready]
    if not pending:
        return changes
    net = vad_network(detectors[pending[0]].device)
    device = next(net.parameters()).device
    while pending:
        x = np.empty((len(pending), VAD_CONTEXT + VAD_WINDOW), np.float32)
        for row, i in zip(x, pending):
            detectors[i]._next_input(row)
        x = torch.from_numpy(x).to(device)
        state = torch.from_numpy(np.concatenate([detectors[i]._state for i in pending], axis=1)).to(device)
        with torch.inference_mode():
            probs, state = net(x, state)
        probs = probs[:, 0].tolist()
        state = state.cpu().numpy()
        for j, i in enumerate(pending):
            detectors[i]._state = state[:, j:j + 1]
            changes[i].extend(detectors[i]._advance(probs[j]))
        pending = [i for i in pending if detectors[i].windows_ready]
    return changes
