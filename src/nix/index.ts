// The Nix integration's public API.
export * from './run.js';
export * from './source.js';
export * from './resolver.js';
export { checkoutIdentity, type CheckoutIdentity } from './checkout.js';
export { TreeHasher, type TreeHashResult } from './tree-hash.js';
export { listBranches, listBranchesAndTags, remoteHead, parseLsRemote, type RefListing } from './git-refs.js';
export * from './resolve.js';
export * from './realise.js';
export * from './closure.js';
export * from './popcount.js';
export * from './packages.js';
export * from './health.js';
export * from './processes.js';
