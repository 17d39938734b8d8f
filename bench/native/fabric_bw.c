// fabric_bw: native libfabric bandwidth over FI_EP_MSG, our stand-in for fabtests' fi_msg_bw and
// fi_rma_bw (fabtests is not packaged in Debian). One server, one client, one connection, one
// message size; a window of sends (msg) or RMA writes (rma) kept in flight for a fixed duration.
// The run ends with a DONE/ACK handshake, so the reported byte count is the receiver's (msg) or
// acknowledged by the receiver after every write completed (rma). Never waits without a bound:
// connect and run have timeouts, and an alarm ends the process if libfabric itself blocks.
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#define FBW_API_VERSION FI_VERSION(1, 17)
#define HELLO_MAGIC 0x46425731u           /* "FBW1": client -> server, in connection data */
#define WELCOME_MAGIC 0x46425732u         /* "FBW2": server -> client, in accept data */
#define CTL_MAGIC 0x4642574354524c31ull   /* "FBWCTRL1": DONE and ACK messages */
#define WIRE_VERSION 1
#define DATA_PATTERN 0xa5                 /* fills data buffers, so never reads as CTL_MAGIC */
#define SIZE_BYTES_MAX (64u << 20)
#define WINDOW_MAX 1024
#define SECONDS_MAX 3600.0
#define TIMEOUT_SECONDS_MAX 600.0
/* Distinct buffers per side up to this much memory; beyond it slots share buffers. */
#define BUFFER_BUDGET_BYTES (32u << 20)
/* Empty completion polls between looks at the event queue (for a peer that went away). */
#define EQ_CHECK_EVERY 256
#define NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
#define CM_ENTRY_BYTES (sizeof(struct fi_eq_cm_entry) + 256)

enum mode { MODE_MSG = 1, MODE_RMA = 2 };
enum ctl_kind { CTL_DONE = 1, CTL_ACK = 2 };

/* Wire layouts, little-endian, fixed sizes. */
struct hello {
  uint32_t magic;
  uint16_t version;
  uint16_t mode;
  uint32_t size_bytes;
  uint32_t window;
  uint32_t duration_ms;
  uint32_t pad;
};
struct welcome {
  uint32_t magic;
  uint16_t version;
  uint16_t mode;
  uint64_t rma_addr;
  uint64_t rma_key;
  uint64_t rma_len;
};
struct ctl {
  uint64_t magic;
  uint64_t kind;
  uint64_t messages;
  uint64_t bytes;
};

struct opts {
  int server;
  enum mode mode;
  const char *provider;
  const char *host;
  const char *port;
  uint32_t size_bytes;
  uint32_t window;
  double seconds;
  double timeout_seconds;
  /* 0 spin: busy-poll with fi_cq_read (fabtests' default); 1 wait: sleep in fi_cq_sread;
     2 fd: poll(2) the CQ's wait fd after fi_trywait, as the fabric transport's addon does. */
  int wait;
};

struct fab {
  struct fi_info *info;
  struct fid_fabric *fabric;
  struct fid_eq *eq;
  struct fid_pep *pep;
  struct fid_domain *domain;
  struct fid_ep *ep;
  struct fid_cq *txcq, *rxcq;
  int wait;
  unsigned empty_polls;
  uint64_t next_key;
};

static const char *g_side = "fabric_bw";

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fabric_bw %s: ", g_side);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void die_fi(const char *what, ssize_t rc) {
  int e = rc < 0 ? (int)-rc : (int)rc;
  die("%s: %s (%zd)", what, fi_strerror(e), rc);
}

static void usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fabric_bw: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\nusage: fabric_bw server|client [-m msg|rma] [-p PROVIDER] [-a ADDRESS] [-P PORT]\n"
        "       [-s SIZE_BYTES] [-w WINDOW] [-d SECONDS] [-T TIMEOUT_SECONDS] [-c spin|wait|fd]\n"
        "  server: listens on ADDRESS:PORT (PORT 0: any), prints {\"listening\":...} then a result\n"
        "  client: connects to ADDRESS:PORT, prints a result line (JSON) with the bytes counted\n",
        stderr);
  va_end(ap);
  exit(2);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char m[] = "fabric_bw: run timed out (alarm): libfabric did not return\n";
  ssize_t w = write(2, m, sizeof m - 1);
  (void)w;
  _exit(1);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double parse_double(const char *flag, const char *s, double lo, double hi) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end != '\0' || !(v >= lo && v <= hi))
    usage_error("%s %s: expected a number in [%g, %g]", flag, s, lo, hi);
  return v;
}

static uint32_t parse_u32(const char *flag, const char *s, uint32_t lo, uint32_t hi) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s || *end != '\0' || s[0] == '-' || v < lo || v > hi)
    usage_error("%s %s: expected an integer in [%u, %u]", flag, s, lo, hi);
  return (uint32_t)v;
}

static void parse_args(int argc, char **argv, struct opts *o) {
  *o = (struct opts){.mode = MODE_MSG, .provider = "tcp", .host = "127.0.0.1", .port = NULL,
                     .size_bytes = 65536, .window = 64, .seconds = 1.0, .timeout_seconds = 10.0};
  if (argc < 2) usage_error("missing role: server or client");
  if (strcmp(argv[1], "server") == 0) o->server = 1;
  else if (strcmp(argv[1], "client") == 0) o->server = 0;
  else usage_error("unknown role '%s': expected server or client", argv[1]);
  g_side = o->server ? "server" : "client";
  for (int i = 2; i < argc; i++) {
    const char *f = argv[i];
    if (strlen(f) != 2 || f[0] != '-') usage_error("unexpected argument '%s'", f);
    if (i + 1 >= argc) usage_error("%s needs a value", f);
    const char *v = argv[++i];
    switch (f[1]) {
      case 'm':
        if (strcmp(v, "msg") == 0) o->mode = MODE_MSG;
        else if (strcmp(v, "rma") == 0) o->mode = MODE_RMA;
        else usage_error("-m %s: expected msg or rma", v);
        break;
      case 'p':
        /* Names go into our JSON output unescaped: letters, digits and _ ; . - only. */
        if (v[0] == '\0' || strspn(v, NAME_CHARS ";") != strlen(v))
          usage_error("-p %s: expected a provider name such as tcp, sockets or verbs", v);
        o->provider = v;
        break;
      case 'a':
        if (v[0] == '\0' || strspn(v, NAME_CHARS ":%") != strlen(v))
          usage_error("-a %s: expected an IP address or host name", v);
        o->host = v;
        break;
      case 'P':
        parse_u32("-P", v, 0, 65535);
        o->port = v;
        break;
      case 's': o->size_bytes = parse_u32("-s", v, 1, SIZE_BYTES_MAX); break;
      case 'w': o->window = parse_u32("-w", v, 1, WINDOW_MAX); break;
      case 'd': o->seconds = parse_double("-d", v, 0.01, SECONDS_MAX); break;
      case 'T': o->timeout_seconds = parse_double("-T", v, 0.1, TIMEOUT_SECONDS_MAX); break;
      case 'c':
        if (strcmp(v, "spin") == 0) o->wait = 0;
        else if (strcmp(v, "wait") == 0) o->wait = 1;
        else if (strcmp(v, "fd") == 0) o->wait = 2;
        else usage_error("-c %s: expected spin, wait or fd", v);
        break;
      default: usage_error("unknown option %s", f);
    }
  }
  if (o->port == NULL) {
    if (o->server) o->port = "0";
    else usage_error("client needs -P PORT (the port the server printed)");
  }
  if (!o->server && strcmp(o->port, "0") == 0) usage_error("client: -P 0 is not a server port");
}

static const char *mode_name(enum mode m) { return m == MODE_RMA ? "rma" : "msg"; }

/* What we can handle; a provider clears the bits it does not need. */
static struct fi_info *make_hints(const struct opts *o, uint64_t caps) {
  struct fi_info *h = fi_allocinfo();
  if (h == NULL) die("fi_allocinfo: out of memory");
  h->ep_attr->type = FI_EP_MSG;
  h->caps = caps;
  h->mode = FI_CONTEXT;
  h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  h->domain_attr->threading = FI_THREAD_DOMAIN;
  h->fabric_attr->prov_name = strdup(o->provider);
  return h;
}

/*
 * fi_getinfo for our role; 0 when the provider has what the mode needs, 1 when it has FI_EP_MSG
 * but not FI_RMA (rma mode: "unsupported"); exits on anything else.
 */
static int get_info(const struct opts *o, struct fi_info **out) {
  uint64_t caps = FI_MSG | (o->mode == MODE_RMA ? FI_RMA : 0);
  struct fi_info *h = make_hints(o, caps);
  int rc = fi_getinfo(FBW_API_VERSION, o->host, o->port, o->server ? FI_SOURCE : 0, h, out);
  fi_freeinfo(h);
  if (rc == 0) return 0;
  if (rc == -FI_ENODATA && o->mode == MODE_RMA) {
    struct fi_info *probe = NULL;
    h = make_hints(o, FI_MSG);
    int rc2 = fi_getinfo(FBW_API_VERSION, o->host, o->port, o->server ? FI_SOURCE : 0, h, &probe);
    fi_freeinfo(h);
    if (probe) fi_freeinfo(probe);
    if (rc2 == 0) return 1;
  }
  die("fi_getinfo(provider %s, FI_EP_MSG, %s:%s): %s (%d)", o->provider, o->host, o->port,
      fi_strerror(-rc), rc);
  return -1;
}

static void open_fabric(struct fab *f) {
  ssize_t rc;
  if ((rc = fi_fabric(f->info->fabric_attr, &f->fabric, NULL))) die_fi("fi_fabric", rc);
  struct fi_eq_attr eqa = {.size = 16, .wait_obj = FI_WAIT_UNSPEC};
  if ((rc = fi_eq_open(f->fabric, &eqa, &f->eq, NULL))) die_fi("fi_eq_open", rc);
}

/* Domain, CQs and an enabled endpoint for info (the client's, or a connection request's). */
static void open_endpoint(struct fab *f, struct fi_info *info) {
  ssize_t rc;
  if ((rc = fi_domain(f->fabric, info, &f->domain, NULL))) die_fi("fi_domain", rc);
  static const enum fi_wait_obj wait_objs[] = {FI_WAIT_NONE, FI_WAIT_UNSPEC, FI_WAIT_FD};
  struct fi_cq_attr cqa = {.format = FI_CQ_FORMAT_MSG,
                           .wait_obj = wait_objs[f->wait],
                           .size = 2 * WINDOW_MAX + 8};
  if ((rc = fi_cq_open(f->domain, &cqa, &f->txcq, NULL))) die_fi("fi_cq_open(tx)", rc);
  if ((rc = fi_cq_open(f->domain, &cqa, &f->rxcq, NULL))) die_fi("fi_cq_open(rx)", rc);
  if ((rc = fi_endpoint(f->domain, info, &f->ep, NULL))) die_fi("fi_endpoint", rc);
  if ((rc = fi_ep_bind(f->ep, &f->eq->fid, 0))) die_fi("fi_ep_bind(eq)", rc);
  if ((rc = fi_ep_bind(f->ep, &f->txcq->fid, FI_TRANSMIT))) die_fi("fi_ep_bind(tx cq)", rc);
  if ((rc = fi_ep_bind(f->ep, &f->rxcq->fid, FI_RECV))) die_fi("fi_ep_bind(rx cq)", rc);
  if ((rc = fi_enable(f->ep))) die_fi("fi_enable", rc);
}

struct region {
  void *buf;
  size_t len;
  struct fid_mr *mr;
  void *desc;
};

static void reg(struct fab *f, struct region *r, size_t len, uint64_t access) {
  r->len = len;
  if (posix_memalign(&r->buf, 4096, len)) die("cannot allocate %zu bytes", len);
  memset(r->buf, 0, len);
  ssize_t rc = fi_mr_reg(f->domain, r->buf, len, access, 0, f->next_key++, 0, &r->mr, NULL);
  if (rc) die_fi("fi_mr_reg", rc);
  r->desc = fi_mr_desc(r->mr);
}

static void unreg(struct region *r) {
  if (r->mr) fi_close(&r->mr->fid);
  free(r->buf);
  *r = (struct region){0};
}

/* Returns the event's connection data length, or dies naming what arrived instead. */
static size_t wait_cm(struct fab *f, uint32_t want, void *entry, double deadline, const char *why) {
  for (;;) {
    double left = deadline - now_s();
    if (left <= 0) die("timed out waiting for %s", why);
    uint32_t event = 0;
    int ms = left > 1.0 ? 1000 : (int)(left * 1000) + 1;
    ssize_t rd = fi_eq_sread(f->eq, &event, entry, CM_ENTRY_BYTES, ms, 0);
    if (rd == -FI_EAGAIN || rd == -FI_ETIMEDOUT) continue;
    if (rd == -FI_EAVAIL) {
      struct fi_eq_err_entry err = {0};
      fi_eq_readerr(f->eq, &err, 0);
      die("%s failed: %s (%d)%s", why, fi_strerror(err.err), err.err,
          err.err == FI_ECONNREFUSED ? " (refused or rejected by the server)" : "");
    }
    if (rd < 0) die_fi("fi_eq_sread", rd);
    if (event == want) return (size_t)rd > sizeof(struct fi_eq_cm_entry)
                                  ? (size_t)rd - sizeof(struct fi_eq_cm_entry)
                                  : 0;
    if (event == FI_SHUTDOWN) die("peer disconnected while waiting for %s", why);
  }
}

static void check_eq(struct fab *f) {
  uint8_t entry[CM_ENTRY_BYTES];
  uint32_t event = 0;
  ssize_t rd = fi_eq_read(f->eq, &event, entry, sizeof entry, 0);
  if (rd == -FI_EAGAIN) return;
  if (rd == -FI_EAVAIL) {
    struct fi_eq_err_entry err = {0};
    fi_eq_readerr(f->eq, &err, 0);
    die("connection error: %s (%d)", fi_strerror(err.err), err.err);
  }
  if (rd < 0) die_fi("fi_eq_read", rd);
  if (event == FI_SHUTDOWN) die("peer disconnected before the run finished");
}

/* Up to max completions from cq; 0 when none arrived. Dies on an error completion or deadline. */
static size_t poll_cq(struct fab *f, struct fid_cq *cq, struct fi_cq_msg_entry *out, size_t max,
                      double deadline, const char *why) {
  ssize_t n;
  if (f->wait == 1) n = fi_cq_sread(cq, out, max, NULL, 100);
  else n = fi_cq_read(cq, out, max);
  if (n == -FI_EAGAIN && f->wait == 2) {
    struct fid *fid = &cq->fid;
    int fd = -1;
    ssize_t rc = fi_control(fid, FI_GETWAIT, &fd);
    if (rc) die_fi("fi_control(FI_GETWAIT)", rc);
    /* Sleep only when the provider says nothing is pending (fi_trywait); else read again. */
    if (fi_trywait(f->fabric, &fid, 1) == FI_SUCCESS) {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      poll(&pfd, 1, 100);
    }
  }
  if (n > 0) {
    f->empty_polls = 0;
    return (size_t)n;
  }
  if (n == -FI_EAVAIL) {
    struct fi_cq_err_entry err = {0};
    char buf[256];
    fi_cq_readerr(cq, &err, 0);
    die("%s: completion error: %s (%d; %s)", why, fi_strerror(err.err), err.err,
        fi_cq_strerror(cq, err.prov_errno, err.err_data, buf, sizeof buf));
  }
  if (n != -FI_EAGAIN && n != -FI_ETIMEDOUT) die_fi("fi_cq_read", n);
  if (f->wait || ++f->empty_polls % EQ_CHECK_EVERY == 0) {
    check_eq(f);
    if (now_s() > deadline) die("timed out: %s", why);
  }
  return 0;
}

static void put_ctl(void *buf, enum ctl_kind kind, uint64_t messages, uint64_t bytes) {
  struct ctl c = {htole64(CTL_MAGIC), htole64(kind), htole64(messages), htole64(bytes)};
  memcpy(buf, &c, sizeof c);
}

/* Decodes a control message; 0 when buf is one of kind, -1 when it is not. */
static int get_ctl(const void *buf, size_t len, enum ctl_kind kind, struct ctl *out) {
  if (len != sizeof(struct ctl)) return -1;
  struct ctl c;
  memcpy(&c, buf, sizeof c);
  if (le64toh(c.magic) != CTL_MAGIC || le64toh(c.kind) != (uint64_t)kind) return -1;
  out->magic = CTL_MAGIC;
  out->kind = kind;
  out->messages = le64toh(c.messages);
  out->bytes = le64toh(c.bytes);
  return 0;
}

/* Sends one control message from r and waits for its completion. */
static void send_ctl(struct fab *f, struct region *r, enum ctl_kind kind, uint64_t messages,
                     uint64_t bytes, double deadline) {
  static struct fi_context ctx;
  put_ctl(r->buf, kind, messages, bytes);
  ssize_t rc;
  while ((rc = fi_send(f->ep, r->buf, sizeof(struct ctl), r->desc, 0, &ctx)) == -FI_EAGAIN) {
    struct fi_cq_msg_entry e[8];
    poll_cq(f, f->txcq, e, 8, deadline, "sending a control message");
  }
  if (rc) die_fi("fi_send(control)", rc);
  struct fi_cq_msg_entry e;
  while (poll_cq(f, f->txcq, &e, 1, deadline, "control message completion") == 0) {
  }
}

static void print_result(const struct opts *o, const char *counted_by, double seconds,
                         uint64_t messages, uint64_t bytes, const char *extra) {
  printf("{\"side\":\"%s\",\"mode\":\"%s\",\"provider\":\"%s\",\"sizeBytes\":%" PRIu32
         ",\"window\":%" PRIu32 ",\"seconds\":%.6f,\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64
         ",\"bytesPerSec\":%.1f,\"countedBy\":\"%s\"%s}\n",
         g_side, mode_name(o->mode), o->provider, o->size_bytes, o->window, seconds, messages,
         bytes, seconds > 0 ? (double)bytes / seconds : 0.0, counted_by, extra);
  fflush(stdout);
}

static void print_unsupported(const struct opts *o) {
  printf("{\"side\":\"%s\",\"mode\":\"%s\",\"provider\":\"%s\",\"unsupported\":\"provider %s "
         "offers FI_EP_MSG without FI_RMA\"}\n",
         g_side, mode_name(o->mode), o->provider, o->provider);
  fflush(stdout);
}

static void close_all(struct fab *f) {
  if (f->ep) fi_close(&f->ep->fid);
  if (f->txcq) fi_close(&f->txcq->fid);
  if (f->rxcq) fi_close(&f->rxcq->fid);
  if (f->domain) fi_close(&f->domain->fid);
  if (f->pep) fi_close(&f->pep->fid);
  if (f->eq) fi_close(&f->eq->fid);
  if (f->fabric) fi_close(&f->fabric->fid);
  if (f->info) fi_freeinfo(f->info);
}

static size_t buffer_count(size_t slots, size_t len) {
  size_t n = BUFFER_BUDGET_BYTES / len;
  if (n < 1) n = 1;
  return n < slots ? n : slots;
}

/* ---- server ---- */

#define REJECT(...)                    \
  do {                                 \
    snprintf(why, whylen, __VA_ARGS__); \
    return -1;                         \
  } while (0)

/* The client's hello comes off the wire: every field is checked before it sizes anything. */
static int validate_hello(const struct opts *o, const struct fi_info *req, const uint8_t *data,
                          size_t len, struct hello *h, char *why, size_t whylen) {
  if (len < sizeof *h) REJECT("connection data of %zu bytes, want %zu", len, sizeof *h);
  memcpy(h, data, sizeof *h);
  h->magic = le32toh(h->magic);
  h->version = le16toh(h->version);
  h->mode = le16toh(h->mode);
  h->size_bytes = le32toh(h->size_bytes);
  h->window = le32toh(h->window);
  h->duration_ms = le32toh(h->duration_ms);
  if (h->magic != HELLO_MAGIC || h->version != WIRE_VERSION)
    REJECT("not a fabric_bw client (magic/version)");
  if (h->mode != o->mode) REJECT("client runs mode %u, server %s", h->mode, mode_name(o->mode));
  if (h->size_bytes < 1 || h->size_bytes > SIZE_BYTES_MAX)
    REJECT("size %u out of [1, %u]", h->size_bytes, SIZE_BYTES_MAX);
  if (h->size_bytes > req->ep_attr->max_msg_size)
    REJECT("size %u above the provider's max_msg_size %zu", h->size_bytes,
           req->ep_attr->max_msg_size);
  if (h->window < 1 || h->window > WINDOW_MAX)
    REJECT("window %u out of [1, %u]", h->window, WINDOW_MAX);
  if (h->duration_ms < 1 || h->duration_ms > SECONDS_MAX * 1000)
    REJECT("duration %u ms out of range", h->duration_ms);
  return 0;
}

static int run_server(struct opts *o) {
  struct fab f = {.wait = o->wait, .next_key = 1};
  if (get_info(o, &f.info) == 1) {
    print_unsupported(o);
    return 0;
  }
  open_fabric(&f);
  ssize_t rc;
  if ((rc = fi_passive_ep(f.fabric, f.info, &f.pep, NULL))) die_fi("fi_passive_ep", rc);
  if ((rc = fi_pep_bind(f.pep, &f.eq->fid, 0))) die_fi("fi_pep_bind", rc);
  if ((rc = fi_listen(f.pep))) die_fi("fi_listen", rc);
  struct sockaddr_storage ss = {0};
  size_t alen = sizeof ss;
  if ((rc = fi_getname(&f.pep->fid, &ss, &alen))) die_fi("fi_getname", rc);
  unsigned port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  printf("{\"listening\":{\"address\":\"%s\",\"port\":%u,\"provider\":\"%s\",\"mode\":\"%s\"}}\n",
         o->host, port, o->provider, mode_name(o->mode));
  fflush(stdout);

  _Alignas(8) uint8_t entry[CM_ENTRY_BYTES];
  double deadline = now_s() + o->timeout_seconds;
  size_t dlen = wait_cm(&f, FI_CONNREQ, entry, deadline, "a connection request");
  struct fi_eq_cm_entry *cm = (struct fi_eq_cm_entry *)entry;
  struct fi_info *req = cm->info;
  struct hello h;
  char why[160];
  if (validate_hello(o, req, cm->data, dlen, &h, why, sizeof why)) {
    fi_reject(f.pep, req->handle, NULL, 0);
    die("rejected the client: %s", why);
  }
  o->size_bytes = h.size_bytes;
  o->window = h.window;
  /* connected + run and ACK + waiting for the client to go: each bounded by the timeout. */
  alarm((unsigned)(3 * o->timeout_seconds + h.duration_ms / 1000.0) + 5);
  open_endpoint(&f, req);

  /* Receives: DONE needs room for a struct ctl even when messages are smaller. */
  size_t recv_len = o->mode == MODE_MSG ? o->size_bytes : 0;
  if (recv_len < sizeof(struct ctl)) recv_len = sizeof(struct ctl);
  size_t depth = o->mode == MODE_MSG ? 2 * (size_t)o->window : 1;
  if (depth > req->rx_attr->size) depth = req->rx_attr->size;
  if (o->mode == MODE_MSG && depth < (size_t)o->window + 1)
    die("the provider's receive queue (%zu) is smaller than window + 1 (%u)", req->rx_attr->size,
        o->window + 1);
  size_t nbuf = buffer_count(depth, recv_len);
  struct region *rx = calloc(nbuf, sizeof *rx);
  struct fi_context *ctx = calloc(depth, sizeof *ctx);
  if (rx == NULL || ctx == NULL) die("out of memory");
  for (size_t i = 0; i < nbuf; i++) reg(&f, &rx[i], recv_len, FI_RECV);
  for (size_t i = 0; i < depth; i++) {
    struct region *r = &rx[i % nbuf];
    if ((rc = fi_recv(f.ep, r->buf, recv_len, r->desc, 0, &ctx[i]))) die_fi("fi_recv", rc);
  }
  struct region target = {0}, ack = {0};
  reg(&f, &ack, sizeof(struct ctl), FI_SEND);
  struct welcome w = {htole32(WELCOME_MAGIC), htole16(WIRE_VERSION), htole16(o->mode), 0, 0, 0};
  if (o->mode == MODE_RMA) {
    if (f.info->domain_attr->mr_key_size > sizeof(uint64_t))
      die("the provider's memory keys (%zu bytes) do not fit 8 bytes (FI_MR_RAW not handled)",
          f.info->domain_attr->mr_key_size);
    reg(&f, &target, o->size_bytes, FI_REMOTE_WRITE);
    int virt = (req->domain_attr->mr_mode & FI_MR_VIRT_ADDR) != 0;
    w.rma_addr = htole64(virt ? (uint64_t)(uintptr_t)target.buf : 0);
    w.rma_key = htole64(fi_mr_key(target.mr));
    w.rma_len = htole64(o->size_bytes);
  }
  uint64_t msg_order = req->tx_attr->msg_order;
  if ((rc = fi_accept(f.ep, &w, sizeof w))) die_fi("fi_accept", rc);
  fi_freeinfo(req);
  deadline = now_s() + o->timeout_seconds;
  wait_cm(&f, FI_CONNECTED, entry, deadline, "the connection to complete");

  double start = now_s();
  deadline = start + h.duration_ms / 1000.0 + o->timeout_seconds;
  uint64_t messages = 0, bytes = 0;
  double first = 0;
  struct ctl done;
  struct fi_cq_msg_entry ev[64];
  for (int finished = 0; !finished;) {
    size_t n = poll_cq(&f, f.rxcq, ev, 64, deadline, "receiving");
    for (size_t k = 0; k < n; k++) {
      size_t slot = (size_t)((struct fi_context *)ev[k].op_context - ctx);
      struct region *r = &rx[slot % nbuf];
      if (get_ctl(r->buf, ev[k].len, CTL_DONE, &done) == 0) {
        finished = 1;
        continue;
      }
      if (o->mode != MODE_MSG || ev[k].len != o->size_bytes)
        die("unexpected message of %zu bytes (mode %s, size %u)", ev[k].len, mode_name(o->mode),
            o->size_bytes);
      if (messages++ == 0) first = now_s();
      bytes += ev[k].len;
      if ((rc = fi_recv(f.ep, r->buf, recv_len, r->desc, 0, &ctx[slot]))) die_fi("fi_recv", rc);
    }
  }
  double seconds = now_s() - (messages ? first : start);
  const char *counted_by = "receiver";
  char extra[64] = "";
  if (o->mode == MODE_MSG) {
    if (done.messages != messages || done.bytes != bytes)
      die("the client sent %" PRIu64 " messages (%" PRIu64 " bytes), %" PRIu64 " (%" PRIu64
          " bytes) arrived",
          done.messages, done.bytes, messages, bytes);
  } else {
    /* RMA writes are invisible to the target's CQ: report the sender's completed count, and
       check that the writes landed where the FI_ORDER_SAW guarantee lets us look. */
    messages = done.messages;
    bytes = done.bytes;
    counted_by = "sender";
    if (msg_order & FI_ORDER_SAW) {
      const uint8_t *t = target.buf;
      if (messages > 0 && (t[0] != DATA_PATTERN || t[o->size_bytes - 1] != DATA_PATTERN))
        die("the client reported %" PRIu64 " writes but the target buffer was not written",
            messages);
      snprintf(extra, sizeof extra, ",\"targetChecked\":true");
    }
  }
  send_ctl(&f, &ack, CTL_ACK, messages, bytes, deadline);
  print_result(o, counted_by, seconds, messages, bytes, extra);
  /* Close only when the client has gone (it has our ACK then): some providers drop what is
     still queued on fi_close. Reading the CQ drives the provider's progress, which is what
     notices the disconnect when the CQs have no wait object (-c spin). */
  double until = now_s() + o->timeout_seconds;
  while (now_s() < until) {
    struct fi_cq_msg_entry e[8];
    if (fi_cq_read(f.rxcq, e, 8) == -FI_EAVAIL) {
      struct fi_cq_err_entry err = {0};
      fi_cq_readerr(f.rxcq, &err, 0); /* receives flushed by the disconnect */
    }
    uint32_t event = 0;
    ssize_t rd = fi_eq_read(f.eq, &event, entry, sizeof entry, 0);
    if (rd == -FI_EAVAIL || (rd >= 0 && event == FI_SHUTDOWN)) break;
    if (rd < 0 && rd != -FI_EAGAIN) break;
    usleep(1000);
  }
  fi_close(&f.ep->fid);
  f.ep = NULL;
  for (size_t i = 0; i < nbuf; i++) unreg(&rx[i]);
  unreg(&ack);
  if (target.mr) unreg(&target);
  free(rx);
  free(ctx);
  close_all(&f);
  return 0;
}

/* ---- client ---- */

static int run_client(struct opts *o) {
  struct fab f = {.wait = o->wait, .next_key = 1};
  alarm((unsigned)(2 * o->timeout_seconds + o->seconds) + 5);
  if (get_info(o, &f.info) == 1) {
    print_unsupported(o);
    return 0;
  }
  if (f.info->next) {
    fi_freeinfo(f.info->next);
    f.info->next = NULL;
  }
  if (o->size_bytes > f.info->ep_attr->max_msg_size)
    die("size %u is above the provider's max_msg_size %zu", o->size_bytes,
        f.info->ep_attr->max_msg_size);
  if (f.info->tx_attr->size < (size_t)o->window + 1)
    die("window %u does not fit the provider's transmit queue (%zu, one slot is for DONE)",
        o->window, f.info->tx_attr->size);
  if (o->mode == MODE_RMA && f.info->domain_attr->mr_key_size > sizeof(uint64_t))
    die("the provider's memory keys (%zu bytes) do not fit 8 bytes (FI_MR_RAW not handled)",
        f.info->domain_attr->mr_key_size);
  open_fabric(&f);
  open_endpoint(&f, f.info);

  struct region ctlr = {0}, ackr = {0};
  reg(&f, &ctlr, sizeof(struct ctl), FI_SEND);
  reg(&f, &ackr, sizeof(struct ctl), FI_RECV);
  static struct fi_context ack_ctx;
  ssize_t rc;
  if ((rc = fi_recv(f.ep, ackr.buf, sizeof(struct ctl), ackr.desc, 0, &ack_ctx)))
    die_fi("fi_recv(ack)", rc);
  size_t nbuf = buffer_count(o->window, o->size_bytes);
  struct region *tx = calloc(nbuf, sizeof *tx);
  struct fi_context *ctx = calloc(o->window, sizeof *ctx);
  size_t *free_slots = calloc(o->window, sizeof *free_slots);
  if (tx == NULL || ctx == NULL || free_slots == NULL) die("out of memory");
  uint64_t access = o->mode == MODE_MSG ? FI_SEND : FI_WRITE;
  for (size_t i = 0; i < nbuf; i++) {
    reg(&f, &tx[i], o->size_bytes, access);
    memset(tx[i].buf, DATA_PATTERN, o->size_bytes);
  }
  size_t nfree = o->window;
  for (size_t i = 0; i < o->window; i++) free_slots[i] = o->window - 1 - i;

  struct hello h = {htole32(HELLO_MAGIC), htole16(WIRE_VERSION), htole16(o->mode),
                    htole32(o->size_bytes), htole32(o->window),
                    htole32((uint32_t)(o->seconds * 1000 + 0.5)), 0};
  if ((rc = fi_connect(f.ep, f.info->dest_addr, &h, sizeof h))) die_fi("fi_connect", rc);
  _Alignas(8) uint8_t entry[CM_ENTRY_BYTES];
  size_t dlen = wait_cm(&f, FI_CONNECTED, entry, now_s() + o->timeout_seconds,
                        "the connection (is the server running?)");
  struct fi_eq_cm_entry *cm = (struct fi_eq_cm_entry *)entry;
  struct welcome w;
  if (dlen < sizeof w) die("the server sent %zu bytes of accept data, want %zu", dlen, sizeof w);
  memcpy(&w, cm->data, sizeof w);
  if (le32toh(w.magic) != WELCOME_MAGIC || le16toh(w.version) != WIRE_VERSION ||
      le16toh(w.mode) != o->mode)
    die("the server's accept data is not a fabric_bw %s welcome", mode_name(o->mode));
  uint64_t raddr = le64toh(w.rma_addr), rkey = le64toh(w.rma_key);
  if (o->mode == MODE_RMA && le64toh(w.rma_len) < o->size_bytes)
    die("the server's RMA target (%" PRIu64 " bytes) is smaller than size %u",
        le64toh(w.rma_len), o->size_bytes);

  double start = now_s(), end = start + o->seconds;
  double deadline = end + o->timeout_seconds;
  uint64_t messages = 0, bytes = 0;
  size_t inflight = 0;
  struct fi_cq_msg_entry ev[64];
  for (;;) {
    if (now_s() < end) {
      while (nfree > 0) {
        size_t slot = free_slots[nfree - 1];
        struct region *r = &tx[slot % nbuf];
        if (o->mode == MODE_MSG)
          rc = fi_send(f.ep, r->buf, o->size_bytes, r->desc, 0, &ctx[slot]);
        else
          rc = fi_write(f.ep, r->buf, o->size_bytes, r->desc, 0, raddr, rkey, &ctx[slot]);
        if (rc == -FI_EAGAIN) break;
        if (rc) die_fi(o->mode == MODE_MSG ? "fi_send" : "fi_write", rc);
        nfree--;
        inflight++;
      }
    } else if (inflight == 0) {
      break;
    }
    size_t n = poll_cq(&f, f.txcq, ev, 64, deadline, "waiting for send/write completions");
    for (size_t k = 0; k < n; k++) {
      size_t slot = (size_t)((struct fi_context *)ev[k].op_context - ctx);
      if (slot >= o->window) die("a completion for an operation we did not post");
      free_slots[nfree++] = slot;
      inflight--;
      messages++;
      bytes += o->size_bytes;
    }
  }
  send_ctl(&f, &ctlr, CTL_DONE, messages, bytes, deadline);
  struct ctl ack;
  while (poll_cq(&f, f.rxcq, ev, 1, deadline, "waiting for the server's ACK") == 0) {
  }
  if (ev[0].op_context != &ack_ctx || get_ctl(ackr.buf, ev[0].len, CTL_ACK, &ack))
    die("the server's reply is not an ACK");
  double seconds = now_s() - start;
  if (o->mode == MODE_MSG && (ack.messages != messages || ack.bytes != bytes))
    die("the server counted %" PRIu64 " messages, we sent %" PRIu64, ack.messages, messages);
  print_result(o, o->mode == MODE_MSG ? "receiver" : "sender", seconds, ack.messages, ack.bytes,
               "");
  for (size_t i = 0; i < nbuf; i++) unreg(&tx[i]);
  fi_close(&f.ep->fid);
  f.ep = NULL;
  unreg(&ctlr);
  unreg(&ackr);
  free(tx);
  free(ctx);
  free(free_slots);
  close_all(&f);
  return 0;
}

int main(int argc, char **argv) {
  struct opts o;
  parse_args(argc, argv, &o);
  signal(SIGALRM, on_alarm);
  signal(SIGPIPE, SIG_IGN);
  if (o.server) alarm((unsigned)(o.timeout_seconds) + 5);
  return o.server ? run_server(&o) : run_client(&o);
}
