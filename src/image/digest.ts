// Content digests as image references and the registry API write them: sha256 only, lower-case
// hex (what this registry produces and serves).

import { InvalidDigestError } from '../errors.js';

export const DIGEST_REGEXP = /^sha256:([a-f0-9]{64})$/;

/** The hex part of a sha256 digest; throws InvalidDigestError for anything else. */
export function digestHex(digest: string): string {
  const m = DIGEST_REGEXP.exec(digest);
  if (!m) throw new InvalidDigestError(`invalid digest ${JSON.stringify(digest.slice(0, 100))}: expected sha256:<64 lower-case hex>`);
  return m[1]!;
}
