"""``parakeet-stream captions`` as an operator runs it, against a real livekit-server: explicit dispatch by agent
name, captions, then a graceful stop on SIGTERM.

A module of its own: test_livekit_captions.py's in-process worker joins every new room (automatic dispatch), so
while it is registered a room here would get two captions agents and every caption twice."""
from __future__ import annotations

import asyncio

import pytest

from livekit import rtc
from tests.livekit.livekit_testkit import (MESSAGE, MODEL, Speaker, Viewer, agents_in, dispatch, finals_match,
                                          start_worker, until, utterance)

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.realtime]


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "remote"])
async def test_captions_command_joins_by_agent_name_and_drains_on_sigterm(livekit_server, speech, tmp_path, remote):
    """Explicit dispatch, one agent in the room, captions, then a graceful stop; with ``--server`` the captions are
    transcribed by a ``parakeet-stream serve`` process and the captions worker loads no model. The host's CPU is
    kept busy by a low-priority neighbour throughout: the worker's load is its own streams (or rooms), so LiveKit
    dispatches to it all the same."""
    import os
    import signal
    import sys

    from tests.serve_process import ServeProcess
    from tests.support import busy_host

    server = ServeProcess(max_sessions=4, api_key="captions-key") if remote else None
    if server is not None:
        server.start()
    agent_name, room = ("cli-captions-remote", "room-cli-remote") if remote else ("cli-captions", "room-cli")
    log_path = tmp_path / "captions.log"
    env = {**os.environ, "LIVEKIT_URL": livekit_server.url, "LIVEKIT_API_KEY": livekit_server.api_key,
           "LIVEKIT_API_SECRET": livekit_server.api_secret}
    remote_args = ["--server", server.url, "--server-api-key", "captions-key"] if server else []
    try:
        proc = await start_worker([sys.executable, "-m", "parakeet_services.cli", "captions", "--model", MODEL,
                                   "--agent-name", agent_name, "--http-port", "0", "--max-streams", "4",
                                   *remote_args], env, log_path, "the captions command to register")
    except BaseException:
        if server is not None:
            server.stop()
        raise
    try:
        with busy_host():
            viewer = await Viewer().join(livekit_server, room)
            gina = await Speaker("gina").join(livekit_server, room)
            await dispatch(livekit_server, agent_name, room)
            await until(lambda: any(p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
                                    for p in viewer.room.remote_participants.values()), what="the dispatched agent")
            await asyncio.wait_for(gina.heard.wait(), 60)  # the agent subscribed: nothing she says is lost
            await gina.say(utterance(speech, MESSAGE))
            await until(lambda: finals_match(viewer.finals("gina"), [MESSAGE]),
                        what=lambda: "gina's caption from the CLI worker (finals so far, with segment and track "
                                     f"ids: {[(c.text, c.segment_id, c.track_id) for c in viewer.captions if c.final]}"
                                     f"; agents in the room: {agents_in(viewer.room)}; worker log: "
                                     f"{log_path.read_text()[-3000:]})")
            assert len(agents_in(viewer.room)) == 1, agents_in(viewer.room)
            await gina.room.disconnect()
            await viewer.room.disconnect()
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server is not None:
            server.stop()
    out = log_path.read_text()
    if remote:
        assert "remote mode: streams run on the parakeet-stream server" in out and "model loaded" not in out, out
        assert "captions-key" not in out
        # LiveKit's default process executor: the room was captioned in a job process, not the worker's
        import re

        [job_pid] = re.findall(r"captioning room room=room-cli-remote .* pid=(\d+)", out)
        assert int(job_pid) != proc.pid
    assert rc == 0, out
    assert "draining: no new rooms; waiting for running ones" in out
    assert out.rstrip().endswith("INFO parakeet_services.captions stopped"), out
