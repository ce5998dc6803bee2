// A token service as the Docker registry token specification describes it, for the bearer flow
// in tests: `GET <realm>?service=…&scope=repository:NAME:pull` with Basic credentials (or none)
// answers `{token, access_token, expires_in, issued_at}`, a JWT signed with a test key. Knobs
// make it issue what a broken or hostile one would (expired tokens, another audience).

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

export interface TokenServiceOptions {
  /** user → password; these get what they ask for. */
  users: Record<string, string>;
  /** Anonymous requests get pull on everything (a public registry); otherwise nothing. */
  anonymousPull?: boolean;
  issuer: string;
  service: string;
}

export interface TestTokenService {
  realm: string;
  /** Writes the service's public keys as a JWKS file. */
  writeJwks(file: string): Promise<void>;
  /** Changes what the next tokens look like. */
  misbehave(how: { expired?: boolean; audience?: string }): void;
  /** Token requests answered so far. */
  issued: number;
  stop(): Promise<void>;
}

export async function startTokenService(options: TokenServiceOptions): Promise<TestTokenService> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  let misbehaviour: { expired?: boolean; audience?: string } = {};
  const state = { issued: 0 };
  const server = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://x');
      let user: string | null = null;
      const auth = req.headers.authorization;
      if (auth?.startsWith('Basic ')) {
        const [name, password] = Buffer.from(auth.slice(6), 'base64').toString().split(/:(.*)/s);
        if (!name || options.users[name] !== password) {
          res.writeHead(401, { 'Content-Type': 'application/json' }).end(JSON.stringify({ details: 'wrong credentials' }));
          return;
        }
        user = name;
      }
      if (url.searchParams.get('service') !== options.service) {
        res.writeHead(400).end('unknown service');
        return;
      }
      const access = url.searchParams
        .getAll('scope')
        .map((scope) => /^repository:(.+):([a-z,*]+)$/.exec(scope))
        .filter((m): m is RegExpExecArray => m !== null)
        .filter(() => user !== null || options.anonymousPull)
        .map((m) => ({ type: 'repository', name: m[1]!, actions: m[2]!.split(',').filter((a) => a === 'pull') }));
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ access })
        .setProtectedHeader({ alg: 'ES256', kid: 'test-key' })
        .setIssuer(options.issuer)
        .setAudience(misbehaviour.audience ?? options.service)
        .setSubject(user ?? '')
        .setIssuedAt(now)
        .setExpirationTime(misbehaviour.expired ? now - 600 : now + 300)
        .sign(privateKey);
      state.issued++;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date(now * 1000).toISOString() }));
    })();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const realm = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  return {
    realm,
    async writeJwks(file) {
      await writeFile(file, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'test-key', alg: 'ES256', use: 'sig' }] }));
    },
    misbehave(how) {
      misbehaviour = how;
    },
    get issued() {
      return state.issued;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
