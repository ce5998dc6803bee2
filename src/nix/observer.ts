// What running Nix reports to whoever watches it (the registry's metrics), through an observer
// the caller hands to each call: this module keeps no counts of its own, so two apps in one
// process (the tests) each see their own Nix runs.

/** What a Nix invocation is for (a bounded set: the metrics' `command` label). */
export type NixCommand = 'resolve' | 'realise' | 'closure' | 'popcount' | 'other';
export const NIX_COMMANDS: readonly NixCommand[] = ['resolve', 'realise', 'closure', 'popcount', 'other'];

/** How a Nix invocation failed: a non-zero exit, its time limit, or stopped (aborted, shutdown). */
export type NixFailure = 'exit' | 'timeout' | 'stopped';
export const NIX_FAILURES: readonly NixFailure[] = ['exit', 'timeout', 'stopped'];

export interface NixRunObserver {
  /** A Nix process is about to start for `command`. */
  started(command: NixCommand): void;
  /** The run started for `command` failed, and how. */
  failed(command: NixCommand, reason: NixFailure): void;
}

/** Counts of Nix runs, by command: an observer for tools and tests that ask "did Nix run?". */
export class NixRunCounts implements NixRunObserver {
  invocations = 0;
  readonly commands = Object.fromEntries(NIX_COMMANDS.map((c) => [c, { invocations: 0, failures: { exit: 0, timeout: 0, stopped: 0 } }])) as Record<
    NixCommand,
    { invocations: number; failures: Record<NixFailure, number> }
  >;

  started(command: NixCommand): void {
    this.invocations++;
    this.commands[command].invocations++;
  }

  failed(command: NixCommand, reason: NixFailure): void {
    this.commands[command].failures[reason]++;
  }
}
