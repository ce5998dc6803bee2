// /readyz: can this replica serve and build right now? Storage answers a write/read/delete
// probe and Nix can be run. Results are kept for a few seconds, so a load balancer polling every
// second costs one probe per interval; concurrent checks share one run. /healthz stays liveness
// only (the process answers), so a failing disk takes a replica out of rotation without
// restarting it.

import { logDetail, NixeryError } from '../errors.js';

export interface ReadinessCheck {
  name: string;
  run(): Promise<unknown>;
  /**
   * Reported, but does not make the replica unready: a failing package source still leaves
   * every image built before to serve (taking replicas out would serve nothing).
   */
  advisory?: boolean;
}

export interface ReadinessReport {
  ready: boolean;
  /** An advisory check fails: ready, but not everything works (new builds, say). */
  degraded?: boolean;
  checks: Record<string, { ok: boolean; error?: string }>;
}

export class Readiness {
  private cached: { report: ReadinessReport; until: number } | undefined;
  private running: Promise<ReadinessReport> | undefined;

  constructor(
    private readonly checks: ReadinessCheck[],
    private readonly ttlMs = 3000,
    private readonly onFailure: (name: string, detail: string) => void = () => {},
  ) {}

  report(): Promise<ReadinessReport> {
    if (this.cached && this.cached.until > Date.now()) return Promise.resolve(this.cached.report);
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  private async run(): Promise<ReadinessReport> {
    const checks: ReadinessReport['checks'] = {};
    await Promise.all(
      this.checks.map(async (check) => {
        try {
          await check.run();
          checks[check.name] = { ok: true };
        } catch (err) {
          // Public: the error's message (no paths, no credentials); the log gets the detail.
          checks[check.name] = { ok: false, error: err instanceof NixeryError ? err.message : 'unexpected error' };
          // Advisory checks log their own changes (the pinner does); not one line per probe.
          if (!check.advisory) this.onFailure(check.name, logDetail(err));
        }
      }),
    );
    const required = this.checks.filter((c) => !c.advisory).map((c) => checks[c.name]!);
    const advisory = this.checks.filter((c) => c.advisory).map((c) => checks[c.name]!);
    const report: ReadinessReport = { ready: required.every((c) => c.ok), checks };
    if (advisory.some((c) => !c.ok)) report.degraded = true;
    this.cached = { report, until: Date.now() + this.ttlMs };
    return report;
  }
}
