"""A LiveKit voice agent whose speech-to-text is a NeMo Parakeet streaming model, in this process or on a
``parakeet-stream serve`` worker.

    python examples/livekit_voice_agent.py download-files   # fetch the STT checkpoint once (in-process mode)
    python examples/livekit_voice_agent.py start            # LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET

In process (the default), the model is ``$PARAKEET_MODEL`` (default nvidia/parakeet_realtime_eou_120m-v1;
``espeak-demo-en`` runs with no download). It is loaded before the worker registers: a model that cannot load
ends the program with its error and exit status 1, instead of a job runner restarting forever. Jobs run as
threads so that every room shares one model, and the worker's load is the engine's share of streams in use, not
the host's CPU (a busy 2-core box would otherwise refuse every room).

With ``$PARAKEET_URL`` (``ws://gpu-host:9000``, and ``$PARAKEET_API_KEY`` if the server wants one) the streams
run on that server: this worker loads no model, and LiveKit's default executor gives every room its own process.
``$LIVEKIT_AGENT_NAME`` switches from joining every new room to explicit dispatch by that name.

Turns are decided by the STT itself (``turn_detection="stt"``): the model's end-of-utterance token (EOU
models) or its trailing-blank rule ends a turn, with no separate VAD or turn-detector model. Without an LLM
configured the agent just logs what it heard; add ``llm=`` and ``tts=`` to make it answer.
"""
from __future__ import annotations

import logging
import os
import sys

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobExecutorType, JobProcess, StopResponse, cli
from livekit.plugins import parakeet

logger = logging.getLogger("parakeet-voice-agent")

MODEL = os.environ.get("PARAKEET_MODEL", "nvidia/parakeet_realtime_eou_120m-v1")
stt = parakeet.STT(model=MODEL, chunk_ms=None)  # None: the model's own chunk size; remote with $PARAKEET_URL

if stt.remote:  # no model here: LiveKit's default executor (a process per room) costs nothing extra
    server = AgentServer()
else:  # threads, not processes: every session of this worker shares one model (one engine per process)
    server = AgentServer(job_executor_type=JobExecutorType.THREAD, initialize_process_timeout=600.0)


def prewarm(proc: JobProcess) -> None:
    stt.prewarm()  # blocking here (no event loop); already loaded by __main__ when started from the command line
    proc.userdata["stt"] = stt


def load(_: AgentServer) -> float:
    engine = stt.engine
    return 0.0 if engine is None else engine.active_streams / engine.capacity


server.setup_fnc = prewarm
if not stt.remote:  # remote: LiveKit's own CPU-based load suits a worker that only relays audio
    server.load_fnc = load


class Listener(Agent):
    async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
        logger.info("user said: %s", new_message.text_content)
        raise StopResponse()  # remove this (and give the session an llm and tts) to reply


@server.rtc_session(agent_name=os.environ.get("LIVEKIT_AGENT_NAME", ""))
async def entrypoint(ctx: JobContext) -> None:
    logger.info("voice agent in room %s (pid %d, %s STT)", ctx.room.name, os.getpid(),
                "remote" if stt.remote else "in-process")
    session = AgentSession(stt=ctx.proc.userdata["stt"], vad=None, turn_handling={"turn_detection": "stt"})
    await session.start(agent=Listener(instructions="You are a helpful voice assistant."), room=ctx.room)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("start", "dev", "console", "connect") and not stt.remote:
        try:
            stt.load()
        except Exception as e:  # the model cannot load: say so and stop, before any room is accepted
            print(f"error: cannot load model {MODEL!r}: {e}", file=sys.stderr)
            sys.exit(1)
    cli.run_app(server)
