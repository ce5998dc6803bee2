// The explorer in a real browser: Debian's Chromium (scripts/install-deps.sh installs it) driven by
// playwright-core, which downloads no browser. A person's path through it: search the package set,
// compose an image, copy its pull command, build it and watch the build live, then look at the
// image, whose layer digests must be those of the manifest a pull gets; a package description
// written to break out of its text stays text; a failed build shows its error. No console error,
// no page error and no Content-Security-Policy violation on the way. Screenshots go to
// test-artifacts/ in the project.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type ConsoleMessage, type Page } from 'playwright-core';
import { startRegistry, type TestRegistry } from '../helpers/registry.js';
import { REPO_ROOT } from '../helpers/nix.js';
import { makeTestPackageSet, type TestPackageSet } from '../helpers/slow-pkgs.js';
import { MEDIA_TYPES } from '../../src/manifest/manifest.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');
/** A package description that would run script if it were ever parsed as HTML. */
const HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>&amp; "quoted"';

interface Seen {
  consoleErrors: string[];
  pageErrors: string[];
  cspViolations: string[];
  /** 404s the page asked for on purpose (an image that is not built yet). */
  expected404: string[];
}

describe('the explorer in Chromium', { timeout: 300_000 }, () => {
  let r: TestRegistry;
  let dir: string;
  let testPkgs: TestPackageSet | undefined;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const seen: Seen = { consoleErrors: [], pageErrors: [], cspViolations: [], expected404: [] };
  let allow404: RegExp | null = null;

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/install-deps.sh as root (apt-get install chromium)`);
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-explorer-browser-'));
    // The example package set with packages built anew in this run (slow2 sleeps 2 s, big is 40 MB
    // to pack: the build has phases to watch), plus one whose description is hostile markup.
    testPkgs = await makeTestPackageSet({ sleeps: [2], bigMegabytes: 40 });
    const pkgs = path.join(dir, 'pkgs');
    await mkdir(pkgs);
    await writeFile(
      path.join(pkgs, 'default.nix'),
      `args: let pkgs = import ${testPkgs.dir} args; in pkgs // {\n  evil-description = pkgs.hello // { meta = { description = ${JSON.stringify(HOSTILE)}; }; };\n}\n`,
    );
    const popularity = path.join(dir, 'popularity.json');
    await writeFile(popularity, JSON.stringify({ 'busybox-static': 5000, 'zlib-1.3.1': 3000, 'openssl-3.0.14': 200 }));
    r = await startRegistry({ NIXERY_PKGS_PATH: pkgs, NIX_POPULARITY_URL: popularity });
    await mkdir(ARTIFACTS, { recursive: true });

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: r.url });
    // Runs before the page's own script, outside its policy: reports every CSP violation of every page.
    await context.exposeFunction('reportCspViolation', (v: string) => seen.cspViolations.push(v));
    await context.addInitScript(() => {
      const report = (window as unknown as { reportCspViolation: (v: string) => void }).reportCspViolation;
      document.addEventListener('securitypolicyviolation', (e) => report(`${location.pathname}: ${e.violatedDirective} ${e.blockedURI}`));
    });
    page = await context.newPage();
    page.on('console', (m: ConsoleMessage) => {
      if (m.type() !== 'error') return;
      const where = m.location().url;
      if (allow404 && /status of 404/.test(m.text()) && allow404.test(where)) seen.expected404.push(where);
      else seen.consoleErrors.push(`${m.text()} (${where})`);
    });
    page.on('pageerror', (e) => seen.pageErrors.push(e.message));
  });

  after(async () => {
    await browser?.close();
    await r?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    await testPkgs?.remove();
  });

  /** Searches and adds the result whose attribute is `attr`. */
  async function addPackage(query: string, attr: string): Promise<void> {
    await page.fill('#package-search', query);
    // The first search may find the index still being built; the page asks again by itself.
    const row = page.locator(`#search-results li[data-attr="${attr}"]`);
    await row.waitFor({ timeout: 90_000 });
    await row.locator('button.add').click();
    await page.locator(`#chosen-packages li[data-component="${attr.toLowerCase()}"]`).waitFor();
  }

  test('search, compose, copy, build live, then the layers of the image match its manifest', async () => {
    await page.goto(`${r.url}/`);
    await page.locator('#package-search').waitFor();
    // The index page's own content is still there.
    assert.match(await page.locator('#how-to-pull').innerText(), /docker pull/);
    assert.match(await page.locator('#package-source').innerText(), /local directory/);

    await addPackage('hello', 'hello');
    // By description: "a package whose description is hostile" is found as text, and stays text.
    await page.fill('#package-search', 'onerror');
    const evil = page.locator('#search-results li[data-attr="evil-description"]');
    await evil.waitFor({ timeout: 60_000 });
    assert.equal(await evil.locator('.description').textContent(), HOSTILE);
    assert.equal(await evil.locator('img, script').count(), 0);
    assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
    await addPackage('slow', 'slow2');
    await addPackage('big', 'big');

    const ref = `${r.host}/hello/slow2/big:latest`;
    assert.equal(await page.locator('#image-ref').textContent(), ref);
    // The pull commands: docker first, then each client's own; Copy puts the shown one on the clipboard.
    assert.match((await page.locator('#pull-command').textContent())!, new RegExp(`^docker pull ${escapeRegExp(ref)}$`, 'm'));
    for (const [client, line] of [
      ['podman', `podman pull --tls-verify=false ${ref}`],
      ['containerd', `ctr images pull --plain-http ${ref}`],
      ['kubernetes', `      image: ${ref}`],
    ] as const) {
      await page.click(`#pull-tabs button[data-client="${client}"]`);
      assert.ok((await page.locator('#pull-command').textContent())!.split('\n').includes(line), client);
    }
    await page.click('#copy-command');
    await page.locator('#copy-status', { hasText: 'Copied' }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, await page.locator('#pull-command').textContent());
    assert.match(copied, /^kind: Pod$/m);

    // Build, and watch it: every status the server sends while building becomes a line of the log.
    await page.click('#build-button');
    await page.locator('#build-status[data-state="running"], #build-status[data-state="queued"]').waitFor({ timeout: 30_000 });
    await page.locator('#build-status[data-state="succeeded"]').waitFor({ timeout: 180_000 });
    // The answer to the POST, then what the event stream said while it built (the server sends a
    // few updates a second at most, so short phases may pass unseen), then the end.
    const log = await page.locator('#build-log li').allTextContents();
    assert.ok(log.some((l) => /running · realise: /.test(l)), log.join('\n'));
    assert.ok(log.some((l) => /running · pack: packing layer \d+ of \d+/.test(l)), log.join('\n'));
    assert.match(log.at(-1)!, /succeeded · done/);
    assert.equal(await page.locator('#build-phases li.done').count(), 7);
    assert.match((await page.locator('#build-figures').textContent())!, /^layer (\d+) of \1 · [\d.]+ (KiB|MiB) of [\d.]+ (KiB|MiB)$/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'explorer-build.png'), fullPage: true });

    await page.click('#build-explore-link');
    await page.waitForURL(`${r.url}/explore/hello/slow2/big:latest`);
    await page.locator('#layer-table').waitFor();
    const digests = await page.locator('#layer-table tbody tr').evaluateAll((rows) => rows.map((row) => (row as HTMLElement).dataset.digest));

    // What a pull gets: the same layers, in the same order.
    const pulled = await fetch(`${r.url}/v2/hello/slow2/big/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    const manifest = (await pulled.json()) as { layers: Array<{ digest: string }> };
    assert.deepEqual(digests, manifest.layers.map((l) => l.digest));
    assert.equal(await page.locator('#manifest-digest').textContent(), pulled.headers.get('docker-content-digest'));

    // Shared runtimes are marked, the customisation layer is last, the chart has a box per store path.
    const shared = await page.locator('#layer-table tr.shared').allTextContents();
    assert.ok(shared.some((t) => t.includes('shared runtime: busybox-static')), shared.join('\n'));
    assert.equal(await page.locator('#layer-table tbody tr').last().getAttribute('data-kind'), 'customisation');
    const details = (await (await fetch(`${r.url}/api/v1/images/hello/slow2/big:latest`)).json()) as { totals: { storePaths: number } };
    assert.equal(await page.locator('#closure-chart rect.path-box').count(), details.totals.storePaths);
    assert.ok((await page.locator('#closure-chart g.shared').count()) >= 1);
    // The store paths of a layer open on a click.
    const busybox = page.locator('#layer-table tr.shared', { hasText: 'shared runtime: busybox-static' });
    assert.equal(await busybox.locator('ul.paths').isVisible(), false);
    await busybox.locator('summary').click();
    assert.match(await busybox.locator('ul.paths').innerText(), /^\/nix\/store\/[a-z0-9]{32}-busybox-static \d/);
    // The manifest link gives the manifest itself.
    const manifestHref = await page.locator('#link-manifest').getAttribute('href');
    const doc = await fetch(`${r.url}${manifestHref}`);
    assert.equal(doc.headers.get('docker-content-digest'), pulled.headers.get('docker-content-digest'));
    await page.screenshot({ path: path.join(ARTIFACTS, 'explorer-image.png'), fullPage: true });

    // Back on the front page, the image is among the recently built (named with its packages sorted).
    await page.goto(`${r.url}/`);
    await page.locator('#recent-images-body tr[data-image="big/hello/slow2:latest"]').waitFor();
  });

  test('an image that is not built can be built from its page; a failed build shows its error as text', async () => {
    allow404 = /\/api\/v1\/images\/broken:latest$/;
    try {
      await page.goto(`${r.url}/explore/broken:latest`);
      await page.locator('#explore-error').waitFor();
      assert.match(await page.locator('#explore-error').innerText(), /broken:latest is not built yet/);
      await page.click('#build-button');
      await page.locator('#build-status[data-state="failed"]').waitFor({ timeout: 120_000 });
      const error = await page.locator('#build-error').innerText();
      assert.match(error, /broken on purpose/);
      assert.equal(await page.locator('#build-phases li.failed').count(), 1);
      await page.screenshot({ path: path.join(ARTIFACTS, 'explorer-failed-build.png'), fullPage: true });
    } finally {
      allow404 = null;
    }
    assert.ok(seen.expected404.length >= 1, 'the page asked for the image and was told it is not built');
  });

  test('no console error, no page error, no CSP violation on the way; the policy is enforced', async () => {
    assert.deepEqual(seen.consoleErrors, []);
    assert.deepEqual(seen.pageErrors, []);
    assert.deepEqual(seen.cspViolations, []);
    // The control: script that gets into the page as markup does not run, and is reported.
    await page.evaluate(() => {
      const script = document.createElement('script');
      script.textContent = 'window.injected = 1';
      document.body.appendChild(script);
    });
    for (let i = 0; i < 50 && seen.cspViolations.length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await page.evaluate(() => (window as unknown as { injected?: number }).injected), undefined);
    assert.equal(seen.cspViolations.length, 1);
    assert.match(seen.cspViolations[0]!, /script-src/);
  });
});

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
