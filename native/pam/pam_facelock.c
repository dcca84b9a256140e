/*
 * pam_facelock.so: face login through FaceLock's Face Security API (facelockd, /run/facelock/api.sock).
 *
 * auth: maps the PAM user to a FaceLock user (map file), asks the daemon to verify the person at the
 * lock's camera (protocol v1, see firmware/api/protocol.py) and returns
 *   PAM_SUCCESS          the enrolled, live, allowed user was verified;
 *   PAM_AUTH_ERR         a face was seen and refused (not recognised, liveness failed, lockout, ...);
 *   PAM_USER_UNKNOWN     the PAM user has no FaceLock user in the map (or the daemon knows none);
 *   PAM_AUTHINFO_UNAVAIL the daemon is down, refused the call, answered nonsense, nobody came to the
 *                        camera in time, or the session is remote (the person is not at the camera),
 * so that with "sufficient" (or authinfo_unavail=ignore) the next module, e.g. the password, runs and
 * nobody is locked out of their machine.
 *
 * Trust: the daemon is authenticated by the kernel (SO_PEERCRED of the socket must be uid 0 or the uid of
 * daemon_user=, default "facelock"), so a local user cannot stand up a fake daemon that says "ok".  The
 * map file must be a regular file owned by root and not writable by group or others, or nobody passes.
 *
 * Options: socket=PATH  timeout=SECONDS (1..60, default 10)  purpose=NAME (default: the PAM service name)
 *          map=PATH (default /etc/facelock/pam-users.conf)  daemon_user=NAME  allow_remote  quiet  debug
 *
 * Style of the C core: explicit lengths, bounded buffers on the stack, no allocation, 0/-1 helpers.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define PAM_SM_AUTH
#include <security/pam_ext.h>
#include <security/pam_modules.h>

#define FL_EXPORT __attribute__((visibility("default")))

#define DEFAULT_SOCKET "/run/facelock/api.sock"
#define DEFAULT_MAP "/etc/facelock/pam-users.conf"
#define DEFAULT_DAEMON_USER "facelock"
#define MAX_LINE 4096 /* one answer line from the daemon */
#define MAX_NAME 128  /* FaceLock user names/ids (the protocol's limit) */
#define MAX_PURPOSE 32

struct fl_opts {
    const char *socket;
    const char *map;
    const char *daemon_user;
    char purpose[MAX_PURPOSE + 1];
    int timeout_s;
    int allow_remote;
    int quiet;
    int debug;
};

/* ------------------------------------------------------------------------------------------ messages */
static void say(pam_handle_t *pamh, const struct fl_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(pam_handle_t *pamh, const struct fl_opts *o, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    if (o->quiet) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pam_info(pamh, "%s", msg);
}

/* ------------------------------------------------------------------------------------------ options */
static int purpose_ok(const char *p, size_t n) {
    size_t i;
    if (n == 0 || n > MAX_PURPOSE) return 0;
    for (i = 0; i < n; i++) {
        char c = p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) return 0;
    }
    return 1;
}

static int parse_opts(pam_handle_t *pamh, int argc, const char **argv, struct fl_opts *o) {
    int i;
    const void *svc = NULL;
    memset(o, 0, sizeof *o);
    o->socket = DEFAULT_SOCKET;
    o->map = DEFAULT_MAP;
    o->daemon_user = DEFAULT_DAEMON_USER;
    o->timeout_s = 10;
    strcpy(o->purpose, "pam");
    if (pam_get_item(pamh, PAM_SERVICE, &svc) == PAM_SUCCESS && svc != NULL &&
        purpose_ok((const char *)svc, strlen((const char *)svc)))
        snprintf(o->purpose, sizeof o->purpose, "%s", (const char *)svc);
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "socket=", 7) == 0 && a[7] == '/') {
            o->socket = a + 7;
        } else if (strncmp(a, "map=", 4) == 0 && a[4] == '/') {
            o->map = a + 4;
        } else if (strncmp(a, "daemon_user=", 12) == 0 && a[12] != '\0') {
            o->daemon_user = a + 12;
        } else if (strncmp(a, "timeout=", 8) == 0) {
            char *end = NULL;
            long t;
            errno = 0;
            t = strtol(a + 8, &end, 10);
            if (errno != 0 || end == a + 8 || *end != '\0' || t < 1 || t > 60) {
                pam_syslog(pamh, LOG_ERR, "bad option %s (1..60 seconds)", a);
                return -1;
            }
            o->timeout_s = (int)t;
        } else if (strncmp(a, "purpose=", 8) == 0) {
            if (!purpose_ok(a + 8, strlen(a + 8))) {
                pam_syslog(pamh, LOG_ERR, "bad option %s (1-32 of a-z 0-9 _ . -)", a);
                return -1;
            }
            snprintf(o->purpose, sizeof o->purpose, "%s", a + 8);
        } else if (strcmp(a, "allow_remote") == 0) {
            o->allow_remote = 1;
        } else if (strcmp(a, "quiet") == 0) {
            o->quiet = 1;
        } else if (strcmp(a, "debug") == 0) {
            o->debug = 1;
        } else {
            pam_syslog(pamh, LOG_ERR, "unknown option %s", a);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ user map */
/* Map file lines: "<pam user> <facelock user>" or "<pam user> *"/"* *" (the same name); '#' comments.
 * Returns 0 and writes the FaceLock user into out (NUL-terminated), 1 when not mapped, -1 on error. */
static int map_user(pam_handle_t *pamh, const char *path, const char *user, char *out, size_t outlen) {
    char line[512];
    struct stat st;
    FILE *f;
    int fd, found = 1;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        pam_syslog(pamh, LOG_ERR, "cannot open the user map %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        pam_syslog(pamh, LOG_ERR, "refusing the user map %s: not a root-owned file writable only by root", path);
        close(fd);
        return -1;
    }
    f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        return -1;
    }
    while (found == 1 && fgets(line, sizeof line, f) != NULL) {
        char *save = NULL, *a, *b, *extra;
        char *hash = strchr(line, '#');
        if (hash != NULL) *hash = '\0';
        a = strtok_r(line, " \t\r\n", &save);
        if (a == NULL) continue;
        b = strtok_r(NULL, " \t\r\n", &save);
        extra = strtok_r(NULL, " \t\r\n", &save);
        if (b == NULL || extra != NULL) continue; /* malformed line: ignored (never half-applied) */
        if (strcmp(a, user) != 0 && strcmp(a, "*") != 0) continue;
        if (strcmp(b, "*") == 0) b = (char *)user;
        if (strlen(b) == 0 || strlen(b) >= outlen) continue;
        memcpy(out, b, strlen(b) + 1);
        found = 0;
    }
    fclose(f);
    return found;
}

/* ------------------------------------------------------------------------------------------ JSON */
/* A strict little JSON reader for one answer line: validates the whole value (depth <= 8) and extracts
 * the top-level "ok" (bool), "reason" and "progress" (strings), and "error"."code" (string). */
struct fl_answer {
    int ok;       /* -1 absent, 0 false, 1 true */
    char reason[40];
    char progress[24];
    char code[32];
    int v;        /* the "v" number, -1 if absent or not an integer 0..99 */
};

struct jp {
    const char *s;
    size_t n, i;
};

static void ws(struct jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\r' || p->s[p->i] == '\n'))
        p->i++;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string at p->i; copies up to outlen-1 bytes (non-ASCII escapes become '?') when out != NULL. */
static int jstring(struct jp *p, char *out, size_t outlen) {
    size_t k = 0;
    if (p->i >= p->n || p->s[p->i] != '"') return -1;
    p->i++;
    while (p->i < p->n) {
        unsigned char c = (unsigned char)p->s[p->i++];
        char put;
        if (c == '"') {
            if (out != NULL && outlen > 0) out[k < outlen ? k : outlen - 1] = '\0';
            return 0;
        }
        if (c < 0x20) return -1;
        if (c == '\\') {
            if (p->i >= p->n) return -1;
            c = (unsigned char)p->s[p->i++];
            switch (c) {
            case '"': case '\\': case '/': put = (char)c; break;
            case 'b': case 'f': case 'n': case 'r': case 't': put = ' '; break;
            case 'u': {
                int j, cp = 0;
                if (p->n - p->i < 4) return -1;
                for (j = 0; j < 4; j++) {
                    int h = hexval(p->s[p->i + (size_t)j]);
                    if (h < 0) return -1;
                    cp = cp * 16 + h;
                }
                p->i += 4;
                put = (cp >= 0x20 && cp < 0x7f) ? (char)cp : '?';
                break;
            }
            default: return -1;
            }
        } else {
            put = (char)c;
        }
        if (out != NULL && k + 1 < outlen) out[k++] = put;
    }
    return -1;
}

static int jvalue(struct jp *p, int depth, struct fl_answer *a, const char *key, int top);

static int jnumber(struct jp *p, long *iv) {
    size_t start = p->i;
    long v = 0;
    int digits = 0, integral = 1;
    if (p->i < p->n && p->s[p->i] == '-') { p->i++; integral = 0; }
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        if (v < 1000000) v = v * 10 + (p->s[p->i] - '0');
        p->i++;
        digits++;
    }
    if (digits == 0) return -1;
    if (p->i < p->n && p->s[p->i] == '.') {
        integral = 0;
        p->i++;
        digits = 0;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') { p->i++; digits++; }
        if (digits == 0) return -1;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        integral = 0;
        p->i++;
        if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-')) p->i++;
        digits = 0;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') { p->i++; digits++; }
        if (digits == 0) return -1;
    }
    *iv = (integral && p->i - start <= 2) ? v : -1;
    return 0;
}

static int jlit(struct jp *p, const char *lit) {
    size_t l = strlen(lit);
    if (p->n - p->i < l || memcmp(p->s + p->i, lit, l) != 0) return -1;
    p->i += l;
    return 0;
}

/* An object; top = 1 for the answer itself, 2 for the "error" object inside it. */
static int jobject(struct jp *p, int depth, struct fl_answer *a, int top) {
    if (depth > 8) return -1;
    p->i++; /* '{' */
    ws(p);
    if (p->i < p->n && p->s[p->i] == '}') { p->i++; return 0; }
    for (;;) {
        char key[16];
        ws(p);
        if (jstring(p, key, sizeof key) != 0) return -1;
        ws(p);
        if (p->i >= p->n || p->s[p->i] != ':') return -1;
        p->i++;
        ws(p);
        if (jvalue(p, depth + 1, a, key, top) != 0) return -1;
        ws(p);
        if (p->i >= p->n) return -1;
        if (p->s[p->i] == ',') { p->i++; continue; }
        if (p->s[p->i] == '}') { p->i++; return 0; }
        return -1;
    }
}

static int jvalue(struct jp *p, int depth, struct fl_answer *a, const char *key, int top) {
    long iv;
    if (depth > 8 || p->i >= p->n) return -1;
    switch (p->s[p->i]) {
    case '{':
        return jobject(p, depth, a, (top == 1 && strcmp(key, "error") == 0) ? 2 : 0);
    case '[':
        p->i++;
        ws(p);
        if (p->i < p->n && p->s[p->i] == ']') { p->i++; return 0; }
        for (;;) {
            ws(p);
            if (jvalue(p, depth + 1, a, "", 0) != 0) return -1;
            ws(p);
            if (p->i >= p->n) return -1;
            if (p->s[p->i] == ',') { p->i++; continue; }
            if (p->s[p->i] == ']') { p->i++; return 0; }
            return -1;
        }
    case '"':
        if (top == 1 && strcmp(key, "reason") == 0) return jstring(p, a->reason, sizeof a->reason);
        if (top == 1 && strcmp(key, "progress") == 0) return jstring(p, a->progress, sizeof a->progress);
        if (top == 2 && strcmp(key, "code") == 0) return jstring(p, a->code, sizeof a->code);
        return jstring(p, NULL, 0);
    case 't':
        if (jlit(p, "true") != 0) return -1;
        if (top == 1 && strcmp(key, "ok") == 0) a->ok = 1;
        return 0;
    case 'f':
        if (jlit(p, "false") != 0) return -1;
        if (top == 1 && strcmp(key, "ok") == 0) a->ok = 0;
        return 0;
    case 'n':
        return jlit(p, "null");
    default:
        if (jnumber(p, &iv) != 0) return -1;
        if (top == 1 && strcmp(key, "v") == 0) a->v = (int)iv;
        return 0;
    }
}

/* 0 when line[0..n) is one JSON object of protocol version 1; fields in *a. */
static int parse_answer(const char *line, size_t n, struct fl_answer *a) {
    struct jp p = {line, n, 0};
    memset(a, 0, sizeof *a);
    a->ok = -1;
    a->v = -1;
    ws(&p);
    if (p.i >= p.n || p.s[p.i] != '{') return -1;
    if (jobject(&p, 0, a, 1) != 0) return -1;
    ws(&p);
    if (p.i != p.n || a->v != 1) return -1;
    return 0;
}

/* JSON-escape src into dst (dstlen includes the NUL); -1 if it does not fit or holds control bytes. */
static int jescape(const char *src, char *dst, size_t dstlen) {
    size_t k = 0;
    for (; *src != '\0'; src++) {
        unsigned char c = (unsigned char)*src;
        if (c < 0x20 || c == 0x7f) return -1;
        if (c == '"' || c == '\\') {
            if (k + 2 >= dstlen) return -1;
            dst[k++] = '\\';
        }
        if (k + 1 >= dstlen) return -1;
        dst[k++] = (char)c;
    }
    dst[k] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------------------------ socket */
static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Connected socket to the daemon, or -1 (logged).  The server must run as root or daemon_user. */
static int connect_daemon(pam_handle_t *pamh, const struct fl_opts *o) {
    struct sockaddr_un sa;
    struct ucred cred;
    socklen_t len = sizeof cred;
    struct passwd pw, *res = NULL;
    char pwbuf[1024];
    uid_t daemon_uid = 0;
    int fd;
    if (strlen(o->socket) >= sizeof sa.sun_path) return -1;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, o->socket, strlen(o->socket) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (o->debug) pam_syslog(pamh, LOG_DEBUG, "no daemon at %s: %s", o->socket, strerror(errno));
        close(fd);
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
        close(fd);
        return -1;
    }
    if (getpwnam_r(o->daemon_user, &pw, pwbuf, sizeof pwbuf, &res) == 0 && res != NULL) daemon_uid = pw.pw_uid;
    if (cred.uid != 0 && cred.uid != daemon_uid) {
        pam_syslog(pamh, LOG_ERR, "%s is served by uid %u, not root or %s: not trusting it", o->socket,
                   (unsigned)cred.uid, o->daemon_user);
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ verify */
static int verify(pam_handle_t *pamh, const struct fl_opts *o, const char *pam_user, const char *fl_user) {
    char esc[2 * MAX_NAME + 1];
    char req[512];
    char buf[MAX_LINE + 1];
    size_t have = 0;
    long long deadline;
    int fd, n, rc = PAM_AUTHINFO_UNAVAIL, done = 0;

    if (jescape(fl_user, esc, sizeof esc) != 0) return PAM_USER_UNKNOWN;
    n = snprintf(req, sizeof req,
                 "{\"v\":1,\"method\":\"verify\",\"params\":{\"user\":\"%s\",\"purpose\":\"%s\",\"timeout_s\":%d}}\n",
                 esc, o->purpose, o->timeout_s);
    if (n < 0 || (size_t)n >= sizeof req) return PAM_USER_UNKNOWN;
    fd = connect_daemon(pamh, o);
    if (fd < 0) return PAM_AUTHINFO_UNAVAIL;
    if (send_all(fd, req, (size_t)n) != 0) {
        close(fd);
        return PAM_AUTHINFO_UNAVAIL;
    }
    shutdown(fd, SHUT_WR);
    say(pamh, o, "Looking for %s\xe2\x80\xa6", pam_user);
    deadline = now_ms() + (long long)o->timeout_s * 1000 + 3000; /* the daemon's own timeout comes first */
    while (!done) {
        struct pollfd pfd = {fd, POLLIN, 0};
        long long left = deadline - now_ms();
        char *nl;
        ssize_t r;
        if (left <= 0) {
            pam_syslog(pamh, LOG_WARNING, "no answer from %s in time", o->socket);
            break;
        }
        if (poll(&pfd, 1, (int)left) <= 0) continue; /* EINTR or timeout: the deadline check decides */
        r = recv(fd, buf + have, MAX_LINE - have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* closed without a final answer */
        have += (size_t)r;
        while (!done && (nl = memchr(buf, '\n', have)) != NULL) {
            struct fl_answer a;
            size_t len = (size_t)(nl - buf);
            if (parse_answer(buf, len, &a) != 0) {
                pam_syslog(pamh, LOG_ERR, "the daemon's answer is not protocol v1: ignoring it");
                done = 1;
                break;
            }
            memmove(buf, nl + 1, have - len - 1);
            have -= len + 1;
            if (a.progress[0] != '\0' && a.ok == -1) {
                if (strcmp(a.progress, "face_seen") == 0) say(pamh, o, "Hold still \xe2\x80\x94 checking liveness");
                continue;
            }
            done = 1;
            if (a.code[0] != '\0') {
                pam_syslog(pamh, LOG_NOTICE, "verify refused by the daemon: %s", a.code);
                rc = strcmp(a.code, "unknown_user") == 0 ? PAM_USER_UNKNOWN : PAM_AUTHINFO_UNAVAIL;
            } else if (a.ok == 1 && strcmp(a.reason, "ok") == 0) {
                rc = PAM_SUCCESS;
                say(pamh, o, "Face recognised");
            } else if (a.ok == 0 && strcmp(a.reason, "timeout") == 0) {
                rc = PAM_AUTHINFO_UNAVAIL;
                say(pamh, o, "No face seen");
            } else if (a.ok == 0) {
                rc = PAM_AUTH_ERR;
                if (strcmp(a.reason, "spoof_suspected") == 0)
                    say(pamh, o, "Face not accepted: liveness check failed");
                else if (strcmp(a.reason, "lockout") == 0)
                    say(pamh, o, "Face login locked out for now: too many failed attempts");
                else if (strcmp(a.reason, "schedule") == 0 || strcmp(a.reason, "lockdown") == 0)
                    say(pamh, o, "Face login is not allowed right now");
                else
                    say(pamh, o, "Face not recognised");
                pam_syslog(pamh, LOG_NOTICE, "face refused for %s: %s", pam_user, a.reason);
            } else {
                pam_syslog(pamh, LOG_ERR, "the daemon's answer has no ok/reason: ignoring it");
            }
        }
        if (!done && have >= MAX_LINE) {
            pam_syslog(pamh, LOG_ERR, "the daemon's answer line is too long: ignoring it");
            break;
        }
    }
    close(fd);
    return rc;
}

static int is_remote(pam_handle_t *pamh) {
    const void *rhost = NULL;
    if (pam_get_item(pamh, PAM_RHOST, &rhost) == PAM_SUCCESS && rhost != NULL && *(const char *)rhost != '\0' &&
        strcmp((const char *)rhost, "localhost") != 0)
        return 1;
    if (pam_getenv(pamh, "SSH_CONNECTION") != NULL || getenv("SSH_CONNECTION") != NULL) return 1;
    return 0;
}

FL_EXPORT int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    struct fl_opts o;
    const char *user = NULL;
    char fl_user[MAX_NAME + 1];
    int m, rc;
    (void)flags;
    if (parse_opts(pamh, argc, argv, &o) != 0) return PAM_AUTHINFO_UNAVAIL;
    if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL || *user == '\0') return PAM_USER_UNKNOWN;
    if (!o.allow_remote && is_remote(pamh)) {
        if (o.debug) pam_syslog(pamh, LOG_DEBUG, "remote session: the person is not at the camera");
        return PAM_AUTHINFO_UNAVAIL;
    }
    m = map_user(pamh, o.map, user, fl_user, sizeof fl_user);
    if (m < 0) return PAM_AUTHINFO_UNAVAIL;
    if (m > 0) return PAM_USER_UNKNOWN;
    rc = verify(pamh, &o, user, fl_user);
    if (o.debug) pam_syslog(pamh, LOG_DEBUG, "user %s: %s", user, pam_strerror(pamh, rc));
    return rc;
}

FL_EXPORT int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv) {
    (void)pamh;
    (void)flags;
    (void)argc;
    (void)argv;
    return PAM_SUCCESS;
}
