// Image config through the build API and `meta.mainProgram`, over real Nix with containerd: an
// image built with a config is pulled by digest and runs with its entrypoint, cmd, env and
// working directory in effect; two registries on one storage, and one on a fresh storage, give
// the same digest; `hello` (which declares meta.mainProgram) runs hello with no command given.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startContainerd, ctrRun, type Containerd } from '../helpers/containerd.js';
import { accepted, finalStatus, postBuild } from '../helpers/build-api.js';
import type { BuildResult } from '../../src/service/build-tracker.js';

const BODY = {
  image: 'busybox:latest',
  config: {
    entrypoint: ['/bin/sh', '-c'],
    cmd: ['echo "$GREETING from $(id -u) in $(pwd)"; echo "PATH=$PATH"'],
    env: ['GREETING=hello from the config', 'PATH=/bin'],
    workingDir: '/tmp',
    user: '1000:1000',
  },
};

async function build(r: TestRegistry, body: unknown): Promise<BuildResult> {
  const status = await accepted(await postBuild(r, body));
  const done = status.state === 'succeeded' ? status : await finalStatus(r, status.id);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  return done.result!;
}

describe('image config with real Nix and containerd', () => {
  let r: TestRegistry;
  let c: Containerd;

  before(async () => {
    r = await startRegistry();
    c = await startContainerd();
  });
  after(async () => {
    await c?.stop();
    await r?.close();
  });

  test('containerd pulls the image by digest and runs it with its entrypoint, cmd, env and working directory', async () => {
    const result = await build(r, BODY);
    assert.equal(result.reference, `busybox@${result.digest}`);
    const ref = `${r.host}/${result.reference}`;
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    const out = await ctrRun(c, ref, []);
    assert.deepEqual(out.trim().split('\n'), ['hello from the config from 1000 in /tmp', 'PATH=/bin']);

    // The tag is the plain image: no entrypoint, root, PATH as always.
    const plain = `${r.host}/busybox:latest`;
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', plain], { timeoutMs: 300_000 });
    assert.equal((await ctrRun(c, plain, ['sh', '-c', 'echo "$(id -u) $GREETING|$PATH"'])).trim(), '0 |/bin:/usr/bin');
  });

  test('meta.mainProgram: hello runs with no command given', async () => {
    const ref = `${r.host}/hello:latest`;
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    assert.equal((await ctrRun(c, ref, [])).trim(), 'Hello, world!');
  });

  test('the same digest from a second registry on the same storage and from a fresh storage', async () => {
    const first = await build(r, BODY);
    const replica = await startRegistry({}, { storagePath: r.storagePath });
    try {
      const second = await build(replica, BODY);
      assert.equal(second.digest, first.digest);
      assert.equal(second.fromCache, true);
      const res = await fetch(`${replica.url}/v2/busybox/manifests/${first.digest}`, { method: 'HEAD' });
      assert.equal(res.status, 200);
    } finally {
      await replica.close();
    }
    const fresh = await startRegistry();
    try {
      const third = await build(fresh, BODY);
      assert.equal(third.fromCache, false);
      assert.equal(third.digest, first.digest);
    } finally {
      await fresh.close();
    }
  });
});
