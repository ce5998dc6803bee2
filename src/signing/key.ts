// The registry's signing key (NIXERY_SIGNING_KEY): a PEM private key, ECDSA P-256 or Ed25519,
// given inline or as the path of a file. The private key lives in a KeyObject inside this class
// and nowhere else: the object prints (JSON, util.inspect, template strings) as a description
// with the key's fingerprint, never the key. An inline PEM is also taught to the process's
// redactor, so a stray copy in an error is masked on its way out.

import { createHash, createPrivateKey, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { processSecrets } from '../secrets.js';

export type SigningAlgorithm = 'ecdsa-p256' | 'ed25519';

const PEM_BEGIN = /-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/;

export class SigningKey {
  readonly #key: KeyObject;
  /** The public half, SubjectPublicKeyInfo PEM: what clients verify with (`nixery sign --public-key`). */
  readonly publicKeyPem: string;
  /** sha256 of the public key (DER), hex: names the key in stored signatures and logs. */
  readonly fingerprint: string;

  private constructor(
    key: KeyObject,
    readonly algorithm: SigningAlgorithm,
    /** Where the key came from, for people: `file /path` or `inline PEM`. */
    readonly source: string,
  ) {
    this.#key = key;
    const pub = createPublicKey(key);
    this.publicKeyPem = pub.export({ type: 'spki', format: 'pem' }).toString();
    this.fingerprint = createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('hex');
  }

  /**
   * Reads the setting's value: PEM text (it contains `-----BEGIN`) or a file path. Throws an
   * Error saying what is wrong, without the key (config.ts names the setting).
   */
  static load(raw: string): SigningKey {
    const inline = PEM_BEGIN.test(raw);
    let pem: string;
    if (inline) {
      pem = raw.replace(/\\n/g, '\n'); // a PEM squeezed into one line of an env file
      learnPem(pem);
    } else {
      const file = raw.trim();
      try {
        pem = readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`cannot read the key file ${JSON.stringify(file)}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'} (give a PEM private key inline or the path of one)`);
      }
      if (!PEM_BEGIN.test(pem)) throw new Error(`${JSON.stringify(file)} holds no PEM private key (-----BEGIN PRIVATE KEY-----)`);
      learnPem(pem);
    }
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch {
      // Node's message may quote the input: say only what is expected.
      throw new Error(`${inline ? 'the inline value' : `the file ${JSON.stringify(raw.trim())}`} is not an unencrypted PEM private key`);
    }
    const source = inline ? 'inline PEM' : `file ${raw.trim()}`;
    if (key.asymmetricKeyType === 'ed25519') return new SigningKey(key, 'ed25519', source);
    if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return new SigningKey(key, 'ecdsa-p256', source);
    const what = key.asymmetricKeyType === 'ec' ? `an EC key on ${key.asymmetricKeyDetails?.namedCurve ?? 'another curve'}` : `a ${key.asymmetricKeyType ?? 'different'} key`;
    throw new Error(`must be an ECDSA P-256 or Ed25519 private key, got ${what}`);
  }

  /**
   * The signature of `payload` as cosign and containers/image make and check it: ECDSA over
   * SHA-256 (ASN.1 DER), or pure Ed25519 over the payload itself.
   */
  sign(payload: Buffer): Buffer {
    return sign(this.algorithm === 'ed25519' ? null : 'sha256', payload, this.#key);
  }

  toString(): string {
    return `${this.algorithm} key (${this.source}, sha256:${this.fingerprint.slice(0, 16)}…)`;
  }
  toJSON(): string {
    return this.toString();
  }
  [inspect.custom](): string {
    return `SigningKey<${this.toString()}>`;
  }
}

/** The PEM and each base64 line of it, as secrets the redactor hides. */
function learnPem(pem: string): void {
  processSecrets.learn(pem.trim());
  for (const line of pem.split('\n')) if (/^[A-Za-z0-9+/=]{16,}$/.test(line.trim())) processSecrets.learn(line.trim());
}
