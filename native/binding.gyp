# The libdeflate addon (deflate.c): N-API in C only, so one build serves every Node version with
# N-API 8 and later. Linked against the system's libdeflate (Debian: libdeflate-dev to build,
# libdeflate0 to run).
{
  "targets": [
    {
      "target_name": "nixery_deflate",
      "sources": ["deflate.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "libraries": ["-ldeflate"]
    }
  ]
}
