/*
 * ipkeeper-cni: the native CNI forwarder.
 *
 * The container runtime starts the IPAM plugin for every pod network change, so its start-up is on
 * every pod's path. A Node.js executable costs ~100 ms of CPU before it runs a line of ours; this
 * program costs about one. It does no IPAM itself: it sends the runtime's CNI_* environment and the
 * network configuration (stdin) to the node agent's `POST /v1/cni/exec` (src/agent/cni-exec.ts),
 * which runs the plugin code (src/cni/plugin.ts) and answers with the exact stdout, stderr and exit
 * code to reproduce. Two things it must do alone, because they happen when no agent answers:
 *
 *   - VERSION: a runtime probes it before anything else (CNI spec); answered here.
 *   - the agent unreachable: a CNI error, code 11 ("try again later"), naming the socket and the fix.
 *
 * The socket is the configuration's `ipam.socket` (default /run/ipkeeper/ipkeeper.sock) and the
 * deadline its `ipam.timeoutMs` (default 30000), found with the small JSON reader below. It only
 * needs to find two keys in a document the agent will validate fully; anything it cannot read falls
 * back to the defaults, and the agent then reports what is wrong with the configuration.
 *
 * Built by scripts/build.ts: `cc -O2 -static`, no dependencies beyond libc.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/ipkeeper/ipkeeper.sock"
#define DEFAULT_TIMEOUT_MS 30000L
#define LATEST_VERSION "1.1.0"
#define MAX_STDIN (1L << 20) /* the agent's body limit is 1 MiB as well */

extern char **environ;

static const char *const SUPPORTED[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};

/* ---- growable buffer ------------------------------------------------------------------------ */

struct buf {
  char *p;
  size_t len, cap;
};

static void need(struct buf *b, size_t more) {
  if (b->len + more + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    fputs("ipkeeper-cni: out of memory\n", stderr);
    exit(1);
  }
  b->p = p;
  b->cap = cap;
}

static void put(struct buf *b, const char *s, size_t n) {
  need(b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(struct buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal of s[0..n). Bytes >= 0x80 pass through: the agent decodes UTF-8. */
static void put_json_string(struct buf *b, const char *s, size_t n) {
  put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(b, e, 2);
    } else if (c < 0x20) {
      putf(b, "\\u%04x", c);
    } else {
      put(b, (const char *)&s[i], 1);
    }
  }
  put(b, "\"", 1);
}

/* ---- a minimal JSON reader: finds one key's value in nested objects ------------------------- */

struct cur {
  const char *p, *end;
};

static void ws(struct cur *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

/* Skips a string starting at the opening quote; returns 0 on malformed input. */
static int skip_string(struct cur *c) {
  if (c->p >= c->end || *c->p != '"') return 0;
  for (c->p++; c->p < c->end; c->p++) {
    if (*c->p == '\\') {
      c->p++;
      continue;
    }
    if (*c->p == '"') {
      c->p++;
      return 1;
    }
  }
  return 0;
}

static int skip_value(struct cur *c) {
  ws(c);
  if (c->p >= c->end) return 0;
  if (*c->p == '"') return skip_string(c);
  if (*c->p == '{' || *c->p == '[') {
    int depth = 0;
    while (c->p < c->end) {
      char ch = *c->p;
      if (ch == '"') {
        if (!skip_string(c)) return 0;
        continue;
      }
      if (ch == '{' || ch == '[') depth++;
      if (ch == '}' || ch == ']') {
        depth--;
        if (depth == 0) {
          c->p++;
          return 1;
        }
      }
      c->p++;
    }
    return 0;
  }
  while (c->p < c->end && *c->p != ',' && *c->p != '}' && *c->p != ']') c->p++;
  return 1;
}

/* Decodes the string at the cursor (simple escapes; \u only below 0x80) into out. */
static int read_string(struct cur *c, char *out, size_t cap) {
  if (c->p >= c->end || *c->p != '"') return 0;
  size_t n = 0;
  for (c->p++; c->p < c->end; c->p++) {
    char ch = *c->p;
    if (ch == '"') {
      c->p++;
      out[n] = 0;
      return 1;
    }
    if (ch == '\\') {
      if (++c->p >= c->end) return 0;
      switch (*c->p) {
        case 'n': ch = '\n'; break;
        case 't': ch = '\t'; break;
        case 'r': ch = '\r'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'u': {
          if (c->end - c->p < 5) return 0;
          char hex[5] = {c->p[1], c->p[2], c->p[3], c->p[4], 0};
          long v = strtol(hex, NULL, 16);
          if (v <= 0 || v >= 0x80) return 0;
          ch = (char)v;
          c->p += 4;
          break;
        }
        default: ch = *c->p;
      }
    }
    if (n + 1 >= cap) return 0;
    out[n++] = ch;
  }
  return 0;
}

/*
 * Moves the cursor to the value of `key` in the object at the cursor. Returns 0 when the value
 * there is not an object or has no such key.
 */
static int find_key(struct cur *c, const char *key) {
  ws(c);
  if (c->p >= c->end || *c->p != '{') return 0;
  c->p++;
  for (;;) {
    ws(c);
    if (c->p >= c->end || *c->p == '}') return 0;
    char name[64];
    const char *start = c->p;
    int ok = read_string(c, name, sizeof name);
    if (!ok) {
      c->p = start;
      if (!skip_string(c)) return 0;
      name[0] = 0;
    }
    ws(c);
    if (c->p >= c->end || *c->p != ':') return 0;
    c->p++;
    ws(c);
    if (ok && strcmp(name, key) == 0) return 1;
    if (!skip_value(c)) return 0;
    ws(c);
    if (c->p < c->end && *c->p == ',') c->p++;
  }
}

static int config_string(const char *doc, size_t n, const char *section, const char *key, char *out, size_t cap) {
  struct cur c = {doc, doc + n};
  if (section && !find_key(&c, section)) return 0;
  if (!find_key(&c, key)) return 0;
  return read_string(&c, out, cap);
}

static long config_number(const char *doc, size_t n, const char *section, const char *key) {
  struct cur c = {doc, doc + n};
  if (!find_key(&c, section) || !find_key(&c, key)) return -1;
  char *endp;
  long v = strtol(c.p, &endp, 10);
  return endp == c.p || v <= 0 ? -1 : v;
}

/* ---- CNI output ------------------------------------------------------------------------------ */

static const char *reply_version(const char *doc, size_t n) {
  static char v[16];
  if (config_string(doc, n, NULL, "cniVersion", v, sizeof v)) {
    for (size_t i = 0; i < sizeof SUPPORTED / sizeof *SUPPORTED; i++)
      if (strcmp(v, SUPPORTED[i]) == 0) return v;
  }
  return LATEST_VERSION;
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

/* Prints a CNI error (same shape as src/cni/plugin.ts errorJson) and returns the exit code. */
static int cni_error(const char *version, int code, const char *details, const char *msg) {
  struct buf b = {0};
  putf(&b, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":", version, code);
  put_json_string(&b, msg, strlen(msg));
  puts_(&b, ",\"details\":");
  put_json_string(&b, details, strlen(details));
  puts_(&b, "}\n");
  write_all(1, b.p, b.len);
  struct buf l = {0};
  puts_(&l, "{\"level\":\"error\",\"component\":\"ipkeeper-cni\",\"code\":");
  put_json_string(&l, details, strlen(details));
  puts_(&l, ",\"msg\":");
  put_json_string(&l, msg, strlen(msg));
  puts_(&l, "}\n");
  write_all(2, l.p, l.len);
  return 1;
}

static long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(void) {
  struct buf in = {0};
  for (;;) {
    need(&in, 65536);
    ssize_t r = read(0, in.p + in.len, 65536);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    in.len += (size_t)r;
    if ((long)in.len > MAX_STDIN) break;
  }
  need(&in, 0);
  const char *command = getenv("CNI_COMMAND");
  const char *version = reply_version(in.p, in.len);

  if (command && strcmp(command, "VERSION") == 0) {
    struct buf b = {0};
    putf(&b, "{\"cniVersion\":\"%s\",\"supportedVersions\":[", version);
    for (size_t i = 0; i < sizeof SUPPORTED / sizeof *SUPPORTED; i++) putf(&b, "%s\"%s\"", i ? "," : "", SUPPORTED[i]);
    puts_(&b, "]}\n");
    write_all(1, b.p, b.len);
    return 0;
  }

  char socket_path[4096];
  if (!config_string(in.p, in.len, "ipam", "socket", socket_path, sizeof socket_path) || socket_path[0] == 0)
    strcpy(socket_path, DEFAULT_SOCKET);
  char msg[600];
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof addr.sun_path) {
    snprintf(msg, sizeof msg, "ipam.socket \"%.200s...\" is %zu bytes long; a unix socket path has at most %zu: use a shorter path",
             socket_path, strlen(socket_path), sizeof addr.sun_path - 1);
    return cni_error(version, 7, "INVALID_CONFIG", msg);
  }
  memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);
  long timeout_ms = config_number(in.p, in.len, "ipam", "timeoutMs");
  if (timeout_ms <= 0) timeout_ms = DEFAULT_TIMEOUT_MS;
  /* The agent refuses a timeoutMs below 100 ms (INVALID_CONFIG): wait long enough to pass that on. */
  if (timeout_ms < 100) timeout_ms = 100;
  long deadline = now_ms() + timeout_ms;

  struct buf body = {0};
  puts_(&body, "{\"env\":{");
  int first = 1;
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "CNI_", 4) != 0) continue;
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    if (!first) put(&body, ",", 1);
    first = 0;
    put_json_string(&body, *e, (size_t)(eq - *e));
    put(&body, ":", 1);
    put_json_string(&body, eq + 1, strlen(eq + 1));
  }
  puts_(&body, "},\"stdin\":");
  put_json_string(&body, in.p, in.len);
  puts_(&body, "}");

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
    const char *what;
    char tmp[300];
    switch (errno) {
      case ENOENT: snprintf(tmp, sizeof tmp, "socket %s does not exist", socket_path); break;
      case ECONNREFUSED: snprintf(tmp, sizeof tmp, "nothing listens on socket %s", socket_path); break;
      case EACCES:
      case EPERM:
        snprintf(tmp, sizeof tmp, "permission denied on socket %s (the plugin runs as the runtime's user, normally root)", socket_path);
        break;
      default: snprintf(tmp, sizeof tmp, "the connection to socket %s failed (%s)", socket_path, strerror(errno));
    }
    what = tmp;
    snprintf(msg, sizeof msg, "cannot reach the ipkeeper agent: %s; is the ipkeeper agent running? start it with `ipkeeper agent`", what);
    return cni_error(version, 11, "AGENT_UNAVAILABLE", msg);
  }

  struct buf req = {0};
  putf(&req,
       "POST /v1/cni/exec HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
       "Content-Length: %zu\r\nConnection: close\r\n\r\n",
       body.len);
  put(&req, body.p, body.len);

  /* One deadline for the whole exchange, as the Node plugin has (src/cni/client.ts). */
  size_t sent = 0;
  struct buf resp = {0};
  int done = 0;
  while (!done) {
    long left = deadline - now_ms();
    if (left <= 0) {
      snprintf(msg, sizeof msg,
               "the ipkeeper agent did not answer on socket %s within %ld ms; is the ipkeeper agent running? start it with `ipkeeper agent` (it may also be overloaded: see its log)",
               socket_path, timeout_ms);
      return cni_error(version, 11, "AGENT_UNAVAILABLE", msg);
    }
    struct pollfd p = {.fd = fd, .events = (short)(sent < req.len ? POLLOUT | POLLIN : POLLIN)};
    int n = poll(&p, 1, (int)left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    if (sent < req.len && (p.revents & POLLOUT)) {
      ssize_t w = send(fd, req.p + sent, req.len - sent, MSG_NOSIGNAL);
      if (w > 0) sent += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EINTR) break;
    }
    if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
      need(&resp, 65536);
      ssize_t r = read(fd, resp.p + resp.len, 65536);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) done = 1;
      else resp.len += (size_t)r;
    }
  }
  close(fd);
  need(&resp, 0);

  int status = 0;
  char *head_end = resp.p ? strstr(resp.p, "\r\n\r\n") : NULL;
  if (!head_end || sscanf(resp.p, "HTTP/1.%*d %d", &status) != 1) {
    snprintf(msg, sizeof msg, "the ipkeeper agent on socket %s closed the connection without an answer; retry (see the agent's log)", socket_path);
    return cni_error(version, 11, "AGENT_UNAVAILABLE", msg);
  }
  *head_end = 0;
  const char *payload = head_end + 4;
  size_t payload_len = resp.len - (size_t)(payload - resp.p);
  long exit_code = -1, stdout_len = -1;
  for (char *line = strstr(resp.p, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
    char *h = line + 2;
    if (strncasecmp(h, "x-cni-exit-code:", 16) == 0) exit_code = strtol(h + 16, NULL, 10);
    if (strncasecmp(h, "x-cni-stdout-length:", 20) == 0) stdout_len = strtol(h + 20, NULL, 10);
  }
  if (status != 200 || exit_code < 0 || stdout_len < 0 || (size_t)stdout_len > payload_len) {
    /* The agent refused the exchange itself (busy, too large, an old agent without /v1/cni/exec). */
    char text[200] = "";
    struct cur c = {payload, payload + payload_len};
    if (find_key(&c, "message")) read_string(&c, text, sizeof text);
    snprintf(msg, sizeof msg, "the ipkeeper agent on socket %s answered HTTP %d%s%s; retry, or check that the agent and the plugin are the same version",
             socket_path, status, text[0] ? ": " : "", text);
    return cni_error(version, status == 429 ? 11 : 110, status == 429 ? "BUSY" : "INTERNAL", msg);
  }
  write_all(1, payload, (size_t)stdout_len);
  write_all(2, payload + stdout_len, payload_len - (size_t)stdout_len);
  return (int)exit_code;
}
