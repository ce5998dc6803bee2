// `nixery scrub` on every backend, with real damage to what a registry built: a flipped byte in
// a layer and in a manifest blob, a truncated layer, a damaged build record, a deleted config
// blob. Scrub must name exactly what is bad and why, exit 1, remove it with --repair, be clean
// the second time, and the registry must then rebuild the images with the same digests and
// serve blobs that match them.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { scrubStorage, type ScrubReport } from '../../src/builder/scrub.js';
import { blobKey } from '../../src/builder/layout.js';
import { decodeRecord, encodeRecord } from '../../src/builder/records.js';
import { MEDIA_TYPES, sha256Digest } from '../../src/manifest/manifest.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import type { Storage } from '../../src/storage/storage.js';
import type { TestRegistry } from '../helpers/registry.js';
import { BACKENDS, openBackend, stopBackendServers, type TestBackend } from './backends.js';

after(stopBackendServers);

const CLI = path.resolve('dist/src/cli.js');
const A = 'shell/hello';
const B = 'jq/tree';

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
interface StoredRecord {
  config: Descriptor;
  oci: Descriptor;
  docker: Descriptor;
  layers: Array<{ digest: string; size: number; diffId: string }>;
}

function runCli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** The OCI and Docker manifest digests a registry serves for an image. */
async function pull(r: TestRegistry, image: string): Promise<{ oci: string; docker: string }> {
  const oci = await fetch(`${r.url}/v2/${image}/manifests/latest`);
  assert.equal(oci.status, 200, `${image}: ${await oci.clone().text()}`);
  await oci.arrayBuffer();
  const docker = await fetch(`${r.url}/v2/${image}/manifests/latest`, { headers: { Accept: MEDIA_TYPES.dockerManifest } });
  assert.equal(docker.status, 200);
  await docker.arrayBuffer();
  return { oci: oci.headers.get('docker-content-digest')!, docker: docker.headers.get('docker-content-digest')! };
}

/** Fetches an image's manifest by digest, then its config and every layer, checking each against its digest. */
async function checkServed(r: TestRegistry, image: string, digest: string): Promise<void> {
  const res = await fetch(`${r.url}/v2/${image}/manifests/${digest}`);
  assert.equal(res.status, 200, `${image}@${digest}`);
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(sha256Digest(bytes), digest);
  const manifest = JSON.parse(bytes.toString()) as { config: Descriptor; layers: Descriptor[] };
  for (const d of [manifest.config, ...manifest.layers]) {
    const blob = await fetch(`${r.url}/v2/${image}/blobs/${d.digest}`);
    assert.equal(blob.status, 200, d.digest);
    const body = Buffer.from(await blob.arrayBuffer());
    assert.equal(body.length, d.size);
    assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, d.digest);
  }
}

async function records<T>(storage: Storage, prefix: string): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  for await (const o of storage.list(prefix)) {
    const decoded = decodeRecord<T>((await storage.read(o.key))!);
    assert.ok(decoded.ok, o.key);
    out.set(o.key, decoded.record);
  }
  return out;
}

function findings(report: ScrubReport): Map<string, string> {
  return new Map(report.bad.map((f) => [f.key, f.why]));
}

/** `bad <key>: <why>` lines of the CLI's text output. */
function badLines(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^bad (\S+): (.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

function assertFindings(actual: Map<string, string>, expected: Map<string, RegExp>): void {
  assert.deepEqual([...actual.keys()].sort(), [...expected.keys()].sort());
  for (const [key, why] of expected) assert.match(actual.get(key)!, why, key);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function scrubScenario(backend: TestBackend): Promise<void> {
  const { storage } = backend;
  // Two images sharing some layers, built by a registry on this storage.
  const r1 = await backend.startRegistry();
  let before: { a: { oci: string; docker: string }; b: { oci: string; docker: string } };
  try {
    before = { a: await pull(r1, A), b: await pull(r1, B) };
  } finally {
    await r1.close();
  }
  const clean = await scrubStorage(storage, { repair: false });
  assert.deepEqual(clean.bad, []);
  assert.equal(clean.checked.manifests, 2);
  assert.ok(clean.checked.blobs >= 10 && clean.checked.builds >= 4, JSON.stringify(clean.checked));

  const manifests = await records<StoredRecord>(storage, 'manifests');
  const keyOf = (oci: string) => [...manifests].find(([, rec]) => rec.oci.digest === oci)![0];
  const [aKey, bKey] = [keyOf(before.a.oci), keyOf(before.b.oci)];
  const [a, b] = [manifests.get(aKey)!, manifests.get(bKey)!];
  const buildKeys = new Map([...(await records<{ digest: string }>(storage, 'builds'))].map(([key, rec]) => [rec.digest, key]));
  const bDigests = new Set(b.layers.map((l) => l.digest));
  const aDigests = new Set(a.layers.map((l) => l.digest));
  const largest = (ls: StoredRecord['layers']) => [...ls].sort((x, y) => y.size - x.size)[0]!;
  const la = largest(a.layers.filter((l) => !bDigests.has(l.digest)));
  const lb = largest(b.layers.filter((l) => !aDigests.has(l.digest)));
  const ls = a.layers.find((l) => bDigests.has(l.digest)) ?? a.layers.find((l) => l.digest !== la.digest)!;

  // The damage.
  await backend.flipByte(blobKey(la.digest), Math.floor(la.size / 2));
  await backend.flipByte(blobKey(b.docker.digest), Math.floor(b.docker.size / 2));
  await backend.truncate(blobKey(lb.digest), Math.floor(lb.size / 2));
  const lsRecord = buildKeys.get(ls.digest)!;
  const raw = (await storage.read(lsRecord))!.toString();
  // The last digit of its size: still JSON, but not what the checksum covers.
  const sizeAt = raw.indexOf('"size":') + '"size":'.length;
  await backend.flipByte(lsRecord, sizeAt + /^\d+/.exec(raw.slice(sizeAt))![0].length - 1);
  await storage.delete(blobKey(a.config.digest));

  const expected = new Map<string, RegExp>([
    [blobKey(la.digest), /^its content hashes to sha256:[0-9a-f]{64}$/],
    [blobKey(b.docker.digest), /^its content hashes to sha256:[0-9a-f]{64}$/],
    [blobKey(lb.digest), /^its content hashes to sha256:[0-9a-f]{64}$/],
    [blobKey(a.oci.digest), new RegExp(`^its config ${esc(a.config.digest)} is missing$`)],
    [blobKey(a.docker.digest), new RegExp(`^its config ${esc(a.config.digest)} is missing$`)],
    [blobKey(b.oci.digest), new RegExp(`^its layer \\d+ ${esc(lb.digest)} is bad$`)],
    [buildKeys.get(la.digest)!, new RegExp(`^its layer ${esc(la.digest)} is bad$`)],
    [buildKeys.get(lb.digest)!, new RegExp(`^its layer ${esc(lb.digest)} is bad$`)],
    [lsRecord, /^unreadable: its checksum does not match its content$/],
    [aKey, new RegExp(`^its config ${esc(a.config.digest)} is missing$`)],
    [bKey, new RegExp(`^its OCI manifest ${esc(b.oci.digest)} is bad$`)],
  ]);

  // The CLI as a process: one line per bad object, a summary, exit status 1.
  const found = await runCli(['scrub'], backend.env);
  assert.equal(found.code, 1, found.stderr);
  assertFindings(badLines(found.stdout), expected);
  assert.match(found.stdout, /^scrub: checked \d+ blobs \(\d+ bytes\), \d+ build records, 2 manifest records: 11 bad$/m);

  // Repair removes exactly what is bad (the deleted config blob was already gone).
  let repaired: ScrubReport;
  if (backend.name === 'filesystem') {
    const res = await runCli(['scrub', '--repair', '--json'], backend.env);
    assert.equal(res.code, 1, res.stderr);
    repaired = JSON.parse(res.stdout) as ScrubReport;
  } else {
    repaired = await scrubStorage(storage, { repair: true });
  }
  assertFindings(findings(repaired), expected);
  assert.deepEqual([...repaired.removed].sort(), [...expected.keys()].sort());
  for (const key of expected.keys()) assert.equal(await storage.stat(key), null, key);
  // Blobs went before the records that use them.
  const firstRecord = repaired.removed.findIndex((k) => !k.startsWith('blobs/'));
  assert.ok(repaired.removed.slice(firstRecord).every((k) => !k.startsWith('blobs/')));

  const second = await runCli(['scrub'], backend.env);
  assert.equal(second.code, 0, second.stdout + second.stderr);
  assert.match(second.stdout, /: 0 bad$/m);

  // A registry rebuilds both images, with the same digests, repacking only the three layers
  // whose blob or build record went, and serves blobs that match their digests.
  const r2 = await backend.startRegistry();
  try {
    const after = { a: await pull(r2, A), b: await pull(r2, B) };
    assert.deepEqual(after, before);
    assert.equal(r2.app.builder.buildsRun, 2);
    assert.equal(r2.app.builder.layers.packed, 3);
    await checkServed(r2, A, after.a.oci);
    await checkServed(r2, A, after.a.docker);
    await checkServed(r2, B, after.b.docker);
  } finally {
    await r2.close();
  }
  const last = await scrubStorage(storage, { repair: false });
  assert.deepEqual(last.bad, []);
  assert.equal(last.checked.manifests, 2);
}

for (const name of BACKENDS) {
  test(`scrub finds real damage on ${name} storage, --repair removes it, and the registry rebuilds the images`, async () => {
    const backend = await openBackend(name);
    try {
      await scrubScenario(backend);
    } finally {
      await backend.close();
    }
  });
}

test('scrub: a manifest blob that lost its content type, a blob that is no manifest, staging leftovers and foreign keys', async () => {
  const backend = await openBackend('filesystem');
  try {
    const r1 = await backend.startRegistry();
    let digests: { oci: string; docker: string };
    try {
      digests = await pull(r1, A);
    } finally {
      await r1.close();
    }
    const root = backend.env.STORAGE_PATH!;
    const recordKey = [...(await records<StoredRecord>(backend.storage, 'manifests')).keys()][0]!;
    // The content type lives in a sidecar file: without it the manifest cannot be served by digest.
    await fs.rm(path.join(root, '.meta', blobKey(digests.oci)));
    const notAManifest = Buffer.from('{"schemaVersion":2}');
    await backend.storage.put(blobKey(sha256Digest(notAManifest)), notAManifest, { contentType: MEDIA_TYPES.ociManifest });
    const garbage = Buffer.from('{"digest":"sha256:nope"}');
    await backend.storage.put('builds/foreign.json', encodeRecord(JSON.parse(garbage.toString())));
    await backend.storage.put('blobs/README', 'not ours');
    await backend.storage.put('staging/leftover', Buffer.alloc(1000));
    const hoursAgo = new Date(Date.now() - 2 * 3600_000);
    await fs.utimes(path.join(root, 'staging/leftover'), hoursAgo, hoursAgo);
    await backend.storage.put('staging/in-progress', Buffer.alloc(10));

    // A new process would not have the sidecar cached: scrub as one would.
    const storage = new FilesystemStorage(root);
    const lines: string[] = [];
    const report = await scrubStorage(storage, { repair: false, log: (l) => lines.push(l) });
    assertFindings(
      findings(report),
      new Map([
        [blobKey(digests.oci), new RegExp(`^stored with content type \\(none\\), but ${esc(recordKey)} uses it as ${esc(MEDIA_TYPES.ociManifest)}$`)],
        [recordKey, new RegExp(`^its oci manifest ${esc(digests.oci)} is bad$`)],
        [blobKey(sha256Digest(notAManifest)), /^stored as application\/vnd\.oci\.image\.manifest\.v1\+json but it is not an image manifest$/],
        ['builds/foreign.json', /^it is not a build record \(digest, size, diffId\)$/],
      ]),
    );
    assert.deepEqual(
      report.notes.map((n) => n.key),
      ['blobs/README', 'staging/leftover'],
    );
    assert.match(report.notes[1]!.why, /^leftover upload of 1000 bytes, last written .* \(nixery gc removes it\)$/);
    assert.equal(lines.filter((l) => l.startsWith('bad ')).length, 4);

    const repaired = await scrubStorage(storage, { repair: true });
    assert.equal(repaired.removed.length, 4);
    assert.ok(await storage.stat('blobs/README'), 'foreign keys are left alone');
    assert.deepEqual((await scrubStorage(storage, { repair: false })).bad, []);

    const r2 = await backend.startRegistry();
    try {
      assert.deepEqual(await pull(r2, A), digests);
      await checkServed(r2, A, digests.oci);
    } finally {
      await r2.close();
    }
  } finally {
    await backend.close();
  }
});
