"""From decoded tokens to segments, words and events.

The decoder gives, per step, the stream's new tokens with the encoder frame that emitted each one. A
``SegmentTranscript`` collects them for the current segment and turns them into text and timed words;
``TranscriptTracker`` owns the segment lifecycle (SpeechStarted → Partial* → Final → SpeechEnded) so the
event order promised in ``events.py`` is enforced in one place.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from .events import EndpointReason, Event, Final, Partial, SpeechEnded, SpeechStarted, Word


@dataclass(frozen=True)
class Token:
    id: int
    frame: int  # global encoder frame on the stream clock (frame_seconds each)
    prob: float


class Vocabulary:
    """Token ids → text pieces, and which ids start a word (SentencePiece's ``▁``)."""

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer
        n = tokenizer.vocab_size
        pieces = tokenizer.ids_to_tokens(list(range(n)))
        self.starts_word = [p.startswith("▁") for p in pieces]
        self.eou_ids = frozenset(i for i, p in enumerate(pieces) if p.strip("▁").upper() in ("<EOU>", "<EOB>"))

    def text(self, ids: list[int]) -> str:
        return self._tokenizer.ids_to_text(ids).strip() if ids else ""


@dataclass
class SegmentTranscript:
    tokens: list[Token] = field(default_factory=list)

    def words(self, vocab: Vocabulary, frame_s: float, time_base: float) -> tuple[Word, ...]:
        groups: list[list[Token]] = []
        for tok in self.tokens:
            if not groups or vocab.starts_word[tok.id]:
                groups.append([tok])
            else:
                groups[-1].append(tok)
        words = []
        for g in groups:
            text = vocab.text([t.id for t in g])
            if not text:
                continue
            conf = math.exp(sum(math.log(max(t.prob, 1e-12)) for t in g) / len(g))
            words.append(Word(text, round(time_base + g[0].frame * frame_s, 3),
                              round(time_base + (g[-1].frame + 1) * frame_s, 3), round(conf, 4)))
        return tuple(words)


class TranscriptTracker:
    """Segment state of one stream. ``time_base`` shifts frame times after a flush restarted the model state."""

    def __init__(self, vocab: Vocabulary, frame_s: float) -> None:
        self.vocab = vocab
        self.frame_s = frame_s
        self.time_base = 0.0
        self.segment_id = 0
        self.open = False
        self.started_at = 0.0
        self.last_token_frame: int | None = None
        self.segments_finalised = 0
        self._seg = SegmentTranscript()
        self._text = ""

    def time_of_frame(self, frame: int) -> float:
        return round(self.time_base + frame * self.frame_s, 3)

    def start(self, at: float) -> list[Event]:
        if self.open:
            return []
        self.open = True
        self.started_at = round(at, 3)
        return [SpeechStarted(self.segment_id, self.started_at)]

    def add(self, tokens: list[Token], audio_end: float) -> list[Event]:
        """Spoken tokens of one step (no <EOU>) → SpeechStarted if no segment is open, then a Partial."""
        if not tokens:
            return []
        events = self.start(self.time_of_frame(tokens[0].frame))
        self._seg.tokens.extend(tokens)
        self.last_token_frame = tokens[-1].frame
        text = self.vocab.text([t.id for t in self._seg.tokens])
        delta = text[len(self._text):] if text.startswith(self._text) else text
        self._text = text
        events.append(Partial(self.segment_id, text, delta, self.words(), round(audio_end, 3), time.monotonic()))
        return events

    @property
    def text(self) -> str:
        return self._text

    def words(self) -> tuple[Word, ...]:
        return self._seg.words(self.vocab, self.frame_s, self.time_base)

    def endpoint(self, reason: EndpointReason, audio_end: float) -> list[Event]:
        """Close the open segment (if any): its Final, then SpeechEnded."""
        if not self.open:
            return []
        words = self.words()
        end = words[-1].end if words else round(audio_end, 3)
        start = min(self.started_at, words[0].start) if words else self.started_at
        events: list[Event] = [
            Final(self.segment_id, self._text, words, start, max(end, start), reason, round(audio_end, 3),
                  time.monotonic()),
            SpeechEnded(self.segment_id, max(end, start)),
        ]
        self.segment_id += 1
        self.segments_finalised += 1
        self.open = False
        self.last_token_frame = None
        self._seg = SegmentTranscript()
        self._text = ""
        return events
