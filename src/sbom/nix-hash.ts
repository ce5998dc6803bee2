// Nix's hashes as SBOMs want them: lowercase hex. `nix path-info --json` prints a NAR hash as
// `sha256:<nix32>` (Nix ≤ 2.18) or in SRI form `sha256-<base64>` (Nix 2.19+); both are read here.

const NIX32 = '0123456789abcdfghijklmnpqrsvwxyz';

/** The SHA-256 of a Nix hash string in hex, or null when it is not a SHA-256 Nix can print. */
export function sha256Hex(hash: string): string | null {
  let bytes: Buffer | null = null;
  if (hash.startsWith('sha256-')) bytes = Buffer.from(hash.slice(7), 'base64');
  else if (hash.startsWith('sha256:')) {
    const body = hash.slice(7);
    if (/^[0-9a-f]{64}$/.test(body)) return body;
    bytes = fromNix32(body, 32);
  }
  return bytes && bytes.length === 32 ? bytes.toString('hex') : null;
}

/**
 * Decodes Nix's base-32 (its own alphabet, least significant digit last), as Nix's
 * `parseHash32` does; null when a character is not in the alphabet or the length is wrong.
 */
export function fromNix32(text: string, size: number): Buffer | null {
  if (text.length !== Math.ceil((size * 8) / 5)) return null;
  const out = Buffer.alloc(size);
  for (let n = 0; n < text.length; n++) {
    const digit = NIX32.indexOf(text[text.length - n - 1]!);
    if (digit < 0) return null;
    const b = n * 5;
    const i = b >> 3;
    const j = b & 7;
    out[i]! |= (digit << j) & 0xff;
    if (i < size - 1) out[i + 1]! |= digit >> (8 - j);
    else if (digit >> (8 - j) !== 0) return null;
  }
  return out;
}
