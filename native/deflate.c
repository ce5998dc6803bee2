// gzip members with libdeflate, off the main thread. compressGzipMember(input, level) resolves
// to one complete gzip member (RFC 1952) holding `input`: a fixed 10-byte header (no name, MTIME
// 0, XFL 0, OS 255), libdeflate's raw DEFLATE of the whole input, CRC-32 and ISIZE. The bytes
// depend only on the input, the level and libdeflate's version (exported as `version`).
// Each call runs on the libuv threadpool with its own compressor, so calls run in parallel.
#include <libdeflate.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char GZIP_HEADER[10] = {0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff};

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref input_ref;
  const unsigned char *input;
  size_t input_len;
  int level;
  unsigned char *output;
  size_t output_len;
  const char *error;
} Job;

static void put_le32(unsigned char *p, uint32_t v) {
  p[0] = v & 0xff; p[1] = (v >> 8) & 0xff; p[2] = (v >> 16) & 0xff; p[3] = (v >> 24) & 0xff;
}

static void execute(napi_env env, void *data) {
  (void)env;
  Job *job = data;
  struct libdeflate_compressor *c = libdeflate_alloc_compressor(job->level);
  if (!c) { job->error = "libdeflate: out of memory for a compressor"; return; }
  size_t bound = libdeflate_deflate_compress_bound(c, job->input_len);
  job->output = malloc(bound + 18);
  if (!job->output) { libdeflate_free_compressor(c); job->error = "libdeflate: out of memory for the output"; return; }
  memcpy(job->output, GZIP_HEADER, 10);
  size_t n = libdeflate_deflate_compress(c, job->input, job->input_len, job->output + 10, bound);
  libdeflate_free_compressor(c);
  if (n == 0) { job->error = "libdeflate: the output did not fit its bound"; return; }
  put_le32(job->output + 10 + n, libdeflate_crc32(0, job->input, job->input_len));
  put_le32(job->output + 14 + n, (uint32_t)(job->input_len & 0xffffffffu));
  job->output_len = n + 18;
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *job = data;
  napi_value result;
  if (status != napi_ok && !job->error) job->error = "libdeflate: the job was cancelled";
  if (job->error) {
    napi_value msg;
    napi_create_string_utf8(env, job->error, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &result);
    napi_reject_deferred(env, job->deferred, result);
  } else if (napi_create_buffer_copy(env, job->output_len, job->output, NULL, &result) == napi_ok) {
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    napi_value msg;
    napi_create_string_utf8(env, "libdeflate: could not make the output buffer", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  free(job->output);
  napi_delete_reference(env, job->input_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value compress_gzip_member(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  napi_get_cb_info(env, info, &argc, args, NULL, NULL);
  bool is_buffer = false;
  if (argc < 2 || napi_is_buffer(env, args[0], &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, NULL, "compressGzipMember(input: Buffer, level: number)");
    return NULL;
  }
  int32_t level;
  if (napi_get_value_int32(env, args[1], &level) != napi_ok || level < 0 || level > 12) {
    napi_throw_range_error(env, NULL, "level must be 0 to 12");
    return NULL;
  }
  Job *job = calloc(1, sizeof(Job));
  if (!job) { napi_throw_error(env, NULL, "out of memory"); return NULL; }
  void *data;
  napi_get_buffer_info(env, args[0], &data, &job->input_len);
  job->input = data;
  job->level = level;
  // The input stays alive (and, by contract with the caller, unchanged) until the job completes.
  napi_create_reference(env, args[0], 1, &job->input_ref);
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "nixery:libdeflate", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

NAPI_MODULE_INIT() {
  napi_value fn, version;
  napi_create_function(env, "compressGzipMember", NAPI_AUTO_LENGTH, compress_gzip_member, NULL, &fn);
  napi_set_named_property(env, exports, "compressGzipMember", fn);
  napi_create_string_utf8(env, LIBDEFLATE_VERSION_STRING, NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, exports, "version", version);
  return exports;
}
