// fdatasync polled for: fdatasyncPolled(fd, spinUs) -> 0 | -errno; or in two steps,
// fdatasyncStart(fd, spinUs) and later fdatasyncFinish() -> 0 | -errno, so that the caller's own
// work (a commit's bookkeeping after its append) runs while the fdatasync does.
//
// Why: on this machine (a 2-vCPU VM; bench/RESULTS.md round 16) a small durable commit is one
// fdatasync plus the JS around it, and both get slower when the JS thread blocks in the
// fdatasync: its vCPU halts, waking it for the I/O completion costs the VM tens of microseconds,
// and the JS that runs next finds its caches cold (the same steps take ~3x as long as without a
// sync). So the fdatasync runs on the addon's sync thread while the calling thread polls for its
// completion, and the sync thread polls for the next request for a while after each one.
// Measured: durable single commits p50 159 us against 227 us blocking (commits/s 1.42x).
//
// Placement (a request's `cpu` >= 0; bench/RESULTS.md round 18): the caller names the CPU that
// takes the disk's completion interrupts (src/native/completion-cpu.ts finds it), and the sync
// thread runs there, pinned, with a keeper: a SCHED_IDLE thread pinned to the same CPU that
// spins while the sync thread is blocked in the I/O. An fdatasync is two device round trips (the
// write, then the cache flush), and each completion interrupt that meets a halted vCPU, or wakes
// the sync thread on another one, pays the wake-up again. With the keeper the interrupt lands on
// a running vCPU and wakes the sync thread where it is; SCHED_IDLE yields the CPU at once to any
// other thread, and the sync thread asks for a short slice (sched_setattr's sched_runtime, Linux
// 6.12 and later: a woken thread with a shorter slice preempts) so that whatever else the
// scheduler put on that CPU meanwhile does not hold it up for a tick. Measured in the bench,
// 1M keys, side by side: durable single commits 7,773 against 5,623 commits/s unpinned, p50 102
// against 141 us. Between requests the keeper stays, spinning for up to the last request's
// spin and watching for the next one, which it wakes the sync thread for from that CPU (no
// interrupt to another, and the CPU never halts), while the sync thread itself sleeps unless
// requests come back to back (PollAfterNs, keeperWatching; bench/RESULTS.md round 32).
// cpu -1 (the default): the thread runs anywhere, no keeper, as before. The placement is the
// process's (one sync thread): stores asking for different CPUs move it back and forth, a
// system call each time.
//
// Protocol (one request slot, one sync thread per process):
//   caller:      start: try-lock callerMutex (held: a plain fdatasync on the calling thread
//                instead, its result kept for finish); write fd, spinNs and cpu; requestSeq = n;
//                FUTEX_WAKE requestSeq unless the keeper is watching (keeperWatching).
//                finish: poll doneSeq == n for up to spinNs, then FUTEX_WAIT on doneSeq until it
//                is; read the result; unlock. If start left the wake-up to the keeper and the
//                request is not taken (takenSeq) after 30 us of that poll, FUTEX_WAKE it then.
//                Start and finish run on the same thread, which keeps what it started in a
//                thread_local.
//   sync thread: whenever requestSeq moves: takenSeq = n; place itself on cpu (and wake the
//                keeper there), fdatasync(fd), store the result, doneSeq = n, FUTEX_WAKE
//                doneSeq; poll requestSeq for a while (PollAfterNs: only while requests come
//                close together, at most that request's spinNs); with a keeper, leave it
//                watching (and wake it); FUTEX_WAIT.
//   keeper:      while watching: FUTEX_WAKE requestSeq once it passes takenSeq; when its spin
//                runs out, stop watching, then look once more and wake for a request not taken.
// FUTEX_WAIT returns at once if its word already moved, so no wake-up is lost. A caller that saw
// the keeper watching skips its wake: the keeper either sees the new requestSeq while it watches
// or on its last look after it stopped (both sides store, then load the other's word, seq_cst),
// and if the keeper is kept off its CPU meanwhile (SCHED_IDLE runs last), finish wakes the
// sync thread itself. requestSeq is only written under the mutex, doneSeq only by the sync
// thread. The slot serves one JS thread at a
// time; callers from other threads (worker_threads) meanwhile sync on their own thread.
// Both polls call sched_yield every ~64 pause instructions: on two cores, two polling threads
// would otherwise keep V8's GC and compiler threads (and kworkers) waiting for a scheduler tick.
//
// Threads are named solifuge-sync and solifuge-keep (seen in top -H and /proc/PID/task/*/comm).
//
// Invariants:
//   - The result is the caller's fdatasync, on the caller's fd, completed before
//     fdatasyncPolled (or fdatasyncFinish) returns: the contract of fs.fdatasyncSync. (Like it,
//     it syncs whatever file the fd number names at that moment: the caller must keep its fd open
//     until then.) A thread that starts one must finish it before it starts another (else the
//     call throws); a worker thread that exits in between leaves the slot locked, and every
//     later call syncs plainly.
//   - The sync thread and the keeper are started on first use (the keeper on the first request
//     with a cpu) and never joined: they only touch this file's statics and make no call but
//     fdatasync, pwrite, futex, sched_yield, sched_getcpu and clock_gettime (vDSO) and, when the
//     placement changes, the affinity and scheduling calls, so process exit may cut them down
//     anywhere. Its code must stay
//     mapped while it runs, and Node unloads the addons a worker thread loaded when that worker
//     exits: binding.gyp links the addon with `-z nodelete` so that it never is. If the thread cannot be created, and in a
//     forked child (which has no copy of it), every call is a plain fdatasync.
//   - CPU cost is bounded: the caller polls at most its spinNs per call (then sleeps), the sync
//     thread at most the last request's spinNs after it (and none while requests come far
//     apart), the keeper at most a request's spinNs while the sync thread is inside that
//     request's I/O and as long after it (it sleeps on a futex otherwise). Time at SCHED_IDLE
//     still counts against a cgroup's CPU quota.
#include <napi.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>

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
// The CPU the sync thread is to serve the request on, with its keeper (-1: anywhere, no keeper).
int requestCpu = -1;
// A write request (requestWriteLen > 0): pwrite requestWriteLen bytes of slotBuf at requestPos
// (the fd was opened O_DIRECT | O_DSYNC: the write is durable once done). 0: an fdatasync.
size_t requestWriteLen = 0;
int64_t requestPos = 0;
// kDirectAlign-aligned, grown by the caller under callerMutex while no request is in flight.
uint8_t* slotBuf = nullptr;
size_t slotBufBytes = 0;
std::atomic<uint32_t> requestSeq{0};
// Written by the sync thread, read by the caller after doneSeq moves.
int doneErrno = 0;
std::atomic<uint32_t> doneSeq{0};
// Requests the sync thread served, and those it saw while polling after the one before (the rest
// woke it from its futex): syncThreadCounters(), for tests and diagnosis. Written by the sync
// thread only.
std::atomic<uint64_t> requestsServed{0};
std::atomic<uint64_t> requestsSeenPolling{0};
// Requests the keeper woke the sync thread for (see keeperWatching); written by the keeper.
std::atomic<uint64_t> requestsHandedOff{0};

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

// pwrite(fd, buf, len, pos) until all is written, retried on EINTR: 0 | -errno.
int PlainWrite(int fd, const uint8_t* buf, size_t len, int64_t pos) {
  size_t done = 0;
  while (done < len) {
    const ssize_t n = pwrite(fd, buf + done, len - done, static_cast<off_t>(pos + done));
    if (n < 0 && errno == EINTR) continue;
    // After part of it was written, any failure is an I/O error: only a write that wrote
    // nothing may report EINVAL, which the caller reads as "no direct I/O here".
    if (n < 0) return done > 0 ? -EIO : -errno;
    if (n == 0) return -EIO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

// The keeper (see "Placement"). keeperWanted holds the ticket of the request the sync thread is
// serving with the keeper, 0 while none: the keeper spins while it still holds that ticket, for
// at most the request's spin (keeperSpinNs), then naps in slices of kKeeperNapNs until it
// changes, so a slow disk costs it no more CPU than the caller's own poll costs the caller.
// After the request, a ticket marked kBetweenTicket: the keeper spins as long again, watching for
// the next request, then drops the ticket itself and sleeps.
std::atomic<uint32_t> keeperWanted{0};
std::atomic<int64_t> keeperSpinNs{0};
// Marks a ticket handed to the keeper between requests (see SyncThread) rather than for one.
constexpr uint32_t kBetweenTicket = 0x80000000u;
// While set, the keeper watches requestSeq for the sync thread, asleep beside it, and wakes it
// when a request comes: a wake-up from the same CPU, where the caller's would be an interrupt to
// another. takenSeq is the last request the sync thread picked up: one is waiting while
// requestSeq is past it (the keeper's test; a caller that relied on the keeper wakes the sync
// thread itself if its request is not taken soon: the keeper runs only while no other thread
// wants its CPU).
std::atomic<bool> keeperWatching{false};
std::atomic<uint32_t> takenSeq{0};
constexpr int64_t kHandoffWaitNs = 30 * 1000;
constexpr int64_t kKeeperNapNs = 1000 * 1000;
// Created once by the first caller that asks for a CPU (Start, under callerMutex), named and
// made SCHED_IDLE there; never exits, so its handle stays valid. keeperReady is written before
// that caller publishes its request and read by the sync thread after it sees the request.
std::once_flag keeperCreated;
pthread_t keeper{};
bool keeperReady = false;

void FutexWaitFor(std::atomic<uint32_t>* word, uint32_t expected, int64_t ns) {
  timespec t{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &t, nullptr, 0);
}

void* KeeperThread(void*) {
  for (;;) {
    FutexWait(&keeperWanted, 0);
    const uint32_t ticket = keeperWanted.load(std::memory_order_acquire);
    if (ticket == 0) continue;
    const int64_t until = NowNs() + keeperSpinNs.load(std::memory_order_relaxed);
    const bool between = (ticket & kBetweenTicket) != 0;
    bool woke = false;
    for (;;) {
      bool moved = false;
      for (int i = 0; i < 64 && !moved; i++) {
        CpuRelax();
        moved = keeperWanted.load(std::memory_order_relaxed) != ticket;
        if (between && !woke && requestSeq.load(std::memory_order_acquire) != takenSeq.load(std::memory_order_acquire)) {
          FutexWake(&requestSeq);  // the sync thread, on this CPU, preempts this thread now
          requestsHandedOff.fetch_add(1, std::memory_order_relaxed);
          woke = true;
        }
      }
      if (moved || NowNs() >= until) break;
    }
    if (between) {
      // Between requests nobody takes the ticket back: it lapses here (unless the next request's
      // replaced it), and the keeper sleeps until the next one. It stops watching first, then
      // looks once more: a caller that saw it watching did not wake the sync thread.
      keeperWatching.store(false, std::memory_order_seq_cst);
      if (requestSeq.load(std::memory_order_seq_cst) != takenSeq.load(std::memory_order_acquire)) FutexWake(&requestSeq);
      uint32_t expected = ticket;
      keeperWanted.compare_exchange_strong(expected, 0, std::memory_order_relaxed);
      continue;
    }
    while (keeperWanted.load(std::memory_order_relaxed) == ticket) FutexWaitFor(&keeperWanted, ticket, kKeeperNapNs);
  }
  return nullptr;
}

// Creates the keeper and makes it SCHED_IDLE before any request can wake it (unprivileged: any
// thread may go to SCHED_IDLE; glibc's thread attributes do not take that policy). If it cannot
// be made SCHED_IDLE there is no keeper, rather than one that competes with the sync thread as
// an equal: it sleeps on keeperWanted, which nothing wakes.
void CreateKeeper() {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return;
  const bool created = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                       pthread_create(&keeper, &attr, KeeperThread, nullptr) == 0;
  pthread_attr_destroy(&attr);
  if (!created) return;
  pthread_setname_np(keeper, "solifuge-keep");
  sched_param none{};
  keeperReady = pthread_setschedparam(keeper, SCHED_IDLE, &none) == 0;
}

// sched_getattr/sched_setattr(2)'s argument, without the utilization clamps (no glibc wrappers
// before 2.41). sched_runtime is the slice a SCHED_OTHER thread asks for since Linux 6.12; older
// kernels keep their default slice.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};
constexpr uint64_t kPinnedSliceNs = 100 * 1000;
constexpr uint64_t kSchedFlagResetOnFork = 0x01;

// Sets this thread's slice, keeping its policy and nice value; only for a SCHED_OTHER thread (not
// one the user made SCHED_FIFO, say). Returns whether it did.
bool SetSlice(uint64_t sliceNs) {
  SchedAttr a{};
  if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) != 0 || a.sched_policy != SCHED_OTHER) return false;
  a.size = sizeof a;
  a.sched_flags &= kSchedFlagResetOnFork;  // no clamp flags: this struct has no clamp fields
  a.sched_runtime = sliceNs;
  return syscall(SYS_sched_setattr, 0, &a, 0) == 0;
}

// The sync thread's placement, read and changed only by the sync thread.
struct Placement {
  int cpu = -1;           // the CPU asked for by the last request (-2: to be placed again)
  bool keeperOn = false;  // pinned there, with the keeper pinned beside it
  bool sliceSet = false;
  cpu_set_t anywhere{};   // the thread's affinity when it started
};
Placement placement;

// Moves the sync thread (and the keeper) to `cpu`, or back to anywhere for -1. A CPU this process
// may not run on leaves it anywhere, without the keeper.
void Place(int cpu) {
  Placement& p = placement;
  if (cpu == p.cpu) return;
  p.cpu = cpu;
  p.keeperOn = false;
  cpu_set_t one;
  CPU_ZERO(&one);
  if (cpu >= 0) CPU_SET(cpu, &one);
  if (cpu < 0 || sched_setaffinity(0, sizeof one, &one) != 0) {
    sched_setaffinity(0, sizeof p.anywhere, &p.anywhere);
    if (p.sliceSet) SetSlice(0);  // 0: the default slice
    p.sliceSet = false;
    return;
  }
  p.keeperOn = keeperReady && pthread_setaffinity_np(keeper, sizeof one, &one) == 0;
  p.sliceSet = SetSlice(kPinnedSliceNs) || p.sliceSet;
}

// How long the sync thread polls for the next request after serving one, given the gap between
// a request's completion and the next request (the shorter of the last two; 0: none seen yet)
// and the request's spinNs. Polling catches back-to-back commits without a futex wake-up (the
// gap is ~10 us between durable single commits, ~45 us between groups of 100 here, and 98% of
// a group run's requests were seen polling), but where requests come far apart it only takes a CPU from
// threads with work to do: a sorted load's commits (each synced here) come ~600 us apart, and
// polling up to 1 ms after each kept this thread on a CPU for 342-412 ms of a ~0.9 s load. On
// two CPUs that crowded V8's GC threads and libuv's pool onto the JS thread's: it waited for a
// CPU 100-207 ms of the load, against 75-116 ms without the poll (per-thread schedstat). Sorted
// loads in such a process, this change alone: 1.06M against 1.23M keys/s, 10 alternating runs
// each; inside the bench's worker, whose heap holds every key three times, +4% (bench/RESULTS.md
// round 32).
// So: poll for a few gaps' worth, and not at all once the gap is longer than kPollGapMaxNs;
// with a keeper, it watches meanwhile at SCHED_IDLE, which gives way to those threads
// (keeperWatching).
constexpr int64_t kPollGapMaxNs = 200 * 1000;
constexpr int64_t kPollGapFactor = 4;
constexpr int64_t kPollMinNs = 20 * 1000;
int64_t PollAfterNs(int64_t gapNs, int64_t spinNs) {
  if (gapNs > kPollGapMaxNs) return 0;
  const int64_t ns = kPollGapFactor * gapNs + kPollMinNs;
  return ns < spinNs ? ns : spinNs;
}

void* SyncThread(void*) {
  pthread_setname_np(pthread_self(), "solifuge-sync");
  if (sched_getaffinity(0, sizeof placement.anywhere, &placement.anywhere) != 0) {
    for (int c = 0; c < CPU_SETSIZE; c++) CPU_SET(c, &placement.anywhere);
  }
  uint32_t seen = 0;
  int64_t spinNs = 0;
  uint32_t ticket = 0;
  int64_t doneAtNs = 0;  // when the last request was done (0: none yet)
  // The last two gaps from a request's completion to the next request (0: none yet). The
  // shorter counts: one long gap (a GC pause, a checkpoint's slice) does not stop the poll.
  int64_t gapNs = 0;
  int64_t gapBeforeNs = 0;
  bool polling = true;   // whether this thread is in its poll, not asleep, when requestSeq moves
  bool keeperNext = false;  // whether the keeper is to watch for the next request once this sleeps
  for (;;) {
    uint32_t n = PollWhileEqual(&requestSeq, seen, polling ? PollAfterNs(std::min(gapNs, gapBeforeNs), spinNs) : 0);
    if (n == seen) {
      if (keeperNext) {
        // The keeper watches from now, not while this thread polls: the poll's sched_yield would
        // hand it the CPU, and a SCHED_IDLE thread keeps it until the next tick.
        keeperNext = false;
        keeperSpinNs.store(spinNs, std::memory_order_relaxed);
        keeperWanted.store(ticket | kBetweenTicket, std::memory_order_release);
        keeperWatching.store(true, std::memory_order_seq_cst);
        FutexWake(&keeperWanted);
      }
      FutexWait(&requestSeq, seen);
      polling = false;
      continue;
    }
    if (doneAtNs != 0) {
      gapBeforeNs = gapNs;
      gapNs = NowNs() - doneAtNs;
    }
    if (polling) requestsSeenPolling.fetch_add(1, std::memory_order_relaxed);
    polling = true;
    seen = n;
    keeperWatching.store(false, std::memory_order_relaxed);
    takenSeq.store(n, std::memory_order_release);
    const int fd = requestFd;
    spinNs = requestSpinNs;
    Place(requestCpu);
    bool kept = false;
    if (placement.keeperOn) {
      if (sched_getcpu() == placement.cpu) {
        kept = true;
        ticket = (ticket + 1) & ~kBetweenTicket;
        if (ticket == 0) ticket = 1;
        keeperSpinNs.store(spinNs, std::memory_order_relaxed);
        keeperWanted.store(ticket, std::memory_order_relaxed);
        FutexWake(&keeperWanted);
      } else {
        placement.cpu = -2;  // moved by someone else (taskset, a cpuset): placed again next time
      }
    }
    doneErrno = requestWriteLen > 0 ? -PlainWrite(fd, slotBuf, requestWriteLen, requestPos) : -PlainFdatasync(fd);
    keeperWanted.store(0, std::memory_order_relaxed);
    // Once this thread stops polling, the keeper watches for the next request (see
    // keeperWatching): it spins at SCHED_IDLE, where this thread's poll would take the CPU from
    // every other thread.
    keeperNext = kept;
    requestsServed.fetch_add(1, std::memory_order_relaxed);
    doneSeq.store(n, std::memory_order_release);
    FutexWake(&doneSeq);
    doneAtNs = NowNs();
  }
  return nullptr;
}

constexpr double kSpinUsMax = 1e6;
// Offsets, lengths and buffer addresses of O_DIRECT writes are multiples of this: 4 KiB suits
// every block device and filesystem block size in use (a 512-byte-sector disk takes it too).
constexpr size_t kDirectAlign = 4096;
// The longest write directWriteStart takes (the engine's small commits are at most 64 KiB).
constexpr size_t kDirectWriteBytesMax = 1 << 20;

// What this JS thread has started and not yet finished (each JS thread, main or worker, calls
// in on its own OS thread). `started` without `onSyncThread`: the plain fdatasync already ran
// and `plainResult` is its result.
struct InFlight {
  bool started = false;
  bool onSyncThread = false;
  uint32_t seq = 0;
  int64_t spinNs = 0;
  int plainResult = 0;
  bool wakeLeft = false;  // Start left waking the sync thread to the keeper
};
thread_local InFlight inFlight;

// Whether fd is an integer in [-1, INT32_MAX] (-1 gives -EBADF, as any fd not open) and spinUs
// a number in [0, 1e6].
bool ValidFdAndSpin(double fdArg, double spinUs) {
  return fdArg >= -1 && fdArg <= INT32_MAX && fdArg == static_cast<double>(static_cast<int64_t>(fdArg)) &&
         spinUs >= 0 && spinUs <= kSpinUsMax;
}

// Reads the optional cpu argument at `index`: -1 when absent or undefined, else an integer in
// [-1, CPU_SETSIZE); false after throwing a TypeError (`usage`).
bool ReadCpu(const Napi::CallbackInfo& info, size_t index, const char* usage, int* cpu) {
  *cpu = -1;
  if (info.Length() <= index || info[index].IsUndefined()) return true;
  const double c = info[index].IsNumber() ? info[index].As<Napi::Number>().DoubleValue() : -2;
  if (!(c >= -1 && c < CPU_SETSIZE && c == static_cast<double>(static_cast<int64_t>(c)))) {
    Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
    return false;
  }
  *cpu = static_cast<int>(c);
  return true;
}

// Reads (fd, spinUs[, cpu]); false after throwing a TypeError (`usage`).
bool ReadArgs(const Napi::CallbackInfo& info, const char* usage, int* fd, int64_t* spinNs, int* cpu) {
  const double fdArg = info.Length() >= 1 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -2;
  const double spinUs = info.Length() >= 2 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : -1;
  if (!ValidFdAndSpin(fdArg, spinUs)) {
    Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
    return false;
  }
  *fd = static_cast<int>(fdArg);
  *spinNs = static_cast<int64_t>(spinUs * 1000);
  return ReadCpu(info, 2, usage, cpu);
}

// What a request does: an fdatasync (write == nullptr), or a pwrite of `len` bytes padded with
// zeros to a multiple of kDirectAlign at `pos` (a multiple of it) through an O_DIRECT fd.
struct Op {
  int fd;
  const uint8_t* write;
  size_t len;
  int64_t pos;
};

size_t PaddedLen(size_t len) { return (len + kDirectAlign - 1) / kDirectAlign * kDirectAlign; }

// Copies the write's bytes into `buf` (at least PaddedLen bytes) and zero-fills the padding.
void FillPadded(uint8_t* buf, const Op& op) {
  memcpy(buf, op.write, op.len);
  memset(buf + op.len, 0, PaddedLen(op.len) - op.len);
}

// The op on this thread, now: 0 | -errno.
int RunPlain(const Op& op) {
  if (op.write == nullptr) return PlainFdatasync(op.fd);
  void* buf = nullptr;
  if (posix_memalign(&buf, kDirectAlign, PaddedLen(op.len)) != 0) return -ENOMEM;
  FillPadded(static_cast<uint8_t*>(buf), op);
  const int rc = PlainWrite(op.fd, static_cast<uint8_t*>(buf), PaddedLen(op.len), op.pos);
  free(buf);
  return rc;
}

// Starts this thread's op: on the sync thread (placed on `cpu`, see Place) when spinNs > 0 and
// the slot is free, else plainly, here and now.
void Start(const Op& op, int64_t spinNs, int cpu) {
  inFlight = InFlight{};
  inFlight.started = true;
  if (spinNs > 0) {
    std::call_once(started, [] {
      pthread_t thread;
      if (pthread_create(&thread, nullptr, SyncThread, nullptr) == 0) {
        pthread_detach(thread);
        syncThreadRunning = true;
        syncThreadPid = getpid();
      }
    });
  }
  // Another JS thread's request in flight (or a stuck device): sync on this thread rather than
  // wait behind it, so stores in different threads never serialise their syncs. The
  // mutex stays locked until Finish, on this same thread.
  if (spinNs <= 0 || !syncThreadRunning || getpid() != syncThreadPid || !callerMutex.try_lock()) {
    inFlight.plainResult = RunPlain(op);
    return;
  }
  if (op.write != nullptr && PaddedLen(op.len) > slotBufBytes) {
    void* grown = nullptr;
    if (posix_memalign(&grown, kDirectAlign, PaddedLen(op.len)) != 0) {
      callerMutex.unlock();
      inFlight.plainResult = -ENOMEM;
      return;
    }
    free(slotBuf);
    slotBuf = static_cast<uint8_t*>(grown);
    slotBufBytes = PaddedLen(op.len);
  }
  if (op.write != nullptr) FillPadded(slotBuf, op);
  if (cpu >= 0) std::call_once(keeperCreated, CreateKeeper);
  inFlight.onSyncThread = true;
  inFlight.spinNs = spinNs;
  requestFd = op.fd;
  requestSpinNs = spinNs;
  requestCpu = cpu;
  requestWriteLen = op.write != nullptr ? PaddedLen(op.len) : 0;
  requestPos = op.pos;
  inFlight.seq = requestSeq.load(std::memory_order_relaxed) + 1;
  requestSeq.store(inFlight.seq, std::memory_order_seq_cst);
  inFlight.wakeLeft = keeperWatching.load(std::memory_order_seq_cst);
  if (!inFlight.wakeLeft) FutexWake(&requestSeq);
}

// Waits for the op Start began: 0 | -errno.
int Finish() {
  const InFlight f = inFlight;
  inFlight = InFlight{};
  if (!f.onSyncThread) return f.plainResult;
  uint32_t done;
  if (f.wakeLeft) {
    done = PollWhileEqual(&doneSeq, f.seq - 1, std::min(f.spinNs, kHandoffWaitNs));
    if (done != f.seq && takenSeq.load(std::memory_order_acquire) != f.seq) FutexWake(&requestSeq);
    if (done != f.seq) done = PollWhileEqual(&doneSeq, f.seq - 1, f.spinNs - kHandoffWaitNs);
  } else {
    done = PollWhileEqual(&doneSeq, f.seq - 1, f.spinNs);
  }
  while (done != f.seq) {
    FutexWait(&doneSeq, done);
    done = doneSeq.load(std::memory_order_acquire);
  }
  const int result = -doneErrno;
  callerMutex.unlock();
  return result;
}

// Throws an Error (and returns true) if this thread started something not yet finished.
bool ThrowIfStarted(Napi::Env env, const char* call) {
  if (!inFlight.started) return false;
  Napi::Error::New(env, std::string(call) + ": this thread has a start not yet finished").ThrowAsJavaScriptException();
  return true;
}

// fdatasyncPolled(fd, spinUs, cpu?) -> 0 | -errno: fdatasyncStart and fdatasyncFinish in one call.
Napi::Value FdatasyncPolled(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t spinNs;
  int cpu;
  if (!ReadArgs(info, "fdatasyncPolled(fd: integer >= -1, spinUs: 0 .. 1e6, cpu?: integer >= -1)", &fd, &spinNs, &cpu)) return env.Undefined();
  if (ThrowIfStarted(env, "fdatasyncPolled")) return env.Undefined();
  Start(Op{fd, nullptr, 0, 0}, spinNs, cpu);
  return Napi::Number::New(env, Finish());
}

// fdatasyncStart(fd, spinUs, cpu?) -> undefined: starts the fdatasync, so that the caller can do
// other work while it runs; fdatasyncFinish() waits for it. Throws if one is already started on
// this thread (a caller that starts one must finish it, also when the work in between throws).
Napi::Value FdatasyncStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t spinNs;
  int cpu;
  if (!ReadArgs(info, "fdatasyncStart(fd: integer >= -1, spinUs: 0 .. 1e6, cpu?: integer >= -1)", &fd, &spinNs, &cpu)) return env.Undefined();
  if (ThrowIfStarted(env, "fdatasyncStart")) return env.Undefined();
  Start(Op{fd, nullptr, 0, 0}, spinNs, cpu);
  return env.Undefined();
}

// directWriteStart(fd, bytes, pos, spinUs, cpu?) -> undefined: starts a pwrite of `bytes`, padded
// with zeros to a multiple of 4 KiB, at `pos` (a multiple of 4 KiB) through `fd`, which the
// caller opened O_DIRECT | O_DSYNC, so that the write is durable once done;
// fdatasyncFinish() waits for it and returns 0 | -errno (-EINVAL: the file does not take direct
// I/O, and nothing was written). The bytes are copied before this returns.
Napi::Value DirectWriteStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage =
      "directWriteStart(fd: integer >= -1, bytes: Uint8Array (1 B .. 1 MiB), pos: multiple of 4096, spinUs: 0 .. 1e6, cpu?: integer >= -1)";
  const bool shaped = info.Length() >= 4 && info[1].IsTypedArray() && info[2].IsNumber() && info[3].IsNumber() &&
                      info[1].As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array;
  if (!shaped) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  const double pos = info[2].As<Napi::Number>().DoubleValue();
  if (bytes.ByteLength() == 0 || bytes.ByteLength() > kDirectWriteBytesMax || !(pos >= 0 && pos <= 9007199254740991.0) ||
      pos != static_cast<double>(static_cast<int64_t>(pos)) || static_cast<int64_t>(pos) % kDirectAlign != 0) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const double fdArg = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -2;
  const double spinUs = info[3].As<Napi::Number>().DoubleValue();
  if (!ValidFdAndSpin(fdArg, spinUs)) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const int fd = static_cast<int>(fdArg);
  const int64_t spinNs = static_cast<int64_t>(spinUs * 1000);
  int cpu;
  if (!ReadCpu(info, 4, usage, &cpu)) return env.Undefined();
  if (ThrowIfStarted(env, "directWriteStart")) return env.Undefined();
  Start(Op{fd, bytes.Data(), bytes.ByteLength(), static_cast<int64_t>(pos)}, spinNs, cpu);
  return env.Undefined();
}

// fdatasyncFinish() -> 0 | -errno: the result of this thread's fdatasyncStart, once done.
Napi::Value FdatasyncFinish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!inFlight.started) {
    Napi::Error::New(env, "fdatasyncFinish: no fdatasyncStart on this thread").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, Finish());
}

// syncThreadCounters() -> { requestsServed, requestsSeenPolling, requestsHandedOff } (see their
// declarations).
Napi::Value SyncThreadCounters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("requestsServed", Napi::Number::New(env, static_cast<double>(requestsServed.load(std::memory_order_relaxed))));
  out.Set("requestsSeenPolling", Napi::Number::New(env, static_cast<double>(requestsSeenPolling.load(std::memory_order_relaxed))));
  out.Set("requestsHandedOff", Napi::Number::New(env, static_cast<double>(requestsHandedOff.load(std::memory_order_relaxed))));
  return out;
}

}  // namespace

void RegisterPolledSync(Napi::Env env, Napi::Object exports) {
  exports.Set("fdatasyncPolled", Napi::Function::New(env, FdatasyncPolled));
  exports.Set("fdatasyncStart", Napi::Function::New(env, FdatasyncStart));
  exports.Set("fdatasyncFinish", Napi::Function::New(env, FdatasyncFinish));
  exports.Set("directWriteStart", Napi::Function::New(env, DirectWriteStart));
  exports.Set("syncThreadCounters", Napi::Function::New(env, SyncThreadCounters));
}

}  // namespace solifuge
