// Nix's and git's stderr on its way to an error message: worker-protocol frames decoded,
// terminal escapes and control bytes gone, configured secrets redacted.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { NixFailedError, SourceUnavailableError } from '../../src/errors.js';
import { cleanStderr, stripControls } from '../../src/nix/stderr.js';
import { runNix } from '../../src/nix/run.js';
import { pinSource } from '../../src/nix/resolve-tags.js';
import { learnSettingSecrets } from '../../src/secrets.js';
import { nixEnv } from '../helpers/nix.js';

/** No C0 controls but newline and tab, no DEL, no C1 controls, no escape sequences. */
const UNCLEAN = /[\0-\x08\x0b-\x1f\x7f-\x9f]/;

// What `nix-store --realise` (Nix 2.8) wrote on stderr for a derivation whose builder does not
// exist, byte for byte: the builder's child serialised its error into the build log. The
// message length field (Q = 81) counts ANSI colours the log printer has since removed.
const CAPTURED_MISSING_BUILDER =
  "this derivation will be built:\n  /nix/store/s8al5jnyqxjdrbjncsxadr9g7ndv1fsp-bad-builder-23869.drv\nbuilding '/nix/store/s8al5jnyqxjdrbjncsxadr9g7ndv1fsp-bad-builder-23869.drv'...\n\x01\n\x05\x00\x00\x00\x00\x00\x00\x00Error\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05\x00\x00\x00\x00\x00\x00\x00Error\x00\x00\x00Q\x00\x00\x00\x00\x00\x00\x00executing '/nonexistent/builder': No such file or directory\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\nerror: builder for '/nix/store/s8al5jnyqxjdrbjncsxadr9g7ndv1fsp-bad-builder-23869.drv' failed with exit code 1\n";

test('the worker-protocol error frame in a captured Nix stderr becomes its message', () => {
  const cleaned = cleanStderr(CAPTURED_MISSING_BUILDER);
  assert.equal(
    cleaned,
    "this derivation will be built:\n  /nix/store/s8al5jnyqxjdrbjncsxadr9g7ndv1fsp-bad-builder-23869.drv\nbuilding '/nix/store/s8al5jnyqxjdrbjncsxadr9g7ndv1fsp-bad-builder-23869.drv'...\n" +
      "error: executing '/nonexistent/builder': No such file or directory\n" +
      "error: builder for '/nix/store/s8al5jnyqxjdrbjncsxadr9g7ndv1fsp-bad-builder-23869.drv' failed with exit code 1\n",
  );
});

test('ANSI colours, a frame with a trace, bells, carriage returns and DEL: only the text is left', () => {
  // As Nix prints on a terminal, a frame whose "\x01" and "\x05" are on one line, and a
  // builder's own progress output.
  const trace = 'while setting up the build environment';
  const frame =
    '\x01\x05\0\0\0\0\0\0\0Error\0\0\0\x03\0\0\0\0\0\0\0\x05\0\0\0\0\0\0\0Error\0\0\0\x0d\0\0\0\0\0\0\0chroot failed\0\0\0' +
    '\0\0\0\0\0\0\0\0' + // position
    '\x01\0\0\0\0\0\0\0' + // one trace
    '\0\0\0\0\0\0\0\0' + // its position
    `${String.fromCharCode(trace.length)}\0\0\0\0\0\0\0${trace}\0\0\0\0\0\0\0\0\0\n`;
  const input =
    "\x1b[35;1mbuilding\x1b[0m '/nix/store/abc-x.drv'...\n" +
    'downloading  10%\rdownloading  50%\rdownloading 100%\r\n' +
    frame +
    "\x1b[31;1merror:\x1b[0m builder for '\x1b[35;1m/nix/store/abc-x.drv\x1b[0m' failed with exit code 1;\n" +
    '       last 2 log lines:\n       > \x07bell\x7f and \x1b]0;window title\x07tab\there\n' +
    '\x1b[K\x9b2Jdone\n';
  const cleaned = cleanStderr(input);
  assert.doesNotMatch(cleaned, UNCLEAN);
  assert.equal(
    cleaned,
    "building '/nix/store/abc-x.drv'...\n" +
      'downloading  10%\ndownloading  50%\ndownloading 100%\n' +
      'error: chroot failed\nwhile setting up the build environment\n' +
      "error: builder for '/nix/store/abc-x.drv' failed with exit code 1;\n" +
      '       last 2 log lines:\n       > bell and tab\there\n' +
      'done\n',
  );
});

test('stripControls keeps text, tabs, newlines and non-ASCII letters', () => {
  assert.equal(stripControls('grüße\tok\nnext λ'), 'grüße\tok\nnext λ');
});

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'nixery-stderr-'));
  learnSettingSecrets({ NIXERY_PKGS_REPO: 'https://nixery:Stderr-Secret-77@git.example.org/pkgs.git' });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('real Nix: a builder that cannot start, and one printing control bytes, fail with clean messages', async () => {
  const file = path.join(dir, 'bad.nix');
  const salt = `${process.pid}-${Date.now()}`;
  await writeFile(
    file,
    `{ salt }: {
  missing = derivation { name = "missing-builder-\${salt}"; system = builtins.currentSystem; builder = "/nonexistent/builder"; };
  noisy = derivation { name = "noisy-\${salt}"; system = builtins.currentSystem; builder = "/bin/sh";
    args = [ "-c" "printf '\\\\033[31mred\\\\033[0m \\\\001\\\\005 Stderr-Secret-77 \\\\177done\\\\n'; exit 3" ]; };
}
`,
  );
  for (const [attr, expected] of [
    ['missing', /error: executing '\/nonexistent\/builder': No such file or directory/],
    ['noisy', /red  \*\*\* done/],
  ] as const) {
    await assert.rejects(
      runNix('nix-build', [file, '-A', attr, '--argstr', 'salt', salt, '--no-out-link'], { timeoutMs: 60_000, timeoutKind: 'REALISE_TIMEOUT', what: `building ${attr}`, env: nixEnv() }),
      (err: unknown) => {
        assert.ok(err instanceof NixFailedError, String(err));
        assert.doesNotMatch(err.stderr, UNCLEAN, JSON.stringify(err.stderr));
        assert.doesNotMatch(err.message, UNCLEAN, JSON.stringify(err.message));
        assert.match(err.stderr, expected);
        assert.ok(!err.stderr.includes('Stderr-Secret-77') && !err.message.includes('Stderr-Secret-77'));
        return true;
      },
    );
  }
});

test("git ls-remote: a token in the URL is in neither the error nor git's own message", async () => {
  // A git server that refuses everyone: git would name a token in the URL (as a user name) itself;
  // it is sent as a header now, and git asks for a user name it cannot read.
  const server = http.createServer((_req, res) => {
    res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="pkgs"' });
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const url = `http://Git-Token-4242@127.0.0.1:${port}/pkgs.git`;
  learnSettingSecrets({ NIXERY_PKGS_REPO: url });
  try {
    await assert.rejects(pinSource({ kind: 'git', url }, 'latest', { timeoutMs: 20_000 }), (err: unknown) => {
      assert.ok(err instanceof SourceUnavailableError, String(err));
      assert.ok(!err.message.includes('Git-Token-4242'), err.message);
      assert.match(err.message, new RegExp(`^cannot list the references of http://\\*\\*\\*@127\\.0\\.0\\.1:${port}/pkgs\\.git: .*could not read (?:Password|Username) for 'http://(?:\\*\\*\\*@)?127\\.0\\.0\\.1:${port}'`));
      return true;
    });
  } finally {
    server.close();
  }
});
