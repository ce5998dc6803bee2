// The Kubernetes manifests run (issue 19, point 4): `podman kube play` of the rendered `single`
// overlay (Deployment, ConfigMap, Secret, PVC) with the locally built image, changed only as an
// operator's own overlay would: the example package set instead of a channel (no internet here),
// the image's version tag, a credential in the Secret, and a hostPort to reach the pod. Through the pod's published port skopeo
// pulls shell/hello, containerd runs it; the registry's process in the pod is not uid 0 and its
// root filesystem is read-only; `podman kube down` removes the pod.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { randomBytes } from 'node:crypto';
import { buildImage, cannotBuild, CONTAINERS_CONF, onPath, ROOT } from './image.js';
import { freePort } from '../helpers/net.js';
import { startContainerd, ctrRun } from '../helpers/containerd.js';

const execFileP = promisify(execFile);

test('podman kube play runs the single overlay: pull through it, run the image, kube down cleans up', { timeout: 2_400_000 }, async (t) => {
  const reason = cannotBuild() ?? (onPath('kubectl') ? null : 'kubectl is not installed');
  if (reason) return t.skip(`cannot run here: ${reason}`);
  const image = await buildImage();
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-kube-play-'));
  const conf = path.join(dir, 'containers.conf');
  await writeFile(conf, CONTAINERS_CONF);
  const env = { ...process.env, CONTAINERS_CONF: conf };
  const run = async (cmd: string, args: string[], timeout = 300_000) => {
    try {
      return (await execFileP(cmd, args, { env, timeout, maxBuffer: 64 * 1024 * 1024 })).stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}`);
    }
  };

  // The operator's overlay on top of `single`.
  const port = await freePort();
  const credential = `kube-play-${randomBytes(12).toString('hex')}`;
  const prefix = `t${process.pid}-`;
  await cp(path.join(ROOT, 'deploy/kubernetes'), path.join(dir, 'kubernetes'), { recursive: true });
  const overlay = path.join(dir, 'kubernetes/overlays/test');
  await mkdir(overlay);
  await writeFile(
    path.join(overlay, 'kustomization.yaml'),
    `resources: ["../single"]
namePrefix: ${prefix}
images:
  - name: localhost/nixery-ts
    newTag: "${image.version}"
configMapGenerator:
  - name: nixery-config
    behavior: merge
    literals:
      - NIXERY_CHANNEL=
      - NIXERY_PKGS_PATH=/app/examples/pkgs
      - NIX_CONFIG=substituters =
secretGenerator:
  - name: nixery-secrets
    behavior: merge
    literals:
      - AWS_SECRET_ACCESS_KEY=${credential}
patches:
  - target: { kind: Deployment }
    patch: |-
      - op: add
        path: /spec/template/spec/containers/0/ports/0/hostPort
        value: ${port}
`,
  );
  const rendered = await run('kubectl', ['kustomize', overlay]);
  assert.match(rendered, /readOnlyRootFilesystem: true/);
  // Podman 4.3 (Debian 12's) stores a Secret it plays as YAML, which its own env lookup then
  // cannot read ("not valid JSON"); a podman secret holding the Secret's data (name → base64) is
  // what it reads. So the Secrets become podman secrets, and the rest is played as rendered.
  const docs = parseAllDocuments(rendered).map((d) => d.toJS() as { kind: string; metadata: { name: string }; data?: Record<string, string> });
  const secrets = docs.filter((d) => d.kind === 'Secret');
  assert.deepEqual(secrets.map((s) => s.metadata.name.replace(/-[a-z0-9]{10}$/, '')), [`${prefix}nixery-secrets`]);
  const manifest = path.join(dir, 'rendered.yaml');
  await writeFile(manifest, rendered.split(/^---$/m).filter((doc) => !/^kind: Secret$/m.test(doc)).join('---'));
  t.after(async () => {
    for (const secret of secrets) await run('podman', ['secret', 'rm', secret.metadata.name]).catch(() => {});
  });
  for (const secret of secrets) {
    const file = path.join(dir, `${secret.metadata.name}.json`);
    await writeFile(file, JSON.stringify(secret.data ?? {}), { mode: 0o600 });
    await run('podman', ['secret', 'create', secret.metadata.name, file]);
  }

  const volume = `${prefix}nixery-storage`;
  t.after(async () => {
    await run('podman', ['kube', 'down', manifest]).catch(() => {});
    await run('podman', ['volume', 'rm', '--force', volume]).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  const played = await run('podman', ['kube', 'play', '--replace', manifest], 600_000);
  // "Pod:\n<id>\nContainer:\n<id>": podman names a Deployment's pod <name>-pod-0.
  const podId = /Pod:\s+([0-9a-f]{64})/.exec(played)?.[1];
  const container = /Container:\s+([0-9a-f]{64})/.exec(played)?.[1];
  assert.ok(podId && container, played);

  const base = `http://127.0.0.1:${port}`;
  const until = Date.now() + 180_000;
  let last = '';
  for (;;) {
    const res = await fetch(`${base}/readyz`).catch((e: Error) => e);
    if (!(res instanceof Error) && res.ok) break;
    last = res instanceof Error ? res.message : `${res.status} ${await res.text()}`;
    if (Date.now() > until) {
      const logs: string = await run('podman', ['logs', container!]).catch((e: Error) => e.message);
      assert.fail(`the pod did not become ready (${last}):\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 1000));
  }

  // The registry's process runs as uid 65532, on a read-only root filesystem.
  assert.equal((await run('podman', ['inspect', '--format', '{{.Pod}}', container])).trim(), podId);
  const pid = (await run('podman', ['inspect', '--format', '{{.State.Pid}}', container])).trim();
  const uids = (await readFile(`/proc/${pid}/status`, 'utf8')).match(/^Uid:\s+(.*)$/m)![1]!.split(/\s+/);
  assert.deepEqual(uids, ['65532', '65532', '65532', '65532']);
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean);
  for (const child of children) assert.match(await readFile(`/proc/${child}/status`, 'utf8'), /^Uid:\s+65532\s/m);
  assert.equal((await run('podman', ['inspect', '--format', '{{.HostConfig.ReadonlyRootfs}}', container])).trim(), 'true');
  // The Secret's credential reached the registry's environment, and none of its log lines.
  assert.ok((await readFile(`/proc/${pid}/environ`, 'latin1')).split('\0').includes(`AWS_SECRET_ACCESS_KEY=${credential}`));

  // skopeo pulls through the pod's port; containerd runs what it pulled.
  const archive = path.join(dir, 'hello.tar');
  await run('skopeo', ['copy', '--src-tls-verify=false', `docker://127.0.0.1:${port}/shell/hello`, `docker-archive:${archive}:localhost/shell/hello:latest`], 900_000);
  const c = await startContainerd();
  t.after(() => c.stop());
  await c.ctr(['images', 'import', '--snapshotter', 'native', archive]);
  assert.equal((await ctrRun(c, 'localhost/shell/hello:latest', ['hello'])).trim(), 'Hello, world!');

  assert.ok(!(await run('podman', ['logs', container])).includes(credential), 'the credential is in the logs');
  await run('podman', ['kube', 'down', manifest]);
  await assert.rejects(run('podman', ['pod', 'exists', podId]));
  await assert.rejects(run('podman', ['container', 'exists', container]));
});
