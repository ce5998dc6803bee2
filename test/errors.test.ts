// The error classes are made from the table: each is a NixeryError of a catalogued kind, named,
// with its fields, and a client sees the table's code and status for it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as errors from '../src/errors.js';
import { ArchiveError, describeError, ERROR_CATALOGUE, FileChangedError, InvalidInputError, InvalidPopularityError, NixeryError, NixTimeoutError, PackagesNotFoundError, PlatformBuildError, StorageUnavailableError, TooManyRequestsError } from '../src/errors.js';

test('every exported error class is a named NixeryError of a catalogued kind', () => {
  const classes = Object.entries(errors).filter(([name, v]) => typeof v === 'function' && name.endsWith('Error') && name !== 'NixeryError' && (v as { prototype?: unknown }).prototype instanceof NixeryError);
  assert.ok(classes.length >= 30, `only ${classes.length} classes`);
  for (const [name, cls] of classes) {
    assert.equal((cls as { name: string }).name, name);
  }
  const e = new errors.BlobNotFoundError('sha256:00');
  assert.ok(e instanceof NixeryError && e instanceof Error && e instanceof errors.BlobNotFoundError);
  assert.ok(!(e instanceof errors.ManifestNotFoundError));
  assert.equal(e.name, 'BlobNotFoundError');
  assert.equal(e.message, 'blob unknown to registry: sha256:00');
  assert.deepEqual([describeError(e).entry.code, e.status], ['BLOB_UNKNOWN', 404]);
  assert.match(e.stack ?? '', /BlobNotFoundError: blob unknown/);
});

test('fields, kinds taken from arguments, and parents', () => {
  const t = new NixTimeoutError('EVAL_TIMEOUT', 'evaluating hello', 3);
  assert.deepEqual([t.kind, t.seconds, t.setting, t.status], ['EVAL_TIMEOUT', 3, 'NIXERY_EVAL_TIMEOUT', 504]);
  assert.deepEqual(t.detail, { timeoutSeconds: 3, setting: 'NIXERY_EVAL_TIMEOUT' });
  assert.deepEqual(new PackagesNotFoundError(['a', 'b']).packages, ['a', 'b']);
  const r = new TooManyRequestsError('slow down', 7);
  assert.equal(describeError(r).retryAfterSeconds, 7);
  const p = new PlatformBuildError([{ platform: 'linux/arm64', cause: r }]);
  assert.deepEqual([p.kind, p.status, describeError(p).retryAfterSeconds, p.platforms], ['TOOMANYREQUESTS', 429, 7, ['linux/arm64']]);
  const f = new FileChangedError('/nix/store/x', 'size changed');
  assert.ok(f instanceof ArchiveError && f instanceof NixeryError);
  assert.equal(f.path, '/nix/store/x');
  assert.equal(f.name, 'FileChangedError');
  assert.ok(new InvalidPopularityError('bad') instanceof InvalidInputError);
});

test('a storage failure says why in public words and keeps key and path for the log', () => {
  const cause = Object.assign(new Error('ENOSPC: no space left on device, write /srv/secret/blobs/x'), { code: 'ENOSPC' });
  const e = new StorageUnavailableError('filesystem', 'write', 'blobs/sha256/ab', cause);
  assert.equal(e.message, 'storage is unavailable: the storage device is full (ENOSPC) (write)');
  assert.ok(!e.message.includes('/srv') && !e.message.includes('blobs/'));
  assert.match(e.internal ?? '', /filesystem: write blobs\/sha256\/ab failed: ENOSPC/);
  assert.equal(e.reason, 'the storage device is full (ENOSPC)');
  assert.equal(describeError(e).entry, ERROR_CATALOGUE.STORAGE_UNAVAILABLE);
});
