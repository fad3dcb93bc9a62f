/* Fuzz target: the REST API as alice. Input: one byte whose low two bits
 * pick the method (GET, POST, DELETE, PUT) and next two the Content-Type,
 * then path '\n' query '\n' body (aliases as in server_fixture.h; no
 * second '\n' means no query). Every answer must have a status the API
 * documents; every JSON answer must be one whole JSON value (cJSON is the
 * independent parser), an error one {"error":{"code":s,"message":s}}. The
 * same request without an identity must be refused with 401. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server_fixture.h"

static const char *const methods[4] = {"GET", "POST", "DELETE", "PUT"};
/* None is exactly "application/json", so an answer with that type is never
 * a stored media blob. */
static const char *const types[4] = {NULL, "image/png",
                                     "application/json; charset=utf-8",
                                     "text/plain\x7f"};

static bool status_ok(int st) {
  static const int known[] = {200, 201, 400, 401, 403, 404, 405,
                              409, 413, 429, 500, 501, 503};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (st == known[i])
      return true;
  return false;
}

static void check(const chat_http_response *r, const char *what) {
  if (!status_ok(r->status))
    fx_fail("%s: status %d", what, r->status);
  if (!r->content_type || (r->body_len && !r->body))
    fx_fail("%s: no content type or body", what);
  if (strcmp(r->content_type, "application/json") != 0) {
    /* A blob: only a download answers one, with a type it was stored
     * with (the uploads' own, or the default for none). */
    bool known = !strcmp(r->content_type, "application/octet-stream") ||
                 !strcmp(r->content_type, "text/plain");
    for (int i = 1; i < 3; i++)
      known = known || !strcmp(r->content_type, types[i]);
    if (r->status != 200 || !known)
      fx_fail("%s: status %d with Content-Type %s", what, r->status,
              r->content_type);
    return;
  }
  /* NUL-terminated and the NUL counted: cJSON then also refuses bytes
   * after the value. */
  char *copy = malloc(r->body_len + 1);
  if (!copy)
    fx_fail("out of memory");
  memcpy(copy, r->body, r->body_len);
  copy[r->body_len] = 0;
  cJSON *root = cJSON_ParseWithLengthOpts(copy, r->body_len + 1, NULL, 1);
  if (!root)
    fx_fail("%s: status %d, body is not JSON: %s", what, r->status, copy);
  if (r->status >= 400) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (!cJSON_IsObject(e) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "code")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")))
      fx_fail("%s: status %d without an error object: %s", what, r->status,
              copy);
  }
  cJSON_Delete(root);
  free(copy);
}

/* Split at the next '\n' from *pos; the part is NUL-terminated. */
static char *take_line(const fixture *fx, const uint8_t *data, size_t size,
                       size_t *pos, bool *found) {
  const uint8_t *p = data + *pos;
  const uint8_t *nl = *pos < size ? memchr(p, '\n', size - *pos) : NULL;
  size_t len = nl ? (size_t)(nl - p) : size - *pos;
  *found = nl != NULL;
  *pos += len + (nl ? 1 : 0);
  size_t n;
  return fx_expand(fx, p, len, &n, true);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  /* With the bus: member changes publish "forget" envelopes, which the
   * fixture loops back. */
  fixture *fx = fx_get(true);
  fx_advance(fx, 100);
  const char *method = methods[data[0] & 3];
  const char *ct = types[(data[0] >> 2) & 3];
  size_t pos = 1;
  bool more;
  char *path = take_line(fx, data, size, &pos, &more);
  char *query = NULL, *body = NULL;
  size_t body_len = 0;
  if (more) {
    query = take_line(fx, data, size, &pos, &more);
    body = fx_expand(fx, data + pos, size - pos, &body_len, false);
  }

  chat_http_response r = fx_http(fx, "alice", method, path, query, ct, body,
                                 body_len);
  check(&r, "as alice");
  /* Keep the fixture's group usable for the inputs after this one. */
  bool left = r.status == 200 && !strcmp(method, "DELETE");
  r = fx_http(fx, NULL, method, path, query, ct, body, body_len);
  check(&r, "no identity");
  if (r.status != 401)
    fx_fail("no identity: status %d", r.status);
  if (left) {
    char rejoin[128];
    snprintf(rejoin, sizeof rejoin, "/api/v1/conversations/%s/members",
             fx->group);
    static const char who[] = "{\"user_id\":\"alice\"}";
    r = fx_http(fx, "bob", "POST", rejoin, NULL, NULL, who, sizeof who - 1);
    check(&r, "rejoin");
  }
  fx_tick(fx);
  free(path);
  free(query);
  free(body);
  return 0;
}
