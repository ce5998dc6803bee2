// QEMU user emulation, so that this machine runs arm64 images: binfmt_misc mounted and Debian's
// qemu-aarch64 handler (qemu-user-static) registered with the F flag, which opens the
// interpreter at registration and so works inside containers' mount namespaces. Idempotent, as
// root; binfmt_misc is machine-wide, and this leaves it registered for whoever comes next.

import { execFile } from 'node:child_process';
import { access, readFile, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const BINFMT = '/proc/sys/fs/binfmt_misc';
const ENTRY = `${BINFMT}/qemu-aarch64`;
/** The ELF header of an aarch64 executable, and which bits of it are compared (Debian's values). */
const MAGIC = '\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00';
const MASK = '\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff';
const QEMU = '/usr/bin/qemu-aarch64-static';

/** Makes aarch64 executables run here (nothing to do on an arm64 machine). */
export async function ensureAarch64Emulation(): Promise<void> {
  if (process.arch === 'arm64') return;
  if (!(await exists(QEMU))) throw new Error(`${QEMU} is missing: install qemu-user-static (scripts/install-deps.sh does)`);
  if (!(await exists(`${BINFMT}/register`))) {
    await execFileP('mount', ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT]).catch(async (err: Error) => {
      // Another test may have mounted it meanwhile.
      if (!(await exists(`${BINFMT}/register`))) throw new Error(`cannot mount binfmt_misc: ${err.message}`);
    });
  }
  if (!(await exists(ENTRY))) {
    // binfmt-support's way, with Debian's settings (flags P and F); else register it by hand.
    await execFileP('update-binfmts', ['--enable', 'qemu-aarch64']).catch(() => {});
    if (!(await exists(ENTRY))) await writeFile(`${BINFMT}/register`, `:qemu-aarch64:M::${MAGIC}:${MASK}:${QEMU}:F`).catch(() => {});
  }
  const state = await readFile(ENTRY, 'utf8').catch(() => '');
  if (!state) throw new Error('could not register the qemu-aarch64 binfmt_misc handler');
  if (!/^enabled$/m.test(state)) await writeFile(ENTRY, '1');
  const flags = /^flags: *(\S*)$/m.exec(state)?.[1] ?? '';
  if (!flags.includes('F')) throw new Error(`the qemu-aarch64 binfmt_misc handler is registered without the F flag (flags: ${flags}): containers cannot use it`);
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
