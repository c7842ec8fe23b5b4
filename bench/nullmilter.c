/*
 * sekimori-nullmilter: a milter that does nothing, written directly on
 * libmilter in plain C. It is the benchmark's floor: what any libmilter
 * milter costs Postfix before it does any work of its own (bench/README.md).
 *
 * Every callback returns SMFIS_CONTINUE. It negotiates nothing (no
 * xxfi_negotiate), so Postfix sends it every stage, body included. With -H,
 * eom adds one header ("X-Null-Milter: yes"); without it eom only continues
 * (sekimori-sizelimit adds no header either).
 *
 *   sekimori-nullmilter -p SOCKETSPEC [-n] [-H] [-b BACKLOG] [-T SECONDS]
 *
 *   -p  libmilter socket: unix:/path, inet:PORT@127.0.0.1, inet6:PORT@[::1]
 *   -n  set TCP_NODELAY on the listening TCP socket (Linux copies it to the
 *       accepted sockets); neither libmilter nor Postfix sets it
 *   -H  add "X-Null-Milter: yes" at end of message
 *   -b  listen backlog (default: libmilter's)
 *   -T  libmilter I/O timeout in seconds (default 600)
 *
 * A unix socket is created mode 0666 (umask 0) so that Postfix's smtpd can
 * connect: this is a benchmark tool, not for production. It runs in the
 * foreground; SIGTERM/SIGINT stop it (libmilter's signal thread).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

static int add_header = 0;

static sfsistat nm_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) {
  (void)ctx; (void)host; (void)addr;
  return SMFIS_CONTINUE;
}
static sfsistat nm_helo(SMFICTX *ctx, char *helo) {
  (void)ctx; (void)helo;
  return SMFIS_CONTINUE;
}
static sfsistat nm_envfrom(SMFICTX *ctx, char **argv) {
  (void)ctx; (void)argv;
  return SMFIS_CONTINUE;
}
static sfsistat nm_envrcpt(SMFICTX *ctx, char **argv) {
  (void)ctx; (void)argv;
  return SMFIS_CONTINUE;
}
static sfsistat nm_data(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}
static sfsistat nm_header(SMFICTX *ctx, char *name, char *value) {
  (void)ctx; (void)name; (void)value;
  return SMFIS_CONTINUE;
}
static sfsistat nm_eoh(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}
static sfsistat nm_body(SMFICTX *ctx, unsigned char *chunk, size_t len) {
  (void)ctx; (void)chunk; (void)len;
  return SMFIS_CONTINUE;
}
static sfsistat nm_eom(SMFICTX *ctx) {
  if (add_header && smfi_addheader(ctx, "X-Null-Milter", "yes") != MI_SUCCESS) return SMFIS_TEMPFAIL;
  return SMFIS_CONTINUE;
}
static sfsistat nm_abort(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}
static sfsistat nm_close(SMFICTX *ctx) {
  (void)ctx;
  return SMFIS_CONTINUE;
}
static sfsistat nm_unknown(SMFICTX *ctx, const char *cmd) {
  (void)ctx; (void)cmd;
  return SMFIS_CONTINUE;
}

/* libmilter keeps its listening socket to itself: find it among our open
 * descriptors (a listening AF_INET/AF_INET6 stream socket) and set
 * TCP_NODELAY on it, as common/milter/libmilter_glue.cpp does. Returns how
 * many sockets were changed. */
static int set_nodelay_on_listener(void) {
  int changed = 0;
  DIR *dir = opendir("/proc/self/fd");
  if (dir == NULL) return 0;
  struct dirent *e;
  while ((e = readdir(dir)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd <= 2 || fd == dirfd(dir)) continue;
    int listening = 0, type = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
    len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) continue;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) continue;
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) continue;
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0) ++changed;
  }
  closedir(dir);
  return changed;
}

static void usage(const char *prog) {
  fprintf(stderr, "usage: %s -p SOCKETSPEC [-n] [-H] [-b BACKLOG] [-T SECONDS]\n", prog);
}

int main(int argc, char **argv) {
  const char *spec = NULL;
  int nodelay = 0, backlog = 0, timeout = 600, c;
  while ((c = getopt(argc, argv, "p:nHb:T:h")) != -1) {
    switch (c) {
      case 'p': spec = optarg; break;
      case 'n': nodelay = 1; break;
      case 'H': add_header = 1; break;
      case 'b': backlog = atoi(optarg); break;
      case 'T': timeout = atoi(optarg); break;
      case 'h': usage(argv[0]); return 0;
      default: usage(argv[0]); return 64;
    }
  }
  if (spec == NULL || optind != argc) {
    usage(argv[0]);
    return 64;
  }

  struct smfiDesc desc;
  memset(&desc, 0, sizeof desc);
  desc.xxfi_name = "sekimori-nullmilter";
  desc.xxfi_version = SMFI_VERSION;
  desc.xxfi_flags = SMFIF_ADDHDRS;
  desc.xxfi_connect = nm_connect;
  desc.xxfi_helo = nm_helo;
  desc.xxfi_envfrom = nm_envfrom;
  desc.xxfi_envrcpt = nm_envrcpt;
  desc.xxfi_header = nm_header;
  desc.xxfi_eoh = nm_eoh;
  desc.xxfi_body = nm_body;
  desc.xxfi_eom = nm_eom;
  desc.xxfi_abort = nm_abort;
  desc.xxfi_close = nm_close;
  desc.xxfi_unknown = nm_unknown;
  desc.xxfi_data = nm_data;
  desc.xxfi_negotiate = NULL;

  if (smfi_register(desc) != MI_SUCCESS) {
    fprintf(stderr, "nullmilter: smfi_register failed\n");
    return 70;
  }
  if (smfi_setconn((char *)spec) != MI_SUCCESS) {
    fprintf(stderr, "nullmilter: invalid socket '%s'\n", spec);
    return 64;
  }
  smfi_settimeout(timeout);
  if (backlog > 0) smfi_setbacklog(backlog);
  umask(0); /* a unix socket Postfix (user postfix) can write to */
  if (smfi_opensocket(1) != MI_SUCCESS) {
    fprintf(stderr, "nullmilter: cannot open socket '%s'\n", spec);
    return 71;
  }
  umask(022);
  if (nodelay) {
    if (strncmp(spec, "inet", 4) != 0) {
      fprintf(stderr, "nullmilter: -n ignored: '%s' is not a TCP socket\n", spec);
    } else if (set_nodelay_on_listener() == 0) {
      fprintf(stderr, "nullmilter: could not set TCP_NODELAY on the listening socket\n");
      return 71;
    }
  }
  fprintf(stderr, "nullmilter: listening on %s%s%s\n", spec, nodelay ? " (TCP_NODELAY)" : "",
          add_header ? " (adds X-Null-Milter)" : "");
  return smfi_main() == MI_SUCCESS ? 0 : 70;
}
