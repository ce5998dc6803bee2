// Build progress: what a running build reports, shared by everyone waiting for it (a pull and
// an API build of the same image join one build, and each sees its progress), and the packing
// phase summed over layers packed in parallel.

import type { BuildProgress } from './types.js';

/**
 * The progress of one in-flight build, fanned out to every caller waiting for it. A caller that
 * joins late gets the last report at once, so it never starts blind.
 */
export class ProgressChannel {
  private readonly listeners = new Set<(p: BuildProgress) => void>();
  private last: BuildProgress | undefined;

  emit(p: BuildProgress): void {
    this.last = p;
    for (const listener of this.listeners) {
      try {
        listener(p);
      } catch {
        // A listener's failure is its own; the build goes on.
      }
    }
  }

  /** Adds a listener (replaying the last report); returns the function that removes it. */
  subscribe(listener: (p: BuildProgress) => void): () => void {
    this.listeners.add(listener);
    if (this.last) listener(this.last);
    return () => this.listeners.delete(listener);
  }
}

/** Reports while packing, at most this often (the packer calls back for about every MiB). */
const PACK_REPORT_MS = 100;

/**
 * The packing phase over all layers: which layer (of how many) is being packed and how many
 * bytes of the image are done. `estimates[i]` is layer i's uncompressed size as Nix reports it
 * (NAR sizes), the measure of `bytesTotal`: a layer's bytes count up to its estimate while it is
 * packed, and as its whole estimate once it is done (a layer found in the build cache is done
 * at once). Reports are throttled; layer completions always go out.
 */
export class PackProgress {
  private readonly packedBytes: number[];
  private readonly done: boolean[];
  private layersDone = 0;
  private bytesDone = 0;
  private readonly bytesTotal: number;
  private lastReport = 0;

  constructor(
    private readonly estimates: readonly number[],
    private readonly report: (p: BuildProgress) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.packedBytes = estimates.map(() => 0);
    this.done = estimates.map(() => false);
    this.bytesTotal = estimates.reduce((a, b) => a + b, 0);
  }

  /** The packer's callback for layer `index`: uncompressed bytes produced so far. */
  bytes(index: number): (uncompressed: number) => void {
    return (uncompressed) => {
      if (this.done[index]) return;
      const counted = Math.min(uncompressed, this.estimates[index]!);
      this.bytesDone += counted - this.packedBytes[index]!;
      this.packedBytes[index] = counted;
      const now = this.now();
      if (now - this.lastReport < PACK_REPORT_MS) return;
      this.lastReport = now;
      this.send(index, uncompressed);
    };
  }

  /** Layer `index` is in storage (packed now, or found in the build cache). */
  layerDone(index: number): void {
    if (this.done[index]) return;
    this.done[index] = true;
    this.layersDone++;
    this.bytesDone += this.estimates[index]! - this.packedBytes[index]!;
    this.packedBytes[index] = this.estimates[index]!;
    this.lastReport = this.now();
    this.send(index, this.estimates[index]!);
  }

  /** Announces the phase before the first layer reports. */
  start(): void {
    this.send(0, 0);
  }

  private send(index: number, layerBytes: number): void {
    const layers = this.estimates.length;
    // The layer being worked on, counted as "i of n": the ones done, plus one.
    const current = Math.min(this.layersDone + 1, layers);
    this.report({
      phase: 'pack',
      message: this.layersDone === layers ? `packed ${layers} layers` : `packing layer ${current} of ${layers}`,
      layer: { index, count: layers, bytes: layerBytes },
      pack: { layer: current, layers, layersDone: this.layersDone, bytesDone: this.bytesDone, bytesTotal: this.bytesTotal },
    });
  }
}
