// The index page at `/`: what this instance serves, how to pull from it, the package source
// and its current revision, and recent build errors. Everything from outside is escaped, and
// redacted of secrets.

import type { RecentError } from './service.js';
import { escapeHtml } from './http.js';
import { redact } from '../secrets.js';

/** Every value shown: no configured secret, nothing unescaped. */
function show(s: string): string {
  return escapeHtml(redact(s));
}

export interface IndexPageData {
  /** The request's Host header (may be attacker-controlled: escaped below). */
  host: string;
  source: string;
  revision: string | null;
  /** Set while the package source cannot be reached. */
  sourceFailure?: { message: string; since: string };
  errors: RecentError[];
  version: string;
}

export function renderIndexPage(d: IndexPageData): string {
  const host = show(d.host || 'localhost:8080');
  const errors = d.errors.length
    ? `<h2>Recent build errors</h2>
<p>The last images that failed to build, newest first.</p>
${d.errors
  .map((e) => `<details class="build-error"><summary>${show(e.image)} <small>${show(e.at)}</small></summary><pre>${show(e.message)}</pre></details>`)
  .join('\n')}`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>nixery-ts</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
pre, code { background: #f6f8fa; padding: 0.1rem 0.3rem; }
pre { padding: 1rem; overflow-x: auto; }
</style>
</head>
<body>
<h1>nixery-ts</h1>
<p>This registry builds container images on demand from Nix packages. The image name is the list of
packages: <code>${host}/shell/git/htop</code> is an image with a shell, git and htop. The meta-package
<code>shell</code> adds bash and core utilities, <code>arm64</code> builds for aarch64-linux.</p>
<h2>Pull an image</h2>
<pre>ctr images pull --plain-http ${host}/shell/hello:latest
ctr run --rm ${host}/shell/hello:latest demo hello
skopeo inspect --tls-verify=false docker://${host}/shell/hello
podman pull --tls-verify=false ${host}/shell/hello
docker pull ${host}/shell/hello</pre>
<h2>Package source</h2>
<p>${show(d.source)}${d.revision ? `, revision <code>${show(d.revision)}</code>` : ''}</p>
${
  d.sourceFailure
    ? `<p class="source-failure"><strong>The package source cannot be reached</strong> (since ${show(d.sourceFailure.since)}): images built before are served with their last known revision; new images cannot be built until it is back.</p>
<pre>${show(d.sourceFailure.message)}</pre>`
    : ''
}
${errors}
<p><small>nixery-ts ${show(d.version)}</small></p>
</body>
</html>
`;
}
