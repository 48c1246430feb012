"""A LiveKit voice agent whose speech-to-text runs locally on a NeMo Parakeet streaming model.

    python examples/livekit_voice_agent.py download-files   # fetch the STT checkpoint once
    python examples/livekit_voice_agent.py start            # LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET

Turns are decided by the STT itself (``turn_detection="stt"``): the model's end-of-utterance token (EOU
models) or its trailing-blank rule ends a turn, with no separate VAD or turn-detector model. Without an LLM
configured the agent just logs what it heard; add ``llm=`` and ``tts=`` to make it answer.
"""
from __future__ import annotations

import logging

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobExecutorType, JobProcess, StopResponse, cli
from livekit.plugins import parakeet

logger = logging.getLogger("parakeet-voice-agent")

# threads, not processes: every session of this worker shares one model (one engine per process)
server = AgentServer(job_executor_type=JobExecutorType.THREAD, initialize_process_timeout=600.0)


def prewarm(proc: JobProcess) -> None:
    stt = parakeet.STT(model="nvidia/parakeet_realtime_eou_120m-v1", chunk_ms=160)
    stt.prewarm()  # blocking here (no event loop): the model is ready before the first job
    proc.userdata["stt"] = stt


server.setup_fnc = prewarm


class Listener(Agent):
    async def on_user_turn_completed(self, turn_ctx, new_message) -> None:
        logger.info("user said: %s", new_message.text_content)
        raise StopResponse()  # remove this (and give the session an llm and tts) to reply


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(stt=ctx.proc.userdata["stt"], vad=None, turn_handling={"turn_detection": "stt"})
    await session.start(agent=Listener(instructions="You are a helpful voice assistant."), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(server)
