// The request latency histogram, kept apart from the other metrics for its hand-made recording.

import { Histogram, type Registry, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';

/** From half a millisecond (a cached manifest) to minutes (a pull that waits for a build). */
const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/**
 * The request latency histogram, recorded without prom-client's work per observation (label
 * validation and hashing, a property lookup per bucket, about 1 µs: the largest cost metrics
 * added to a cached manifest GET): per route, plain counts per bucket. Served as any histogram,
 * through the public shape of `get()`.
 */
const REQUEST_DURATIONS_HELP = 'Time from a request to its response (a pull that starts a build waits for it), by route.';

export class RequestDurations extends Histogram<'route' | 'le'> {
  private readonly routes = new Map<string, { buckets: Float64Array; sum: number; count: number }>();

  constructor(registers: Registry[]) {
    super({
      name: 'nixery_http_request_duration_seconds',
      help: REQUEST_DURATIONS_HELP,
      labelNames: ['route'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
  }

  record(route: string, seconds: number): void {
    let series = this.routes.get(route);
    if (!series) this.routes.set(route, (series = { buckets: new Float64Array(REQUEST_BUCKETS.length), sum: 0, count: 0 }));
    let i = 0;
    while (i < REQUEST_BUCKETS.length && seconds > REQUEST_BUCKETS[i]!) i++;
    if (i < REQUEST_BUCKETS.length) series.buckets[i]!++;
    series.sum += seconds;
    series.count++;
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<'route' | 'le'>>> {
    const name = 'nixery_http_request_duration_seconds';
    const values: Array<MetricValueWithName<'route' | 'le'>> = [];
    for (const [route, { buckets, sum, count }] of this.routes) {
      let cumulative = 0;
      REQUEST_BUCKETS.forEach((le, i) => {
        cumulative += buckets[i]!;
        values.push({ metricName: `${name}_bucket`, labels: { route, le }, value: cumulative });
      });
      values.push({ metricName: `${name}_bucket`, labels: { route, le: '+Inf' }, value: count });
      values.push({ metricName: `${name}_sum`, labels: { route }, value: sum });
      values.push({ metricName: `${name}_count`, labels: { route }, value: count });
    }
    // prom-client's typings declare `type` as an enum its code does not use (it writes the string).
    const metric = { name, help: REQUEST_DURATIONS_HELP, type: 'histogram', aggregator: 'sum', values };
    return metric as unknown as MetricObjectWithValues<MetricValueWithName<'route' | 'le'>>;
  }

  /** What the registry reads for the text format (prom-client's own histogram has one too). */
  getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<'route' | 'le'>>> {
    return this.get();
  }

  override reset(): void {
    super.reset();
    // Also called by the base constructor, before this class's fields exist.
    (this.routes as typeof this.routes | undefined)?.clear();
  }
}
