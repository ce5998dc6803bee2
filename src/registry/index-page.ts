// The pages at `/` and `/explore/<name>:<tag>`: an HTML shell the explorer's script (web/explorer,
// bundled into dist/assets) fills in, around what the registry knows without it: what this
// instance serves, how to pull from it, the package source and its current revision, and
// recent build errors. Everything from outside is escaped, and redacted of secrets; the page has
// no inline script or style (the Content-Security-Policy forbids both).

import type { RecentError } from '../service/registry-service.js';
import { escapeHtml } from './http.js';
import { redact } from '../secrets.js';

/** Every value shown: no configured secret, nothing unescaped. */
function show(s: string): string {
  return escapeHtml(redact(s));
}

/** URL paths of the explorer's assets (content-hashed names). */
export interface PageAssets {
  script: string;
  style: string;
  icon: string;
}

export interface IndexPageData {
  /** The request's Host header (may be attacker-controlled: escaped below). */
  host: string;
  /** NIXERY_PUBLIC_HOST: what pull commands name instead of the Host header, when set. */
  pullHost?: string;
  source: string;
  revision: string | null;
  /** Set while the package source cannot be reached. */
  sourceFailure?: { message: string; since: string };
  errors: RecentError[];
  version: string;
  /** The explorer's bundle; without it (not built) the page is the static part only. */
  assets?: PageAssets | null;
}

function head(title: string, assets: PageAssets | null | undefined): string {
  const links = assets
    ? `<link rel="stylesheet" href="${show(assets.style)}">
<link rel="icon" type="image/svg+xml" href="${show(assets.icon)}">
<script type="module" src="${show(assets.script)}"></script>`
    : '';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${show(title)}</title>
${links}
</head>`;
}

function top(version: string): string {
  return `<header class="top"><a class="brand" href="/">nixery-ts</a><span class="tagline">container images built on demand from Nix packages</span><span class="version">${show(version)}</span></header>`;
}

/** `data-pull-host` for the script (web/explorer/dom.ts pullHost), when a public host is set. */
function pullHostAttribute(pullHost: string | undefined): string {
  return pullHost ? ` data-pull-host="${show(pullHost)}"` : '';
}

export function renderIndexPage(d: IndexPageData): string {
  const host = show(d.pullHost || d.host || 'localhost:8080');
  const errors = d.errors.length
    ? `<section id="build-errors">
<h2>Recent build errors</h2>
<p>The last images that failed to build, newest first.</p>
${d.errors
  .map((e) => `<details class="build-error"><summary>${show(e.image)} <small>${show(e.at)}</small></summary><pre>${show(e.message)}</pre></details>`)
  .join('\n')}
</section>`
    : '';
  return `${head('nixery-ts', d.assets)}
<body data-view="index"${pullHostAttribute(d.pullHost)}>
${top(d.version)}
<main>
<section id="intro">
<p>This registry builds container images on demand from Nix packages. The image name is the list of
packages: <code>${host}/shell/git/htop</code> is an image with a shell, git and htop. The meta-package
<code>shell</code> adds bash and core utilities, <code>arm64</code> builds for aarch64-linux.</p>
</section>
<noscript><p class="notice">Searching packages, building and exploring images here needs JavaScript; pulling does not.</p></noscript>
<div id="app"></div>
<section id="how-to-pull">
<h2>Pull an image</h2>
<p><code>ctr</code> needs containerd running, <code>docker</code> the Docker daemon; podman and skopeo need no daemon.</p>
<pre>ctr images pull --plain-http ${host}/shell/hello:latest
ctr run --rm ${host}/shell/hello:latest demo hello
skopeo inspect --tls-verify=false docker://${host}/shell/hello
podman pull --tls-verify=false ${host}/shell/hello
docker pull ${host}/shell/hello</pre>
</section>
<section id="package-source">
<h2>Package source</h2>
<p>${show(d.source)}${d.revision ? `, revision <code>${show(d.revision)}</code>` : ''}</p>
${
  d.sourceFailure
    ? `<p class="source-failure"><strong>The package source cannot be reached</strong> (since ${show(d.sourceFailure.since)}): images built before are served with their last known revision; new images cannot be built until it is back.</p>
<pre>${show(d.sourceFailure.message)}</pre>`
    : ''
}
</section>
${errors}
</main>
<footer><small>nixery-ts ${show(d.version)}</small></footer>
</body>
</html>
`;
}

export interface ExplorePageData {
  /** `name:tag` as requested (escaped below; the script reads it from the URL). */
  image: string;
  /** NIXERY_PUBLIC_HOST, when set: the script's pull commands name it (else the page's host). */
  pullHost?: string;
  version: string;
  assets?: PageAssets | null;
}

/** The shell of `/explore/<name>:<tag>`: the script fetches the image's details and draws them. */
export function renderExplorePage(d: ExplorePageData): string {
  return `${head(`${d.image} · nixery-ts`, d.assets)}
<body data-view="explore"${pullHostAttribute(d.pullHost)}>
${top(d.version)}
<main>
<h1 class="image-title">${show(d.image)}</h1>
<noscript><p class="notice">The image view needs JavaScript. Its details are at <a href="/api/v1/images/${show(d.image)}">/api/v1/images/${show(d.image)}</a>.</p></noscript>
<div id="app"></div>
</main>
<footer><small>nixery-ts ${show(d.version)}</small></footer>
</body>
</html>
`;
}
