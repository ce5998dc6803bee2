// Authentication and admission: the one layer in front of the handlers. For each request it
// decides who the client is (an htpasswd user, a bearer token's subject, or anonymous), whether
// it may pull the repository it names, whether the image's packages are allowed, and — only when
// the request is about to start a build — whether this client may start one now (anonymous
// clients may not when NIXERY_ANONYMOUS_PULL is on; NIXERY_CLIENT_BUILDS_PER_MINUTE per client).
// Cached pulls never reach that last check. Verified credentials are remembered briefly, so the
// hot path does not run bcrypt or a signature check per request.

import type { IncomingMessage } from 'node:http';
import { ConfigError, DeniedError, PackageDeniedError, TooManyPackagesError, TooManyRequestsError, UnauthorizedError } from '../errors.js';
import { ALWAYS_PACKAGES, parseImageName } from '../image/name.js';
import { Htpasswd } from '../auth/htpasswd.js';
import { grants, InvalidTokenError, TokenVerifier, type Grant } from '../auth/tokens.js';
import { PackagePolicy } from '../auth/policy.js';
import { RateLimiter } from '../util/token-bucket.js';
import { LruCache } from '../util/lru.js';
import { TrustedProxies } from './client-address.js';

/**
 * What a route asks of a client (each route declares one in routes.ts):
 * - `open`: nothing (probes and scrapers);
 * - `login`: credentials whenever authentication is on, even with anonymous pulls (the `/v2/`
 *   check: docker, podman and skopeo send credentials only to a registry whose /v2/ asks);
 * - `pull`: the right to pull the repository the path names (anonymous with anonymous pulls);
 * - `pull-build`: a pull that may build the image: the package policy and count apply too;
 * - `build`: an authenticated client when authentication is on (starting builds).
 */
export type AccessRule = 'open' | 'login' | 'pull' | 'pull-build' | 'build';
import type { Admission } from '../service/admission.js';

export interface AccessOptions {
  /** Basic authentication (NIXERY_HTPASSWD). */
  htpasswd?: Htpasswd;
  /** Bearer tokens (NIXERY_AUTH_TOKEN_*). */
  tokens?: TokenVerifier;
  /** Anonymous clients may pull what is built; only authenticated ones may build. */
  anonymousPull: boolean;
  /** Cold builds per client (NIXERY_CLIENT_BUILDS_PER_MINUTE). */
  builds?: RateLimiter;
  proxies: TrustedProxies;
  policy?: PackagePolicy;
  /** Most packages in one image, besides the ones every image gets (NIXERY_MAX_PACKAGES). */
  maxPackages?: number;
}

/** The settings the layer is made from; structurally a subset of the application Config. */
export interface AccessSettings {
  htpasswd?: string;
  authTokenRealm?: string;
  authTokenService?: string;
  authTokenIssuer?: string;
  authTokenKeys?: string;
  authTokenJwks?: string;
  anonymousPull: boolean;
  clientBuildsPerMinute: number;
  clientBuildBurst?: number;
  trustedProxies?: string;
  allowPackages?: string;
  denyPackages?: string;
  maxPackages?: number;
}

/** The layer from the settings; one clear ConfigError for a missing or contradictory one. */
export async function createGate(s: AccessSettings): Promise<Gate> {
  const token = { NIXERY_AUTH_TOKEN_REALM: s.authTokenRealm, NIXERY_AUTH_TOKEN_SERVICE: s.authTokenService, NIXERY_AUTH_TOKEN_ISSUER: s.authTokenIssuer };
  const anyToken = Object.values(token).some(Boolean) || Boolean(s.authTokenKeys || s.authTokenJwks);
  let tokens: TokenVerifier | undefined;
  if (anyToken) {
    const missing = Object.entries(token).filter(([, v]) => !v).map(([k]) => k);
    if (missing.length > 0) throw new ConfigError(`bearer tokens need ${missing.join(', ')} as well`);
    if (s.htpasswd) throw new ConfigError('set NIXERY_HTPASSWD or the NIXERY_AUTH_TOKEN_* settings, not both');
    tokens = await TokenVerifier.create({ realm: s.authTokenRealm!, service: s.authTokenService!, issuer: s.authTokenIssuer!, keysFile: s.authTokenKeys, jwksUrl: s.authTokenJwks });
  }
  const htpasswd = s.htpasswd ? await Htpasswd.load(s.htpasswd) : undefined;
  if (s.anonymousPull && !tokens && !htpasswd) throw new ConfigError('NIXERY_ANONYMOUS_PULL needs authentication: set NIXERY_HTPASSWD or the NIXERY_AUTH_TOKEN_* settings');
  return new Gate({
    htpasswd,
    tokens,
    anonymousPull: s.anonymousPull,
    builds: s.clientBuildsPerMinute > 0 ? new RateLimiter(s.clientBuildsPerMinute, s.clientBuildBurst ?? s.clientBuildsPerMinute) : undefined,
    proxies: new TrustedProxies(s.trustedProxies),
    policy: PackagePolicy.fromSettings(s.allowPackages, s.denyPackages),
    maxPackages: s.maxPackages,
  });
}

// Declared beneath the registry (the services take it); the gate below makes them.
export type { Admission } from '../service/admission.js';

export interface AccessStats {
  unauthorized: number;
  denied: number;
  packagesDenied: number;
  buildsRateLimited: number;
  /** Credentials refused because the client failed too often lately. */
  loginsRateLimited: number;
}

/** How long a verified Basic credential (and a refused one) is remembered. */
const BASIC_OK_MS = 60_000;
const REFUSED_MS = 5_000;
/** A token is remembered until it expires, at most this long. */
const TOKEN_MS = 60_000;
const BASIC_REALM = 'nixery-ts';
/** Basic credentials with no user and no password: what skopeo and others send when they have none. */
const EMPTY_BASIC = `Basic ${Buffer.from(':').toString('base64')}`;
/** Failed logins a client may have in a burst, and how fast it gets them back (per minute). */
const FAILED_LOGIN_BURST = 10;
const FAILED_LOGINS_PER_MINUTE = 5;

interface Identity {
  user: string | null;
  /** A token's grants (bearer); undefined for Basic users, who may pull everything. */
  access?: Grant[];
}

type Remembered = { identity: Identity; until: number } | { refused: string; until: number };

const OPEN: Admission = { user: null, client: 'open', beforeBuild: () => {}, mayBuild: () => OPEN, mayPull: () => true, restricted: false };
/** Every anonymous client's identity (shared: this is on every request's path). */
const ANONYMOUS: Identity = { user: null };

/** What `admit` answers (a class, not a closure per request: this is on every request's path). */
class Admitted implements Admission {
  constructor(
    private readonly identity: Identity,
    /** The client's address, for anonymous clients. */
    private readonly address: string | undefined,
    private readonly name: string | undefined,
    private readonly gate: Gate,
  ) {}

  get user(): string | null {
    return this.identity.user;
  }

  get restricted(): boolean {
    return this.identity.access !== undefined;
  }

  get client(): string {
    return this.identity.user !== null ? `user:${this.identity.user}` : `ip:${this.address}`;
  }

  beforeBuild(): void {
    this.gate.beforeBuild(this.identity.user, this.client, this.name);
  }

  mayBuild(image: string): Admission {
    this.gate.mayBuild(this.identity, image);
    return new Admitted(this.identity, this.address, image, this.gate);
  }

  mayPull(name: string): boolean {
    return this.identity.access === undefined || grants(this.identity.access, name, 'pull');
  }
}

export class Gate {
  readonly stats: AccessStats = { unauthorized: 0, denied: 0, packagesDenied: 0, buildsRateLimited: 0, loginsRateLimited: 0 };
  /** Failed logins per client address: a client that guesses passwords is refused (429) before bcrypt runs. */
  private readonly failures = new RateLimiter(FAILED_LOGINS_PER_MINUTE, FAILED_LOGIN_BURST);
  private readonly credentials = new LruCache<string, Remembered>(10_000);
  private readonly decisions = new LruCache<string, Error | null>(10_000);

  constructor(private readonly options: AccessOptions) {}

  /** `basic`, `bearer`, or `none` when authentication is off. */
  get authentication(): 'basic' | 'bearer' | 'none' {
    return this.options.tokens ? 'bearer' : this.options.htpasswd ? 'basic' : 'none';
  }

  /**
   * Admits a request under a route's access `rule` (with the path's parameters) or throws: 401
   * UNAUTHORIZED with a challenge, 403 DENIED, 403 for a package policy, 429 for a client that
   * failed to log in too often. What it returns says who the client is and guards the start of
   * a build.
   */
  async admit(req: IncomingMessage, rule: AccessRule, params: Record<string, string>): Promise<Admission> {
    if (rule === 'open') return OPEN;
    const name = params.name;
    const identity = await this.identify(req, rule, name);
    if (identity.access && name !== undefined && !grants(identity.access, name, 'pull')) {
      this.stats.denied++;
      throw new DeniedError(`the token does not grant pull access to ${name}`);
    }
    if (rule === 'pull-build' && name !== undefined) this.checkPackages(name);
    if (rule === 'build' && identity.user === null && this.authentication !== 'none') {
      this.stats.unauthorized++;
      throw new UnauthorizedError('only authenticated clients may build images', this.challenge(name));
    }
    const user = identity.user;
    return new Admitted(identity, user === null ? this.options.proxies.clientOf(req) : undefined, name, this);
  }

  /** Throws unless the client may ask for a build of `image` (the API: the name is in the body). */
  mayBuild(identity: Identity, image: string): void {
    if (identity.access && !grants(identity.access, image, 'pull')) {
      this.stats.denied++;
      throw new DeniedError(`the token does not grant pull access to ${image}`);
    }
    this.checkPackages(image);
    // Asking for a build is building, even when the image turns out to be cached.
    if (identity.user === null && this.authentication !== 'none') {
      this.stats.unauthorized++;
      throw new UnauthorizedError('only authenticated clients may build images', this.challenge(image));
    }
  }

  /** Throws when the client may not start a build now (see Admission.beforeBuild). */
  beforeBuild(user: string | null, client: string, name: string | undefined): void {
    if (user === null && this.authentication !== 'none') {
      this.stats.unauthorized++;
      throw new UnauthorizedError('this image is not built yet, and only authenticated clients may build images', this.challenge(name));
    }
    const wait = this.options.builds?.take(client) ?? 0;
    if (wait > 0) {
      this.stats.buildsRateLimited++;
      throw new TooManyRequestsError(`too many image builds from this client (NIXERY_CLIENT_BUILDS_PER_MINUTE is ${this.options.builds!.perMinute}); cached images are not limited`, wait);
    }
  }

  /** Who sent the request; throws 401 for a missing (unless anonymous pulls are allowed) or refused credential. */
  private async identify(req: IncomingMessage, rule: AccessRule, name: string | undefined): Promise<Identity> {
    if (this.authentication === 'none') return ANONYMOUS;
    const header = req.headers.authorization;
    // An empty Basic pair is a client without credentials, not a wrong password.
    if (!header || header === EMPTY_BASIC) {
      // With anonymous pulls, /v2/ still challenges (rule `login`): clients send credentials
      // only to a registry whose /v2/ asks for them, and those that have none go on anonymously.
      if (this.options.anonymousPull && rule !== 'login') return ANONYMOUS;
      this.stats.unauthorized++;
      throw new UnauthorizedError('authentication required: this registry needs credentials', this.challenge(name));
    }
    // Keyed by the header itself: hashing it cost more per cached pull than the rest of the gate,
    // and the credential is in this process's memory with every request anyway.
    const key = header;
    const now = Date.now();
    let remembered = this.credentials.get(key);
    if (!remembered || remembered.until <= now) {
      // A client that failed too often is refused before bcrypt runs (the CPU is the target).
      // Each attempt takes a token up front, so a concurrent burst is limited too; one that
      // succeeds gives it back.
      // (Basic only: bearer tokens cost a signature check, not bcrypt.)
      const client = this.options.htpasswd ? this.options.proxies.clientOf(req) : undefined;
      const wait = client === undefined ? 0 : this.failures.take(client);
      if (wait > 0) {
        this.stats.loginsRateLimited++;
        throw new TooManyRequestsError(`too many failed logins from this client; retry in ${wait} s`, wait);
      }
      remembered = await this.verify(header, now);
      this.credentials.set(key, remembered);
      if (client !== undefined && !('refused' in remembered)) this.failures.refund(client);
    }
    if ('refused' in remembered) {
      this.stats.unauthorized++;
      throw new UnauthorizedError(remembered.refused, this.challenge(name, 'invalid_token'));
    }
    return remembered.identity;
  }

  private async verify(header: string, now: number): Promise<Remembered> {
    const space = header.indexOf(' ');
    const scheme = header.slice(0, space < 0 ? undefined : space).toLowerCase();
    const value = space < 0 ? '' : header.slice(space + 1).trim();
    const { htpasswd, tokens } = this.options;
    if (tokens) {
      if (scheme !== 'bearer') return { refused: 'a bearer token is required (get one from the token service in the challenge)', until: now + REFUSED_MS };
      try {
        const token = await tokens.verify(value);
        return { identity: { user: token.subject || 'token', access: token.access }, until: Math.min(now + TOKEN_MS, token.expires * 1000) };
      } catch (err) {
        return { refused: err instanceof InvalidTokenError ? err.message : 'the token is not accepted', until: now + REFUSED_MS };
      }
    }
    if (scheme !== 'basic' || !htpasswd) return { refused: 'Basic credentials are required', until: now + REFUSED_MS };
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? '' : decoded.slice(0, colon);
    if (user && (await htpasswd.verify(user, decoded.slice(colon + 1)))) return { identity: { user }, until: now + BASIC_OK_MS };
    return { refused: 'the user name or password is wrong', until: now + REFUSED_MS };
  }

  /** Package policy and the package count, decided from the name alone (before Nix runs). */
  private checkPackages(name: string): void {
    const { policy, maxPackages } = this.options;
    if (!policy && maxPackages === undefined) return;
    let decision = this.decisions.get(name);
    if (decision === undefined) {
      decision = null;
      let packages: string[] | undefined;
      try {
        packages = parseImageName(name).packages.filter((p) => !(ALWAYS_PACKAGES as readonly string[]).includes(p));
      } catch {
        // An invalid name is the handler's to report (NAME_INVALID).
      }
      if (packages) {
        const verdict = policy?.decide(packages);
        if (verdict && !verdict.allowed) decision = new PackageDeniedError(verdict.package!, verdict.reason!);
        else if (maxPackages !== undefined && packages.length > maxPackages) decision = new TooManyPackagesError(packages.length, maxPackages);
      }
      this.decisions.set(name, decision);
    }
    if (decision) {
      this.stats.packagesDenied++;
      throw decision;
    }
  }

  /** The WWW-Authenticate challenge for a request about repository `name` (if any). */
  challenge(name?: string, error?: string): string {
    const tokens = this.options.tokens;
    if (!tokens) return `Basic realm="${BASIC_REALM}", charset="UTF-8"`;
    const { realm, service } = tokens.settings;
    let challenge = `Bearer realm="${realm}",service="${service}"`;
    if (name !== undefined) challenge += `,scope="repository:${name}:pull"`;
    if (error) challenge += `,error="${error}"`;
    return challenge;
  }
}
