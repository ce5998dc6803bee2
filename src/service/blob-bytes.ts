// Small helpers of the blob policy: reading a stream whole, hashing, and a manifest's own media type.

import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { MANIFEST_MEDIA_TYPES } from '../manifest/manifest.js';

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** The media type a manifest declares in itself, when it is one we serve. */
export function sniffManifestType(bytes: Buffer): string | undefined {
  try {
    const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType;
    return typeof mediaType === 'string' && MANIFEST_MEDIA_TYPES.has(mediaType) ? mediaType : undefined;
  } catch {
    return undefined;
  }
}
