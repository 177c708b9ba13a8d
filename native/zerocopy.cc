// Solifuge's native addon: the few system calls Node does not expose.
//
// Owns: flock on a data file (single-writer guarantee across processes).
// Hot calls return 0 or -errno (never throw); the TypeScript wrapper builds typed errors
// (style.md §3.4). Compiled with NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS.
#include <napi.h>

#include <cerrno>
#include <sys/file.h>
#include <unistd.h>

namespace {

// flock(fd, exclusive, nonBlocking) -> 0 | -errno
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "flock(fd, exclusive, nonBlocking)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  bool exclusive = info[1].ToBoolean().Value();
  bool nonBlocking = info[2].ToBoolean().Value();
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (nonBlocking ? LOCK_NB : 0);
  int rc;
  do {
    rc = flock(fd, op);
  } while (rc != 0 && errno == EINTR);
  return Napi::Number::New(env, rc == 0 ? 0 : -errno);
}

// funlock(fd) -> 0 | -errno
Napi::Value Funlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  int rc = flock(fd, LOCK_UN);
  return Napi::Number::New(env, rc == 0 ? 0 : -errno);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("funlock", Napi::Function::New(env, Funlock));
  return exports;
}

}  // namespace

NODE_API_MODULE(zerocopy, Init)
