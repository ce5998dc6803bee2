// Credentials of the gcs backend through google-auth-library: Application Default Credentials
// (a service-account key, an authorized user, workload identity federation with
// `external_account`, the GCE metadata server), and the signer of V4 signed URLs (a local key,
// or IAM signBlob as the service account). The settings themselves are read in src/config.ts.

import { readFile } from 'node:fs/promises';
import { GoogleAuth, JWT, gaxios, type AuthClient } from 'google-auth-library';
import { ConfigError } from '../errors.js';
import type { BlobSigner } from './gcs-sign.js';

export const GCS_DEFAULT_ENDPOINT = 'https://storage.googleapis.com';
/** Objects, read and write; and IAM, to sign URLs through signBlob as the service account. */
const SCOPES = ['https://www.googleapis.com/auth/devstorage.read_write', 'https://www.googleapis.com/auth/iam'];
/** Where google-auth-library sends OAuth token requests, whatever the key file says. */
const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** The credential files google-auth-library reads that can authorise GCS calls. */
const CREDENTIAL_TYPES = ['service_account', 'authorized_user', 'external_account', 'external_account_authorized_user', 'impersonated_service_account'];
const DEFAULT_TIMEOUT_MS = 30_000;

/** What src/config.ts read for the gcs backend; the credentials are loaded from `keyFile` or ADC. */
export interface GcsSettings {
  bucket: string;
  /** GCS_ENDPOINT or STORAGE_EMULATOR_HOST, its origin only. */
  endpoint?: string;
  /** GCS_PREFIX: prefix of every object name, e.g. `nixery/`. */
  prefix?: string;
  /** GOOGLE_APPLICATION_CREDENTIALS. */
  keyFile?: string;
}

/** How the backend authenticates and signs; from loadGcsCredentials. */
export interface GcsCredentials {
  /** Adds the access token to requests; refreshes it when it expires or GCS answers 401. */
  client: AuthClient;
  /** Signs redirect URLs as a service account; null when there is none to sign as. */
  signer: GcsUrlSigner | null;
}

export interface GcsUrlSigner {
  /** The service account (X-Goog-Credential). */
  email: string;
  /** `key`: with the service account's private key, here; `iam`: by IAM signBlob, a request per URL. */
  via: 'key' | 'iam';
  sign: BlobSigner;
}

/**
 * Credentials through google-auth-library. `keyFile` (GOOGLE_APPLICATION_CREDENTIALS) is a
 * service-account key, an authorized user (gcloud auth application-default login), an external
 * account (workload identity federation) or an impersonated service account. Without one,
 * `adc` looks where Application Default Credentials look next (gcloud's well-known file, the
 * GCE metadata server); otherwise there are none: undefined. A credential that cannot work, or
 * none found where they are required, is a ConfigError.
 */
export async function loadGcsCredentials(source: { keyFile?: string; adc?: boolean; timeoutMs?: number }): Promise<GcsCredentials | undefined> {
  // The library's own requests (tokens, token exchange, impersonation, signBlob) get a deadline too.
  const transporter = new gaxios.Gaxios({ fetchImplementation: fetch, timeout: source.timeoutMs ?? DEFAULT_TIMEOUT_MS });
  const clientOptions = { transporter };
  let auth: GoogleAuth;
  let iamEndpoint: string | undefined;
  const file = source.keyFile;
  if (file) {
    const json = await readCredentialFile(file);
    honourTokenUri(transporter, json.token_uri, file);
    iamEndpoint = iamEndpointOf(json.service_account_impersonation_url);
    auth = new GoogleAuth({ credentials: json, scopes: SCOPES, clientOptions });
  } else if (source.adc) {
    auth = new GoogleAuth({ scopes: SCOPES, clientOptions });
  } else {
    return undefined;
  }
  let client: AuthClient;
  try {
    client = await auth.getClient();
  } catch (err) {
    const message = oneLine(err);
    if (file) throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file}: ${message}`);
    throw new ConfigError(
      `the gcs storage backend found no Google credentials (${message.split('. ')[0]}): set GOOGLE_APPLICATION_CREDENTIALS to a service-account key or a workload identity federation configuration, or run on Google Cloud with a service account`,
    );
  }
  let email: string | undefined;
  try {
    email = (await auth.getCredentials()).client_email ?? undefined;
  } catch (err) {
    throw new ConfigError(`the gcs storage backend cannot tell which service account it runs as: ${oneLine(err)}`);
  }
  if (!email) return { client, signer: null };
  const via = client instanceof JWT && client.key ? 'key' : 'iam';
  const signer: GcsUrlSigner = { email, via, sign: (blob) => auth.sign(blob, iamEndpoint) };
  if (via === 'key') {
    try {
      await signer.sign('probe');
    } catch {
      const where = file ? `GOOGLE_APPLICATION_CREDENTIALS: the private_key in ${file}` : 'Application Default Credentials: their private_key';
      throw new ConfigError(`invalid ${where} is not a usable RSA key`);
    }
  }
  return { client, signer };
}

async function readCredentialFile(file: string): Promise<Record<string, unknown>> {
  let raw: string;
  try {
    raw = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: cannot read ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} is not JSON`);
  }
  const type = (json as { type?: unknown } | null)?.type;
  if (typeof type !== 'string' || !CREDENTIAL_TYPES.includes(type)) {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: ${file} has type ${JSON.stringify(type)}; expected one of ${CREDENTIAL_TYPES.join(', ')}`);
  }
  return json as Record<string, unknown>;
}

/**
 * google-auth-library sends every OAuth token request (service-account assertions, refresh
 * tokens) to Google's endpoint and ignores the file's token_uri, which Google's Python, Go and
 * Java libraries honour; send them where the file says.
 */
function honourTokenUri(transporter: gaxios.Gaxios, tokenUri: unknown, file: string): void {
  if (tokenUri === undefined || tokenUri === GOOGLE_TOKEN_URL) return;
  let target: URL;
  try {
    target = new URL(String(tokenUri));
  } catch {
    throw new ConfigError(`invalid GOOGLE_APPLICATION_CREDENTIALS: the token_uri in ${file} is not a URL`);
  }
  transporter.interceptors.request.add({
    resolved: async (config) => {
      if (config.url.href === GOOGLE_TOKEN_URL) config.url = new URL(target);
      return config;
    },
  });
}

/** The IAM Credentials endpoint a federation configuration impersonates through: signBlob goes there too. */
function iamEndpointOf(impersonationUrl: unknown): string | undefined {
  if (typeof impersonationUrl !== 'string') return undefined;
  return /^(https?:\/\/[^/]+\/v1\/projects\/-\/serviceAccounts\/)[^/]+:generateAccessToken$/.exec(impersonationUrl)?.[1];
}

/** A library error's message for a one-line ConfigError. */
function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' ').trim();
}
