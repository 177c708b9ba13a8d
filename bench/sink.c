/* Benchmark receiver for sendfile.bench.ts: opens COUNT connections to 127.0.0.1:PORT and reads
 * everything into one 4 MiB buffer, discarding it, until its parent closes its stdin. A native
 * reader, so the receiving side is not what limits the fast methods (a Node reader was). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int port = atoi(argv[1]);
  int count = atoi(argv[2]);
  struct pollfd *fds = calloc((size_t)count + 1, sizeof *fds);
  static char buf[4 << 20];
  for (int i = 0; i < count; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 1;
    fds[i].fd = s;
    fds[i].events = POLLIN;
  }
  fds[count].fd = 0; /* stdin: EOF means the parent is done */
  fds[count].events = POLLIN;
  for (;;) {
    if (poll(fds, (nfds_t)count + 1, -1) < 0) continue;
    if (fds[count].revents) {
      if (read(0, buf, sizeof buf) <= 0) return 0;
    }
    for (int i = 0; i < count; i++) {
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t n = read(fds[i].fd, buf, sizeof buf);
        if (n <= 0) fds[i].fd = -1;
      }
    }
  }
}
