// Bearer tokens as in the Docker registry token specification: a token service (its URL is the
// challenge's realm) hands clients JWTs that this registry checks for signature, issuer,
// audience (the service name), expiry and a `repository:NAME:pull` grant in the `access` claim.
// The token service's public keys come from a file (PEM public keys or certificates, or a JWKS
// document) or a JWKS URL, which is fetched again when a token names a key it has not seen.

import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, flattenedVerify, importSPKI, importX509, jwtVerify, type JWTVerifyGetKey, type JWTPayload } from 'jose';
import { ConfigError } from '../errors.js';

export interface TokenSettings {
  /** Where clients get tokens (NIXERY_AUTH_TOKEN_REALM). */
  realm: string;
  /** This registry's name in tokens: their audience (NIXERY_AUTH_TOKEN_SERVICE). */
  service: string;
  /** Who issues tokens (NIXERY_AUTH_TOKEN_ISSUER). */
  issuer: string;
  /** A file of PEM public keys or certificates, or of a JWKS (NIXERY_AUTH_TOKEN_KEYS). */
  keysFile?: string;
  /** A JWKS URL (NIXERY_AUTH_TOKEN_JWKS). */
  jwksUrl?: string;
}

export interface Grant {
  type: string;
  name: string;
  actions: string[];
}

export interface VerifiedToken {
  subject: string;
  /** What the token grants (the `access` claim). */
  access: Grant[];
  /** Seconds since the epoch. */
  expires: number;
}

/** Why a token is refused, in words a client may see. */
export class InvalidTokenError extends Error {}

const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]+?-----END \1-----/g;

export class TokenVerifier {
  private constructor(
    readonly settings: TokenSettings,
    private readonly getKey: JWTVerifyGetKey,
  ) {}

  static async create(settings: TokenSettings): Promise<TokenVerifier> {
    if (settings.jwksUrl) {
      let url: URL;
      try {
        url = new URL(settings.jwksUrl);
      } catch {
        throw new ConfigError(`invalid NIXERY_AUTH_TOKEN_JWKS: ${JSON.stringify(settings.jwksUrl)} is not a URL`);
      }
      return new TokenVerifier(settings, createRemoteJWKSet(url, { timeoutDuration: 10_000, cooldownDuration: 30_000, cacheMaxAge: 600_000 }));
    }
    if (!settings.keysFile) throw new ConfigError('bearer tokens need the token service keys: set NIXERY_AUTH_TOKEN_KEYS (a file) or NIXERY_AUTH_TOKEN_JWKS (a URL)');
    return new TokenVerifier(settings, await keysFromFile(settings.keysFile));
  }

  /** The token's subject and grants; InvalidTokenError saying why it is refused. */
  async verify(token: string): Promise<VerifiedToken> {
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.getKey, {
        issuer: this.settings.issuer,
        audience: this.settings.service,
        algorithms: ALGORITHMS,
        clockTolerance: 30,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      throw new InvalidTokenError(describeJoseError(err));
    }
    return { subject: typeof payload.sub === 'string' ? payload.sub : '', access: grantsOf(payload.access), expires: payload.exp! };
  }
}

/** Whether the grants let `action` happen on repository `name`. */
export function grants(access: readonly Grant[], name: string, action: string): boolean {
  return access.some((g) => g.type === 'repository' && g.name === name && (g.actions.includes(action) || g.actions.includes('*')));
}

function grantsOf(claim: unknown): Grant[] {
  if (!Array.isArray(claim)) return [];
  return claim
    .filter((g): g is Record<string, unknown> => typeof g === 'object' && g !== null)
    .map((g) => ({ type: String(g.type ?? ''), name: String(g.name ?? ''), actions: Array.isArray(g.actions) ? g.actions.map(String) : [] }));
}

function describeJoseError(err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired';
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `the token's ${err.claim} claim is not accepted here`;
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature does not verify';
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'the token is signed by an unknown key';
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'the token uses an algorithm not accepted here';
  if (err instanceof joseErrors.JWKSTimeout || (err instanceof Error && /fetch/i.test(err.message))) return 'the token service keys cannot be fetched';
  return 'the token is malformed';
}

/**
 * Keys from a file: a JWKS document, or PEM public keys / certificates (any of which may have
 * signed a token: each is tried with the token's algorithm).
 */
async function keysFromFile(file: string): Promise<JWTVerifyGetKey> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`invalid NIXERY_AUTH_TOKEN_KEYS: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  if (text.trimStart().startsWith('{')) {
    try {
      return createLocalJWKSet(JSON.parse(text) as Parameters<typeof createLocalJWKSet>[0]);
    } catch {
      throw new ConfigError(`invalid NIXERY_AUTH_TOKEN_KEYS: ${file} is neither PEM nor a JWKS document`);
    }
  }
  const blocks = [...text.matchAll(PEM_BLOCK)].map((m) => ({ kind: m[1]!, pem: m[0] }));
  const usable = blocks.filter((b) => b.kind === 'PUBLIC KEY' || b.kind === 'CERTIFICATE');
  if (usable.length === 0) throw new ConfigError(`invalid NIXERY_AUTH_TOKEN_KEYS: ${file} holds no PEM public key or certificate`);
  for (const b of usable) {
    if (b.kind === 'CERTIFICATE') {
      try {
        new X509Certificate(b.pem);
      } catch {
        throw new ConfigError(`invalid NIXERY_AUTH_TOKEN_KEYS: a certificate in ${file} cannot be read`);
      }
    }
  }
  const imported = new Map<string, Promise<CryptoKey | null>>();
  const importAs = (pem: string, kind: string, alg: string): Promise<CryptoKey | null> => {
    const key = `${alg} ${pem}`;
    let p = imported.get(key);
    if (!p) {
      // A key of another type than the token's algorithm simply does not match.
      p = (kind === 'CERTIFICATE' ? importX509(pem, alg) : importSPKI(pem, alg)).then((k) => k as CryptoKey).catch(() => null);
      imported.set(key, p);
    }
    return p;
  };
  // jose asks for one key; with several, the one whose verification succeeds is found by trying.
  return async (header, token) => {
    const alg = header.alg ?? '';
    const candidates = (await Promise.all(usable.map((b) => importAs(b.pem, b.kind, alg)))).filter((k): k is CryptoKey => k !== null);
    if (candidates.length === 0) throw new joseErrors.JWKSNoMatchingKey();
    if (candidates.length === 1) return candidates[0]!;
    for (const key of candidates) {
      try {
        await flattenedVerify(token, key);
        return key;
      } catch {
        // not this one
      }
    }
    throw new joseErrors.JWSSignatureVerificationFailed();
  };
}
