// Signatures kept in storage, one per (signed manifest, repository reference, key):
// `signatures/sha256/<subject hex>/<sha256 of key fingerprint and reference>.json`, a small JSON
// record with the signature and the public key that checks it. From a record the payload, the
// config and the signature manifest follow byte for byte (cosign.ts); they are also written as
// ordinary blobs (`blobs/sha256/…`) so clients fetch them like any blob or manifest by digest.
//
// Why stored: an ECDSA signature is random, so two replicas signing the same manifest would serve
// two different signature manifests. The first writer wins, and every replica serves its record:
// - the record is written with the backend's conditional create (`createIfAbsent`: link(2) on a
//   filesystem, `ifGenerationMatch=0` on GCS, `If-None-Match: *` on S3), so exactly one record
//   is ever written; a replica that loses the race reads and serves the winner's;
// - every writer reads its record back: on a server that ignores conditional writes (the
//   startup probe warns of it) the later write stays, and a replica that read back before it
//   may have served the earlier signature for a moment. Both signatures are valid (same key,
//   same payload), so clients verify either; from then on every replica reads the one that stayed.
// A record whose signature does not verify (damaged bytes, another key) is not served: it is
// replaced by a fresh signature.

import { createHash, createPublicKey, verify } from 'node:crypto';
import type { Storage } from '../storage/storage.js';
import { LruCache } from '../util/lru.js';
import { SingleFlight } from '../util/singleflight.js';
import { signatureArtifact, simpleSigningPayload, type Descriptor, type SignatureArtifact } from './cosign.js';
import type { SigningKey } from './key.js';

export const SIGNATURES_PREFIX = 'signatures/';
const KEY_PATTERN = /^signatures\/sha256\/([a-f0-9]{64})\/[a-f0-9]{64}\.json$/;

/** What a stored signature record holds. */
export interface SignatureRecord {
  /** The signed manifest. */
  subject: Descriptor;
  /** HOST/NAME, the payload's docker-reference. */
  reference: string;
  /** SubjectPublicKeyInfo PEM of the key that signed. */
  publicKey: string;
  /** base64 of the signature over the payload. */
  signature: string;
}

const sha256Hex = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

export function signatureRecordKey(subjectDigest: string, reference: string, keyFingerprint: string): string {
  return `${SIGNATURES_PREFIX}sha256/${subjectDigest.slice('sha256:'.length)}/${sha256Hex(`${keyFingerprint}\n${reference}`)}.json`;
}

/** The digest of the manifest a record key's signature is for, or undefined for another key. */
export function subjectOfRecordKey(key: string): string | undefined {
  const m = KEY_PATTERN.exec(key);
  return m ? `sha256:${m[1]}` : undefined;
}

/**
 * A stored record, checked: it parses, its key matches its content, and its signature verifies
 * with its public key over the payload it stands for. The artifact (payload, config, manifest)
 * comes with it.
 */
export function readRecord(key: string, raw: Buffer): { ok: true; record: SignatureRecord; artifact: SignatureArtifact } | { ok: false; why: string } {
  let record: SignatureRecord;
  try {
    record = JSON.parse(raw.toString('utf8')) as SignatureRecord;
  } catch {
    return { ok: false, why: 'it is not JSON' };
  }
  const { subject, reference, publicKey, signature } = record ?? {};
  if (typeof subject?.digest !== 'string' || typeof subject.mediaType !== 'string' || typeof subject.size !== 'number' || typeof reference !== 'string' || typeof publicKey !== 'string' || typeof signature !== 'string') {
    return { ok: false, why: 'it lacks a field' };
  }
  let pub;
  try {
    pub = createPublicKey(publicKey);
  } catch {
    return { ok: false, why: 'its public key does not parse' };
  }
  const fingerprint = sha256Hex(pub.export({ type: 'spki', format: 'der' }));
  if (signatureRecordKey(subject.digest, reference, fingerprint) !== key) return { ok: false, why: 'it is stored under another key than its content says' };
  const payload = simpleSigningPayload(reference, subject.digest);
  if (!verify(pub.asymmetricKeyType === 'ed25519' ? null : 'sha256', payload, pub, Buffer.from(signature, 'base64'))) return { ok: false, why: 'its signature does not verify' };
  return { ok: true, record, artifact: signatureArtifact(payload, signature, subject) };
}

/** The three blobs of a signature, as storage keeps them: content-addressed, with their types. */
export function artifactBlobs(artifact: SignatureArtifact): Array<{ digest: string; mediaType: string; bytes: Buffer }> {
  return [artifact.payload, artifact.config, artifact.manifest].map((b) => ({ digest: b.descriptor.digest, mediaType: b.descriptor.mediaType, bytes: b.bytes }));
}

/** How long a signature found in storage is served from memory before storage is asked again. */
const REVALIDATE_MS = 10_000;

export class SignatureStore {
  private readonly memo = new LruCache<string, { artifact: SignatureArtifact; checkedAt: number }>(4096);
  private readonly flights = new SingleFlight<string, SignatureArtifact>();
  /** Signatures made here (a new record written), and records found damaged and replaced. */
  readonly stats = { signed: 0, damaged: 0 };

  /** The key's algorithm and the SHA-256 of its public key (what operators distribute). */
  get keyInfo(): { algorithm: string; fingerprint: string } {
    return { algorithm: this.key.algorithm, fingerprint: `sha256:${this.key.fingerprint}` };
  }

  constructor(
    private readonly storage: Storage,
    private readonly key: SigningKey,
    /** NIXERY_PUBLIC_HOST: host[:port] clients pull from. */
    readonly publicHost: string,
    /** Where blobs live (builder/layout.ts's blobKey; passed in, the builder sits above). */
    private readonly blobKey: (digest: string) => string,
  ) {}

  /** HOST/NAME: the identity a signature for repository `name` vouches for. */
  reference(name: string): string {
    return `${this.publicHost}/${name}`;
  }

  /** The signature of `subject` as repository `name`: the stored one, else made and stored (first writer wins). */
  signature(name: string, subject: Descriptor): Promise<SignatureArtifact> {
    const reference = this.reference(name);
    const key = signatureRecordKey(subject.digest, reference, this.key.fingerprint);
    const known = this.memo.get(key);
    if (known && Date.now() - known.checkedAt < REVALIDATE_MS) return Promise.resolve(known.artifact);
    return this.flights.run(key, async () => {
      const artifact = await this.load(key, reference, subject);
      await this.storeBlobs(artifact);
      this.memo.set(key, { artifact, checkedAt: Date.now() });
      return artifact;
    }).promise;
  }

  private async load(key: string, reference: string, subject: Descriptor): Promise<SignatureArtifact> {
    const stored = await this.readStored(key);
    if (stored) return stored;
    const fresh = this.sign(reference, subject);
    const body = JSON.stringify(fresh.record);
    if (!(await this.storage.createIfAbsent(key, body))) {
      // Another replica (or request) was first: serve its signature.
      const winner = await this.readStored(key);
      if (winner) return winner;
      // Its record is damaged (readStored removed it): ours replaces it.
      await this.storage.put(key, body, { contentType: 'application/json' });
    }
    this.stats.signed++;
    return (await this.readStored(key)) ?? fresh.artifact;
  }

  /** The record under `key` if it checks out; a damaged one is removed (and null returned). */
  private async readStored(key: string): Promise<SignatureArtifact | null> {
    const raw = await this.storage.read(key);
    if (!raw) return null;
    const read = readRecord(key, raw);
    if (read.ok && read.record.publicKey === this.key.publicKeyPem) return read.artifact;
    this.stats.damaged++;
    await this.storage.delete(key);
    return null;
  }

  private sign(reference: string, subject: Descriptor): { record: SignatureRecord; artifact: SignatureArtifact } {
    const payload = simpleSigningPayload(reference, subject.digest);
    const signature = this.key.sign(payload).toString('base64');
    const record: SignatureRecord = { subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size }, reference, publicKey: this.key.publicKeyPem, signature };
    return { record, artifact: signatureArtifact(payload, signature, record.subject) };
  }

  /** Writes the blobs clients fetch by digest, where they are missing (content-addressed: any writer's are the same). */
  private async storeBlobs(artifact: SignatureArtifact): Promise<void> {
    for (const b of artifactBlobs(artifact)) {
      const key = this.blobKey(b.digest);
      if (!(await this.storage.stat(key))) await this.storage.put(key, b.bytes, { contentType: b.mediaType });
    }
  }
}
