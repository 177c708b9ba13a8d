// fdatasync polled for: fdatasyncPolled(fd, spinUs) -> 0 | -errno.
//
// Why: on this machine (a 2-vCPU VM; bench/RESULTS.md round 16) a small durable commit is one
// fdatasync plus the JS around it, and both get slower when the JS thread blocks in the
// fdatasync: its vCPU halts, waking it for the I/O completion costs the VM tens of microseconds,
// and the JS that runs next finds its caches cold (the same steps take ~3x as long as without a
// sync). So the fdatasync runs on the addon's sync thread while the calling thread polls for its
// completion, and the sync thread polls for the next request for a while after each one.
// Measured: durable single commits p50 159 us against 227 us blocking (commits/s 1.42x).
//
// Protocol (one request slot, one sync thread per process):
//   caller:      try-lock callerMutex (held: a plain fdatasync on the calling thread instead);
//                write fd and spinNs; requestSeq = n; FUTEX_WAKE requestSeq;
//                poll doneSeq == n for up to spinNs, then FUTEX_WAIT on doneSeq until it is;
//                read the result; unlock.
//   sync thread: whenever requestSeq moves: fdatasync(fd), store the result, doneSeq = n,
//                FUTEX_WAKE doneSeq; poll requestSeq for that request's spinNs, then FUTEX_WAIT.
// FUTEX_WAIT returns at once if its word already moved, so no wake-up is lost. requestSeq is only
// written under the mutex, doneSeq only by the sync thread. The slot serves one JS thread at a
// time; callers from other threads (worker_threads) meanwhile sync on their own thread.
// Both polls call sched_yield every ~64 pause instructions: on two cores, two polling threads
// would otherwise keep V8's GC and compiler threads (and kworkers) waiting for a scheduler tick.
//
// Invariants:
//   - The result is the caller's fdatasync, on the caller's fd, completed before the call
//     returns: the contract of fs.fdatasyncSync. (Like it, it syncs whatever file the fd number
//     names at that moment: the caller must keep its fd open through the call.)
//   - The sync thread is started on first use and never joined: it only touches this file's
//     statics and makes no call but fdatasync, futex, sched_yield and clock_gettime (vDSO), so
//     process exit may cut it down anywhere. Its code must stay mapped while it runs, and Node
//     unloads the addons a worker thread loaded when that worker exits: binding.gyp links the
//     addon with `-z nodelete` so that it never is. If the thread cannot be created, and in a
//     forked child (which has no copy of it), every call is a plain fdatasync.
//   - CPU cost is bounded: the caller polls at most its spinNs per call (then sleeps), the sync
//     thread at most the last request's spinNs after it.
#include <napi.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <ctime>
#include <mutex>

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace solifuge {
namespace {

std::mutex callerMutex;        // one request in flight per process
std::once_flag started;
bool syncThreadRunning = false;  // set once, inside `started`
pid_t syncThreadPid = 0;         // the process that has the thread (a fork's child has none)

// Written by the caller (under callerMutex), read by the sync thread after requestSeq moves.
int requestFd = -1;
int64_t requestSpinNs = 0;
std::atomic<uint32_t> requestSeq{0};
// Written by the sync thread, read by the caller after doneSeq moves.
int doneErrno = 0;
std::atomic<uint32_t> doneSeq{0};

int64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

void FutexWait(std::atomic<uint32_t>* word, uint32_t expected) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
}

void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// Polls `word` until it differs from `seen` or `spinNs` pass, yielding the CPU to any other
// runnable thread now and then; returns its last value.
uint32_t PollWhileEqual(std::atomic<uint32_t>* word, uint32_t seen, int64_t spinNs) {
  uint32_t v = word->load(std::memory_order_acquire);
  if (v != seen || spinNs <= 0) return v;
  const int64_t until = NowNs() + spinNs;
  for (;;) {
    for (int i = 0; i < 64; i++) {
      CpuRelax();
      v = word->load(std::memory_order_acquire);
      if (v != seen) return v;
    }
    if (NowNs() >= until) return v;
    sched_yield();
  }
}

// fdatasync(fd), retried on EINTR: 0 | -errno.
int PlainFdatasync(int fd) {
  int rc;
  do {
    rc = fdatasync(fd);
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : -errno;
}

void* SyncThread(void*) {
  uint32_t seen = 0;
  int64_t spinNs = 0;
  for (;;) {
    uint32_t n = PollWhileEqual(&requestSeq, seen, spinNs);
    if (n == seen) {
      FutexWait(&requestSeq, seen);
      continue;
    }
    seen = n;
    const int fd = requestFd;
    spinNs = requestSpinNs;
    doneErrno = -PlainFdatasync(fd);
    doneSeq.store(n, std::memory_order_release);
    FutexWake(&doneSeq);
  }
  return nullptr;
}

constexpr double kSpinUsMax = 1e6;

// fdatasyncPolled(fd, spinUs) -> 0 | -errno. spinUs == 0: a plain fdatasync on this thread.
// Throws a TypeError unless fd is an integer in [-1, INT32_MAX] (-1 gives -EBADF, as for any fd
// not open) and spinUs a number in [0, 1e6].
Napi::Value FdatasyncPolled(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const double fdArg = info.Length() >= 1 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -2;
  const double spinUs = info.Length() >= 2 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  if (!(fdArg >= -1 && fdArg <= INT32_MAX && fdArg == static_cast<double>(static_cast<int64_t>(fdArg))) ||
      !(spinUs >= 0 && spinUs <= kSpinUsMax)) {
    Napi::TypeError::New(env, "fdatasyncPolled(fd: integer >= -1, spinUs: 0 .. 1e6)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = static_cast<int>(fdArg);
  if (spinUs == 0) return Napi::Number::New(env, PlainFdatasync(fd));
  const int64_t spinNs = static_cast<int64_t>(spinUs * 1000);
  std::call_once(started, [] {
    pthread_t thread;
    if (pthread_create(&thread, nullptr, SyncThread, nullptr) == 0) {
      pthread_detach(thread);
      syncThreadRunning = true;
      syncThreadPid = getpid();
    }
  });
  if (!syncThreadRunning || getpid() != syncThreadPid) return Napi::Number::New(env, PlainFdatasync(fd));
  // Another JS thread's request in flight (or a stuck device): sync on this thread rather than
  // wait behind it, so stores in different threads never serialise their fdatasyncs.
  std::unique_lock<std::mutex> lock(callerMutex, std::try_to_lock);
  if (!lock.owns_lock()) return Napi::Number::New(env, PlainFdatasync(fd));
  requestFd = fd;
  requestSpinNs = spinNs;
  const uint32_t n = requestSeq.load(std::memory_order_relaxed) + 1;
  requestSeq.store(n, std::memory_order_release);
  FutexWake(&requestSeq);
  uint32_t done = PollWhileEqual(&doneSeq, n - 1, spinNs);
  while (done != n) {
    FutexWait(&doneSeq, done);
    done = doneSeq.load(std::memory_order_acquire);
  }
  return Napi::Number::New(env, -doneErrno);
}

}  // namespace

void RegisterPolledSync(Napi::Env env, Napi::Object exports) {
  exports.Set("fdatasyncPolled", Napi::Function::New(env, FdatasyncPolled));
}

}  // namespace solifuge
