/* chat__cql: a minimal C surface over the Rust `scylla` CQL driver, for the
 * cassandra backend's store module. Internal to libchat: nothing here is
 * public API, nothing is exported from libchat.so, and the header is never
 * installed. The implementation is the Rust crate beside this header
 * (src/lib.rs), built as a static library by meson through cargo when
 * -Dcassandra=enabled.
 *
 * Model
 * - A session owns a small tokio runtime (its own threads, named
 *   "chat-cql") and the driver's connection pools. Connect and prepare are
 *   blocking: a module does them once, at start.
 * - Executions are asynchronous. chat__cql_execute() and friends return at
 *   once; when they return CHAT__CQL_OK the `done` callback fires exactly
 *   once, later, on one of the session's threads (never inside the call),
 *   with the result or an error. When they return an error, `done` never
 *   fires (as in libuv). A C module hands the result to its event loop from
 *   `done` (a queue plus a wakeup) and must not block there for long: the
 *   callback runs on a driver thread.
 * - The *_wait variants block the calling thread until the result is in,
 *   for tools and tests. Calling one from inside a `done` callback is an
 *   error (CHAT__CQL_EINVAL), not a deadlock.
 * - Threads: a session, its prepared statements and batches may be used
 *   from any thread at the same time. A result and a values builder belong
 *   to one thread at a time.
 * - No Rust panic crosses into C: every entry point catches it and returns
 *   CHAT__CQL_EINTERNAL.
 *
 * Ownership is stated per function: "owned" pointers are freed by the
 * caller with the matching *_free; "borrowed" ones stay valid as long as
 * the object they were taken from.
 */
#ifndef CHAT_CQL_H
#define CHAT_CQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes. 0 is success; errors are negative. Append only. */
enum {
  CHAT__CQL_OK = 0,
  CHAT__CQL_EINVAL = -1,         /* bad argument from C (NULL, not UTF-8,
                                    unbound value, wrong thread) */
  CHAT__CQL_ECONNECT = -2,       /* no node reachable, or the connection
                                    broke during the request */
  CHAT__CQL_ETIMEOUT = -3,       /* the client-side request timeout fired;
                                    the outcome of a write is unknown */
  CHAT__CQL_EUNAVAILABLE = -4,   /* the coordinator knows too few replicas
                                    alive for the consistency level (e.g.
                                    QUORUM with 2 of 3 down); not applied */
  CHAT__CQL_EWRITE_TIMEOUT = -5, /* too few replicas acknowledged in time;
                                    the write may or may not be applied */
  CHAT__CQL_EREAD_TIMEOUT = -6,  /* too few replicas answered a read */
  CHAT__CQL_ESYNTAX = -7,        /* CQL syntax error */
  CHAT__CQL_EINVALID = -8,       /* valid syntax, invalid query (unknown
                                    table or column, ...) */
  CHAT__CQL_EEXISTS = -9,        /* keyspace or table already exists */
  CHAT__CQL_EOVERLOADED = -10,   /* coordinator overloaded or bootstrapping */
  CHAT__CQL_ESERVER = -11,       /* any other error the server returned
                                    (see chat__cql_error.db_code) */
  CHAT__CQL_ETYPE = -12,         /* a bound value or a getter does not
                                    match the column's CQL type */
  CHAT__CQL_ENULL = -13,         /* the column is null in this row */
  CHAT__CQL_ERANGE = -14,        /* row, column or list index out of range */
  CHAT__CQL_ECLOSED = -15,       /* the session is closing */
  CHAT__CQL_EINTERNAL = -16      /* a bug: a panic was caught, or the
                                    driver answered something unexpected */
};

/* An error: the code above, the server's CQL protocol error code when the
 * server sent one (0x1000 unavailable, 0x1100 write timeout, 0x2000 syntax,
 * 0x2200 invalid, ...; 0 otherwise), and a message, always NUL-terminated
 * (truncated to fit). */
typedef struct chat__cql_error {
  int code;
  int db_code;
  char message[500];
} chat__cql_error;

/* Consistency levels. DEFAULT means the session's (chat__cql_config). */
typedef enum chat__cql_consistency {
  CHAT__CQL_DEFAULT = 0,
  CHAT__CQL_ANY,
  CHAT__CQL_ONE,
  CHAT__CQL_TWO,
  CHAT__CQL_THREE,
  CHAT__CQL_QUORUM,
  CHAT__CQL_ALL,
  CHAT__CQL_LOCAL_QUORUM,
  CHAT__CQL_EACH_QUORUM,
  CHAT__CQL_LOCAL_ONE
} chat__cql_consistency;

typedef struct chat__cql_session chat__cql_session;
typedef struct chat__cql_prepared chat__cql_prepared;
typedef struct chat__cql_values chat__cql_values;
typedef struct chat__cql_batch chat__cql_batch;
typedef struct chat__cql_result chat__cql_result;

/* Completion of an asynchronous execution. Runs on a session thread.
 * `err` is borrowed for the call; err->code is CHAT__CQL_OK on success.
 * `result` is owned by the callee (free it with chat__cql_result_free,
 * now or later, from any thread) and is NULL on error. */
typedef void (*chat__cql_done)(void *user_data, const chat__cql_error *err,
                               chat__cql_result *result);

/* Connection settings. Zero means the default given in brackets. */
typedef struct chat__cql_config {
  /* Comma-separated host:port list ("127.0.0.1:9042,127.0.0.2:9042"); the
   * driver discovers the rest of the ring from any of them. Required. */
  const char *contact_points;
  /* USE this keyspace on every connection; NULL for none. */
  const char *keyspace;
  chat__cql_consistency consistency; /* [QUORUM] */
  uint32_t connect_timeout_ms;       /* [5000] */
  uint32_t request_timeout_ms;       /* [10000]; per execution */
  uint32_t threads;                  /* runtime worker threads [2] */
} chat__cql_config;

/* Human-readable name of a code ("EUNAVAILABLE"); static storage. */
const char *chat__cql_code_name(int code);

/* Whether an error is worth retrying later with the same statement and
 * values (timeouts, unavailable, overloaded, connection loss). A retried
 * write must be idempotent: same primary key, same values. */
bool chat__cql_code_is_retryable(int code);

/* Connect. On success *out is an owned session. Blocks up to
 * connect_timeout_ms. `err` may be NULL.
 * @retval CHAT__CQL_OK, EINVAL, ECONNECT, EINTERNAL */
int chat__cql_connect(const chat__cql_config *cfg, chat__cql_session **out,
                      chat__cql_error *err);

/* Wait until every execution in flight has fired its callback, and every
 * blocking call on other threads has returned; then close the connections,
 * stop the session's threads and free the session. NULL is a no-op. No new
 * call on the session may begin once close has begun. Must not be called
 * from a `done` callback (CHAT__CQL_EINVAL, and the session stays open).
 * @retval CHAT__CQL_OK, EINVAL, EINTERNAL */
int chat__cql_close(chat__cql_session *s);

/* Executions in flight: accepted and callback not yet returned, or a
 * blocking call (prepare, *_wait) not yet returned. */
size_t chat__cql_inflight(const chat__cql_session *s);

/* Prepare `cql` (blocking). `consistency` applies to every execution of
 * it; `page_size` is the rows per page for SELECTs (<= 0: 5000). With
 * CHAT__CQL_IDEMPOTENT, the driver may retry it on another node after a
 * timeout. On success *out is owned (chat__cql_prepared_free).
 * @retval CHAT__CQL_OK, EINVAL, ESYNTAX, EINVALID, ECONNECT, ETIMEOUT, ... */
enum { CHAT__CQL_IDEMPOTENT = 1 };
int chat__cql_prepare(chat__cql_session *s, const char *cql,
                      chat__cql_consistency consistency, int32_t page_size,
                      unsigned flags, chat__cql_prepared **out,
                      chat__cql_error *err);
void chat__cql_prepared_free(chat__cql_prepared *p);
/* Number of bind markers. */
size_t chat__cql_prepared_params(const chat__cql_prepared *p);

/* Bound values for one execution: `n` slots, each to be set exactly once
 * (an unset slot makes the execution fail with EINVAL). Setters copy their
 * input; an execution copies the values, so the builder may be freed or
 * reused as soon as the execute call returns. Setters return EINVAL for a
 * NULL builder, an index >= n, or text that is not UTF-8.
 * Timestamps are milliseconds since the Unix epoch. */
chat__cql_values *chat__cql_values_new(size_t n);
void chat__cql_values_free(chat__cql_values *v);
void chat__cql_values_clear(chat__cql_values *v); /* unset every slot */
int chat__cql_values_null(chat__cql_values *v, size_t i);
int chat__cql_values_text(chat__cql_values *v, size_t i, const char *s,
                          size_t len);
int chat__cql_values_bigint(chat__cql_values *v, size_t i, int64_t x);
int chat__cql_values_int(chat__cql_values *v, size_t i, int32_t x);
int chat__cql_values_smallint(chat__cql_values *v, size_t i, int16_t x);
int chat__cql_values_bool(chat__cql_values *v, size_t i, bool x);
int chat__cql_values_blob(chat__cql_values *v, size_t i, const void *p,
                          size_t len);
int chat__cql_values_timestamp(chat__cql_values *v, size_t i, int64_t ms);
/* A list<text>: `n` strings with their lengths. */
int chat__cql_values_text_list(chat__cql_values *v, size_t i,
                               const char *const *items, const size_t *lens,
                               size_t n);

/* Execute a prepared statement, fetching one page. `values` may be NULL
 * when the statement has no markers. `paging_state` continues a previous
 * page (chat__cql_result_paging_state), or NULL/0 for the first page.
 * @retval CHAT__CQL_OK (done will fire), EINVAL, ECLOSED, EINTERNAL */
int chat__cql_execute(chat__cql_session *s, const chat__cql_prepared *p,
                      const chat__cql_values *values,
                      const uint8_t *paging_state, size_t paging_len,
                      chat__cql_done done, void *user_data);
/* Blocking variant: *out is an owned result on CHAT__CQL_OK. */
int chat__cql_execute_wait(chat__cql_session *s, const chat__cql_prepared *p,
                           const chat__cql_values *values,
                           const uint8_t *paging_state, size_t paging_len,
                           chat__cql_result **out, chat__cql_error *err);

/* An unprepared statement without bind markers (DDL, tools); every row in
 * one result, unpaged, so keep it to small answers. */
int chat__cql_query(chat__cql_session *s, const char *cql,
                    chat__cql_consistency consistency, chat__cql_done done,
                    void *user_data);
int chat__cql_query_wait(chat__cql_session *s, const char *cql,
                         chat__cql_consistency consistency,
                         chat__cql_result **out, chat__cql_error *err);

/* A batch of prepared statements with their values (copied on add).
 * LOGGED: all or nothing across partitions (through the batchlog);
 * UNLOGGED: cheaper, atomic only within one partition. */
enum { CHAT__CQL_LOGGED = 0, CHAT__CQL_UNLOGGED = 1 };
chat__cql_batch *chat__cql_batch_new(int type,
                                     chat__cql_consistency consistency);
void chat__cql_batch_free(chat__cql_batch *b);
int chat__cql_batch_add(chat__cql_batch *b, const chat__cql_prepared *p,
                        const chat__cql_values *values);
size_t chat__cql_batch_len(const chat__cql_batch *b);
int chat__cql_batch_execute(chat__cql_session *s, const chat__cql_batch *b,
                            chat__cql_done done, void *user_data);
int chat__cql_batch_execute_wait(chat__cql_session *s,
                                 const chat__cql_batch *b,
                                 chat__cql_result **out,
                                 chat__cql_error *err);

/* Results: one page of rows (none for writes). */
void chat__cql_result_free(chat__cql_result *r);
size_t chat__cql_result_rows(const chat__cql_result *r);
size_t chat__cql_result_columns(const chat__cql_result *r);
/* Borrowed, NUL-terminated; NULL when col is out of range. */
const char *chat__cql_result_column_name(const chat__cql_result *r,
                                         size_t col);
/* Column index by name, or -1. */
int chat__cql_result_column_index(const chat__cql_result *r,
                                  const char *name);
/* Whether another page follows; then *data and *len (borrowed) hold the state
 * to pass to the next chat__cql_execute. */
bool chat__cql_result_paging_state(const chat__cql_result *r,
                                   const uint8_t **data, size_t *len);
bool chat__cql_result_is_null(const chat__cql_result *r, size_t row,
                              size_t col);
/* Typed getters: CHAT__CQL_OK, ERANGE, ENULL or ETYPE. Text and blob
 * pointers are borrowed from the result; text is also NUL-terminated. */
int chat__cql_result_text(const chat__cql_result *r, size_t row, size_t col,
                          const char **s, size_t *len);
int chat__cql_result_bigint(const chat__cql_result *r, size_t row,
                            size_t col, int64_t *x);
int chat__cql_result_int(const chat__cql_result *r, size_t row, size_t col,
                         int32_t *x);
int chat__cql_result_smallint(const chat__cql_result *r, size_t row,
                              size_t col, int16_t *x);
int chat__cql_result_bool(const chat__cql_result *r, size_t row, size_t col,
                          bool *x);
int chat__cql_result_blob(const chat__cql_result *r, size_t row, size_t col,
                          const uint8_t **p, size_t *len);
int chat__cql_result_timestamp(const chat__cql_result *r, size_t row,
                               size_t col, int64_t *ms);
/* list<text>: its length, and item `k`. A null list has length 0 (CQL
 * does not tell an empty list from a null one). */
int chat__cql_result_list_len(const chat__cql_result *r, size_t row,
                              size_t col, size_t *n);
int chat__cql_result_list_text(const chat__cql_result *r, size_t row,
                               size_t col, size_t k, const char **s,
                               size_t *len);

#ifdef __cplusplus
}
#endif
#endif
