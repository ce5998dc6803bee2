// The signature store on its own: the same artifact from every instance once a record is stored;
// racing instances over a backend with an atomic create (filesystem) agree at once, and over one
// without it (put, then read back) every instance serves the record that stayed once the race
// is over, and whatever was served meanwhile verifies too.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SigningKey } from '../../src/signing/key.js';
import { SignatureStore } from '../../src/signing/store.js';
import { SIGNATURE_ANNOTATION, type SignatureArtifact } from '../../src/signing/cosign.js';
import { FilesystemStorage } from '../../src/storage/filesystem.js';
import type { Storage } from '../../src/storage/storage.js';
import { blobKey } from '../../src/builder/layout.js';

const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const subject = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${createHash('sha256').update('m').digest('hex')}`, size: 1 };

function verifies(a: SignatureArtifact, key: SigningKey): boolean {
  const layer = (JSON.parse(a.manifest.bytes.toString()) as { layers: Array<{ annotations: Record<string, string> }> }).layers[0]!;
  return verify('sha256', a.payload.bytes, createPublicKey(key.publicKeyPem), Buffer.from(layer.annotations[SIGNATURE_ANNOTATION]!, 'base64'));
}

/** The same backend on a server that ignores conditional writes (as s3rver does): create is a put. */
function withoutCreate(s: FilesystemStorage): Storage {
  return {
    name: s.name,
    put: (k, d, o) => s.put(k, d, o),
    writer: (k, o) => s.writer(k, o),
    get: (k, r) => s.get(k, r),
    open: (k, r, o) => s.open(k, r, o),
    read: (k) => s.read(k),
    stat: (k) => s.stat(k),
    move: (a, b) => s.move(a, b),
    list: (p) => s.list(p),
    delete: (k) => s.delete(k),
    createIfAbsent: async (k, d) => {
      await s.put(k, d);
      return 'ignored-condition';
    },
    replaceIfVersion: (k, d, v) => s.replaceIfVersion(k, d, v),
    deleteIfVersion: (k, v) => s.deleteIfVersion(k, v),
    readVersioned: (k) => s.readVersioned(k),
  };
}

for (const atomic of [true, false]) {
  test(`instances racing to sign one manifest ${atomic ? 'with an atomic create agree at once' : 'without an atomic create converge on the record that stayed'}`, async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'nixery-sig-store-'));
    try {
      const key = SigningKey.load(pem);
      const backend = (): Storage => (atomic ? new FilesystemStorage(dir) : withoutCreate(new FilesystemStorage(dir)));
      const stores = Array.from({ length: 6 }, () => new SignatureStore(backend(), key, 'registry.example.test', blobKey));
      const served = await Promise.all(stores.map((s) => s.signature('shell/hello', subject)));
      for (const a of served) assert.ok(verifies(a, key));
      const after = await new SignatureStore(backend(), key, 'registry.example.test', blobKey).signature('shell/hello', subject);
      if (atomic) {
        for (const a of served) assert.deepEqual(a.manifest.bytes, served[0]!.manifest.bytes);
        assert.equal(stores.reduce((n, s) => n + s.stats.signed, 0), 1);
      }
      assert.ok(served.some((a) => a.manifest.bytes.equals(after.manifest.bytes)), 'the record that stayed is one that was served');
      // Every later reader gets the stored one, byte for byte.
      for (let i = 0; i < 3; i++) assert.deepEqual((await new SignatureStore(backend(), key, 'registry.example.test', blobKey).signature('shell/hello', subject)).manifest.bytes, after.manifest.bytes);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
