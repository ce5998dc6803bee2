// Errors raised while packing a layer (build failures naming the file and what went wrong) are
// defined with every other error in src/errors.ts.

export { ArchiveError, FileChangedError } from '../errors.js';
