// The image explorer's side of the registry: its pages (`/`, `/explore/<name>:<tag>`), its
// assets (the bundle `npm run build` writes to dist/assets, served under content-hashed names
// that never change meaning, so they are cached for good), and the image API it reads:
// `GET /api/v1/images` (recently built images) and `GET /api/v1/images/<name>:<tag>` (layers,
// sizes, store paths, sharing), with `/manifest`, `/docker-manifest` and `/config` for the JSON
// documents themselves. Looking never builds: an image that is not built is a 404.
//
// Pages carry a strict Content-Security-Policy (scripts, styles and connections from this
// origin only; no inline code, no eval) and are never sniffed as another type.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import type { BuiltImage } from '../builder/builder.js';
import type { Pinner } from '../builder/pins.js';
import { parseImageName, pullName, validateName, validateTag } from '../image/name.js';
import type { Signatures } from '../service/signatures.js';
import type { Blob } from '../manifest/manifest.js';
import { NixeryError } from '../errors.js';
import { notModified, writeHead, type RequestContext } from './http.js';
import { renderExplorePage, renderIndexPage, type PageAssets } from './index-page.js';
import type { RegistryService } from '../service/registry-service.js';
import type { ImageDetails, ImageSharing, LayerDetails, RecentImagesResponse } from '../service/explorer-types.js';
import type { Admission } from './access.js';

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers the pages carry besides what every response does (nosniff: http.ts writeHead). */
const PAGE_HEADERS = { 'Content-Security-Policy': CONTENT_SECURITY_POLICY, 'Referrer-Policy': 'no-referrer', 'Cache-Control': 'no-store' } as const;

/** The files of the bundle, as `npm run build` writes them, and what they are served as. */
const BUNDLE = [
  { key: 'script', file: 'explorer.js', type: 'text/javascript; charset=utf-8' },
  { key: 'style', file: 'explorer.css', type: 'text/css; charset=utf-8' },
  { key: 'icon', file: 'favicon.svg', type: 'image/svg+xml' },
] as const;

export const DEFAULT_ASSETS_DIR = fileURLToPath(new URL('../../assets/', import.meta.url));

interface Asset {
  type: string;
  etag: string;
  bytes: Buffer;
  /** The same bytes gzip-compressed, when that is smaller. */
  gzip?: Buffer;
}

export interface ExplorerAssets {
  /** URL paths for the pages. */
  paths: PageAssets;
  /** Served file name → asset. */
  files: ReadonlyMap<string, Asset>;
}

/**
 * Reads the bundle from `dir` once, at start. Null (and the reason) when it is not built: the
 * registry still serves pulls and the pages' static part.
 */
export function loadExplorerAssets(dir: string = DEFAULT_ASSETS_DIR): { assets: ExplorerAssets } | { assets: null; missing: string } {
  const files = new Map<string, Asset>();
  const paths: Partial<Record<keyof PageAssets, string>> = {};
  for (const { key, file, type } of BUNDLE) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(`${dir}/${file}`);
    } catch (err) {
      return { assets: null, missing: `${dir}/${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
    }
    const hash = createHash('sha256').update(bytes).digest('hex');
    const dot = file.lastIndexOf('.');
    const name = `${file.slice(0, dot)}.${hash.slice(0, 16)}${file.slice(dot)}`;
    const gzip = gzipSync(bytes, { level: 9 });
    files.set(name, { type, etag: `"${hash}"`, bytes, gzip: gzip.length < bytes.length ? gzip : undefined });
    paths[key] = `/assets/${name}`;
  }
  return { assets: { paths: paths as PageAssets, files } };
}

export interface ExplorerOptions {
  service: RegistryService;
  pins: Pinner;
  assets: ExplorerAssets | null;
  /** Describes the package source on the index page. */
  sourceDescription: string;
  version: string;
  /** NIXERY_PUBLIC_HOST: the host pull commands name (default: the request's Host). */
  publicHost?: string;
  /** Whether (and with which key) what is served is signed. */
  signatures?: Pick<Signatures, 'details'>;
}

export class Explorer {
  constructor(private readonly options: ExplorerOptions) {}

  /** `/`: what the registry knows now (the page never waits for the source); errors of images the client may pull. */
  index(ctx: RequestContext, admission: Admission): void {
    const { pins, service } = this.options;
    const status = pins.status();
    const html = renderIndexPage({
      host: ctx.req.headers.host ?? '',
      pullHost: this.options.publicHost,
      source: this.options.sourceDescription,
      revision: pins.peek('latest')?.pinned.revision ?? null,
      sourceFailure: status.failure ? { message: status.failure.error.message, since: new Date(status.failure.since).toISOString() } : undefined,
      errors: service.errors.list().filter((e) => admission.mayPull(e.image.slice(0, e.image.lastIndexOf(':')))),
      version: this.options.version,
      assets: this.options.assets?.paths,
    });
    send(ctx, 200, 'text/html; charset=utf-8', Buffer.from(html), PAGE_HEADERS);
  }

  /** `/explore/<name>:<tag>`: the shell, headed by the canonical name; the script asks the API for the image. */
  explore(ctx: RequestContext, params: Record<string, string>): void {
    const { name, tag } = checkedRef(params);
    // The heading names the image as the registry does (meta-packages first, the rest sorted).
    const html = renderExplorePage({ image: `${pullName(parseImageName(name, tag))}:${tag}`, version: this.options.version, assets: this.options.assets?.paths, pullHost: this.options.publicHost });
    send(ctx, 200, 'text/html; charset=utf-8', Buffer.from(html), PAGE_HEADERS);
  }

  /** `/assets/<name>.<hash>.<ext>`: immutable, so cached for a year; gzip when the client takes it. */
  asset(ctx: RequestContext, params: Record<string, string>): void {
    const asset = this.options.assets?.files.get(params.file!);
    if (!asset) throw new NixeryError('NOT_FOUND', `no such asset: ${params.file!.slice(0, 100)}`);
    const headers: Record<string, string> = { 'Content-Type': asset.type, ETag: asset.etag, 'Cache-Control': 'public, max-age=31536000, immutable', Vary: 'Accept-Encoding' };
    if (notModified(ctx.req, asset.etag)) {
      writeHead(ctx, 304, headers);
      ctx.res.end();
      return;
    }
    const gzip = asset.gzip && /\bgzip\b/.test(String(ctx.req.headers['accept-encoding'] ?? '')) ? asset.gzip : undefined;
    if (gzip) headers['Content-Encoding'] = 'gzip';
    send(ctx, 200, asset.type, gzip ?? asset.bytes, headers);
  }

  /** `GET /api/v1/images`: the images built (or found in storage) lately that the client may pull, newest first. */
  recent(ctx: RequestContext, admission: Admission): void {
    const visible = (name: string) => admission.mayPull(name);
    const { recent } = this.options.service;
    sendJson(ctx, { images: recent.list(visible), sharedLayers: recent.sharedLayers(visible) } satisfies RecentImagesResponse);
  }

  /**
   * `GET /api/v1/images/<name>:<tag>[/part]`: an image's details (with what it shares with the
   * recent images the client may pull), or one of its JSON documents.
   */
  async image(ctx: RequestContext, params: Record<string, string>, admission?: Admission): Promise<void> {
    const { name, tag } = checkedRef(params);
    const built = await this.options.service.findImage(name, tag);
    switch (params.part) {
      case 'manifest':
        return sendDocument(ctx, built.manifests.oci);
      case 'docker-manifest':
        return sendDocument(ctx, built.manifests.docker);
      case 'config':
        return sendDocument(ctx, built.manifests.config);
      default:
        return sendJson(ctx, {
          ...imageDetails(built, this.options.service.recent.sharing(built, (n) => admission?.mayPull(n) ?? true)),
          attestations: await this.options.service.attestationDetails(built),
          signature: this.options.signatures?.details(pullName(built.image), built.manifests.oci.digest) ?? { signed: false },
        });
    }
  }
}

/** The name and tag of an image route, checked (NAME_INVALID, or TAG_INVALID's 404). */
function checkedRef(params: Record<string, string>): { name: string; tag: string } {
  return { name: validateName(params.name!), tag: validateTag(params.tag!) };
}

export function imageDetails(built: BuiltImage, sharing: ImageSharing): ImageDetails {
  const name = pullName(built.image);
  const tag = built.image.tag;
  const ref = `${name}:${tag}`;
  const last = built.layers.length - 1;
  const layers: LayerDetails[] = built.layers.map((l, i) => ({
    index: i + 1,
    // The builder always puts the customisation layer last.
    kind: i === last ? 'customisation' : 'store-paths',
    digest: l.digest,
    size: l.size,
    diffId: l.diffId,
    uncompressedSize: l.uncompressedSize ?? null,
    paths: l.paths,
    storePaths: l.storePaths ?? null,
    links: l.links ?? null,
    popularity: l.popularity ?? null,
    runtime: l.runtime ?? null,
    shared: Boolean(l.runtime),
  }));
  const unpacked = layers.map((l) => l.uncompressedSize);
  const known = layers.every((l) => l.kind === 'customisation' || l.storePaths !== null);
  const describe = (b: Blob) => ({ digest: b.digest, mediaType: b.mediaType, size: b.size });
  return {
    image: ref,
    name,
    tag,
    architecture: built.image.arch.imageArch,
    packages: built.image.packages,
    revision: built.revision,
    manifest: describe(built.manifests.oci),
    dockerManifest: describe(built.manifests.docker),
    config: describe(built.manifests.config),
    links: {
      manifest: `/api/v1/images/${ref}/manifest`,
      dockerManifest: `/api/v1/images/${ref}/docker-manifest`,
      config: `/api/v1/images/${ref}/config`,
      registryManifest: `/v2/${name}/manifests/${built.manifests.oci.digest}`,
      registryConfig: `/v2/${name}/blobs/${built.manifests.config.digest}`,
    },
    totals: {
      layers: layers.length,
      size: layers.reduce((s, l) => s + l.size, 0),
      uncompressedSize: unpacked.every((n) => n !== null) ? unpacked.reduce((s: number, n) => s + n!, 0) : null,
      storePaths: layers.reduce((s, l) => s + (l.kind === 'store-paths' ? l.paths : 0), 0),
      narSize: known ? layers.reduce((s, l) => s + (l.storePaths ?? []).reduce((t, p) => t + p.narSize, 0), 0) : null,
    },
    layers,
    sharing,
  };
}

/** A stored JSON document, byte for byte, as JSON a browser shows (its digest in the headers). */
function sendDocument(ctx: RequestContext, blob: Blob): void {
  const etag = `"${blob.digest}"`;
  const headers = { 'Docker-Content-Digest': blob.digest, 'X-Media-Type': blob.mediaType, ETag: etag, 'Cache-Control': 'no-cache' };
  if (notModified(ctx.req, etag)) {
    writeHead(ctx, 304, headers);
    ctx.res.end();
    return;
  }
  send(ctx, 200, 'application/json', blob.bytes, headers);
}

function sendJson(ctx: RequestContext, value: unknown): void {
  send(ctx, 200, 'application/json', Buffer.from(JSON.stringify(value)), { 'Cache-Control': 'no-store' });
}

function send(ctx: RequestContext, status: number, contentType: string, body: Buffer, headers: Record<string, string>): void {
  writeHead(ctx, status, { ...headers, 'Content-Type': contentType, 'Content-Length': body.length });
  ctx.res.end(body);
}
