// A deterministic POSIX tar writer: ustar headers, PAX extended headers where ustar cannot say
// it (long or non-ASCII names and link targets, sizes >= 8 GiB). Every header field that could
// leak the build machine is fixed: uid/gid 0 (a directory may name its owner: a user's home),
// empty uname/gname, mtime 1, no atime/ctime.

import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { isUtf8 } from 'node:buffer';
import { ArchiveError, FileChangedError } from './errors.js';

/**
 * One tar member. Paths are written as given, relative (a leading `/` is dropped), e.g.
 * `nix/store/<hash>-hello/bin/hello`; directories get a trailing `/` in the archive. A path or
 * target may be a Buffer to carry file names that are not valid UTF-8 byte for byte.
 */
export type TarEntry =
  | { type: 'directory'; path: TarPath; mode: number; uid?: number; gid?: number }
  | { type: 'file'; path: TarPath; mode: number; size: number; source: { file: TarPath } | { data: Buffer } }
  | { type: 'symlink'; path: TarPath; target: TarPath }
  /** `target` is the path of an earlier regular-file entry of the same archive. */
  | { type: 'hardlink'; path: TarPath; target: TarPath; mode: number };

export type TarPath = string | Buffer;

/**
 * Where the tar bytes go. A returned promise means "wait before writing more". The writer never
 * modifies a buffer after passing it to `write`, so sinks may keep references.
 */
export interface ByteSink {
  write(chunk: Buffer): void | Promise<void>;
}

export interface WriteTarOptions {
  signal?: AbortSignal;
}

export const BLOCK_SIZE = 512;
/** mtime of every entry: what the Nix store uses, so unpacked files look like the store. */
export const ENTRY_MTIME = 1;
const USTAR_NAME_MAX = 100;
const USTAR_PREFIX_MAX = 155;
/** Largest size the 11-digit octal size field holds (8 GiB - 1). */
const USTAR_SIZE_MAX = 8 ** 11 - 1;
const PAX_HEADER_NAME = Buffer.from('././@PaxHeader');
const ZERO_BLOCKS = Buffer.alloc(2 * BLOCK_SIZE);

/** Files up to this size are read ahead, several at once, to hide per-file latency. */
const READ_AHEAD_FILE_MAX = 256 * 1024;
const READ_AHEAD_BYTES = 8 * 1024 * 1024;
const READ_AHEAD_FILES = 64;
/** Block size for streaming larger files. */
const READ_BLOCK = 1024 * 1024;

export function pathBytes(p: TarPath): Buffer {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : p;
}

/** A path for messages (lossy for non-UTF-8 bytes). */
export function displayPath(p: TarPath): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}

/** Byte order of the names as written in the archive (= code-point order for UTF-8 names). */
export function compareTarPaths(a: TarPath, b: TarPath): number {
  return Buffer.compare(pathBytes(a), pathBytes(b));
}

/** Sorts entries by path (byte order), the order packStorePaths and the customisation layer use. */
export function sortEntries<T extends TarEntry>(entries: T[]): T[] {
  const keyed = entries.map((e) => ({ e, key: normaliseName(e.path, false) }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.e);
}

/**
 * The archive name of a path: leading slashes dropped, trailing slash for directories.
 * Rejects empty, `.`/`..` or empty components and NUL bytes: they would unpack elsewhere.
 */
export function normaliseName(p: TarPath, directory: boolean): Buffer {
  let bytes = pathBytes(p);
  let start = 0;
  while (start < bytes.length && bytes[start] === 0x2f) start++;
  let end = bytes.length;
  while (end > start && bytes[end - 1] === 0x2f) end--;
  bytes = bytes.subarray(start, end);
  if (bytes.length === 0) throw new ArchiveError(`invalid tar entry name ${JSON.stringify(displayPath(p))}: it is empty`);
  if (bytes.includes(0)) throw new ArchiveError(`invalid tar entry name ${JSON.stringify(displayPath(p))}: it contains a NUL byte`);
  for (const component of bytes.toString('latin1').split('/')) {
    if (component === '' || component === '.' || component === '..') {
      throw new ArchiveError(`invalid tar entry name ${JSON.stringify(displayPath(p))}: empty, "." or ".." component`);
    }
  }
  return directory ? Buffer.concat([bytes, Buffer.from('/')]) : Buffer.from(bytes);
}

function isAscii(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) return false;
  return true;
}

/** Fallback for the ustar field when the real value is in a PAX record: ASCII, truncated. */
function asciiFallback(b: Buffer, max: number): Buffer {
  const out = Buffer.from(b.subarray(0, max));
  for (let i = 0; i < out.length; i++) if (out[i]! >= 0x80) out[i] = 0x5f; // '_'
  return out;
}

/**
 * Splits a long ASCII name into ustar prefix and name at a `/`: the longest prefix that fits,
 * a rule that depends only on the name. Null when no split fits.
 */
function splitUstar(name: Buffer): { prefix: Buffer; name: Buffer } | null {
  const last = Math.min(USTAR_PREFIX_MAX, name.length - 2);
  for (let i = last; i > 0; i--) {
    if (name[i] !== 0x2f) continue;
    const suffixLength = name.length - i - 1;
    if (suffixLength > USTAR_NAME_MAX) return null; // shorter prefixes only make it longer
    return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
  }
  return null;
}

function writeOctal(block: Buffer, offset: number, width: number, value: number): void {
  // width - 1 zero-padded octal digits and a NUL terminator
  const digits = value.toString(8).padStart(width - 1, '0');
  if (digits.length > width - 1) throw new ArchiveError(`tar header value ${value} does not fit in ${width - 1} octal digits`);
  block.write(digits, offset, 'ascii');
  block[offset + width - 1] = 0;
}

/** One PAX record `"<len> key=value\n"`, where len counts the whole record including itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = 3 + Buffer.byteLength(key) + value.length; // ' ', '=', '\n'
  let length = body + String(body).length;
  if (String(length).length !== String(body).length) length = body + String(length).length;
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from('\n')]);
}

interface HeaderFields {
  name: Buffer;
  prefix?: Buffer;
  mode: number;
  size: number;
  typeflag: string;
  linkname?: Buffer;
  uid?: number;
  gid?: number;
}

function ustarHeader(f: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  f.name.copy(block, 0);
  writeOctal(block, 100, 8, f.mode);
  writeOctal(block, 108, 8, f.uid ?? 0); // uid
  writeOctal(block, 116, 8, f.gid ?? 0); // gid
  writeOctal(block, 124, 12, f.size);
  writeOctal(block, 136, 12, ENTRY_MTIME);
  block.write(f.typeflag, 156, 'ascii');
  if (f.linkname) f.linkname.copy(block, 157);
  block.write('ustar\u000000', 257, 'ascii'); // magic "ustar\0" and version "00"
  // uname/gname stay empty: the numeric ids (0) are what unpackers use.
  writeOctal(block, 329, 8, 0); // devmajor
  writeOctal(block, 337, 8, 0); // devminor
  if (f.prefix) f.prefix.copy(block, 345);
  block.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  let sum = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) sum += block[i]!;
  writeOctal(block, 148, 7, sum); // six digits, NUL, then the space already there
  block[155] = 0x20;
  return block;
}

function padding(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

/**
 * The header block(s) of an entry: an optional PAX `x` header with its records, then the ustar
 * header. Exported for tests and for callers that lay out archives themselves.
 */
export function encodeHeader(entry: TarEntry): Buffer {
  const name = normaliseName(entry.path, entry.type === 'directory');
  const records: Array<[string, Buffer]> = [];
  let ustarName: Buffer;
  let prefix: Buffer | undefined;
  if (name.length <= USTAR_NAME_MAX && isAscii(name)) {
    ustarName = name;
  } else {
    const split = isAscii(name) ? splitUstar(name) : null;
    if (split) {
      ustarName = split.name;
      prefix = split.prefix;
    } else {
      records.push(['path', name]);
      ustarName = asciiFallback(name, USTAR_NAME_MAX);
    }
  }

  let linkname: Buffer | undefined;
  if (entry.type === 'symlink' || entry.type === 'hardlink') {
    const target = entry.type === 'hardlink' ? normaliseName(entry.target, false) : pathBytes(entry.target);
    if (target.length === 0) throw new ArchiveError(`${entry.type} ${displayPath(entry.path)} has an empty target`);
    if (target.includes(0)) throw new ArchiveError(`${entry.type} ${displayPath(entry.path)}: target contains a NUL byte`);
    if (target.length <= USTAR_NAME_MAX && isAscii(target)) linkname = target;
    else {
      records.push(['linkpath', target]);
      linkname = asciiFallback(target, USTAR_NAME_MAX);
    }
  }

  let size = 0;
  let mode: number;
  let typeflag: string;
  switch (entry.type) {
    case 'directory':
      mode = entry.mode;
      typeflag = '5';
      break;
    case 'file':
      mode = entry.mode;
      typeflag = '0';
      size = entry.size;
      if (!Number.isSafeInteger(size) || size < 0) throw new ArchiveError(`file ${displayPath(entry.path)} has an invalid size ${size}`);
      break;
    case 'symlink':
      mode = 0o777;
      typeflag = '2';
      break;
    case 'hardlink':
      mode = entry.mode;
      typeflag = '1';
      break;
  }
  mode &= 0o7777; // permission bits with setuid/setgid/sticky; the type is in typeflag
  let sizeField = size;
  if (size > USTAR_SIZE_MAX) {
    records.push(['size', Buffer.from(String(size))]);
    sizeField = 0;
  }

  const owner = entry.type === 'directory' ? { uid: entry.uid, gid: entry.gid } : {};
  const header = ustarHeader({ name: ustarName, prefix, mode, size: sizeField, typeflag, linkname, ...owner });
  if (records.length === 0) return header;

  const values = records.map(([, v]) => v);
  if (values.some((v) => !isUtf8(v))) records.push(['hdrcharset', Buffer.from('BINARY')]);
  records.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const body = Buffer.concat(records.map(([k, v]) => paxRecord(k, v)));
  const paxHeader = ustarHeader({ name: PAX_HEADER_NAME, mode: 0o644, size: body.length, typeflag: 'x' });
  return Buffer.concat([paxHeader, body, Buffer.alloc(padding(body.length)), header]);
}

/** The two zero blocks that end an archive (no padding to a 10240-byte record). */
export function endOfArchive(): Buffer {
  return ZERO_BLOCKS;
}

type FileEntry = Extract<TarEntry, { type: 'file' }>;

/** Opens a regular file without following symlinks and checks it still has the walked size. */
async function openChecked(entry: FileEntry, file: TarPath): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOENT') throw new FileChangedError(displayPath(file), code === 'ELOOP' ? 'it became a symlink' : 'it disappeared');
    throw new ArchiveError(`cannot open ${displayPath(file)}: ${(err as Error).message}`, { path: displayPath(file), cause: err });
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new FileChangedError(displayPath(file), 'it is no longer a regular file');
    if (st.size !== entry.size) throw new FileChangedError(displayPath(file), `size was ${entry.size}, now ${st.size}`);
    return handle;
  } catch (err) {
    await handle.close();
    throw err;
  }
}

async function readExactly(handle: FileHandle, buffer: Buffer, length: number, position: number, file: TarPath, size: number): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new FileChangedError(displayPath(file), `it shrank below ${size} bytes while being read`);
    done += bytesRead;
  }
}

async function assertAtEnd(handle: FileHandle, position: number, file: TarPath, size: number): Promise<void> {
  const probe = Buffer.alloc(1);
  const { bytesRead } = await handle.read(probe, 0, 1, position);
  if (bytesRead !== 0) throw new FileChangedError(displayPath(file), `it grew beyond ${size} bytes while being read`);
}

/** Reads a small file whole (read-ahead path), checking it has exactly the expected size. */
async function readSmallFile(entry: FileEntry, file: TarPath): Promise<Buffer> {
  const handle = await openChecked(entry, file);
  try {
    const data = Buffer.allocUnsafe(entry.size);
    await readExactly(handle, data, entry.size, 0, file, entry.size);
    await assertAtEnd(handle, entry.size, file, entry.size);
    return data;
  } finally {
    await handle.close();
  }
}

/** Streams a file's content into the sink in blocks, so memory stays flat for any size. */
async function streamFile(entry: FileEntry, file: TarPath, sink: ByteSink, signal?: AbortSignal): Promise<void> {
  const handle = await openChecked(entry, file);
  try {
    let position = 0;
    while (position < entry.size) {
      signal?.throwIfAborted();
      const length = Math.min(READ_BLOCK, entry.size - position);
      // A fresh buffer per block: a sink may keep a reference (fs.WriteStream does).
      const block = Buffer.allocUnsafe(length);
      await readExactly(handle, block, length, position, file, entry.size);
      position += length;
      await sink.write(block);
    }
    await assertAtEnd(handle, position, file, entry.size);
  } finally {
    await handle.close();
  }
}

interface Pending {
  entry: TarEntry;
  /** Content read ahead of time (small files). */
  data?: Promise<Buffer>;
  reserved: number;
}

/**
 * Writes `entries` as one tar archive into `sink`, in the given order, ending with two zero
 * blocks. Small files are read ahead concurrently; output order never depends on it.
 * Rejects duplicate names and hard links to anything but an earlier regular file.
 */
export async function writeTar(entries: AsyncIterable<TarEntry> | Iterable<TarEntry>, sink: ByteSink, options: WriteTarOptions = {}): Promise<void> {
  const { signal } = options;
  const iterator = Symbol.asyncIterator in entries ? entries[Symbol.asyncIterator]() : (entries as Iterable<TarEntry>)[Symbol.iterator]();
  const seen = new Set<string>();
  const files = new Set<string>();
  const window: Pending[] = [];
  let reservedBytes = 0;
  let exhausted = false;
  let failed = false;

  const startReads = (): void => {
    for (const p of window) {
      if (p.data || p.entry.type !== 'file' || !('file' in p.entry.source)) continue;
      const size = p.entry.size;
      if (size > READ_AHEAD_FILE_MAX) continue;
      if (reservedBytes + size > READ_AHEAD_BYTES && reservedBytes > 0) break;
      reservedBytes += size;
      p.reserved = size;
      p.data = readSmallFile(p.entry, p.entry.source.file);
      p.data.catch(() => undefined); // surfaced when the entry is written
    }
  };

  try {
    for (;;) {
      while (!exhausted && window.length < READ_AHEAD_FILES) {
        const next = await iterator.next();
        if (next.done) exhausted = true;
        else window.push({ entry: next.value, reserved: 0 });
      }
      startReads();
      const current = window.shift();
      if (!current) break;
      signal?.throwIfAborted();
      const { entry } = current;

      const key = normaliseName(entry.path, false).toString('latin1');
      if (seen.has(key)) throw new ArchiveError(`duplicate tar entry ${displayPath(entry.path)}`, { path: displayPath(entry.path) });
      seen.add(key);
      if (entry.type === 'hardlink' && !files.has(normaliseName(entry.target, false).toString('latin1'))) {
        throw new ArchiveError(`hard link ${displayPath(entry.path)} points to ${displayPath(entry.target)}, which is not an earlier regular file of the layer`, {
          path: displayPath(entry.path),
        });
      }

      await sink.write(encodeHeader(entry));
      if (entry.type === 'file') {
        files.add(key);
        if ('data' in entry.source) {
          if (entry.source.data.length !== entry.size) {
            throw new ArchiveError(`file ${displayPath(entry.path)}: size ${entry.size} but ${entry.source.data.length} bytes of data`);
          }
          if (entry.size > 0) await sink.write(entry.source.data);
        } else if (current.data) {
          const data = await current.data;
          reservedBytes -= current.reserved;
          if (data.length > 0) await sink.write(data);
        } else {
          await streamFile(entry, entry.source.file, sink, signal);
        }
        const pad = padding(entry.size);
        if (pad > 0) await sink.write(ZERO_BLOCKS.subarray(0, pad));
      }
    }
    await sink.write(ZERO_BLOCKS);
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    if (failed && !exhausted) await iterator.return?.();
  }
}
