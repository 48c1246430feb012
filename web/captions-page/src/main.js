// The captions page: asks its server for a subscribe-only token for a room, joins it with livekit-client (no
// audio or video subscribed: captions only) and shows every `lk.transcription` text stream in a Transcript.
import { Room, RoomEvent } from 'livekit-client';
import { Transcript } from './transcript.js';

const TOPIC = 'lk.transcription';
const ATTR_SEGMENT_ID = 'lk.segment_id';
const ATTR_FINAL = 'lk.transcription_final';
const ATTR_TRACK_ID = 'lk.transcribed_track_id';

const $ = (id) => document.getElementById(id);
const form = $('room-form');
const roomInput = $('room');
const status = $('status');
const transcript = new Transcript($('captions'));

/** @type {Room | null} */
let room = null;
let joinAttempted = false; // from then on the status line tells how joining went, not how many rooms are active

function say(message, { error = false } = {}) {
  status.textContent = message;
  status.classList.toggle('error', error);
}

/** The participant a caption belongs to: the owner of its transcribed track when known (a captioner may send in
 * its own name), else the stream's sender (the parakeet-stream captions agent sends in the speaker's name). */
function speakerOf(source, senderIdentity, trackId) {
  if (trackId) {
    for (const p of source.remoteParticipants.values()) {
      if (p.trackPublications.has(trackId)) return p;
    }
  }
  return source.getParticipantByIdentity(senderIdentity);
}

/** Show one text stream of room `source`, as long as it is still the room on screen. */
async function readCaption(source, reader, { identity }) {
  const attributes = reader.info.attributes ?? {};
  const segmentId = attributes[ATTR_SEGMENT_ID] || reader.info.id;
  const final = attributes[ATTR_FINAL] === 'true';
  const participant = speakerOf(source, identity, attributes[ATTR_TRACK_ID]);
  const speaker = participant?.identity ?? identity;
  const caption = { segmentId, identity: speaker, name: participant?.name || speaker,
                    started: new Date(reader.info.timestamp || Date.now()) };
  // One stream may carry the whole segment text (agents' user transcripts, this project's captions agent) or
  // deltas as they are produced (agents' speech transcripts): show the stream's text so far, as an interim.
  let text = '';
  for await (const chunk of reader) {
    text += chunk;
    if (room === source) transcript.update({ ...caption, text, final: false });
  }
  if (room === source) transcript.update({ ...caption, text, final });
}

async function fetchJSON(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

async function join(name) {
  joinAttempted = true;
  await leave();
  say(`Joining ${name}…`);
  let grant;
  try {
    grant = await fetchJSON('/api/token', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ room: name }),
    });
  } catch (e) {
    say(`Cannot open room ${name}: ${e.message}`, { error: true });
    return;
  }
  const next = new Room({ adaptiveStream: false, dynacast: false });
  next.registerTextStreamHandler(TOPIC, (reader, sender) => {
    readCaption(next, reader, sender).catch((e) => console.warn('caption not read', e));
  });
  next
    .on(RoomEvent.ParticipantConnected, (p) => transcript.rename(p.identity, p.name || p.identity))
    .on(RoomEvent.ParticipantNameChanged, (n, p) => transcript.rename(p.identity, n || p.identity))
    .on(RoomEvent.Reconnecting, () => say(`Reconnecting to ${name}…`))
    .on(RoomEvent.Reconnected, () => say(`Connected to ${name}.`))
    .on(RoomEvent.Disconnected, () => {
      if (room === next) {
        room = null;
        setJoined(false);
        say(`Disconnected from ${name}.`, { error: true });
      }
    });
  room = next;
  transcript.clear();
  try {
    await next.connect(grant.url, grant.token, { autoSubscribe: false });
  } catch (e) {
    room = null;
    say(`Cannot connect to ${name}: ${e.message}`, { error: true });
    return;
  }
  setJoined(true);
  document.title = `Live captions: ${name}`;
  const url = new URL(location.href);
  url.searchParams.set('room', name);
  history.replaceState(null, '', url);
  say(`Connected to ${name}. Captions appear as people speak.`);
}

async function leave() {
  const current = room;
  room = null;
  if (current) {
    await current.disconnect();
    say('Not connected.');
  }
  setJoined(false);
}

function setJoined(joined) {
  $('leave').disabled = !joined;
}

async function refreshRooms() {
  try {
    const { rooms } = await fetchJSON('/api/rooms');
    $('room-list').replaceChildren(...rooms.map((r) => {
      const option = document.createElement('option');
      option.value = r.name;
      option.label = `${r.name} (${r.participants} in the room)`;
      return option;
    }));
    if (!joinAttempted) {
      say(rooms.length ? `${rooms.length} active room(s): pick one or type a name.` : 'No active rooms yet: type a room name.');
    }
  } catch (e) {
    if (!joinAttempted) say(`Room list unavailable (${e.message}): type a room name.`);
  }
}

function transcriptFileName() {
  const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
  const name = (room?.name || roomInput.value || 'room').replace(/[^\w.-]+/g, '_');
  return `captions-${name}-${stamp}.txt`;
}

async function copyTranscript() {
  const text = transcript.text();
  try {
    await navigator.clipboard.writeText(text);
    say('Transcript copied.');
  } catch {
    say('Copying was refused by the browser: use Download instead.', { error: true });
  }
}

function downloadTranscript() {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([transcript.text()], { type: 'text/plain;charset=utf-8' }));
  link.download = transcriptFileName();
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = roomInput.value.trim();
  if (name) join(name);
});
$('leave').addEventListener('click', () => leave());
$('refresh-rooms').addEventListener('click', () => refreshRooms());
$('copy').addEventListener('click', () => copyTranscript());
$('download').addEventListener('click', () => downloadTranscript());
$('autoscroll').addEventListener('change', (e) => { transcript.autoScroll = e.target.checked; });
$('text-size').addEventListener('change', (e) => {
  document.documentElement.style.setProperty('--caption-size', e.target.value);
});
window.addEventListener('pagehide', () => { room?.disconnect(); });

const requested = new URLSearchParams(location.search).get('room');
refreshRooms();
if (requested) {
  roomInput.value = requested;
  join(requested);
} else {
  roomInput.focus();
}
