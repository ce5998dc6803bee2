// The `nonroot` meta-package with real clients, on the example set: containerd runs
// nonroot/shell/coreutils as uid 65532 (its name from /etc/passwd, its home and /tmp writable);
// `podman kube play` runs it in a pod whose securityContext says `runAsNonRoot: true`, with no
// runAsUser: the image's own user is what the pod runs as. Podman 4 does not enforce
// runAsNonRoot itself (it would run a root image too), so the test also makes the kubelet's
// check on what podman pulled: the image's User must be a numeric uid other than 0.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { startContainerd, ctrRun, type Containerd } from '../helpers/containerd.js';
import { CONTAINERS_CONF, onPath } from '../deploy/image.js';

const execFileP = promisify(execFile);
const IMAGE = 'nonroot/shell/coreutils';

/** What the kubelet checks for runAsNonRoot without runAsUser (verifyRunAsNonRoot): a numeric, non-zero uid. */
function kubeletAllowsNonRoot(user: string): string | null {
  const uid = user.split(':')[0]!;
  if (uid === '') return 'the image runs as root (no User)';
  if (!/^[0-9]+$/.test(uid)) return `the image has a non-numeric user (${uid}): the kubelet cannot verify it is not root`;
  return Number(uid) === 0 ? 'the image runs as uid 0' : null;
}

describe('nonroot images', () => {
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

  test('containerd runs nonroot/shell/coreutils as 65532, with its home and /tmp writable', async () => {
    const ref = `${r.host}/${IMAGE}:latest`;
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', ref], { timeoutMs: 300_000 });
    assert.equal((await ctrRun(c, ref, ['id', '-u'])).trim(), '65532');
    const out = await ctrRun(c, ref, ['bash', '-c', 'id -g; id -un; echo "$HOME"; touch "$HOME/file" /tmp/file && echo writable; touch /etc/x 2>/dev/null || echo "etc read-only to it"']);
    assert.deepEqual(out.trim().split('\n'), ['65532', 'nonroot', '/home/nonroot', 'writable', 'etc read-only to it']);
    // The plain image still runs as root.
    const plain = `${r.host}/shell/coreutils:latest`;
    await c.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'native', plain], { timeoutMs: 300_000 });
    assert.equal((await ctrRun(c, plain, ['id', '-u'])).trim(), '0');
  });

  test('podman kube play: a pod with runAsNonRoot: true runs it as 65532', { timeout: 600_000 }, async (t) => {
    if (!onPath('podman')) return t.skip('cannot run here: podman is not installed');
    const dir = await mkdtemp(path.join(tmpdir(), 'nixery-nonroot-kube-'));
    const conf = path.join(dir, 'containers.conf');
    await writeFile(conf, CONTAINERS_CONF);
    const env = { ...process.env, CONTAINERS_CONF: conf };
    const run = async (args: string[]) => {
      try {
        return (await execFileP('podman', args, { env, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 })).stdout;
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`podman ${args.join(' ')} failed: ${e.stderr || e.message}`);
      }
    };
    const name = `nonroot-${process.pid}`;
    const ref = `${r.host}/${IMAGE}:latest`;
    const manifest = path.join(dir, 'pod.yaml');
    await writeFile(
      manifest,
      `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
  containers:
    - name: main
      image: ${ref}
      command: ["bash", "-c", "id -u; id -un; echo $HOME; touch $HOME/f /tmp/f && echo writable"]
`,
    );
    t.after(async () => {
      await run(['kube', 'down', manifest]).catch(() => {});
      await run(['rmi', '--force', ref]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    });
    await run(['kube', 'play', '--replace', '--tls-verify=false', manifest]);
    const container = `${name}-main`;
    const until = Date.now() + 120_000;
    while ((await run(['inspect', '--format', '{{.State.Status}}', container])).trim() !== 'exited') {
      if (Date.now() > until) assert.fail(`the pod's container did not finish: ${await run(['logs', container]).catch((e: Error) => e.message)}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.equal((await run(['inspect', '--format', '{{.State.ExitCode}}', container])).trim(), '0');
    const logs = await execFileP('podman', ['logs', container], { env });
    assert.deepEqual(logs.stdout.trim().split('\n'), ['65532', 'nonroot', '/home/nonroot', 'writable']);
    // The kubelet's runAsNonRoot check on the image podman pulled.
    const user = (await run(['image', 'inspect', '--format', '{{.Config.User}}', ref])).trim();
    assert.equal(user, '65532:65532');
    assert.equal(kubeletAllowsNonRoot(user), null);
    assert.match(kubeletAllowsNonRoot('')!, /root/, 'a plain image would be refused');
  });
});
