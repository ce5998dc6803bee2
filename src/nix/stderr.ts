// What Nix and git print on stderr, made fit for an error message, a log line or the index page:
// worker-protocol frames decoded to their text, terminal escapes and control bytes removed,
// secrets redacted. Nothing a child process wrote reaches a client without passing here.

import { redact } from '../secrets.js';

/**
 * When a builder fails before it runs (e.g. its executable is missing), Nix's child writes
 * `\x01\n` and the error serialised in the worker protocol into the build log:
 * u64 strings "Error", level, "Error", message, position, trace count, traces. The log
 * printer strips ANSI escapes from it, so the message's length field no longer matches the
 * text: the frame is decoded leniently (the text runs up to its NUL padding).
 */
const ERROR_FRAME = /\x01\n?\x05\0{7}Error\0{3}[\s\S]{8}\x05\0{7}Error\0{3}[\s\S]{8}/g;

/** A little-endian u64 below 2^16 as it appears in the text: one or two bytes, then NULs. */
const SMALL_U64 = /^[\s\S]{1,2}\0{6}/;

function decodeErrorFrames(text: string): string {
  if (!text.includes('\x05\0')) return text;
  let out = '';
  let last = 0;
  for (const match of text.matchAll(ERROR_FRAME)) {
    out += text.slice(last, match.index);
    let pos = match.index + match[0].length;
    // The message, then NUL padding, numbers (position, trace count, trace lengths) and the
    // traces' texts, up to the end of the log line.
    const end = text.indexOf('\n', pos);
    const frame = text.slice(pos, end < 0 ? text.length : end);
    const texts: string[] = [];
    let i = 0;
    while (i < frame.length) {
      if (frame[i] === '\0') {
        i++;
        continue;
      }
      const rest = frame.slice(i);
      // A number only comes after NULs; the message itself starts the frame.
      const number = texts.length > 0 ? SMALL_U64.exec(rest) : null;
      if (number) {
        i += number[0].length;
        continue;
      }
      const stop = rest.indexOf('\0');
      texts.push(stop < 0 ? rest : rest.slice(0, stop));
      i += stop < 0 ? rest.length : stop;
    }
    out += texts.length > 0 ? `error: ${texts.join('\n')}` : 'error: (unreadable error from the builder)';
    pos += frame.length;
    last = pos;
  }
  return out + text.slice(last);
}

/** ANSI/VT escape sequences: CSI (colours, cursor moves), OSC (titles, links), and two-byte ones. */
const ANSI_ESCAPE = /\x1b\[[0-?]*[ -/]*[@-~]|\x9b[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x1b/g;
/** C0 controls except tab and newline, DEL and C1 controls. */
const CONTROL = /[\0-\x08\x0b-\x1f\x7f-\x9f]/g;

/** Terminal escapes and control bytes removed; `\r\n` and lone `\r` (progress lines) become `\n`. */
export function stripControls(text: string): string {
  return text
    .replace(ANSI_ESCAPE, '')
    .replace(/\r\n?/g, '\n')
    .replace(CONTROL, '');
}

/** A child process's stderr made safe to show: frames decoded, controls stripped, secrets redacted. */
export function cleanStderr(text: string): string {
  return redact(stripControls(decodeErrorFrames(text)));
}
