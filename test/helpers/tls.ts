// A test certificate authority and a server certificate for 127.0.0.1 and localhost, made with
// openssl, for HTTPS pulls by real clients that are told to trust the CA.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

export interface TestPki {
  caCert: string;
  serverCert: string;
  serverKey: string;
}

/** Writes ca.crt, server.crt and server.key into `dir` (a new key pair each call). */
export function makeTestPki(dir: string, name = 'server'): TestPki {
  const file = (f: string) => path.join(dir, f);
  const openssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=nixery test CA', '-keyout', file('ca.key'), '-out', file('ca.crt')]);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', file(`${name}.key`), '-out', file(`${name}.csr`)]);
  writeFileSync(file(`${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', file(`${name}.ext`), '-out', file(`${name}.crt`)]);
  return { caCert: file('ca.crt'), serverCert: file(`${name}.crt`), serverKey: file(`${name}.key`) };
}
