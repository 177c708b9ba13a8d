// Solifuge's native addon: the few system calls Node does not expose.
//
// Owns:
//   - flock on a data file (single-writer guarantee across processes): flock/funlock.
//   - zero-copy transfer of a file region to a connected socket with sendfile(2) or
//     splice(2) (file -> pipe -> socket): send/cancel, plus sendfileBlocking as the
//     benchmark's "raw sendfile" reference.
//   - memory advice for the WebAssembly node cache: adviseHugePages, prefault (populating
//     pages ahead of the cache's ring on a pool thread, bounded by the few MiB asked for), and
//     discardPages (an idle store's emptied region of changed nodes given back).
//   - fdatasyncPolled, fdatasyncStart/Finish and directWriteStart, in polled-sync.cc: fdatasync
//     or an O_DIRECT write on a sync thread while the caller polls.
//
// Zero-copy transfer, in order (toolchain.md §4):
//   1. JS thread, fast path: non-blocking sendfile/splice on the caller's own fds until the
//      region is done, the socket says EAGAIN, or kFastPathBudgetBytes were sent. Values that
//      fit in the socket buffer finish here with no thread hop, no dup, no allocation.
//   2. Otherwise, still on the JS thread, the socket fd and the file fd are duplicated
//      (F_DUPFD_CLOEXEC) and the remainder is handed to the addon's own sender thread. The
//      duplicates keep the open file descriptions alive: if JS destroys the socket or the
//      caller closes its file fd mid-transfer, their fd numbers may be reused by the next
//      open(), but the sender thread only ever touches its own duplicates, so bytes can never go
//      to (or come from) an unrelated file.
//   3. The sender thread owns one epoll instance (its own, not libuv's: a second epoll set may
//      watch the same open file description without disturbing libuv's watcher). Each transfer
//      is registered EPOLLOUT|EPOLLONESHOT; on readiness it moves at most kTurnBudgetBytes and
//      re-arms, so one fast reader cannot starve the others. Completion is posted to the JS
//      thread through a napi thread-safe function that resolves or rejects the transfer's
//      Promise.
//
// Bounding (why one epoll thread and not AsyncWorkers): an AsyncWorker waiting in poll() for a
// slow reader holds one libuv pool thread (4 by default, shared with fs, dns.lookup, zlib and
// crypto); 4 slow clients would stall every fs call of the process. The epoll thread costs one
// thread per process (per Node environment) whatever the number of stalled transfers; a
// transfer costs 2 fds (plus a pipe pair in splice mode) while it is off-thread.
// Trade-off: a page-cache miss blocks the sender thread inside sendfile/splice for every
// transfer at once (disk latency is serialised); values being served are expected to be hot.
//
// Invariants:
//   - O_NONBLOCK is never touched: it lives on the open file description shared with libuv,
//     so clearing it would make libuv's reads block the event loop. Sockets are non-blocking
//     because libuv made them so; readiness comes from epoll/poll.
//   - Transfer objects are owned by exactly one thread at a time: the JS thread until they are
//     queued, then the sender thread until completion is posted. The sender thread frees a
//     transfer's fds (epoll DEL first, then close) before its Promise settles, so when JS sees
//     the result no fd of that transfer is left open.
//   - At most 0x7ffff000 bytes per system call (the kernel's own per-call cap).
//   - A file shorter than offset+length ends the transfer with ENODATA (sendfile/splice
//     returning 0), never with a hang.
//   - System errors are values: send() returns a number or a plain object and the Promise
//     rejects with an Error carrying errno and bytesSent; only argument misuse (a programmer
//     error in the TypeScript wrapper) throws. Compiled with NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS.
//   - Environment teardown (process exit, worker terminate) joins the sender thread before the
//     environment frees the thread-safe function, and drops unsettled transfers (closing their
//     fds) without touching JS, which may no longer run by then.
//   - Settled is not transmitted: sendfile/splice hand the kernel page-cache page references, so
//     a file range must not change in place (or be hole-punched on a non-page boundary) until the
//     peer has read it; whole-page hole punches are safe (the socket keeps the old pages).
//   - Must never: write to a socket fd number it did not duplicate once control left the JS
//     thread; hold a libuv pool thread waiting on a peer (prefault holds one only while it faults
//     a bounded range); block the JS thread waiting for a reader (except in
//     sendfileBlocking, which is a benchmark reference and says so).
#include <napi.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <unistd.h>

namespace solifuge {
void RegisterPolledSync(Napi::Env env, Napi::Object exports);  // polled-sync.cc
}

namespace {

// ----- flock -------------------------------------------------------------------------------

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

// dup(fd) -> new close-on-exec fd | -errno. getWith hands out duplicates so a handler's fd stays
// valid (and closing it never affects the store's own descriptor).
Napi::Value Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "dup(fd)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int rc = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return Napi::Number::New(env, rc >= 0 ? rc : -errno);
}

// punchHole(fd, offset, length) -> 0 | -errno. fallocate(PUNCH_HOLE | KEEP_SIZE): online
// compaction gives the blocks of reclaimed file ranges back to the file system.
Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "punchHole(fd, offset, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  off_t offset = static_cast<off_t>(info[1].As<Napi::Number>().Int64Value());
  off_t length = static_cast<off_t>(info[2].As<Napi::Number>().Int64Value());
  int rc;
  do {
    rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  } while (rc != 0 && errno == EINTR);
  return Napi::Number::New(env, rc == 0 ? 0 : -errno);
}

// The whole pages of `pageBytes` inside [offset, offset + length) of an ArrayBuffer's memory
// (args 0..2 of `info`), as addresses; false (with a JS exception pending) on bad arguments.
// Rounding inward keeps every address inside the buffer, whatever its alignment.
static bool PagesInBuffer(const Napi::CallbackInfo& info, const char* usage, uintptr_t pageBytes,
                          Napi::ArrayBuffer* bufferOut, uintptr_t* fromOut, uintptr_t* toOut) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArrayBuffer() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return false;
  }
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  const uint64_t size = ab.ByteLength();
  const double offsetArg = info[1].As<Napi::Number>().DoubleValue();
  const double lengthArg = info[2].As<Napi::Number>().DoubleValue();
  // Int64Value would turn NaN, infinities and fractions into something plausible.
  if (!(offsetArg == std::floor(offsetArg) && lengthArg == std::floor(lengthArg) && offsetArg <= 9007199254740992.0 && lengthArg <= 9007199254740992.0)) {
    Napi::RangeError::New(env, std::string(usage) + ": offset and length must be integers").ThrowAsJavaScriptException();
    return false;
  }
  const int64_t offset = static_cast<int64_t>(offsetArg);
  const int64_t length = static_cast<int64_t>(lengthArg);
  if (offset < 0 || length < 0 || static_cast<uint64_t>(offset) + static_cast<uint64_t>(length) > size) {
    Napi::RangeError::New(env, std::string(usage) + ": range outside the buffer").ThrowAsJavaScriptException();
    return false;
  }
  const uintptr_t base = reinterpret_cast<uintptr_t>(ab.Data());
  *bufferOut = ab;
  *fromOut = (base + static_cast<uintptr_t>(offset) + pageBytes - 1) & ~(pageBytes - 1);
  *toOut = (base + static_cast<uintptr_t>(offset) + static_cast<uintptr_t>(length)) & ~(pageBytes - 1);
  return true;
}

// Asks for transparent huge pages over [offset, offset + length) of an ArrayBuffer's memory
// (the WebAssembly node cache): random lookups over hundreds of MiB otherwise miss the TLB on
// nearly every node. Only whole 2 MiB pages inside the range are advised. 0 or -errno.
Napi::Value AdviseHugePages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer ab;
  uintptr_t from = 0, to = 0;
  if (!PagesInBuffer(info, "adviseHugePages(arrayBuffer, offset, length)", uintptr_t{2} << 20, &ab, &from, &to)) return env.Undefined();
  if (to <= from) return Napi::Number::New(env, 0);
  const int rc = madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);
  return Napi::Number::New(env, rc == 0 ? 0 : -errno);
}

// Gives the pages of [offset, offset + length) of an ArrayBuffer's memory back to the kernel:
// madvise(MADV_DONTNEED) over the whole 4 KiB pages inside, which read as zeros afterwards and take
// no resident memory until touched again (the changed nodes' region of an idle store, after a
// checkpoint emptied it: asm/dirty.ts dirtyTrim). Synchronous: the caller must not use the range
// meanwhile, and on the JS thread nothing can. 0 or -errno.
Napi::Value DiscardPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer ab;
  uintptr_t from = 0, to = 0;
  if (!PagesInBuffer(info, "discardPages(arrayBuffer, offset, length)", 4096, &ab, &from, &to)) return env.Undefined();
  if (to <= from) return Napi::Number::New(env, 0);
  const int rc = madvise(reinterpret_cast<void*>(from), to - from, MADV_DONTNEED);
  return Napi::Number::New(env, rc == 0 ? 0 : -errno);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels answer EINVAL
#endif

// Faults in [from, to) writable on a libuv pool thread: madvise(MADV_POPULATE_WRITE) maps the
// pages as a first write would, without writing (the contents stay what they were, so the JS
// thread may use the range meanwhile). Why: the first touch of fresh memory on this machine costs
// ~1.6 ms per 2 MiB huge page (more amid other work), and the node cache's ring touched ~140 MiB
// of it on the JS thread during a 1M-key load (bench/RESULTS.md, round 14). The worker holds the
// buffer so its memory outlives the call; it holds a pool thread only while faulting (the caller
// asks for a few MiB).
class PrefaultWorker : public Napi::AsyncWorker {
 public:
  PrefaultWorker(Napi::Env env, Napi::ArrayBuffer buffer, uintptr_t from, uintptr_t to)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)),
        buffer_(Napi::Persistent(buffer)), from_(from), to_(to) {}
  Napi::Promise Promise() const { return deferred_.Promise(); }
  void Execute() override {
    if (to_ <= from_) return;
    int rc;
    do {
      rc = madvise(reinterpret_cast<void*>(from_), to_ - from_, MADV_POPULATE_WRITE);
    } while (rc != 0 && errno == EINTR);
    result_ = rc == 0 ? 0 : -errno;
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), result_)); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  uintptr_t from_;
  uintptr_t to_;
  int result_ = 0;
};

// prefault(arrayBuffer, offset, length) -> Promise<0 | -errno> over the whole 4 KiB pages inside
// the range; never rejects (errors are values, as everywhere in this addon).
Napi::Value Prefault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::ArrayBuffer ab;
  uintptr_t from = 0, to = 0;
  if (!PagesInBuffer(info, "prefault(arrayBuffer, offset, length)", 4096, &ab, &from, &to)) return env.Undefined();
  auto* worker = new PrefaultWorker(env, ab, from, to);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ----- zero-copy transfer: the byte pump ------------------------------------------------------

// The kernel caps one sendfile/splice at 0x7ffff000 bytes (MAX_RW_COUNT); asking for more is
// harmless but we keep every request within it so short counts only mean "socket full".
constexpr uint64_t kCallBytesMax = 0x7ffff000;
// How much the JS thread may push before handing off. 1 MiB of page-cache data takes a few
// hundred microseconds; more would delay other clients' callbacks on the event loop.
constexpr uint64_t kFastPathBudgetBytes = 1u << 20;
// How much the sender thread moves for one transfer before serving the next ready one.
constexpr uint64_t kTurnBudgetBytes = 8u << 20;
// Pipe size requested for splice mode; F_SETPIPE_SZ may refuse (pipe-max-size, per-user
// pipe page limits), in which case the default 64 KiB pipe is used. 256 KiB measured a little
// faster than 64 KiB and 1 MiB here, and keeps 64 concurrent splice transfers at 16 MiB of
// pipe pages, well inside the default per-user soft limit (pipe-user-pages-soft, 64 MiB).
constexpr int kPipeSizeBytes = 256 << 10;
// Largest offset/length a JS number carries exactly.
constexpr double kSafeIntegerMax = 9007199254740991.0;

enum class Mode : int { kSendfile = 0, kSplice = 1 };

struct Pipe {
  int readFd = -1;
  int writeFd = -1;
  uint64_t capacityBytes = 0;
};

// Returns 0 or errno.
int OpenPipe(Pipe* pipe) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return errno;
  pipe->readFd = fds[0];
  pipe->writeFd = fds[1];
  (void)fcntl(pipe->writeFd, F_SETPIPE_SZ, kPipeSizeBytes);  // best effort, see kPipeSizeBytes
  int size = fcntl(pipe->writeFd, F_GETPIPE_SZ);
  pipe->capacityBytes = size > 0 ? static_cast<uint64_t>(size) : 65536;
  return 0;
}

void ClosePipe(Pipe* pipe) {
  if (pipe->readFd >= 0) close(pipe->readFd);
  if (pipe->writeFd >= 0) close(pipe->writeFd);
  *pipe = Pipe{};
}

struct Transfer {
  uint64_t id = 0;
  Mode mode = Mode::kSendfile;
  int socketFd = -1;  // borrowed on the fast path, an owned duplicate off-thread
  int fileFd = -1;    // same
  bool ownsFds = false;
  uint64_t fileOffset = 0;      // next file byte to read into the socket (sendfile) or pipe (splice)
  uint64_t remainingBytes = 0;  // region bytes not yet accepted by the socket
  uint64_t sentBytes = 0;       // region bytes accepted by the socket, fast path included
  Pipe pipe;                    // splice mode only
  uint64_t pipedBytes = 0;      // bytes sitting in the pipe, already read from the file
  napi_deferred deferred = nullptr;
};

enum class Step { kDone, kWouldBlock, kBudgetSpent, kFailed };

Step PumpSendfile(Transfer* t, uint64_t budgetBytes, int* err) {
  while (t->remainingBytes > 0) {
    if (budgetBytes == 0) return Step::kBudgetSpent;
    size_t want = static_cast<size_t>(std::min({t->remainingBytes, budgetBytes, kCallBytesMax}));
    off_t offset = static_cast<off_t>(t->fileOffset);
    ssize_t n = sendfile(t->socketFd, t->fileFd, &offset, want);
    if (n > 0) {
      uint64_t moved = static_cast<uint64_t>(n);
      t->fileOffset += moved;
      t->remainingBytes -= moved;
      t->sentBytes += moved;
      budgetBytes -= std::min(budgetBytes, moved);
      continue;
    }
    if (n == 0) {  // end of file before the region ended: the caller's Location is wrong
      *err = ENODATA;
      return Step::kFailed;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Step::kWouldBlock;
    *err = errno;
    return Step::kFailed;
  }
  return Step::kDone;
}

// file -> pipe -> socket. Bytes in the pipe already left the file but not yet the socket, so
// the pipe belongs to the transfer until it is empty.
Step PumpSplice(Transfer* t, uint64_t budgetBytes, int* err) {
  while (t->remainingBytes > 0) {
    if (budgetBytes == 0) return Step::kBudgetSpent;
    uint64_t unreadBytes = t->remainingBytes - t->pipedBytes;
    if (unreadBytes > 0 && t->pipedBytes < t->pipe.capacityBytes) {
      size_t want = static_cast<size_t>(
          std::min({unreadBytes, t->pipe.capacityBytes - t->pipedBytes, kCallBytesMax}));
      loff_t offset = static_cast<loff_t>(t->fileOffset);
      ssize_t n = splice(t->fileFd, &offset, t->pipe.writeFd, nullptr, want,
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        t->fileOffset += static_cast<uint64_t>(n);
        t->pipedBytes += static_cast<uint64_t>(n);
      } else if (n == 0) {
        if (t->pipedBytes == 0) {
          *err = ENODATA;
          return Step::kFailed;
        }
        // Drain what we have; the next refill sees end of file again and fails then.
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN && t->pipedBytes > 0) {
        // The pipe is full in page slots before it is full in bytes: drain first.
      } else {
        *err = errno;
        return Step::kFailed;
      }
    }
    // MSG_MORE only while more bytes follow what is in the pipe: on the last chunk it would
    // make TCP hold a partial segment back (up to 200 ms) waiting for data that never comes.
    unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
    if (t->remainingBytes > t->pipedBytes) flags |= SPLICE_F_MORE;
    size_t want = static_cast<size_t>(std::min(t->pipedBytes, kCallBytesMax));
    ssize_t n = splice(t->pipe.readFd, nullptr, t->socketFd, nullptr, want, flags);
    if (n > 0) {
      uint64_t moved = static_cast<uint64_t>(n);
      t->pipedBytes -= moved;
      t->remainingBytes -= moved;
      t->sentBytes += moved;
      budgetBytes -= std::min(budgetBytes, moved);
      continue;
    }
    if (n == 0) {  // the pipe holds bytes, so 0 can only mean the socket is gone
      *err = EPIPE;
      return Step::kFailed;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Step::kWouldBlock;
    *err = errno;
    return Step::kFailed;
  }
  return Step::kDone;
}

Step Pump(Transfer* t, uint64_t budgetBytes, int* err) {
  return t->mode == Mode::kSplice ? PumpSplice(t, budgetBytes, err)
                                  : PumpSendfile(t, budgetBytes, err);
}

void ReleaseTransferFds(Transfer* t) {
  if (t->ownsFds) {
    if (t->socketFd >= 0) close(t->socketFd);
    if (t->fileFd >= 0) close(t->fileFd);
  }
  t->socketFd = -1;
  t->fileFd = -1;
  ClosePipe(&t->pipe);
}

// ----- the sender thread ------------------------------------------------------------------------

struct Completion {
  struct Sender* sender;
  napi_deferred deferred;
  int err;  // 0 = success
  uint64_t sentBytes;
};

struct Sender {
  // Shared with the JS thread, under mutex.
  std::mutex mutex;
  std::vector<Transfer*> incoming;
  std::vector<uint64_t> cancels;
  bool stopping = false;

  // Immutable after Start().
  int epollFd = -1;
  int wakeFd = -1;  // eventfd; registered with data.ptr == nullptr
  napi_threadsafe_function tsfn = nullptr;
  std::thread thread;

  // JS thread only.
  uint64_t pendingCount = 0;  // transfers whose Promise has not settled; tsfn is ref'd while > 0

  // Sender thread only.
  std::unordered_map<uint64_t, Transfer*> active;

  void Wake() {
    uint64_t one = 1;
    ssize_t n;
    do {
      n = write(wakeFd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    // EAGAIN means the counter is already non-zero: the thread will wake anyway.
  }

  // JS thread.
  void Submit(Transfer* t) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      incoming.push_back(t);
    }
    Wake();
  }

  // JS thread.
  void Cancel(uint64_t id) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      cancels.push_back(id);
    }
    Wake();
  }

  // Sender thread: the transfer leaves the sender's ownership here.
  void Finish(Transfer* t, int err) {
    epoll_ctl(epollFd, EPOLL_CTL_DEL, t->socketFd, nullptr);  // before close: see ReleaseTransferFds
    active.erase(t->id);
    // Close before settling, so JS never observes a settled transfer with open fds. The DEL
    // above matters: the epoll registration follows the open file description, which libuv
    // still holds open, so close() alone would leave a stale registration behind.
    ReleaseTransferFds(t);
    auto* c = new Completion{this, t->deferred, err, t->sentBytes};
    delete t;
    if (napi_call_threadsafe_function(tsfn, c, napi_tsfn_nonblocking) != napi_ok) {
      delete c;  // the environment is shutting down; nobody is left to settle
    }
  }

  // Sender thread.
  void Service(Transfer* t) {
    int err = 0;
    Step step = Pump(t, kTurnBudgetBytes, &err);
    if (step == Step::kDone) return Finish(t, 0);
    if (step == Step::kFailed) return Finish(t, err);
    // kWouldBlock: wait for POLLOUT. kBudgetSpent: still writable, so the re-armed level-
    // triggered registration fires on the next epoll_wait, after the other ready transfers.
    epoll_event ev{};
    ev.events = EPOLLOUT | EPOLLONESHOT;
    ev.data.ptr = t;
    if (epoll_ctl(epollFd, EPOLL_CTL_MOD, t->socketFd, &ev) != 0) Finish(t, errno);
  }

  // Sender thread. Returns false when asked to stop.
  bool DrainCommands() {
    uint64_t counter;
    while (read(wakeFd, &counter, sizeof counter) > 0) {
    }
    std::vector<Transfer*> newTransfers;
    std::vector<uint64_t> cancelIds;
    bool stop;
    {
      std::lock_guard<std::mutex> lock(mutex);
      newTransfers.swap(incoming);
      cancelIds.swap(cancels);
      stop = stopping;
    }
    for (Transfer* t : newTransfers) {
      active.emplace(t->id, t);
      epoll_event ev{};
      ev.events = EPOLLOUT | EPOLLONESHOT;
      ev.data.ptr = t;
      if (epoll_ctl(epollFd, EPOLL_CTL_ADD, t->socketFd, &ev) != 0) Finish(t, errno);
    }
    for (uint64_t id : cancelIds) {
      auto it = active.find(id);
      if (it != active.end()) Finish(it->second, ECANCELED);  // else: already finished
    }
    return !stop;
  }

  void Run() {
    constexpr int kEventsMax = 64;
    epoll_event events[kEventsMax];
    for (;;) {
      int n = epoll_wait(epollFd, events, kEventsMax, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        // Cannot happen with valid arguments; fail every transfer rather than spin.
        int err = errno;
        std::vector<Transfer*> all;
        for (auto& kv : active) all.push_back(kv.second);
        for (Transfer* t : all) Finish(t, err);
        continue;
      }
      // Commands run after the batch: a cancel frees a transfer, and the same batch may still
      // hold an event pointing at it. Transfer events themselves are safe: EPOLLONESHOT
      // reports each registration at most once per batch.
      bool wake = false;
      for (int i = 0; i < n; i++) {
        if (events[i].data.ptr == nullptr) {
          wake = true;
        } else {
          Service(static_cast<Transfer*>(events[i].data.ptr));
        }
      }
      if (wake && !DrainCommands()) return;
    }
  }

  // Environment teardown (JS thread). Unsettled Promises are abandoned with their env.
  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    Wake();
    if (thread.joinable()) thread.join();
    for (auto& kv : active) {
      epoll_ctl(epollFd, EPOLL_CTL_DEL, kv.second->socketFd, nullptr);
      ReleaseTransferFds(kv.second);
      delete kv.second;
    }
    active.clear();
    for (Transfer* t : incoming) {
      ReleaseTransferFds(t);
      delete t;
    }
    incoming.clear();
    close(epollFd);
    close(wakeFd);
  }
};

// Builds Error{message, errno, bytesSent} with raw napi calls: this runs from the tsfn callback,
// which may also run while a worker is being torn down and JS can no longer execute; there,
// node-addon-api's wrappers would turn a failed call into a fatal error. Returns nullptr on failure.
napi_value ErrnoError(napi_env env, int err, uint64_t sentBytes) {
  std::string message = std::string("zero-copy transfer failed: ") + strerror(err);
  napi_value text, error, errnoValue, bytesValue;
  if (napi_create_string_utf8(env, message.c_str(), message.size(), &text) != napi_ok ||
      napi_create_error(env, nullptr, text, &error) != napi_ok ||
      napi_create_int32(env, err, &errnoValue) != napi_ok ||
      napi_create_double(env, static_cast<double>(sentBytes), &bytesValue) != napi_ok ||
      napi_set_named_property(env, error, "errno", errnoValue) != napi_ok ||
      napi_set_named_property(env, error, "bytesSent", bytesValue) != napi_ok) {
    return nullptr;
  }
  return error;
}

// JS thread. env == nullptr when the environment drains the tsfn queue at teardown: then only
// free (the Sender may already be gone). Every napi failure is ignored: a settle that cannot
// happen belongs to an environment that is going away.
void SettleOnJsThread(napi_env env, napi_value /*jsCallback*/, void* /*context*/, void* data) {
  auto* c = static_cast<Completion*>(data);
  if (env != nullptr) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      if (c->err == 0) {
        napi_value bytes;
        if (napi_create_double(env, static_cast<double>(c->sentBytes), &bytes) == napi_ok) {
          napi_resolve_deferred(env, c->deferred, bytes);
        }
      } else {
        napi_value error = ErrnoError(env, c->err, c->sentBytes);
        if (error != nullptr) napi_reject_deferred(env, c->deferred, error);
      }
      napi_close_handle_scope(env, scope);
    }
    Sender* s = c->sender;
    if (--s->pendingCount == 0) napi_unref_threadsafe_function(env, s->tsfn);
  }
  delete c;
}

// ----- per-environment state --------------------------------------------------------------------

struct AddonState {
  Sender* sender = nullptr;  // created on the first hand-off
  Pipe cachedPipe;           // JS-thread splice pipe, empty between calls; replaced on hand-off
  uint64_t nextTransferId = 1;
};

// Environment teardown, registered in Init: runs after CleanupSender (hooks run in reverse
// order of registration).
void CleanupState(void* arg) {
  auto* state = static_cast<AddonState*>(arg);
  ClosePipe(&state->cachedPipe);
  delete state;
}

// Environment teardown, registered right after the sender's tsfn was created, so it runs before
// the environment's own teardown of that tsfn: the thread is joined (it makes no more tsfn
// calls) before the tsfn can go away. Completions still queued are then drained by the
// environment with env == nullptr, which does not touch the Sender, so deleting it here is safe.
void CleanupSender(void* arg) {
  auto* s = static_cast<Sender*>(arg);
  s->Shutdown();
  delete s;
}

void NoFinalize(Napi::Env, AddonState*) {}  // CleanupState owns the state's lifetime

AddonState* State(Napi::Env env) { return env.GetInstanceData<AddonState>(); }

// Returns the sender, starting it on first use; nullptr with *err set on failure.
Sender* EnsureSender(Napi::Env env, int* err) {
  AddonState* state = State(env);
  if (state->sender != nullptr) return state->sender;
  auto* s = new Sender();
  s->epollFd = epoll_create1(EPOLL_CLOEXEC);
  s->wakeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;
  if (s->epollFd < 0 || s->wakeFd < 0 || epoll_ctl(s->epollFd, EPOLL_CTL_ADD, s->wakeFd, &ev) != 0) {
    *err = errno;
    if (s->epollFd >= 0) close(s->epollFd);
    if (s->wakeFd >= 0) close(s->wakeFd);
    delete s;
    return nullptr;
  }
  napi_value name = Napi::String::New(env, "solifuge.zerocopy.sender");
  if (napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, nullptr,
                                      SettleOnJsThread, &s->tsfn) != napi_ok) {
    *err = ENOMEM;
    close(s->epollFd);
    close(s->wakeFd);
    delete s;
    return nullptr;
  }
  // Idle senders must not keep the process alive; Send() refs while transfers are pending.
  napi_unref_threadsafe_function(env, s->tsfn);
  s->thread = std::thread([s] { s->Run(); });
  napi_add_env_cleanup_hook(env, CleanupSender, s);
  state->sender = s;
  return s;
}

bool IsUint(const Napi::Value& v, double max) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  return d >= 0 && d <= max && d == static_cast<double>(static_cast<uint64_t>(d));
}

Napi::Object Outcome(Napi::Env env, uint64_t sentBytes, int err) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("sentBytes", Napi::Number::New(env, static_cast<double>(sentBytes)));
  o.Set("errno", Napi::Number::New(env, err));
  return o;
}

int DupCloexec(int fd) {
  int copy;
  do {
    copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  } while (copy < 0 && errno == EINTR);
  return copy;
}

// send(mode, socketFd, fileFd, offset, length)
//   -> number: all `length` bytes were sent on the JS thread;
//   -> { sentBytes, errno }: failed on the JS thread (errno > 0) after sentBytes bytes;
//   -> { sentBytes, errno: 0, id, promise }: the remainder runs on the sender thread; promise
//      resolves with the region's total bytes or rejects with Error{errno, bytesSent}.
// The caller has checked that nothing else is queued on the socket and must not write to it
// until the result settles.
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !IsUint(info[0], 1) || !IsUint(info[1], INT32_MAX) ||
      !IsUint(info[2], INT32_MAX) || !IsUint(info[3], kSafeIntegerMax) ||
      !IsUint(info[4], kSafeIntegerMax)) {
    Napi::TypeError::New(env, "send(mode 0|1, socketFd, fileFd, offset, length)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  AddonState* state = State(env);
  Transfer fast;
  fast.mode = static_cast<Mode>(info[0].As<Napi::Number>().Int32Value());
  fast.socketFd = info[1].As<Napi::Number>().Int32Value();
  fast.fileFd = info[2].As<Napi::Number>().Int32Value();
  fast.fileOffset = static_cast<uint64_t>(info[3].As<Napi::Number>().DoubleValue());
  fast.remainingBytes = static_cast<uint64_t>(info[4].As<Napi::Number>().DoubleValue());
  if (fast.fileOffset + fast.remainingBytes > static_cast<uint64_t>(kSafeIntegerMax)) {
    Napi::RangeError::New(env, "offset + length exceeds 2^53-1").ThrowAsJavaScriptException();
    return env.Undefined();
  }

  if (fast.mode == Mode::kSplice) {
    if (state->cachedPipe.readFd < 0) {
      int err = OpenPipe(&state->cachedPipe);
      if (err != 0) return Outcome(env, 0, err);
    }
    fast.pipe = state->cachedPipe;
  }

  // 1. Fast path on the caller's own fds (valid: we are on the JS thread, synchronously).
  int err = 0;
  Step step = Pump(&fast, kFastPathBudgetBytes, &err);
  if (step == Step::kDone) {
    return Napi::Number::New(env, static_cast<double>(fast.sentBytes));  // pipe is empty
  }
  if (fast.mode == Mode::kSplice) {
    // The pipe may hold region bytes, so it goes with the transfer; a fresh one replaces it at
    // once (best effort) so the env keeps a steady fd footprint: one cached pipe.
    state->cachedPipe = Pipe{};
    (void)OpenPipe(&state->cachedPipe);
  }
  if (step == Step::kFailed) {
    ClosePipe(&fast.pipe);  // may hold bytes of a failed transfer
    return Outcome(env, fast.sentBytes, err);
  }

  // 2. Hand-off: duplicate both fds here, on the JS thread, while the numbers are still ours.
  Sender* sender = EnsureSender(env, &err);
  int socketCopy = sender != nullptr ? DupCloexec(fast.socketFd) : -1;
  if (sender != nullptr && socketCopy < 0) err = errno;
  int fileCopy = socketCopy >= 0 ? DupCloexec(fast.fileFd) : -1;
  if (socketCopy >= 0 && fileCopy < 0) {
    err = errno;
    close(socketCopy);
  }
  if (fileCopy < 0) {
    ClosePipe(&fast.pipe);
    return Outcome(env, fast.sentBytes, err);
  }
  auto* t = new Transfer(fast);
  t->id = state->nextTransferId++;
  t->socketFd = socketCopy;
  t->fileFd = fileCopy;
  t->ownsFds = true;
  napi_value promise;
  napi_create_promise(env, &t->deferred, &promise);
  if (sender->pendingCount++ == 0) napi_ref_threadsafe_function(env, sender->tsfn);
  Napi::Object o = Outcome(env, fast.sentBytes, 0);
  o.Set("id", Napi::Number::New(env, static_cast<double>(t->id)));
  o.Set("promise", promise);
  sender->Submit(t);  // t now belongs to the sender thread: do not touch it below
  return o;
}

// cancel(id): ends a pending transfer with ECANCELED (its Promise rejects); a no-op when it
// already finished. Used when JS destroys the socket: our duplicate would otherwise keep the
// connection open for as long as the peer stalls.
Napi::Value Cancel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !IsUint(info[0], kSafeIntegerMax)) {
    Napi::TypeError::New(env, "cancel(id)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  AddonState* state = State(env);
  if (state->sender != nullptr) {
    state->sender->Cancel(static_cast<uint64_t>(info[0].As<Napi::Number>().DoubleValue()));
  }
  return env.Undefined();
}

// pendingTransfers() -> number of transfers whose Promise has not settled (tests, metrics).
Napi::Value PendingTransfers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  AddonState* state = State(env);
  double n = state->sender != nullptr ? static_cast<double>(state->sender->pendingCount) : 0;
  return Napi::Number::New(env, n);
}

// sendfileBlocking(socketFd, fileFd, offset, length) -> bytes | -errno
// Benchmark reference only ("raw sendfile"): the bare sendfile loop, waiting for POLLOUT with
// poll() ON THE CALLING THREAD. It blocks the event loop; never use it in a server.
Napi::Value SendfileBlocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !IsUint(info[0], INT32_MAX) || !IsUint(info[1], INT32_MAX) ||
      !IsUint(info[2], kSafeIntegerMax) || !IsUint(info[3], kSafeIntegerMax)) {
    Napi::TypeError::New(env, "sendfileBlocking(socketFd, fileFd, offset, length)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Transfer t;
  t.socketFd = info[0].As<Napi::Number>().Int32Value();
  t.fileFd = info[1].As<Napi::Number>().Int32Value();
  t.fileOffset = static_cast<uint64_t>(info[2].As<Napi::Number>().DoubleValue());
  t.remainingBytes = static_cast<uint64_t>(info[3].As<Napi::Number>().DoubleValue());
  for (;;) {
    int err = 0;
    Step step = PumpSendfile(&t, UINT64_MAX, &err);
    if (step == Step::kDone) return Napi::Number::New(env, static_cast<double>(t.sentBytes));
    if (step == Step::kFailed) return Napi::Number::New(env, -err);
    pollfd p{t.socketFd, POLLOUT, 0};
    if (poll(&p, 1, -1) < 0 && errno != EINTR) return Napi::Number::New(env, -errno);
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* state = new AddonState();
  env.SetInstanceData<AddonState, NoFinalize>(state);
  napi_add_env_cleanup_hook(env, CleanupState, state);
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("funlock", Napi::Function::New(env, Funlock));
  exports.Set("dup", Napi::Function::New(env, Dup));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole));
  exports.Set("adviseHugePages", Napi::Function::New(env, AdviseHugePages));
  exports.Set("prefault", Napi::Function::New(env, Prefault));
  exports.Set("discardPages", Napi::Function::New(env, DiscardPages));
  exports.Set("send", Napi::Function::New(env, Send));
  exports.Set("cancel", Napi::Function::New(env, Cancel));
  exports.Set("pendingTransfers", Napi::Function::New(env, PendingTransfers));
  exports.Set("sendfileBlocking", Napi::Function::New(env, SendfileBlocking));
  solifuge::RegisterPolledSync(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(zerocopy, Init)
