// What the HTTP server reports (every answered request, every request the HTTP parser refused)
// and what it serves at /metrics, as interfaces the registry owns: the metrics module implements
// them and the composition root (app.ts) hands it over, so nothing here imports the metrics.

export interface HttpObserver {
  /** A request was answered: its route (`none`: no route matched), method, status and duration. Hot path: keep it cheap. */
  request(route: string, method: string, status: number, seconds: number): void;
  /** A request the HTTP parser (or CONNECT) refused, answered with `status`; 0 for a failed TLS handshake. */
  protocolError(status: number): void;
}

/** What /metrics serves, and the same counts by name for tools and tests in this process. */
export interface MetricsExposition {
  expose(): Promise<{ contentType: string; body: string }>;
  snapshot(): Record<string, number>;
}

/** The registry's metrics: told of requests, and served at /metrics. */
export type RegistryMetrics = HttpObserver & MetricsExposition;
