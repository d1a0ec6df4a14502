/* TCP transport internals shared by tcp.c (framing, I/O, liveness) and
 * tcp_conn.c (sockets, listener, handshake, reconnect).
 *
 * Every frame starts with a 48-byte header (host order, little-endian
 * hosts only), checksummed with CRC32C:
 *    0 u32 magic "STLK"   4 u8 type   5 u8 flags   6 u16 0
 *    8 u32 len (DATA payload bytes)    12 u32 credits (HELLO)
 *   16 u64 seq (DATA: message number; HELLO: link id)
 *   24 u64 rcvd (messages the sender of this frame has received)
 *   32 u64 released (messages it has released: credit returns)
 *   40 u32 crc of bytes [0, 40)    44 u32 0
 * Every frame carries rcvd/released, so data piggybacks acknowledgements;
 * ACK and HB frames exist for when no data flows.
 *
 * Link keys (tcp_auth.c): a connector with a key sets TF_HELLO_KEY and
 * follows its HELLO with AUTH frames; see tcp_auth below. Refusals for the
 * key are BYE frames with TF_BYE_KEY. */
#ifndef ST_TCP_IMPL_H
#define ST_TCP_IMPL_H

#include "link_impl.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the tcp frame header is written in host order: little-endian hosts only"
#endif

#define TCP_MAGIC 0x4b4c5453u /* "STLK" */
enum { TF_DATA = 1, TF_ACK = 2, TF_HB = 3, TF_HELLO = 4, TF_BYE = 5, TF_AUTH = 6 };
enum { TF_HELLO_RESUME = 1, TF_HELLO_KEY = 2 }; /* HELLO flags */
enum { TF_BYE_KEY = 1 };                        /* BYE flags: refused for the link key */
enum { TA_CHALLENGE = 1, TA_PROOF = 2, TA_PROVE = 3 }; /* AUTH flags: the step */

typedef struct tcp_frame {
    uint32_t magic;
    uint8_t type, flags;
    uint16_t pad0;
    uint32_t len, credits;
    uint64_t seq, rcvd, released;
    uint32_t crc, pad1;
} tcp_frame;
_Static_assert(sizeof(tcp_frame) == 48, "tcp frame header is 48 bytes");

/* The link-key handshake, before the listener answers the HELLO (C =
 * connector, L = listener, Nc/Nl fresh nonces, H = C's 48-byte HELLO):
 *   C: HELLO{KEY} + AUTH{CHALLENGE, Nc}
 *   L: AUTH{PROOF, Nl, HMAC(key, "strait/v1/link/listener"  | Nc | Nl | H)}
 *   C: AUTH{PROVE,     HMAC(key, "strait/v1/link/connector" | Nc | Nl | H)}
 *   L: HELLO reply (or BYE{KEY}); only now does L look the link id up.
 * An AUTH frame is a frame header (type TF_AUTH, flags = step, len = 72,
 * seq = link id) and a fixed 72-byte body checksummed on its own: 120 bytes
 * in all, never variable. */
typedef struct tcp_auth {
    tcp_frame h;
    uint8_t nonce[32];   /* CHALLENGE, PROOF; zero in PROVE */
    uint8_t mac[32];     /* PROOF, PROVE; zero in CHALLENGE */
    uint32_t crc, pad;   /* crc32c of nonce and mac */
} tcp_auth;
_Static_assert(sizeof(tcp_auth) == 120, "tcp auth frame is 120 bytes");
#define TCP_AUTH_BODY (sizeof(tcp_auth) - sizeof(tcp_frame))

typedef struct tcp_listener tcp_listener;

/* A received message waiting in the receive region. */
typedef struct tcp_slot {
    uint64_t pos, end; /* ring positions: payload start, end of its space */
    uint64_t seq;
    size_t len;
} tcp_slot;

#define TCP_STAGE 65536 /* small reads land here first, then get copied */
#define TCP_BIG 32768   /* payloads this large are read straight into place */

typedef struct tcp_link {
    st_link base;
    int fd;              /* -1 while disconnected */
    int epfd, evfd;
    int is_client;
    char addr[128];      /* client: where to reconnect */
    tcp_listener *lis;   /* server: where the peer's reconnects arrive */
    struct tcp_link *lis_next;
    uint64_t link_id;
    uint64_t last_rx_ns, last_tx_ns, retry_ns;
    uint64_t dial_ns;    /* client: the longest successful handshake (connect, key proofs,
                            HELLOs): a redial may take a few times this (tcp_redial_ms) */
    int lis_in_ep;       /* listener fd is in epfd (server, disconnected) */

    /* tx: frames [tx_seq, ...) still to write; tx_off bytes of frame tx_seq done */
    tcp_frame *txh;      /* per sq slot: that message's frame header */
    uint64_t tx_seq;
    size_t tx_off;
    tcp_frame ctrl;      /* pending ACK/HB frame */
    size_t ctrl_len, ctrl_off;
    uint64_t peer_released, peer_credits;
    uint64_t sent_rcvd, sent_released; /* last values we told the peer */
    uint64_t ack_due_ns;                /* 0: no ack owed */
    /* STRAIT_LINK_DELAY_MS test hook (0: off): a data message may be written
     * only delay_ns after progress first saw it queued; acks and heartbeats
     * are never held, so the peer's liveness timeout does not trip */
    uint64_t delay_ns;
    uint64_t *due_ns;    /* per sq slot: earliest write time, ns (delay_ns > 0 only) */
    uint64_t stamped;    /* messages below this seq have their due time */

    /* rx */
    uint8_t *stage;
    size_t stage_off, stage_len;
    int have_hdr, have_slot;
    int rx_big;          /* the last data frame was big: read headers alone, not ahead */
    tcp_frame rh;        /* header of the frame being received */
    uint64_t rx_pos;     /* its payload's ring position when have_slot */
    size_t rx_got;
    st_mr *rx_mr;        /* the receive region */
    uint64_t ring_head, ring_tail;
    tcp_slot *slots;     /* credits entries; index = seq % credits */
    uint64_t rx_next, rx_delivered, rx_released;
} tcp_link;

struct tcp_listener {
    st_listener base;
    int fd;
    int closed;          /* st_listener_close called */
    int refs;            /* links that may still resume through it, +1 until closed */
    tcp_link *links;
    tcp_link **pending;  /* accepted new links waiting for st_accept */
    int n_pending, cap_pending;
};

/* tcp.c */
tcp_link *tcp_link_new(const st_link_opts *o, int is_client);
void tcp_frame_seal(tcp_frame *f);
int tcp_frame_ok(const tcp_frame *f);
/* Attach a connected socket after a HELLO exchange; the peer's HELLO says
 * what it has received and released. Resends start from its rcvd. */
int tcp_attach(tcp_link *t, int fd, const tcp_frame *peer_hello);
void tcp_detach(tcp_link *t, const char *why);
void tcp_fill_hello(tcp_link *t, tcp_frame *f, int resume);

/* tcp_conn.c */
int tcp_set_sockopts(int fd, const st_link_opts *o);
/* "HOST:PORT" or "[V6]:PORT" -> getaddrinfo result (passive: for a listener). */
struct addrinfo;
int tcp_resolve(const char *addr, int passive, struct addrinfo **res);
/* A non-blocking listening socket on addr; its actual "host:port" (port 0
 * resolved) goes to name. `who` prefixes error messages. */
int tcp_listen_socket(const char *who, const char *addr, int *fd, char *name, size_t cap);
int tcp_io_full(int fd, void *buf, size_t n, int is_write, int timeout_ms);
/* Accept what is queued on the listener without blocking for long:
 * resumes attach to their links, new links queue for st_accept. */
void tcp_lis_pump(tcp_listener *l, int wait_ms);
int tcp_reconnect(tcp_link *t, int timeout_ms);
/* How long a redial inside progress may take, ms (see tcp_conn.c). */
int tcp_redial_ms(const tcp_link *t);
void tcp_lis_unref(tcp_listener *l);

/* tcp_auth.c: the link-key handshake above. Both return ST_OK when the
 * peer proved the key, or neither end has one. Listener: reads the
 * challenge when the HELLO offers a key; on a refusal it has sent BYE{KEY},
 * logged naming `peer` and counted (ST_EPROTO); ST_ECONN when the peer left
 * mid-way. Either way the caller closes fd.
 * Connector: call right after sending `hello`; a refusal for the key fails
 * the link (no retry); other errors (timeouts, a lost connection) are
 * returned for a retry. */
int tcp_auth_listen_side(tcp_listener *l, int fd, const tcp_frame *hello, const char *peer, int timeout_ms);
int tcp_auth_connect_side(tcp_link *t, int fd, const tcp_frame *hello, int timeout_ms);

#endif
