// The registry's exits are redacted whatever reaches them: an error body carrying a configured
// secret (in any form) and an index page whose source or recent errors name one send `***`.

import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { NixFailedError, SourceUnavailableError } from '../../src/errors.js';
import { sendError, type RequestContext } from '../../src/registry/http.js';
import { renderIndexPage } from '../../src/registry/index-page.js';
import { learnSettingSecrets } from '../../src/secrets.js';

const TOKEN = 'Edge-Token-<&"31>';
const URL_WITH_TOKEN = `https://nixery:${encodeURIComponent(TOKEN)}@git.example.org/pkgs.git`;

before(() => {
  learnSettingSecrets({ NIXERY_PKGS_REPO: URL_WITH_TOKEN });
});

async function errorBody(err: unknown): Promise<{ status: number; body: string }> {
  const server = http.createServer((req, res) => {
    const ctx: RequestContext = { req, res, path: req.url ?? '/', id: 'test-1', log: {} };
    sendError(ctx, err);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    return { status: res.status, body: await res.text() };
  } finally {
    server.close();
  }
}

test('an error body never carries a learned secret, raw, encoded or inside a URL', async () => {
  const cases: unknown[] = [
    new NixFailedError('realising hello', `fetching ${URL_WITH_TOKEN} failed; token was ${TOKEN}`, 1),
    new SourceUnavailableError(`cannot reach ${encodeURIComponent(TOKEN)}`),
  ];
  for (const err of cases) {
    const { status, body } = await errorBody(err);
    assert.ok(status >= 500);
    assert.ok(!body.includes('Edge-Token'), body);
    const message = (JSON.parse(body) as { errors: Array<{ message: string }> }).errors[0]!.message;
    assert.match(message, /\*\*\*/);
  }
  const { body } = await errorBody(new NixFailedError('x', `see ${URL_WITH_TOKEN}`, 1));
  assert.match(body, /see https:\/\/\*\*\*@git\.example\.org\/pkgs\.git/);
});

test('the index page shows the source and recent errors without the secret', () => {
  const page = renderIndexPage({
    host: 'registry.example.org',
    source: `git repository ${URL_WITH_TOKEN}`,
    revision: null,
    errors: [{ image: 'hello:latest', at: '2024-01-01T00:00:00Z', message: `auth failed with ${TOKEN}` }],
    version: 'test',
  });
  assert.ok(!page.includes('Edge-Token'), page);
  assert.match(page, /git repository https:\/\/\*\*\*@git\.example\.org\/pkgs\.git/);
  assert.match(page, /auth failed with \*\*\*/);
});
