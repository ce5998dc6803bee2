// The layer archive: deterministic tar, parallel gzip or zstd, store-path layers, customisation layer.

export { ArchiveError, FileChangedError } from './errors.js';
export { type TarEntry, type TarPath, type ByteSink, writeTar, encodeHeader, sortEntries, compareTarPaths } from './tar.js';
export { ParallelGzip, GZIP_CHUNK_SIZE, GZIP_LEVEL } from './gzip.js';
export { ChunkedEncoder, setCompressionConcurrency, type ChunkCodec } from './chunked.js';
export { layerCompression, libdeflateGzip, zlibGzip, zstd, type LayerCompression, type LayerFormat, type GzipEngine } from './compression.js';
export { LibdeflateUnavailableError } from './libdeflate.js';
export { storePathEntries, PARENT_DIRECTORY_MODE, type StorePathOptions } from './storepaths.js';
export { packEntries, packStorePaths, type LayerDigests, type PackOptions } from './pack.js';
export { customisationLayer, customisationEntries, type CustomisationInput, type CustomisationLayer, type Collision } from './customisation.js';
