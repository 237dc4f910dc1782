/* Reading request arguments out of a msgpack map, and the small packing helpers the ops share.
 * A bad or missing argument is an EINVAL failure of the pseudo-syscall "request". */
#include <errno.h>
#include <string.h>

#include "helper.h"

bool fail(failure *f, int err, const char *syscall) {
  f->err = err;
  f->syscall = syscall;
  return false;
}

bool bad_arg(failure *f, const char *detail) {
  f->err = EINVAL;
  f->syscall = "request";
  f->detail = detail;
  return false;
}

bool str_is(const msgpack_object *o, const char *s) {
  size_t n = strlen(s);
  return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
         memcmp(o->via.str.ptr, s, n) == 0;
}

void pack_str(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

void pack_key(msgpack_packer *pk, const char *s) { pack_str(pk, s); }

const msgpack_object *arg(const msgpack_object *req, const char *key) {
  if (req->type != MSGPACK_OBJECT_MAP) return NULL;
  for (uint32_t i = 0; i < req->via.map.size; i++) {
    const msgpack_object_kv *kv = &req->via.map.ptr[i];
    if (str_is(&kv->key, key)) return kv->val.type == MSGPACK_OBJECT_NIL ? NULL : &kv->val;
  }
  return NULL;
}

/* Integral value of o as raw 64 bits; false when o is not an integer. */
static bool object_bits(const msgpack_object *o, uint64_t *bits, bool *negative) {
  switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
      *bits = o->via.u64;
      *negative = false;
      return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
      *bits = (uint64_t)o->via.i64;
      *negative = true;
      return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: {
      double d = o->via.f64;
      if (!(d >= -9223372036854775808.0 && d < 18446744073709551616.0)) return false;
      *negative = d < 0;
      if (*negative) {
        int64_t i = (int64_t)d;
        if ((double)i != d) return false;
        *bits = (uint64_t)i;
      } else {
        uint64_t u = (uint64_t)d;
        if ((double)u != d) return false;
        *bits = u;
      }
      return true;
    }
    case MSGPACK_OBJECT_BOOLEAN:
      *bits = o->via.boolean;
      *negative = false;
      return true;
    default:
      return false;
  }
}

bool arg_u64(const msgpack_object *req, const char *key, bool required, uint64_t fallback,
             uint64_t *out, failure *f) {
  const msgpack_object *o = arg(req, key);
  bool negative;
  if (!o) {
    if (required) return bad_arg(f, key);
    *out = fallback;
    return true;
  }
  if (!object_bits(o, out, &negative)) return bad_arg(f, key);
  return true;
}

bool arg_i64(const msgpack_object *req, const char *key, bool required, int64_t fallback,
             int64_t *out, failure *f) {
  uint64_t bits;
  const msgpack_object *o = arg(req, key);
  bool negative;
  if (!o) {
    if (required) return bad_arg(f, key);
    *out = fallback;
    return true;
  }
  if (!object_bits(o, &bits, &negative)) return bad_arg(f, key);
  if (!negative && bits > INT64_MAX) return bad_arg(f, key);
  *out = (int64_t)bits;
  return true;
}

bool arg_int(const msgpack_object *req, const char *key, bool required, int fallback, int *out,
             failure *f) {
  int64_t v;
  if (!arg_i64(req, key, required, fallback, &v, f)) return false;
  if (v < INT32_MIN || v > UINT32_MAX) return bad_arg(f, key);
  *out = (int)v; /* flag words above INT_MAX keep their bits */
  return true;
}

bool arg_str(const msgpack_object *req, const char *key, char *buf, size_t cap, failure *f) {
  const msgpack_object *o = arg(req, key);
  if (!o || o->type != MSGPACK_OBJECT_STR) return bad_arg(f, key);
  if (o->via.str.size >= cap) return fail(f, ENAMETOOLONG, "request");
  if (memchr(o->via.str.ptr, 0, o->via.str.size)) return bad_arg(f, key);
  memcpy(buf, o->via.str.ptr, o->via.str.size);
  buf[o->via.str.size] = 0;
  return true;
}

bool arg_bin(const msgpack_object *req, const char *key, const char **data, size_t *len,
             failure *f) {
  const msgpack_object *o = arg(req, key);
  if (o && o->type == MSGPACK_OBJECT_BIN) {
    *data = o->via.bin.ptr;
    *len = o->via.bin.size;
    return true;
  }
  if (o && o->type == MSGPACK_OBJECT_STR) {
    *data = o->via.str.ptr;
    *len = o->via.str.size;
    return true;
  }
  return bad_arg(f, key);
}

bool arg_int_array(const msgpack_object *req, const char *key, int64_t *out, size_t cap,
                   size_t *count, failure *f) {
  const msgpack_object *o = arg(req, key);
  *count = 0;
  if (!o) return true;
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > cap) return bad_arg(f, key);
  for (uint32_t i = 0; i < o->via.array.size; i++) {
    uint64_t bits;
    bool negative;
    if (!object_bits(&o->via.array.ptr[i], &bits, &negative)) return bad_arg(f, key);
    out[i] = (int64_t)bits;
  }
  *count = o->via.array.size;
  return true;
}
