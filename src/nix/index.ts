// The Nix integration's public API.
export * from './run.js';
export * from './source.js';
export * from './resolve.js';
export * from './realise.js';
export * from './closure.js';
export * from './popcount.js';
export * from './health.js';
export * from './processes.js';
