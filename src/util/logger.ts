// The one logger type. The process logs through pino (src/log-destination.ts), which has this
// shape; each module asks for the methods it uses (`Pick<Logger, 'info' | 'warn'>`), so tests
// can hand in a small recorder.

export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** Writes out what is buffered (before the process exits). */
  flush(cb?: (err?: Error) => void): void;
}
