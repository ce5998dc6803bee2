// Credentials in URL-valued settings (a token in NIXERY_PKGS_REPO, a signed query in
// NIXERY_NIXPKGS_TARBALL…) must never leave the process. The secrets of the configured URLs are
// learned once at startup; `redact` then hides every occurrence of them, and any URL userinfo
// or secret-looking query value, in text on its way out (error bodies, the index page, every
// log line). `displayUrl` is how a configured URL is shown. The real URLs stay in use where
// they are needed (git, Nix, the popularity fetch, the storage clients).

/** Settings whose value is a URL that may carry credentials. */
export const URL_SETTINGS = [
  'NIXERY_PKGS_REPO',
  'NIXERY_NIXPKGS_REPO',
  'NIXERY_NIXPKGS_TARBALL',
  'NIX_POPULARITY_URL',
  'S3_ENDPOINT',
  'GCS_ENDPOINT',
  // Read as GCS_ENDPOINT when that is unset.
  'STORAGE_EMULATOR_HOST',
] as const;

/**
 * Variables no child process gets (Nix, git): a package set evaluated by Nix could read them
 * with builtins.getEnv and put them in an image. The signing key's only reader is config.ts.
 */
export const WITHHELD_FROM_CHILDREN = ['NIXERY_SIGNING_KEY'] as const;

/** `env` without the variables children must not see. */
export function childEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const name of WITHHELD_FROM_CHILDREN) delete out[name];
  return out;
}

export const MASK = '***';

/**
 * Shorter learned values are not replaced in free text (a password `abc` would garble every
 * log line); they are still hidden wherever they sit in a URL, by the URL patterns below.
 */
const MIN_SECRET_LENGTH = 4;
/** A user name next to a password is usually not secret (`user`, `oauth2`), unless key-like. */
const MIN_USERNAME_SECRET_LENGTH = 8;

/** Query parameters that carry secrets: tokens, keys, signatures, passwords, cloud signing fields. */
const SECRET_PARAM = /^(?:x-amz-.*|x-goog-.*|.*(?:token|key|sig|secret|pass|pwd|auth|credential|session).*)$/i;
const SECRET_PARAM_SOURCE = String.raw`x-amz-[\w-]*|x-goog-[\w-]*|[\w.-]*(?:token|key|sig|secret|pass|pwd|auth|credential|session)[\w.-]*`;

/** `scheme://userinfo@` anywhere in text; userinfo ends at the last `@` before the host. */
const USERINFO_IN_TEXT = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#'"<>`]*@/gi;
/** `?name=value` / `&name=value` with a secret name, anywhere in text. */
const SECRET_QUERY_IN_TEXT = new RegExp(String.raw`([?&](?:${SECRET_PARAM_SOURCE})=)[^&\s#'"<>\`\\]*`, 'gi');

/** The credentials one URL carries: its userinfo and its secret query values, as written. */
export function credentialsOf(url: string): { userinfo?: { user: string; password?: string }; query: string[] } {
  const found: { userinfo?: { user: string; password?: string }; query: string[] } = { query: [] };
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url.trim());
  const rest = scheme ? url.trim().slice(scheme[0].length) : url.trim();
  if (scheme) {
    const authority = rest.slice(0, rest.search(/[/?#]|$/));
    const at = authority.lastIndexOf('@');
    if (at >= 0) {
      const userinfo = authority.slice(0, at);
      const colon = userinfo.indexOf(':');
      found.userinfo = colon >= 0 ? { user: userinfo.slice(0, colon), password: userinfo.slice(colon + 1) } : { user: userinfo };
    }
  }
  const q = rest.indexOf('?');
  if (q >= 0) {
    const query = rest.slice(q + 1).split('#')[0]!;
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      if (SECRET_PARAM.test(decode(pair.slice(0, eq)))) found.query.push(pair.slice(eq + 1));
    }
  }
  return found;
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/** The forms a secret may take in output: as written, decoded, re-encoded, JSON-escaped. */
function variants(secret: string): string[] {
  const forms = new Set<string>();
  const decoded = decode(secret);
  for (const s of [secret, decoded, encodeURIComponent(decoded), decodeURIComponentLoose(secret)]) {
    forms.add(s);
    forms.add(JSON.stringify(s).slice(1, -1));
  }
  return [...forms];
}

/** Decodes without treating `+` as a space (userinfo is not form-encoded). */
function decodeURIComponentLoose(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Learned secrets and the redaction built from them. */
export class Redactor {
  private readonly secrets = new Set<string>();
  private pattern: RegExp | undefined;

  /** Learns the credentials a URL carries (nothing for a URL without any, or undefined). */
  learnUrl(url: string | undefined): void {
    if (!url) return;
    const { userinfo, query } = credentialsOf(url);
    const found = [...query];
    if (userinfo) {
      if (userinfo.password === undefined) found.push(userinfo.user);
      else {
        found.push(userinfo.password);
        if (userinfo.user.length >= MIN_USERNAME_SECRET_LENGTH) found.push(userinfo.user);
      }
    }
    for (const secret of found) this.learn(secret);
  }

  /** Learns one secret value, in all the forms it may be printed in. */
  learn(secret: string): void {
    let added = false;
    for (const form of variants(secret)) {
      if (form.length < MIN_SECRET_LENGTH || this.secrets.has(form)) continue;
      this.secrets.add(form);
      added = true;
    }
    if (!added) return;
    // Longest first, so a secret containing another is replaced whole.
    const sorted = [...this.secrets].sort((a, b) => b.length - a.length);
    this.pattern = new RegExp(sorted.map(escapeRegExp).join('|'), 'g');
  }

  get size(): number {
    return this.secrets.size;
  }

  /** `text` with URL credentials and every learned secret replaced by `***`. */
  redact(text: string): string {
    let out = text;
    if (out.includes('@')) out = out.replace(USERINFO_IN_TEXT, `$1${MASK}@`);
    if (out.includes('=')) out = out.replace(SECRET_QUERY_IN_TEXT, `$1${MASK}`);
    if (this.pattern) out = out.replace(this.pattern, MASK);
    return out;
  }

  /** How a configured URL is shown: `https://user:TOKEN@host/repo.git` → `https://***@host/repo.git`. */
  displayUrl(url: string): string {
    return this.redact(url);
  }
}

/** The process's own secrets: those of the settings it was configured with. */
export const processSecrets = new Redactor();

/**
 * Learns the secrets of every URL-valued setting: the variables in `env` and any values the
 * command line gave instead (`extra`). Called once the configuration is read; learning again
 * only adds.
 */
export function learnSettingSecrets(env: NodeJS.ProcessEnv, extra: Iterable<string | undefined> = []): void {
  for (const name of URL_SETTINGS) processSecrets.learnUrl(env[name]);
  for (const value of extra) processSecrets.learnUrl(value);
}

/** Text safe to send out of the process (see Redactor.redact). */
export function redact(text: string): string {
  return processSecrets.redact(text);
}

/** The display form of a URL (see Redactor.displayUrl). */
export function displayUrl(url: string): string {
  return processSecrets.displayUrl(url);
}
