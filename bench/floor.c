// The device's floor for durable single commits: what any store that makes each commit durable
// before the next one starts pays on this disk, measured beside the engines (engine-worker.ts runs
// it as the `floor` and `floor-awake` engines; bench/RESULTS.md round 34).
//
//   floor PATH RECORD_BYTES WARMUP_MS BUDGET_MS AWAKE
//
// A commit here is the least a log can do: one pwrite(2) of RECORD_BYTES at the log's end and one
// fdatasync(2), on one blocking thread. The file is preallocated and its blocks written and synced
// first, so no fdatasync has metadata to write (Solifuge's commits land on zeros written ahead the
// same way; SQLite's WAL is overwritten in place). Records are packed one after the other, so
// consecutive commits rewrite the same 4 KiB page, as a store's small commits do.
//
// AWAKE=1 starts one SCHED_IDLE thread per CPU that spins (yielding every 64 pauses): it runs
// only when its CPU would otherwise idle, so no CPU halts while the disk works and the completion
// interrupt finds it awake (what Solifuge's keeper thread does on the completion CPU, README
// `syncCpu`). That is the fastest this machine's disk answers a process; AWAKE=0 is a plain
// blocking loop. (Some runs with spinners are stuck at one commit per scheduler tick throughout:
// floor.ts keeps the fastest of three.)
//
// Prints one JSON line: commits/s over the budget, and p50, p99 and mean of single commits in µs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const long FILE_BYTES = 64L << 20;
static volatile int stop_keepers = 0;

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what) {
  fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *keeper(void *arg) {
  long cpu = (long)arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) != 0) {
    fprintf(stderr, "floor: pinning a spinner to CPU %ld failed\n", cpu);
    exit(1);
  }
  struct sched_param p = {0};
  if (sched_setscheduler(0, SCHED_IDLE, &p) != 0) die("SCHED_IDLE");
  // sched_yield every 64 pauses, as the addon's polls do (native/polled-sync.cc): a SCHED_IDLE
  // spinner that never yields left the completion's kworker waiting for a scheduler tick in
  // 1 of 6 runs here, 8 ms a commit.
  for (unsigned i = 0; !stop_keepers; i++) {
    __asm__ volatile("pause");
    if ((i & 63) == 63) sched_yield();
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: floor PATH RECORD_BYTES WARMUP_MS BUDGET_MS AWAKE\n");
    return 2;
  }
  const char *path = argv[1];
  long record = atol(argv[2]);
  double warmup_us = atof(argv[3]) * 1e3, budget_us = atof(argv[4]) * 1e3;
  int awake = atoi(argv[5]);
  if (record <= 0 || record > (1 << 20)) {
    fprintf(stderr, "floor: RECORD_BYTES out of range\n");
    return 2;
  }

  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open");
  char *zeros = calloc(1, 1 << 20);
  for (long off = 0; off < FILE_BYTES; off += 1 << 20)
    if (pwrite(fd, zeros, 1 << 20, off) != 1 << 20) die("preallocate");
  if (fsync(fd) != 0) die("fsync");
  free(zeros);

  char *buf = malloc(record);
  for (long i = 0; i < record; i++) buf[i] = (char)(i * 131 + 7);

  // One spinner per CPU this process may run on (its cpuset, whatever their numbers).
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) die("sched_getaffinity");
  long nkeepers = 0;
  pthread_t *keepers = calloc(CPU_SETSIZE, sizeof *keepers);
  if (awake)
    for (long c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &allowed) && pthread_create(&keepers[nkeepers++], NULL, keeper, (void *)c) != 0) die("pthread_create");

  long cap = 1 << 22, n = 0;
  double *lat = malloc(cap * sizeof *lat);
  long off = 0;
  double t_warm = now_us(), t0 = 0;
  int timing = 0;
  for (;;) {
    double t = now_us();
    if (!timing && t - t_warm >= warmup_us) {
      timing = 1;
      t0 = t;
    }
    if (timing && t - t0 >= budget_us) break;
    if (off + record > FILE_BYTES) off = 0;
    ssize_t w = pwrite(fd, buf, record, off);
    if (w != record) {
      if (w >= 0) errno = EIO; // (a short write sets no errno)
      die("pwrite");
    }
    if (fdatasync(fd) != 0) die("fdatasync");
    off += record;
    if (timing && n < cap) lat[n++] = now_us() - t;
  }
  double elapsed_us = now_us() - t0;
  stop_keepers = 1;
  for (long k = 0; k < nkeepers; k++) pthread_join(keepers[k], NULL);
  close(fd);
  unlink(path);

  if (n == 0) {
    fprintf(stderr, "floor: no commit completed within the budget\n");
    return 1;
  }
  double sum = 0;
  for (long i = 0; i < n; i++) sum += lat[i];
  qsort(lat, n, sizeof *lat, cmp_double);
  printf("{\"commits\":%ld,\"opsPerSec\":%.1f,\"p50us\":%.2f,\"p99us\":%.2f,\"meanUs\":%.2f}\n", n,
         n / (elapsed_us / 1e6), lat[n / 2], lat[(long)(n * 0.99)], sum / n);
  return 0;
}
