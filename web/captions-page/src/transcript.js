// The captions of one room: one entry per caption segment (`lk.segment_id`), shown under its speaker's name.
// An interim update replaces the entry's text in place; the final one fixes it. Entries keep the order in which
// their segments first arrived, which is the order people spoke in.

const TIME = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export class Transcript {
  /** @param {HTMLElement} region the aria-live caption region */
  constructor(region) {
    this.region = region;
    /** @type {Map<string, {identity: string, name: string, started: Date, text: string, final: boolean,
     *                      el: HTMLElement}>} */
    this.segments = new Map();
    this.autoScroll = true;
  }

  clear() {
    this.segments.clear();
    this.region.replaceChildren();
  }

  /** Show `text` as the current text of `segmentId`, spoken by `identity` (shown as `name`). */
  update({ segmentId, identity, name, text, final, started }) {
    let segment = this.segments.get(segmentId);
    if (segment === undefined) {
      const el = this.#entry(segmentId, identity, name, started);
      segment = { identity, name, started, text: '', final: false, el };
      this.segments.set(segmentId, segment);
      this.region.append(segment.el);
    } else if (segment.final && !final) {
      return; // a late interim after its final (streams can finish out of order): the final stands
    }
    if (final && !text.trim()) { // the segment ended with no words (a cough, a speaker leaving): nothing to keep
      segment.el.remove();
      this.segments.delete(segmentId);
      return;
    }
    segment.text = text;
    segment.final = final;
    segment.el.dataset.final = String(final);
    // A new text element per update, so the live region announces an addition; interims are hidden from screen
    // readers (they would read every partial word), finals are announced once.
    const p = document.createElement('p');
    p.className = 'text';
    p.textContent = text;
    if (!final) p.setAttribute('aria-hidden', 'true');
    segment.el.querySelector('.text').replaceWith(p);
    if (this.autoScroll) this.region.scrollTop = this.region.scrollHeight;
  }

  /** Name the speaker again once their participant is known (captions can arrive before the participant info). */
  rename(identity, name) {
    for (const segment of this.segments.values()) {
      if (segment.identity === identity && segment.name !== name) {
        segment.name = name;
        segment.el.querySelector('.speaker').textContent = name;
      }
    }
  }

  /** Final captions as plain text, one line each: `[hh:mm:ss] name: text`. */
  text() {
    const lines = [];
    for (const s of this.segments.values()) {
      if (s.final && s.text.trim()) lines.push(`[${TIME.format(s.started)}] ${s.name}: ${s.text.trim()}`);
    }
    return lines.length ? lines.join('\n') + '\n' : '';
  }

  #entry(segmentId, identity, name, started) {
    const el = document.createElement('article');
    el.className = 'caption';
    el.dataset.segmentId = segmentId;
    el.dataset.identity = identity;
    el.dataset.final = 'false';
    const head = document.createElement('div');
    head.className = 'caption-head';
    const speaker = document.createElement('span');
    speaker.className = 'speaker';
    speaker.textContent = name;
    const time = document.createElement('time');
    time.dateTime = started.toISOString();
    time.textContent = TIME.format(started);
    head.append(speaker, time);
    const text = document.createElement('p');
    text.className = 'text';
    el.append(head, text);
    return el;
  }
}
