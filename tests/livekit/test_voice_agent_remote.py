"""The example voice agent (``examples/livekit_voice_agent.py``) as a user deploys it in remote mode: an agent
worker on LiveKit's default process executor, its ``AgentSession`` transcribing through a ``parakeet-stream
serve`` process, against a real livekit-server.

Explicit dispatch by agent name, so that this worker joins only the room made here."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from livekit import rtc
from tests.livekit.livekit_testkit import MESSAGE, Speaker, Viewer, agents_in, dispatch, start_worker, until, utterance
from tests.serve_process import ServeProcess

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.realtime]

ROOT = Path(__file__).resolve().parents[2]
AGENT_NAME, ROOM = "voice-agent-remote", "room-voice-agent-remote"


async def test_example_voice_agent_transcribes_a_room_through_serve_from_a_job_process(livekit_server, speech,
                                                                                     tmp_path):
    server = ServeProcess(max_sessions=2, api_key="agent-key")
    server.start()
    log_path = tmp_path / "agent.log"
    env = {**os.environ, "LIVEKIT_URL": livekit_server.url, "LIVEKIT_API_KEY": livekit_server.api_key,
           "LIVEKIT_API_SECRET": livekit_server.api_secret, "PARAKEET_URL": server.url,
           "PARAKEET_API_KEY": "agent-key", "PARAKEET_MODEL": "/models/never-loaded.nemo",
           "LIVEKIT_AGENT_NAME": AGENT_NAME}
    try:
        proc = await start_worker([sys.executable, "examples/livekit_voice_agent.py", "start"], env, log_path,
                                  "the voice agent to register", cwd=ROOT)
    except BaseException:
        server.stop()
        raise
    try:
        # the voice agent's RoomIO links the first participant it finds: Gina, the only one, reads her own captions
        gina = Speaker("gina")
        viewer = Viewer(gina.room)
        await gina.join(livekit_server, ROOM)
        await dispatch(livekit_server, AGENT_NAME, ROOM)
        await until(lambda: any(p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                                for p in viewer.room.remote_participants.values()), what="the dispatched agent")
        await asyncio.wait_for(gina.heard.wait(), 60)  # the session subscribed: nothing she says is lost
        await gina.say(utterance(speech, MESSAGE))
        await until(lambda: MESSAGE in [c.text for c in viewer.captions if c.final]
                    and f"user said: {MESSAGE}" in log_path.read_text(),
                    what=lambda: f"the agent's final transcript (captions: {viewer.captions}; agents: "
                                 f"{agents_in(viewer.room)}; log: {log_path.read_text()[-3000:]})")
        await gina.room.disconnect()
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    out = log_path.read_text()
    assert rc == 0, out
    [job_pid] = re.findall(rf"voice agent in room {ROOM} \(pid (\d+), remote STT\)", out)
    assert int(job_pid) != proc.pid  # LiveKit's default executor: the room ran in a job process of its own
    assert "agent-key" not in out
    # the turn was transcribed on the server
    assert any("session.begin" in line for line in server.lines), "".join(server.lines[-40:])
