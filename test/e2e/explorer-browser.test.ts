// The explorer in a real browser: Debian's Chromium (scripts/install-deps.sh installs it) driven by
// playwright-core, which downloads no browser, at 1280×800 and on a 390×844 phone. A person's path
// through it: search the package set (Enter adds the top result), compose an image, copy its pull
// command, build it and watch the build (the progress comes into view by itself), then look at the
// image, whose layer digests must be those of the manifest a pull gets, and at what it shares with
// another image, checked against both images' /v2 manifests; digests copy whole; a package the
// source lacks says so; a failed build replaces the page's earlier banner; a package description
// written to break out of its text stays text. No page is wider than the screen, and there is no
// console error, page error or Content-Security-Policy violation on the way. Screenshots go to
// test-artifacts/explorer/ in the project (printed; not committed).

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
const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts', 'explorer');
/** A package description that would run script if it were ever parsed as HTML. */
const HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>&amp; "quoted"';
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

interface Seen {
  consoleErrors: string[];
  pageErrors: string[];
  cspViolations: string[];
  /** 404s the page asked for on purpose (an image that is not built yet, a name with no such package). */
  expected404: string[];
}

interface Manifest {
  layers: Array<{ digest: string; size: number }>;
}

describe('the explorer in Chromium', { timeout: 600_000 }, () => {
  let r: TestRegistry;
  let dir: string;
  let testPkgs: TestPackageSet | undefined;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  /** The desktop page (1280×800) and the phone's (390×844). */
  let page: Page;
  let phone: Page;
  const seen: Seen = { consoleErrors: [], pageErrors: [], cspViolations: [], expected404: [] };
  let allow404: RegExp | null = null;

  async function openPage(viewport: { width: number; height: number }, mobile: boolean): Promise<Page> {
    const context = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile, deviceScaleFactor: mobile ? 2 : 1 });
    contexts.push(context);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: r.url });
    // Runs before the page's own script, outside its policy: reports every CSP violation of every page.
    await context.exposeFunction('reportCspViolation', (v: string) => seen.cspViolations.push(v));
    await context.addInitScript(() => {
      const report = (window as unknown as { reportCspViolation: (v: string) => void }).reportCspViolation;
      document.addEventListener('securitypolicyviolation', (e) => report(`${location.pathname}: ${e.violatedDirective} ${e.blockedURI}`));
    });
    const p = await context.newPage();
    p.on('console', (m: ConsoleMessage) => {
      if (m.type() !== 'error') return;
      const where = m.location().url;
      if (allow404 && /status of 404/.test(m.text()) && allow404.test(where)) seen.expected404.push(where);
      else seen.consoleErrors.push(`${m.text()} (${where})`);
    });
    p.on('pageerror', (e) => seen.pageErrors.push(e.message));
    return p;
  }

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/install-deps.sh as root (apt-get install chromium)`);
    dir = await mkdtemp(path.join(tmpdir(), 'nixery-explorer-browser-'));
    // The example package set with packages built anew in this run (slow2 sleeps 2 s, big is 40 MB
    // to pack: the build has phases to watch; slow3 for the phone's build), plus one whose
    // description is hostile markup.
    testPkgs = await makeTestPackageSet({ sleeps: [2, 3], bigMegabytes: 40 });
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
    console.log(`# explorer screenshots: ${ARTIFACTS}`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
    page = await openPage(DESKTOP, false);
    phone = await openPage(PHONE, true);
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await r?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    await testPkgs?.remove();
  });

  /** Searches and adds the result whose attribute is `attr`. */
  async function addPackage(p: Page, query: string, attr: string): Promise<void> {
    await p.fill('#package-search', query);
    // The first search may find the index still being built; the page asks again by itself.
    const row = p.locator(`#search-results li[data-attr="${attr}"]`);
    await row.waitFor({ timeout: 90_000 });
    await row.locator('button.add').click();
    await p.locator(`#chosen-packages li[data-component="${attr.toLowerCase()}"]`).waitFor();
  }

  /** Types `query`, waits for its results, presses Enter: the top result is added. */
  async function addTopResult(p: Page, query: string): Promise<string> {
    await p.fill('#package-search', query);
    // The results of this query, not those of the one before.
    const first = p.locator(`#search-results[data-query="${query}"] li.result`).first();
    await first.waitFor({ timeout: 90_000 });
    const attr = (await first.getAttribute('data-attr'))!;
    await p.press('#package-search', 'Enter');
    await p.locator(`#chosen-packages li[data-component="${attr.toLowerCase()}"]`).waitFor();
    assert.equal(await p.inputValue('#package-search'), '', 'the search box is ready for the next package');
    return attr;
  }

  /** No horizontal scrolling: the page is no wider than the window. */
  async function assertFits(p: Page, what: string): Promise<void> {
    const { scrollWidth, innerWidth } = await p.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth }));
    assert.ok(scrollWidth <= innerWidth, `${what}: the page is ${scrollWidth} px wide in a ${innerWidth} px window`);
  }

  /** The build panel is on screen, whole (the page brought it there: nobody scrolled). */
  async function assertPanelInView(p: Page, what: string): Promise<void> {
    const box = await p.evaluate(() => {
      const b = document.getElementById('build-status')!.getBoundingClientRect();
      return { top: b.top, bottom: b.bottom, height: window.innerHeight };
    });
    // Half a pixel either way: layout positions are fractional on a 2× screen.
    assert.ok(box.top >= -0.5 && box.bottom <= box.height + 0.5, `${what}: the build panel is at ${Math.round(box.top)}–${Math.round(box.bottom)} in a ${box.height} px window`);
  }

  async function manifestOf(name: string): Promise<Manifest & { digest: string }> {
    const res = await fetch(`${r.url}/v2/${name}/manifests/latest`, { headers: { Accept: MEDIA_TYPES.ociManifest } });
    assert.equal(res.status, 200, name);
    return { ...((await res.json()) as Manifest), digest: res.headers.get('docker-content-digest')! };
  }

  async function shot(p: Page, name: string): Promise<void> {
    await p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
  }

  test('1280×800: search, compose, copy, build with the progress in view, then the layers of the image match its manifest', async () => {
    await page.goto(`${r.url}/`);
    await page.locator('#package-search').waitFor();
    // The index page's own content is still there.
    assert.match(await page.locator('#how-to-pull').innerText(), /docker pull/);
    assert.match(await page.locator('#package-source').innerText(), /local directory/);
    await assertFits(page, 'front page');

    await addPackage(page, 'hello', 'hello');
    // By description: "a package whose description is hostile" is found as text, and stays text.
    await page.fill('#package-search', 'onerror');
    const evil = page.locator('#search-results li[data-attr="evil-description"]');
    await evil.waitFor({ timeout: 60_000 });
    assert.equal(await evil.locator('.description').textContent(), HOSTILE);
    assert.equal(await evil.locator('img, script').count(), 0);
    assert.equal(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned), undefined);
    await addPackage(page, 'slow', 'slow2');
    // Enter adds the top result.
    assert.equal(await addTopResult(page, 'big'), 'big');

    // Shown as the registry names it (sorted), however it was composed.
    const ref = `${r.host}/big/hello/slow2:latest`;
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
    // The pod runs the image's own command: none is forced on it.
    assert.doesNotMatch(copied, /command:|sleep/);
    await assertFits(page, 'front page, composed');

    // Build, and watch it: every status the server sends while building becomes a line of the log.
    // Nothing in the Image config section: no `config` is sent.
    const posted = page.waitForRequest((req) => req.url().endsWith('/api/v1/builds') && req.method() === 'POST');
    await page.click('#build-button');
    assert.deepEqual((await posted).postDataJSON(), { image: 'big/hello/slow2:latest' });
    await page.locator('#build-status[data-state="running"], #build-status[data-state="queued"]').waitFor({ timeout: 30_000 });
    await assertPanelInView(page, 'while building');
    await assertFits(page, 'building');
    // Screen readers hear the phase.
    assert.equal(await page.locator('#build-announce').getAttribute('aria-live'), 'polite');
    await page.locator('#build-announce', { hasText: /^(Build of big\/hello\/slow2:latest queued|Building big\/hello\/slow2:latest: \w+)\.$/ }).waitFor();
    await page.locator('#build-status[data-state="succeeded"]').waitFor({ timeout: 180_000 });
    await assertPanelInView(page, 'built');
    assert.equal(await page.locator('#build-announce').textContent(), 'Build of big/hello/slow2:latest succeeded.');
    // The answer to the POST, then what the event stream said while it built (the server sends a
    // few updates a second at most, so short phases may pass unseen), then the end.
    const log = await page.locator('#build-log li').allTextContents();
    assert.ok(log.some((l) => /running · realise: /.test(l)), log.join('\n'));
    assert.ok(log.some((l) => /running · pack: packing layer \d+ of \d+/.test(l)), log.join('\n'));
    assert.match(log.at(-1)!, /succeeded · done/);
    assert.equal(await page.locator('#build-phases li.done').count(), 7);
    assert.match((await page.locator('#build-figures').textContent())!, /^layer (\d+) of \1 · [\d.]+ (KiB|MiB) of [\d.]+ (KiB|MiB)$/);
    await assertFits(page, 'built');
    await shot(page, 'desktop-build');

    await page.click('#build-explore-link');
    await page.waitForURL(`${r.url}/explore/big/hello/slow2:latest`);
    await page.locator('#layer-groups').waitFor();
    assert.equal(await page.locator('h1').textContent(), 'big/hello/slow2:latest');
    const rows = await page.locator('#layer-groups tr.layer-row').evaluateAll((trs) => trs.map((tr) => ({ digest: (tr as HTMLElement).dataset.digest!, index: Number(tr.querySelector('td')!.textContent) })));

    // What a pull gets: the same layers (in groups; the positions are the manifest's).
    const pulled = await manifestOf('big/hello/slow2');
    assert.deepEqual([...rows].sort((a, b) => a.index - b.index).map((l) => l.digest), pulled.layers.map((l) => l.digest));
    // The manifest digest is shortened, and its Copy button copies it whole.
    const manifestDigest = page.locator('#manifest-digest');
    assert.equal(await manifestDigest.getAttribute('data-digest'), pulled.digest);
    assert.equal(await manifestDigest.locator('code').textContent(), `${pulled.digest.slice(0, 19)}…`);
    await manifestDigest.locator('button.copy-digest').click();
    await manifestDigest.locator('.copied', { hasText: 'Copied' }).waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), pulled.digest);

    // The groups: shared runtimes (busybox), packages, the customisation layer; each with its totals.
    const groups = await page.locator('#layer-groups details.layer-group').evaluateAll((ds) => ds.map((d) => (d as HTMLElement).dataset.group));
    assert.deepEqual(groups, ['runtimes', 'packages', 'customisation']);
    const details = (await (await fetch(`${r.url}/api/v1/images/big/hello/slow2:latest`)).json()) as { totals: { storePaths: number }; layers: Array<{ digest: string; size: number; shared: boolean; kind: string }> };
    const runtimes = details.layers.filter((l) => l.shared);
    assert.match(await page.locator('[data-group="runtimes"] .group-totals').textContent() ?? '', new RegExp(`^${runtimes.length} layers?, `));
    assert.equal(await page.locator('[data-group="customisation"] tr.layer-row').getAttribute('data-digest'), pulled.layers.at(-1)!.digest);
    const shared = await page.locator('[data-group="runtimes"] tr.shared').allTextContents();
    assert.ok(shared.some((t) => t.includes('shared runtime: busybox-static')), shared.join('\n'));
    assert.equal(await page.locator('#closure-chart rect.path-box').count(), details.totals.storePaths);
    assert.ok((await page.locator('#closure-chart g.shared').count()) >= 1);
    // The store paths of a layer open on a click.
    const busybox = page.locator('#layer-groups tr.shared', { hasText: 'shared runtime: busybox-static' });
    assert.equal(await busybox.locator('ul.paths').isVisible(), false);
    await busybox.locator('summary').click();
    assert.match(await busybox.locator('ul.paths').innerText(), /^\/nix\/store\/[a-z0-9]{32}-busybox-static \d/);
    // The manifest link gives the manifest itself.
    const manifestHref = await page.locator('#link-manifest').getAttribute('href');
    const doc = await fetch(`${r.url}${manifestHref}`);
    assert.equal(doc.headers.get('docker-content-digest'), pulled.digest);
    // Its SBOMs and provenance are linked, its licenses summed up, and it says it is not signed
    // (this registry has no NIXERY_SIGNING_KEY).
    const sbomLinks = await page.locator('#attestations a').allTextContents();
    assert.deepEqual(sbomLinks.filter((t) => t !== 'referrers').sort(), ['CycloneDX SBOM', 'SLSA provenance', 'SPDX SBOM']);
    assert.match((await page.locator('#licenses').textContent()) ?? '', /./);
    assert.match((await page.locator('#signature').textContent()) ?? '', /^no: this registry signs nothing/);
    await assertFits(page, 'image page');
    await shot(page, 'desktop-image');

    // Back on the front page, the image is among the recently built, at a time with its date and zone.
    await page.goto(`${r.url}/`);
    const recent = page.locator('#recent-images-body tr[data-image="big/hello/slow2:latest"]');
    await recent.waitFor();
    // (The test's own pull of the manifest found it built: "from storage".)
    assert.match(await recent.locator('td.when').innerText(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC( \(from storage\))?$/);
  });

  test('390×844: composing and building on a phone, the progress in view, nothing wider than the screen; what two images share', async () => {
    await phone.goto(`${r.url}/`);
    await phone.locator('#package-search').waitFor();
    await assertFits(phone, 'phone: front page');
    await addPackage(phone, 'hello', 'hello');
    await addPackage(phone, 'slow', 'slow3');
    assert.equal(await phone.locator('#image-ref').textContent(), `${r.host}/hello/slow3:latest`);
    await phone.click('#pull-tabs button[data-client="kubernetes"]');
    await assertFits(phone, 'phone: front page, composed, the Kubernetes snippet shown');
    await phone.click('#build-button');
    await phone.locator('#build-status:not([hidden])').waitFor();
    await assertPanelInView(phone, 'phone: after Build');
    await phone.locator('#build-status[data-state="succeeded"]').waitFor({ timeout: 180_000 });
    await assertPanelInView(phone, 'phone: built');
    await assertFits(phone, 'phone: built');
    await shot(phone, 'phone-build');

    // What hello/slow3 shares with big/hello/slow2 (built by the first test), from the manifests alone.
    const mine = await manifestOf('hello/slow3');
    const other = await manifestOf('big/hello/slow2');
    const theirs = new Set(other.layers.map((l) => l.digest));
    const common = mine.layers.filter((l) => theirs.has(l.digest));
    assert.ok(common.length >= 1 && common.length < mine.layers.length, `they share some layers: ${common.length} of ${mine.layers.length}`);

    await phone.click('#build-explore-link');
    await phone.waitForURL(`${r.url}/explore/hello/slow3:latest`);
    await phone.locator('#sharing').waitFor();
    const listed = await phone.locator('#sharing-table tbody tr').evaluateAll((trs) => trs.map((tr) => (tr as HTMLElement).dataset.digest));
    assert.deepEqual(listed, common.map((l) => l.digest));
    const skipped = common.reduce((s, l) => s + l.size, 0);
    const summary = phone.locator('#sharing-summary');
    assert.equal(Number(await summary.getAttribute('data-skipped')), skipped);
    assert.equal(Number(await summary.getAttribute('data-total')), mine.layers.reduce((s, l) => s + l.size, 0));
    assert.match(await summary.innerText(), new RegExp(`^${common.length} of its ${mine.layers.length} layers are in other images built lately`));
    const withOther = phone.locator('#sharing-images li[data-image="big/hello/slow2:latest"]');
    assert.equal(Number(await withOther.getAttribute('data-bytes')), skipped);
    for (const row of await phone.locator('#sharing-table tbody tr').all()) assert.match(await row.locator('td.images').innerText(), /big\/hello\/slow2:latest/);
    // A shared layer's digest copies whole.
    const firstShared = phone.locator('#sharing-table tbody tr').first();
    await firstShared.locator('button.copy-digest').click();
    await firstShared.locator('.copied', { hasText: 'Copied' }).waitFor();
    assert.equal(await phone.evaluate(() => navigator.clipboard.readText()), common[0]!.digest);
    await assertFits(phone, 'phone: image page');
    await shot(phone, 'phone-image');

    // The front page: the layers both have, most shared first.
    await phone.goto(`${r.url}/`);
    await phone.locator('#shared-layers-body tr').first().waitFor();
    const front = await phone.locator('#shared-layers-body tr').evaluateAll((trs) => trs.map((tr) => (tr as HTMLElement).dataset.digest));
    assert.deepEqual([...front].sort(), common.map((l) => l.digest).sort());
    await assertFits(phone, 'phone: front page with recent images');
    await shot(phone, 'phone-front');
  });

  test('the Image config section: folded, checked before sending, and sent as `config` only when filled; the image is pulled by digest', async () => {
    await page.goto(`${r.url}/`);
    await addPackage(page, 'hello', 'hello');
    assert.equal(await page.locator('#image-config').getAttribute('open'), null, 'folded until wanted');
    await page.click('#image-config summary');
    await page.fill('#config-env', 'NOVALUE');
    let sent = 0;
    const count = (req: { url(): string; method(): string }) => {
      if (req.url().endsWith('/api/v1/builds') && req.method() === 'POST') sent++;
    };
    page.on('request', count);
    await page.click('#build-button');
    await page.locator('#config-errors li', { hasText: 'env: "NOVALUE" is not NAME=value' }).waitFor();
    assert.equal(await page.locator('#config-env[aria-invalid]').count(), 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(sent, 0, 'a wrong field sends nothing');
    page.off('request', count);

    await page.fill('#config-env', 'GREETING=hi there\nEMPTY=');
    await page.fill('#config-user', '65532:65532');
    await page.fill('#config-entrypoint', '/bin/hello -g "hi there"');
    await page.fill('#config-exposedPorts', '8080 53/udp');
    await page.fill('#config-labels', 'org.example.team=infra');
    const posted = page.waitForRequest((req) => req.url().endsWith('/api/v1/builds') && req.method() === 'POST');
    await page.click('#build-button');
    assert.deepEqual((await posted).postDataJSON(), {
      image: 'hello:latest',
      config: { user: '65532:65532', entrypoint: ['/bin/hello', '-g', 'hi there'], env: ['GREETING=hi there', 'EMPTY='], exposedPorts: ['8080/tcp', '53/udp'], labels: { 'org.example.team': 'infra' } },
    });
    await page.locator('#build-status[data-state="succeeded"]').waitFor({ timeout: 120_000 });
    await assertPanelInView(page, 'a build with a config');
    // Pulled by digest (the tag keeps naming the image without the config): HOST/NAME@DIGEST, that digest's manifest.
    const pinned = (await page.locator('#build-pinned').textContent())!;
    const m = new RegExp(`^${escapeRegExp(r.host)}/hello@(sha256:[0-9a-f]{64})$`).exec(pinned);
    assert.ok(m, pinned);
    const byDigest = await fetch(`${r.url}/v2/hello/manifests/${m[1]}`, { headers: { Accept: `${MEDIA_TYPES.ociManifest}, ${MEDIA_TYPES.ociIndex}` } });
    assert.equal(byDigest.status, 200);
    assert.notEqual(m[1], (await manifestOf('hello')).digest);
    await page.locator('#copy-pinned').click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), pinned);
    await assertFits(page, 'front page with the Image config open');
    await shot(page, 'desktop-config');

    // The nonroot meta-package: its pod passes runAsNonRoot.
    await page.check('#opt-nonroot');
    assert.equal(await page.locator('#image-ref').textContent(), `${r.host}/nonroot/hello:latest`);
    await page.click('#pull-tabs button[data-client="kubernetes"]');
    assert.match((await page.locator('#pull-command').textContent())!, /^ {6}securityContext:\n {8}runAsNonRoot: true\n {8}runAsUser: 65532$/m);
  });

  test('a package the source does not have: the page says so and offers no build (phone and desktop)', async () => {
    allow404 = /\/api\/v1\/images\/hello\/nope:latest$|\/v2\/hello\/nope\/tags\/list/;
    const before404 = seen.expected404.length;
    try {
      for (const [p, label] of [[phone, 'phone'], [page, 'desktop']] as const) {
        await p.goto(`${r.url}/explore/hello/nope`);
        await p.locator('#explore-unknown').waitFor({ timeout: 120_000 });
        assert.match(await p.locator('#explore-unknown').innerText(), /No such package[\s\S]*Could not find Nix packages: nope/);
        assert.equal(await p.locator('#build-button').count(), 0);
        await assertFits(p, `${label}: unknown package`);
        await shot(p, `${label}-unknown-package`);
      }
    } finally {
      allow404 = null;
    }
    assert.ok(seen.expected404.length > before404);
  });

  test('an image that is not built can be built from its page; a failed build shows its error as text, in place of the earlier banner', async () => {
    allow404 = /\/api\/v1\/images\/broken:latest$/;
    try {
      await page.goto(`${r.url}/explore/broken:latest`);
      await page.locator('#explore-error').waitFor({ timeout: 120_000 });
      assert.match(await page.locator('#explore-error').innerText(), /broken:latest is not built yet/);
      await page.click('#build-button');
      await page.locator('#build-status[data-state="failed"]').waitFor({ timeout: 120_000 });
      await assertPanelInView(page, 'failed build');
      const error = await page.locator('#build-error').innerText();
      assert.match(error, /broken on purpose/);
      assert.equal(await page.locator('#build-phases li.failed').count(), 1);
      assert.equal(await page.locator('#explore-error').count(), 0, 'the MANIFEST_UNKNOWN banner is gone');
      assert.match((await page.locator('#build-announce').textContent())!, /^Build of broken:latest failed: /);
      await shot(page, 'desktop-failed-build');
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
