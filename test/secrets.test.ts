// Redaction of credentials in URL-valued settings: what is learned from a URL, how a URL is
// shown, and that text on its way out carries none of the learned secrets, in any form.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { generateKeyPairSync } from 'node:crypto';
import { credentialsOf, learnSettingSecrets, redact, Redactor, URL_SETTINGS } from '../src/secrets.js';
import { describeConfig, loadConfig } from '../src/config.js';
import { runProcess } from '../src/nix/run.js';

test('userinfo with a password: the URL is shown without it, the password is gone from any text', () => {
  const r = new Redactor();
  r.learnUrl('https://nixery:ghp_Secret123@git.example.org/pkgs.git');
  assert.equal(r.displayUrl('https://nixery:ghp_Secret123@git.example.org/pkgs.git'), 'https://***@git.example.org/pkgs.git');
  assert.equal(r.redact('remote said: bad credentials ghp_Secret123.'), 'remote said: bad credentials ***.');
  // A plain user name next to a password is not a secret on its own: ordinary text keeps it.
  assert.equal(r.redact('nixery started'), 'nixery started');
});

test('userinfo without a password is the token (https://TOKEN@host), hidden everywhere', () => {
  const r = new Redactor();
  r.learnUrl('https://ghp_abcdefTOKEN@github.com/org/pkgs.git');
  assert.deepEqual(credentialsOf('https://ghp_abcdefTOKEN@github.com/org/pkgs.git').userinfo, { user: 'ghp_abcdefTOKEN' });
  assert.equal(r.displayUrl('https://ghp_abcdefTOKEN@github.com/org/pkgs.git'), 'https://***@github.com/org/pkgs.git');
  // git names the user in its own message when it cannot ask for a password.
  assert.equal(
    r.redact("fatal: could not read Password for 'https://ghp_abcdefTOKEN@github.com': terminal prompts disabled"),
    "fatal: could not read Password for 'https://***@github.com': terminal prompts disabled",
  );
  assert.equal(r.redact('token ghp_abcdefTOKEN rejected'), 'token *** rejected');
});

test('URL-encoded secrets are hidden as written, decoded, re-encoded and JSON-escaped', () => {
  const r = new Redactor();
  const url = 'https://user:p%40ss%2Fw%3Ard%2B%22x@example.org/repo.git';
  r.learnUrl(url);
  assert.equal(r.displayUrl(url), 'https://***@example.org/repo.git');
  assert.equal(r.redact('as written: p%40ss%2Fw%3Ard%2B%22x'), 'as written: ***');
  assert.equal(r.redact('decoded: p@ss/w:rd+"x'), 'decoded: ***');
  const line = JSON.stringify({ msg: 'failed with p@ss/w:rd+"x here', url });
  const redacted = r.redact(line);
  assert.ok(!redacted.includes('p@ss') && !redacted.includes('p%40ss'), redacted);
  // Still one valid JSON line: replacements stay inside strings.
  assert.deepEqual(JSON.parse(redacted), { msg: 'failed with *** here', url: 'https://***@example.org/repo.git' });
});

test('secret query parameters: tokens, keys, signatures, X-Amz-* and X-Goog-*; other parameters stay', () => {
  const r = new Redactor();
  const tarball = 'https://dl.example.org/nixpkgs/{rev}.tar.gz?access_token=TARBALLtoken42&v=2';
  const signed =
    'https://bucket.s3.example.org/x?X-Amz-Credential=AKIAEXAMPLE%2F20240101&X-Amz-Signature=abcdef0123456789&x-goog-signature=99887766aa&sig=SIGvalue1&key=APIkey77&page=3';
  r.learnUrl(tarball);
  r.learnUrl(signed);
  assert.deepEqual(credentialsOf(tarball).query, ['TARBALLtoken42']);
  assert.equal(r.displayUrl(tarball), 'https://dl.example.org/nixpkgs/{rev}.tar.gz?access_token=***&v=2');
  assert.equal(
    r.displayUrl(signed),
    'https://bucket.s3.example.org/x?X-Amz-Credential=***&X-Amz-Signature=***&x-goog-signature=***&sig=***&key=***&page=3',
  );
  // The tarball URL as Nix prints it, with the commit filled in; and the values on their own.
  assert.equal(
    r.redact("error: unable to download 'https://dl.example.org/nixpkgs/0123abc.tar.gz?access_token=TARBALLtoken42&v=2': HTTP error 404"),
    "error: unable to download 'https://dl.example.org/nixpkgs/0123abc.tar.gz?access_token=***&v=2': HTTP error 404",
  );
  assert.equal(r.redact('sig SIGvalue1, key APIkey77, decoded credential AKIAEXAMPLE/20240101'), 'sig ***, key ***, decoded credential ***');
});

test('text with several secrets from several settings: every occurrence of each is replaced', () => {
  const r = new Redactor();
  r.learnUrl('https://a:FIRSTsecret@h1/r.git');
  r.learnUrl('https://SECONDtoken@h2/r.git');
  r.learnUrl('http://127.0.0.1:9000/?token=THIRDvalue');
  // One secret containing another is replaced whole, not piecewise.
  r.learnUrl('https://b:FIRSTsecretLONGER@h3/r.git');
  const text = 'FIRSTsecret and SECONDtoken, THIRDvalue; again FIRSTsecret, FIRSTsecretLONGER, SECONDtokenSECONDtoken';
  assert.equal(r.redact(text), '*** and ***, ***; again ***, ***, ******');
  assert.equal(r.size, 4, 'the four secrets, each printed only one way');
});

test('URLs with credentials nobody configured are still shown without them; plain text is untouched', () => {
  const r = new Redactor();
  assert.equal(r.redact('see http://u:pw@proxy.local:3128/ and ssh://git@host/repo'), 'see http://***@proxy.local:3128/ and ssh://***@host/repo');
  assert.equal(r.redact('fetching https://example.org/a?b=c#d for user@example.org'), 'fetching https://example.org/a?b=c#d for user@example.org');
  // Too short to replace in free text, but never shown inside its URL.
  r.learnUrl('https://git@host/x');
  assert.equal(r.redact('git fetch'), 'git fetch');
  assert.equal(r.displayUrl('https://git@host/x'), 'https://***@host/x');
});

test('learnSettingSecrets reads every URL-valued setting; redact() and a pino logger with the hook use them', async () => {
  assert.deepEqual(
    [...URL_SETTINGS].slice(0, 6),
    ['NIXERY_PKGS_REPO', 'NIXERY_NIXPKGS_REPO', 'NIXERY_NIXPKGS_TARBALL', 'NIX_POPULARITY_URL', 'S3_ENDPOINT', 'GCS_ENDPOINT'],
  );
  const env = {
    NIXERY_PKGS_REPO: 'https://T1pkgsrepo@h/r.git',
    NIXERY_NIXPKGS_REPO: 'https://u:T2nixpkgs@h/n.git',
    NIXERY_NIXPKGS_TARBALL: 'https://h/{rev}.tar.gz?token=T3tarball',
    NIX_POPULARITY_URL: 'https://u:T4popularity@h/p.json',
    S3_ENDPOINT: 'http://u:T5s3endpoint@127.0.0.1:9000',
    GCS_ENDPOINT: 'http://127.0.0.1:4443/?access_token=T6gcsendpoint',
  };
  learnSettingSecrets(env, ['https://u:T7fromflag@h/r.git']);
  const tokens = ['T1pkgsrepo', 'T2nixpkgs', 'T3tarball', 'T4popularity', 'T5s3endpoint', 'T6gcsendpoint', 'T7fromflag'];
  assert.equal(redact(tokens.join(' ')), tokens.map(() => '***').join(' '));

  let written = '';
  const sink = new Writable({
    write(chunk, _enc, done) {
      written += String(chunk);
      done();
    },
  });
  const log = pino({ hooks: { streamWrite: redact } }, sink);
  log.info({ err: new Error(`auth failed for ${env.S3_ENDPOINT}`), nested: { deeper: ['T1pkgsrepo'] } }, 'popularity token T4popularity');
  log.child({ source: env.NIXERY_NIXPKGS_TARBALL }).warn('child logger too');
  for (const token of tokens) assert.ok(!written.includes(token), `${token} in ${written}`);
  const lines = written.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(lines[0]!.msg, 'popularity token ***');
  assert.equal(lines[1]!.source, 'https://h/{rev}.tar.gz?token=***');
});

test('the signing key: its PEM lines are redacted from logs, and no child process (Nix, git) gets the variable', async () => {
  const pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const saved = process.env.NIXERY_SIGNING_KEY;
  process.env.NIXERY_SIGNING_KEY = pem;
  try {
    const config = loadConfig(process.env);
    const body = pem.split('\n').find((l) => /^[A-Za-z0-9+/=]{16,}$/.test(l))!;
    assert.equal(redact(`oops: ${body}`), 'oops: ***');
    let written = '';
    const sink = new Writable({
      write(chunk, _enc, done) {
        written += String(chunk);
        done();
      },
    });
    pino({ hooks: { streamWrite: redact } }, sink).info({ config: describeConfig(config), key: config.signingKey, raw: pem }, 'started');
    assert.ok(!written.includes(body), written);
    assert.match(written, /"NIXERY_SIGNING_KEY":"ed25519 key \(inline PEM, sha256:[0-9a-f]{16}…\)"/);
    // A package set could read the variable with builtins.getEnv: children never get it.
    const { stdout } = await runProcess('env', [], { timeoutMs: 10_000, what: 'env' });
    assert.ok(!stdout.includes('NIXERY_SIGNING_KEY'), stdout);
    assert.ok(stdout.includes('PATH='));
  } finally {
    if (saved === undefined) delete process.env.NIXERY_SIGNING_KEY;
    else process.env.NIXERY_SIGNING_KEY = saved;
  }
});
