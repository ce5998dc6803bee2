// The build API (/api/v1/builds) as a client uses it: start a build, read its status and its
// event stream, and check OCI errors. Shared by the build API tests on the stand-in and on Nix.

import assert from 'node:assert/strict';
import type { BuildStatus } from '../../src/service/build-tracker.js';

/** A registry to talk to: its base URL. */
type TestRegistry = { url: string };

const JSON_TYPE = { 'Content-Type': 'application/json' };

export async function postBuild(r: TestRegistry, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${r.url}/api/v1/builds`, { method: 'POST', headers: { ...JSON_TYPE, ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

export async function accepted(res: Response): Promise<BuildStatus> {
  const text = await res.text();
  assert.equal(res.status, 202, text);
  const status = JSON.parse(text) as BuildStatus;
  assert.equal(res.headers.get('location'), `/api/v1/builds/${status.id}`);
  return status;
}

export async function ociError(res: Response, status: number, code: string, message?: RegExp): Promise<string> {
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.equal(res.headers.get('content-type'), 'application/json');
  const body = JSON.parse(text) as { errors: Array<{ code: string; message: string }> };
  assert.equal(body.errors.length, 1);
  assert.equal(body.errors[0]!.code, code, text);
  if (message) assert.match(body.errors[0]!.message, message);
  return body.errors[0]!.message;
}

/** Reads a build's event stream to its end: every `status` event, parsed. */
export async function readEvents(r: TestRegistry, id: string, headers: Record<string, string> = {}): Promise<{ events: BuildStatus[]; response: Response }> {
  const response = await fetch(`${r.url}/api/v1/builds/${id}/events`, { headers });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  const text = await response.text(); // the server ends the stream after the final state
  const events: BuildStatus[] = [];
  for (const block of text.split('\n\n')) {
    if (block.trim() === '' || block.startsWith(':')) continue;
    const lines = block.split('\n');
    assert.equal(lines[0], 'event: status', block);
    assert.ok(lines[1]!.startsWith('data: '), block);
    events.push(JSON.parse(lines[1]!.slice('data: '.length)) as BuildStatus);
  }
  return { events, response };
}

export async function statusOf(r: TestRegistry, id: string): Promise<BuildStatus> {
  const res = await fetch(`${r.url}/api/v1/builds/${id}`);
  assert.equal(res.status, 200);
  return (await res.json()) as BuildStatus;
}

export async function finalStatus(r: TestRegistry, id: string): Promise<BuildStatus> {
  const { events } = await readEvents(r, id);
  return events.at(-1)!;
}
