/* Frame codec: malformed input. Each row is one way a peer can get a frame
 * wrong, with the exact chat_err, the wire code it maps to (PROTOCOL.md
 * section 7), the field named, and error.ref. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include <chat/frame.h>

typedef struct bad_case {
  const char *name;
  chat_direction dir;
  const char *json; /* NUL-terminated unless len is set */
  size_t len;
  chat_err err;
  chat_wire_error wire;
  const char *field; /* NULL: no particular field */
  const char *ref;   /* expected error.ref; NULL: none */
} bad_case;

#define TS CHAT_DIR_TO_SERVER
#define TC CHAT_DIR_TO_CLIENT
#define BF CHAT_WIRE_BAD_FRAME
#define SEND_HEAD "{\"type\":\"send\",\"client_msg_id\":\"m1\","
#define EDIT_HEAD                                                              \
  "{\"type\":\"edit\",\"client_msg_id\":\"e1\",\"conversation_id\":\"c\","
#define DELETE_HEAD "{\"type\":\"delete\",\"client_msg_id\":\"d1\","
#define MSG_HEAD                                                               \
  "{\"type\":\"message\",\"message_id\":\"2\",\"conversation_id\":\"c\","  \
  "\"sender_id\":\"s\",\"server_ts\":1,"
#define HELLO_HEAD                                                             \
  "{\"type\":\"hello\",\"user_id\":\"u\",\"device_id\":\"d\","             \
  "\"session_id\":\"s\",\"server_ts\":1,\"heartbeat_ms\":1,\"limits\":{"      \
  "\"max_body_bytes\":1,\"max_frame_bytes\":1,\"rate_per_minute\":1,"        \
  "\"resume_max_messages\":1,\"resume_max_age_ms\":1,"

static const bad_case cases[] = {
  /* Not JSON, not an object, no type. */
  {"empty input", TS, "", 0, CHAT_ERR_JSON, BF, NULL, NULL},
  {"whitespace only", TS, "  \n", 0, CHAT_ERR_JSON, BF, NULL, NULL},
  {"truncated object", TS, "{\"type\":\"ping\"", 0, CHAT_ERR_JSON, BF, NULL,
   NULL},
  {"trailing garbage", TS, "{\"type\":\"ping\"} x", 0, CHAT_ERR_JSON, BF, NULL,
   NULL},
  {"two objects", TS, "{\"type\":\"ping\"}{\"type\":\"ping\"}", 0,
   CHAT_ERR_JSON, BF, NULL, NULL},
  {"single quotes", TS, "{'type':'ping'}", 0, CHAT_ERR_JSON, BF, NULL, NULL},
  {"trailing comma", TS, "{\"type\":\"ping\",}", 0, CHAT_ERR_JSON, BF, NULL,
   NULL},
  {"comment", TS, "{\"type\":\"ping\"/*x*/}", 0, CHAT_ERR_JSON, BF, NULL,
   NULL},
  {"raw control char in string", TS, "{\"type\":\"pi\tng\"}", 0,
   CHAT_ERR_JSON, BF, NULL, NULL},
  {"bad escape", TS, "{\"type\":\"p\\xing\"}", 0, CHAT_ERR_JSON, BF, NULL,
   NULL},
  {"lone high surrogate", TS, "{\"type\":\"ping\",\"nonce\":\"\\ud800\"}", 0,
   CHAT_ERR_JSON, BF, NULL, NULL},
  {"lone low surrogate", TS, "{\"type\":\"ping\",\"nonce\":\"\\udc00x\"}", 0,
   CHAT_ERR_JSON, BF, NULL, NULL},
  {"NaN literal", TS, "{\"type\":\"ping\",\"nonce\":NaN}", 0, CHAT_ERR_JSON,
   BF, NULL, NULL},
  {"leading zero number", TS, "{\"type\":\"ping\",\"nonce\":012}", 0,
   CHAT_ERR_JSON, BF, NULL, NULL},
  {"invalid UTF-8 in string", TS, "{\"type\":\"ping\",\"nonce\":\"\xff\"}", 0,
   CHAT_ERR_BAD_UTF8, BF, NULL, NULL},
  {"overlong UTF-8", TS, "{\"type\":\"ping\",\"nonce\":\"\xc0\xaf\"}", 0,
   CHAT_ERR_BAD_UTF8, BF, NULL, NULL},
  {"UTF-8 surrogate", TS, "{\"type\":\"ping\",\"nonce\":\"\xed\xa0\x80\"}", 0,
   CHAT_ERR_BAD_UTF8, BF, NULL, NULL},
  {"too deep", TS,
   "{\"type\":\"ping\",\"x\":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}", 0,
   CHAT_ERR_TOO_DEEP, BF, NULL, NULL},
  {"duplicate key", TS, "{\"type\":\"ping\",\"type\":\"ping\"}", 0,
   CHAT_ERR_DUPLICATE_KEY, BF, NULL, NULL},
  {"duplicate key after unescape", TS,
   "{\"type\":\"ping\",\"nonce\":1,\"non\\u0063e\":2}", 0,
   CHAT_ERR_DUPLICATE_KEY, BF, NULL, NULL},
  {"array at top", TS, "[{\"type\":\"ping\"}]", 0, CHAT_ERR_NOT_OBJECT, BF,
   NULL, NULL},
  {"string at top", TS, "\"ping\"", 0, CHAT_ERR_NOT_OBJECT, BF, NULL, NULL},
  {"number at top", TS, "42", 0, CHAT_ERR_NOT_OBJECT, BF, NULL, NULL},
  {"no type", TS, "{\"conversation_id\":\"c\"}", 0, CHAT_ERR_NO_TYPE, BF,
   "type", NULL},
  {"type is a number", TS, "{\"type\":7}", 0, CHAT_ERR_NO_TYPE, BF, "type",
   NULL},
  {"type is null", TS, "{\"type\":null}", 0, CHAT_ERR_NO_TYPE, BF, "type",
   NULL},
  /* Types. */
  {"unknown type", TS, "{\"type\":\"sned\"}", 0, CHAT_ERR_UNKNOWN_TYPE,
   CHAT_WIRE_UNKNOWN_TYPE, "type", "sned"},
  {"server type from client", TS,
   "{\"type\":\"ack\",\"client_msg_id\":\"a\",\"message_id\":\"1\","
   "\"server_ts\":1}",
   0, CHAT_ERR_UNKNOWN_TYPE, CHAT_WIRE_UNKNOWN_TYPE, "type", "ack"},
  {"client type to client", TC, "{\"type\":\"ping\"}", 0,
   CHAT_ERR_UNKNOWN_TYPE, CHAT_WIRE_UNKNOWN_TYPE, "type", "ping"},
  {"type case matters", TS, "{\"type\":\"Send\"}", 0, CHAT_ERR_UNKNOWN_TYPE,
   CHAT_WIRE_UNKNOWN_TYPE, "type", "Send"},
  /* send: missing and mistyped fields. */
  {"send without body", TS, SEND_HEAD "\"conversation_id\":\"c\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "body", "m1"},
  {"send without conversation", TS, SEND_HEAD "\"body\":\"b\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "conversation_id", "m1"},
  {"send without client_msg_id", TS,
   "{\"type\":\"send\",\"conversation_id\":\"c\",\"body\":\"b\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "client_msg_id", "send"},
  {"send body is a number", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":5}", 0, CHAT_ERR_FIELD_TYPE,
   BF, "body", "m1"},
  {"send body is null", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":null}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "body", "m1"},
  {"send conversation_id is an array", TS,
   SEND_HEAD "\"conversation_id\":[\"c\"],\"body\":\"b\"}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "conversation_id", "m1"},
  {"send media_refs not an array", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"b\",\"media_refs\":\"m\"}",
   0, CHAT_ERR_FIELD_TYPE, BF, "media_refs", "m1"},
  {"send reply_to as a number", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"b\",\"reply_to\":12}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "reply_to", "m1"},
  /* Ids. */
  {"conversation_id with a space", TS,
   SEND_HEAD "\"conversation_id\":\"a b\",\"body\":\"b\"}", 0,
   CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "conversation_id", "m1"},
  {"empty conversation_id", TS,
   SEND_HEAD "\"conversation_id\":\"\",\"body\":\"b\"}", 0, CHAT_ERR_BAD_ID,
   CHAT_WIRE_BAD_ID, "conversation_id", "m1"},
  {"65-byte conversation_id", TS,
   SEND_HEAD "\"conversation_id\":\"0123456789012345678901234567890123456789"
             "012345678901234567890123x\",\"body\":\"b\"}",
   0, CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "conversation_id", "m1"},
  {"non-ASCII id", TS,
   SEND_HEAD "\"conversation_id\":\"caf\xc3\xa9\",\"body\":\"b\"}", 0,
   CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "conversation_id", "m1"},
  {"bad client_msg_id is not the ref", TS,
   "{\"type\":\"send\",\"client_msg_id\":\"no/slash\",\"conversation_id\":"
   "\"c\",\"body\":\"b\"}",
   0, CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "client_msg_id", "send"},
  {"message id with leading zero", TS,
   "{\"type\":\"read\",\"conversation_id\":\"c\",\"up_to_message_id\":\"01\"}",
   0, CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "up_to_message_id", "read"},
  {"negative message id", TS,
   "{\"type\":\"read\",\"conversation_id\":\"c\",\"up_to_message_id\":\"-1\"}",
   0, CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "up_to_message_id", "read"},
  {"message id over int64", TS,
   "{\"type\":\"delivered\",\"conversation_id\":\"c\",\"up_to_message_id\":"
   "\"9223372036854775808\"}",
   0, CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "up_to_message_id",
   "delivered"},
  {"message id with space", TS,
   "{\"type\":\"read\",\"conversation_id\":\"c\",\"up_to_message_id\":\" 1\"}",
   0, CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "up_to_message_id", "read"},
  {"empty message id", TS,
   "{\"type\":\"read\",\"conversation_id\":\"c\",\"up_to_message_id\":\"\"}",
   0, CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "up_to_message_id", "read"},
  {"message id as number", TS,
   "{\"type\":\"read\",\"conversation_id\":\"c\",\"up_to_message_id\":5}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "up_to_message_id", "read"},
  /* Values. */
  {"client sends system body_type", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"b\",\"body_type\":"
             "\"system\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "body_type", "m1"},
  {"unknown body_type", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"b\",\"body_type\":\"gif\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "body_type", "m1"},
  {"media without refs", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"\",\"body_type\":"
             "\"media\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "media_refs", "m1"},
  {"typing is_typing as string", TS,
   "{\"type\":\"typing\",\"conversation_id\":\"c\",\"is_typing\":\"yes\"}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "is_typing", "typing"},
  {"typing without is_typing", TS,
   "{\"type\":\"typing\",\"conversation_id\":\"c\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "is_typing", "typing"},
  /* resume and presence_subscribe. */
  {"resume last_seen an array", TS,
   "{\"type\":\"resume\",\"last_seen\":[\"c\"]}", 0, CHAT_ERR_FIELD_TYPE, BF,
   "last_seen", "resume"},
  {"resume without last_seen", TS, "{\"type\":\"resume\",\"since\":\"1\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "last_seen", "resume"},
  {"resume bad conversation key", TS,
   "{\"type\":\"resume\",\"last_seen\":{\"a b\":\"1\"}}", 0, CHAT_ERR_BAD_ID,
   CHAT_WIRE_BAD_ID, "last_seen", "resume"},
  {"resume value a number", TS,
   "{\"type\":\"resume\",\"last_seen\":{\"c\":1}}", 0, CHAT_ERR_FIELD_TYPE,
   BF, "last_seen", "resume"},
  {"resume duplicate conversation", TS,
   "{\"type\":\"resume\",\"last_seen\":{\"c\":\"1\",\"c\":\"2\"}}", 0,
   CHAT_ERR_DUPLICATE_KEY, BF, NULL, NULL /* no tree, so no type */},
  {"resume bad since", TS,
   "{\"type\":\"resume\",\"last_seen\":{},\"since\":\"x\"}", 0,
   CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "since", "resume"},
  {"presence_subscribe not an array", TS,
   "{\"type\":\"presence_subscribe\",\"user_ids\":\"bob\"}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "user_ids", "presence_subscribe"},
  {"presence_subscribe element a number", TS,
   "{\"type\":\"presence_subscribe\",\"user_ids\":[\"bob\",3]}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "user_ids", "presence_subscribe"},
  {"ping nonce an object", TS, "{\"type\":\"ping\",\"nonce\":{}}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "nonce", "ping"},
  {"ping nonce a boolean", TS, "{\"type\":\"ping\",\"nonce\":true}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "nonce", "ping"},
  /* Server frames read by the client. */
  {"hello without limits", TC,
   "{\"type\":\"hello\",\"user_id\":\"u\",\"device_id\":\"d\","
   "\"session_id\":\"s\",\"server_ts\":1,\"heartbeat_ms\":1}",
   0, CHAT_ERR_MISSING_FIELD, BF, "limits", "hello"},
  {"hello negative heartbeat", TC,
   "{\"type\":\"hello\",\"user_id\":\"u\",\"device_id\":\"d\","
   "\"session_id\":\"s\",\"server_ts\":1,\"heartbeat_ms\":-5,\"limits\":{}}",
   0, CHAT_ERR_BAD_NUMBER, BF, "heartbeat_ms", "hello"},
  {"ack server_ts fractional", TC,
   "{\"type\":\"ack\",\"client_msg_id\":\"a\",\"message_id\":\"1\","
   "\"server_ts\":1.5}",
   0, CHAT_ERR_BAD_NUMBER, BF, "server_ts", "ack"},
  {"ack server_ts with exponent", TC,
   "{\"type\":\"ack\",\"client_msg_id\":\"a\",\"message_id\":\"1\","
   "\"server_ts\":1e3}",
   0, CHAT_ERR_BAD_NUMBER, BF, "server_ts", "ack"},
  {"ack server_ts over int64", TC,
   "{\"type\":\"ack\",\"client_msg_id\":\"a\",\"message_id\":\"1\","
   "\"server_ts\":9223372036854775808}",
   0, CHAT_ERR_BAD_NUMBER, BF, "server_ts", "ack"},
  {"receipt bad state", TC,
   "{\"type\":\"receipt\",\"conversation_id\":\"c\",\"message_id\":\"1\","
   "\"state\":\"seen\",\"member_id\":\"m\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "state", "receipt"},
  {"receipt counts incomplete", TC,
   "{\"type\":\"receipt\",\"conversation_id\":\"c\",\"message_id\":\"1\","
   "\"state\":\"read\",\"member_id\":\"m\",\"counts\":{\"read\":1}}",
   0, CHAT_ERR_MISSING_FIELD, BF, "delivered", "receipt"},
  {"presence bad state", TC,
   "{\"type\":\"presence\",\"user_id\":\"u\",\"state\":\"away\"}", 0,
   CHAT_ERR_BAD_VALUE, BF, "state", "presence"},
  {"history message of another conversation", TC,
   "{\"type\":\"history\",\"conversation_id\":\"c\",\"complete\":true,"
   "\"messages\":[{\"message_id\":\"1\",\"conversation_id\":\"d\","
   "\"sender_id\":\"s\",\"body\":\"b\",\"server_ts\":1}]}",
   0, CHAT_ERR_BAD_VALUE, BF, "messages", "history"},
  {"history element not an object", TC,
   "{\"type\":\"history\",\"conversation_id\":\"c\",\"complete\":true,"
   "\"messages\":[1]}",
   0, CHAT_ERR_FIELD_TYPE, BF, "messages", "history"},
  {"conversation bad kind", TC,
   "{\"type\":\"conversation\",\"conversation\":{\"conversation_id\":\"c\","
   "\"type\":\"channel\",\"members\":[]}}",
   0, CHAT_ERR_BAD_VALUE, BF, "type", "conversation"},
  {"error without message", TC, "{\"type\":\"error\",\"code\":\"internal\"}",
   0, CHAT_ERR_MISSING_FIELD, BF, "message", "error"},
  {"error with empty code", TC,
   "{\"type\":\"error\",\"code\":\"\",\"message\":\"x\"}", 0,
   CHAT_ERR_BAD_VALUE, BF, "code", "error"},
  {"error code with NUL", TC,
   "{\"type\":\"error\",\"code\":\"a\\u0000b\",\"message\":\"x\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "code", "error"},
  {"resume_failed with empty reason", TC,
   "{\"type\":\"resume_failed\",\"conversation_id\":\"conv_abc\","
   "\"reason\":\"\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "reason", "resume_failed"},
  {"resumed negative count", TC,
   "{\"type\":\"resumed\",\"conversations\":-1,\"messages\":0}", 0,
   CHAT_ERR_BAD_NUMBER, BF, "conversations", "resumed"},
  {"resumed count over 32 bits", TC,
   "{\"type\":\"resumed\",\"conversations\":4294967296,\"messages\":0}", 0,
   CHAT_ERR_BAD_NUMBER, BF, "conversations", "resumed"},
  /* Section 8: edit and delete, strict like send; error.ref is their
   * client_msg_id when it is valid. */
  {"edit without target_id", TS, EDIT_HEAD "\"body\":\"b\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "target_id", "e1"},
  {"edit without body", TS, EDIT_HEAD "\"target_id\":\"5\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "body", "e1"},
  {"edit without conversation", TS,
   "{\"type\":\"edit\",\"client_msg_id\":\"e1\",\"target_id\":\"5\","
   "\"body\":\"b\"}",
   0, CHAT_ERR_MISSING_FIELD, BF, "conversation_id", "e1"},
  {"edit without client_msg_id", TS,
   "{\"type\":\"edit\",\"conversation_id\":\"c\",\"target_id\":\"5\","
   "\"body\":\"b\"}",
   0, CHAT_ERR_MISSING_FIELD, BF, "client_msg_id", "edit"},
  {"edit bad client_msg_id is not the ref", TS,
   "{\"type\":\"edit\",\"client_msg_id\":\"a b\",\"conversation_id\":\"c\","
   "\"target_id\":\"5\",\"body\":\"b\"}",
   0, CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "client_msg_id", "edit"},
  {"edit target_id as number", TS,
   EDIT_HEAD "\"target_id\":5,\"body\":\"b\"}", 0, CHAT_ERR_FIELD_TYPE, BF,
   "target_id", "e1"},
  {"edit target_id not canonical", TS,
   EDIT_HEAD "\"target_id\":\"05\",\"body\":\"b\"}", 0,
   CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "target_id", "e1"},
  {"edit target_id null", TS,
   EDIT_HEAD "\"target_id\":null,\"body\":\"b\"}", 0, CHAT_ERR_FIELD_TYPE, BF,
   "target_id", "e1"},
  {"edit body is a number", TS, EDIT_HEAD "\"target_id\":\"5\",\"body\":1}",
   0, CHAT_ERR_FIELD_TYPE, BF, "body", "e1"},
  {"edit bad conversation_id", TS,
   "{\"type\":\"edit\",\"client_msg_id\":\"e1\",\"conversation_id\":\"c/d\","
   "\"target_id\":\"5\",\"body\":\"b\"}",
   0, CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "conversation_id", "e1"},
  {"delete without target_id", TS, DELETE_HEAD "\"conversation_id\":\"c\"}",
   0, CHAT_ERR_MISSING_FIELD, BF, "target_id", "d1"},
  {"delete without client_msg_id", TS,
   "{\"type\":\"delete\",\"conversation_id\":\"c\",\"target_id\":\"5\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "client_msg_id", "delete"},
  {"delete target_id over int64", TS,
   DELETE_HEAD "\"conversation_id\":\"c\","
               "\"target_id\":\"9223372036854775808\"}",
   0, CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "target_id", "d1"},
  {"delete conversation_id empty", TS,
   DELETE_HEAD "\"conversation_id\":\"\",\"target_id\":\"5\"}", 0,
   CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "conversation_id", "d1"},
  {"delete client_msg_id a number", TS,
   "{\"type\":\"delete\",\"client_msg_id\":7,\"conversation_id\":\"c\","
   "\"target_id\":\"5\"}",
   0, CHAT_ERR_FIELD_TYPE, BF, "client_msg_id", "delete"},
  {"client sends edit body_type", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"b\",\"body_type\":"
             "\"edit\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "body_type", "m1"},
  {"client sends delete body_type", TS,
   SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"\",\"body_type\":"
             "\"delete\"}",
   0, CHAT_ERR_BAD_VALUE, BF, "body_type", "m1"},
  {"goaway from a client", TS,
   "{\"type\":\"goaway\",\"reason\":\"drain\",\"retry_after_ms\":1}", 0,
   CHAT_ERR_UNKNOWN_TYPE, CHAT_WIRE_UNKNOWN_TYPE, "type", "goaway"},
  {"edit sent to a client", TC,
   "{\"type\":\"edit\",\"conversation_id\":\"c\",\"target_id\":\"5\","
   "\"body\":\"b\"}",
   0, CHAT_ERR_UNKNOWN_TYPE, CHAT_WIRE_UNKNOWN_TYPE, "type", "edit"},
  /* Section 8: the message object. */
  {"edit message without target_id", TC,
   MSG_HEAD "\"body\":\"b\",\"body_type\":\"edit\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "target_id", "message"},
  {"delete message without target_id", TC,
   MSG_HEAD "\"body\":\"\",\"body_type\":\"delete\"}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "target_id", "message"},
  {"target_id on a text message", TC,
   MSG_HEAD "\"body\":\"b\",\"target_id\":\"1\"}", 0, CHAT_ERR_BAD_VALUE, BF,
   "target_id", "message"},
  {"target_id on a system message", TC,
   MSG_HEAD "\"body\":\"b\",\"body_type\":\"system\",\"target_id\":\"1\"}", 0,
   CHAT_ERR_BAD_VALUE, BF, "target_id", "message"},
  {"target_id not canonical", TC,
   MSG_HEAD "\"body\":\"b\",\"body_type\":\"edit\",\"target_id\":\"+1\"}", 0,
   CHAT_ERR_BAD_MESSAGE_ID, CHAT_WIRE_BAD_ID, "target_id", "message"},
  {"delete message with a body", TC,
   MSG_HEAD "\"body\":\"x\",\"body_type\":\"delete\",\"target_id\":\"1\"}", 0,
   CHAT_ERR_BAD_VALUE, BF, "body", "message"},
  {"deleted message with a body", TC,
   MSG_HEAD "\"body\":\"x\",\"deleted\":true}", 0, CHAT_ERR_BAD_VALUE, BF,
   "body", "message"},
  {"deleted as a string", TC, MSG_HEAD "\"body\":\"\",\"deleted\":\"yes\"}",
   0, CHAT_ERR_FIELD_TYPE, BF, "deleted", "message"},
  {"edited_ts fractional", TC, MSG_HEAD "\"body\":\"b\",\"edited_ts\":1.5}",
   0, CHAT_ERR_BAD_NUMBER, BF, "edited_ts", "message"},
  {"edited_ts a string", TC, MSG_HEAD "\"body\":\"b\",\"edited_ts\":\"1\"}",
   0, CHAT_ERR_FIELD_TYPE, BF, "edited_ts", "message"},
  {"unknown sender_kind", TC,
   MSG_HEAD "\"body\":\"b\",\"sender_kind\":\"robot\"}", 0,
   CHAT_ERR_BAD_VALUE, BF, "sender_kind", "message"},
  {"sender_kind a number", TC, MSG_HEAD "\"body\":\"b\",\"sender_kind\":1}",
   0, CHAT_ERR_FIELD_TYPE, BF, "sender_kind", "message"},
  {"history edit entry without target", TC,
   "{\"type\":\"history\",\"conversation_id\":\"c\",\"complete\":true,"
   "\"messages\":[{\"message_id\":\"2\",\"conversation_id\":\"c\","
   "\"sender_id\":\"s\",\"body\":\"b\",\"server_ts\":1,"
   "\"body_type\":\"edit\"}]}",
   0, CHAT_ERR_MISSING_FIELD, BF, "target_id", "history"},
  {"last_message deleted with a body", TC,
   "{\"type\":\"conversation\",\"conversation\":{\"conversation_id\":\"c\","
   "\"type\":\"group\",\"members\":[],\"last_message\":{\"message_id\":\"2\","
   "\"conversation_id\":\"c\",\"sender_id\":\"s\",\"body\":\"b\","
   "\"server_ts\":1,\"deleted\":true}}}",
   0, CHAT_ERR_BAD_VALUE, BF, "body", "conversation"},
  /* Section 8: admins, hello.limits.resume_batch_hint, goaway. */
  {"admins not an array", TC,
   "{\"type\":\"conversation\",\"conversation\":{\"conversation_id\":\"c\","
   "\"type\":\"group\",\"members\":[\"a\"],\"admins\":\"a\"}}",
   0, CHAT_ERR_FIELD_TYPE, BF, "admins", "conversation"},
  {"admins with a bad id", TC,
   "{\"type\":\"conversation\",\"conversation\":{\"conversation_id\":\"c\","
   "\"type\":\"group\",\"members\":[\"a\"],\"admins\":[\"a b\"]}}",
   0, CHAT_ERR_BAD_ID, CHAT_WIRE_BAD_ID, "admins", "conversation"},
  {"admins element a number", TC,
   "{\"type\":\"conversation\",\"conversation\":{\"conversation_id\":\"c\","
   "\"type\":\"group\",\"members\":[\"a\"],\"admins\":[1]}}",
   0, CHAT_ERR_FIELD_TYPE, BF, "admins", "conversation"},
  {"resume_batch_hint zero", TC, HELLO_HEAD "\"resume_batch_hint\":0}}", 0,
   CHAT_ERR_BAD_NUMBER, BF, "resume_batch_hint", "hello"},
  {"resume_batch_hint negative", TC, HELLO_HEAD "\"resume_batch_hint\":-1}}",
   0, CHAT_ERR_BAD_NUMBER, BF, "resume_batch_hint", "hello"},
  {"resume_batch_hint over 32 bits", TC,
   HELLO_HEAD "\"resume_batch_hint\":4294967296}}", 0, CHAT_ERR_BAD_NUMBER,
   BF, "resume_batch_hint", "hello"},
  {"resume_batch_hint a string", TC,
   HELLO_HEAD "\"resume_batch_hint\":\"50\"}}", 0, CHAT_ERR_FIELD_TYPE, BF,
   "resume_batch_hint", "hello"},
  {"goaway without retry_after_ms", TC,
   "{\"type\":\"goaway\",\"reason\":\"drain\"}", 0, CHAT_ERR_MISSING_FIELD,
   BF, "retry_after_ms", "goaway"},
  {"goaway without reason", TC,
   "{\"type\":\"goaway\",\"retry_after_ms\":1000}", 0,
   CHAT_ERR_MISSING_FIELD, BF, "reason", "goaway"},
  {"goaway empty reason", TC,
   "{\"type\":\"goaway\",\"reason\":\"\",\"retry_after_ms\":1000}", 0,
   CHAT_ERR_BAD_VALUE, BF, "reason", "goaway"},
  {"goaway reason with NUL", TC,
   "{\"type\":\"goaway\",\"reason\":\"dr\\u0000ain\",\"retry_after_ms\":1}",
   0, CHAT_ERR_BAD_VALUE, BF, "reason", "goaway"},
  {"goaway reason over 64 bytes", TC,
   "{\"type\":\"goaway\",\"reason\":\"0123456789012345678901234567890123456"
   "789012345678901234567890123456789\",\"retry_after_ms\":1}",
   0, CHAT_ERR_TOO_LARGE, CHAT_WIRE_TOO_LARGE, "reason", "goaway"},
  {"goaway reason a number", TC,
   "{\"type\":\"goaway\",\"reason\":1,\"retry_after_ms\":1}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "reason", "goaway"},
  {"goaway negative retry", TC,
   "{\"type\":\"goaway\",\"reason\":\"drain\",\"retry_after_ms\":-1}", 0,
   CHAT_ERR_BAD_NUMBER, BF, "retry_after_ms", "goaway"},
  {"goaway retry over int64", TC,
   "{\"type\":\"goaway\",\"reason\":\"drain\","
   "\"retry_after_ms\":9223372036854775808}",
   0, CHAT_ERR_BAD_NUMBER, BF, "retry_after_ms", "goaway"},
  {"goaway retry a string", TC,
   "{\"type\":\"goaway\",\"reason\":\"drain\",\"retry_after_ms\":\"1\"}", 0,
   CHAT_ERR_FIELD_TYPE, BF, "retry_after_ms", "goaway"},
  {"goaway retry fractional", TC,
   "{\"type\":\"goaway\",\"reason\":\"drain\",\"retry_after_ms\":1.5}", 0,
   CHAT_ERR_BAD_NUMBER, BF, "retry_after_ms", "goaway"},
};

static void check_case(const bad_case *c) {
  chat_codec *codec;
  cr_assert_eq(chat_codec_new(&codec, NULL, NULL, NULL), CHAT_OK);
  size_t len = c->len ? c->len : strlen(c->json);
  const chat_frame *f = (const chat_frame *)1;
  chat_decode_error e;
  chat_err rc = chat_codec_decode(codec, c->dir, c->json, len, &f, &e);
  cr_assert_eq(rc, c->err, "[%s] got %s, want %s (%s)", c->name,
               chat_err_name(rc), chat_err_name(c->err),
               e.message ? e.message : "-");
  cr_assert_null(f, "[%s] frame must be NULL on failure", c->name);
  cr_assert_eq(e.err, c->err, "[%s]", c->name);
  cr_assert_eq(e.wire, c->wire, "[%s] wire %s", c->name,
               chat_wire_error_str(e.wire));
  cr_assert_eq(chat_wire_error_from_err(rc), c->wire, "[%s]", c->name);
  cr_assert(e.message && e.message[0], "[%s] needs a message", c->name);
  cr_assert_lt(strlen(e.message), 192);
  if (c->field)
    cr_assert(e.field && strcmp(e.field, c->field) == 0,
              "[%s] field %s, want %s", c->name, e.field ? e.field : "NULL",
              c->field);
  if (c->ref)
    cr_assert(e.ref && strcmp(e.ref, c->ref) == 0, "[%s] ref %s, want %s",
              c->name, e.ref ? e.ref : "NULL", c->ref);
  else
    cr_assert_null(e.ref, "[%s] ref %s, want none", c->name, e.ref);
  chat_codec_free(codec);
}

Test(frame_errors, table_has_at_least_40_cases) {
  cr_assert_geq(sizeof cases / sizeof cases[0], 40);
}

Test(frame_errors, every_case) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    check_case(&cases[i]);
}

/* Each refusal leaves the codec usable: the next good frame decodes. */
Test(frame_errors, codec_recovers_after_each_refusal) {
  chat_codec *codec;
  cr_assert_eq(chat_codec_new(&codec, NULL, NULL, NULL), CHAT_OK);
  const char *good = "{\"type\":\"ping\",\"nonce\":\"n\"}";
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const chat_frame *f;
    const bad_case *c = &cases[i];
    size_t len = c->len ? c->len : strlen(c->json);
    cr_assert_neq(chat_codec_decode(codec, c->dir, c->json, len, &f, NULL),
                  CHAT_OK);
    cr_assert_eq(chat_codec_decode(codec, TS, good, strlen(good), &f, NULL),
                 CHAT_OK, "after [%s]", c->name);
    cr_assert_str_eq(f->ping->nonce_json.ptr, "\"n\"");
  }
  chat_codec_free(codec);
}

Test(frame_errors, size_limits) {
  chat_codec *codec;
  chat_codec_settings s = {.version = CHAT_CODEC_SETTINGS_V1,
                           .max_frame_bytes = 4096, .max_body_bytes = 16,
                           .max_presence_ids = 3, .max_resume_entries = 2,
                           .max_media_refs = 1};
  cr_assert_eq(chat_codec_new(&codec, &s, NULL, NULL), CHAT_OK);
  const chat_frame *f;
  chat_decode_error e;
  char big[5000];
  memset(big, ' ', sizeof big);
  memcpy(big, "{\"type\":\"ping\"}", 15);
  cr_assert_eq(chat_codec_decode(codec, TS, big, 4096, &f, &e), CHAT_OK);
  cr_assert_eq(chat_codec_decode(codec, TS, big, 4097, &f, &e),
               CHAT_ERR_FRAME_TOO_LARGE);
  cr_assert_eq(e.wire, CHAT_WIRE_TOO_LARGE);
  /* Frames to the client have their own, larger limit (1 MiB default). */
  cr_assert_neq(chat_codec_decode(codec, TC, big, 4097, &f, &e),
                CHAT_ERR_FRAME_TOO_LARGE);

  const char *body16 = SEND_HEAD "\"conversation_id\":\"c\","
                                 "\"body\":\"0123456789abcdef\"}";
  cr_assert_eq(chat_codec_decode(codec, TS, body16, strlen(body16), &f, &e),
               CHAT_OK);
  /* The body limit counts decoded bytes: 16 escaped characters fit. */
  const char *esc16 = SEND_HEAD "\"conversation_id\":\"c\",\"body\":"
                                "\"\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041"
                                "\\u0041\\u0041\\u0041\\u0041\\u0041\\u0041"
                                "\\u0041\\u0041\\u0041\\u0041\"}";
  cr_assert_eq(chat_codec_decode(codec, TS, esc16, strlen(esc16), &f, &e),
               CHAT_OK);
  const char *body17 = SEND_HEAD "\"conversation_id\":\"c\","
                                 "\"body\":\"0123456789abcdefg\"}";
  cr_assert_eq(chat_codec_decode(codec, TS, body17, strlen(body17), &f, &e),
               CHAT_ERR_TOO_LARGE);
  cr_assert_eq(e.wire, CHAT_WIRE_TOO_LARGE);
  cr_assert_str_eq(e.field, "body");
  cr_assert_str_eq(e.ref, "m1");

  const char *ids4 = "{\"type\":\"presence_subscribe\",\"user_ids\":"
                     "[\"a\",\"b\",\"c\",\"d\"]}";
  cr_assert_eq(chat_codec_decode(codec, TS, ids4, strlen(ids4), &f, &e),
               CHAT_ERR_TOO_MANY);
  cr_assert_eq(e.wire, CHAT_WIRE_TOO_LARGE);
  const char *res3 = "{\"type\":\"resume\",\"last_seen\":{\"a\":\"1\","
                     "\"b\":\"1\",\"c\":\"1\"}}";
  cr_assert_eq(chat_codec_decode(codec, TS, res3, strlen(res3), &f, &e),
               CHAT_ERR_TOO_MANY);
  const char *refs2 = SEND_HEAD "\"conversation_id\":\"c\",\"body\":\"b\","
                                "\"media_refs\":[\"x\",\"y\"]}";
  cr_assert_eq(chat_codec_decode(codec, TS, refs2, strlen(refs2), &f, &e),
               CHAT_ERR_TOO_MANY);
  chat_codec_free(codec);
}

/* Section 8: an edit's body has the send body's limit, admins the members'
 * limit. */
Test(frame_errors, section8_size_limits) {
  chat_codec *codec;
  chat_codec_settings s = {.version = CHAT_CODEC_SETTINGS_V1,
                           .max_body_bytes = 4, .max_members = 2};
  cr_assert_eq(chat_codec_new(&codec, &s, NULL, NULL), CHAT_OK);
  const chat_frame *f;
  chat_decode_error e;
  const char *ok = EDIT_HEAD "\"target_id\":\"5\",\"body\":\"abcd\"}";
  cr_assert_eq(chat_codec_decode(codec, TS, ok, strlen(ok), &f, &e), CHAT_OK);
  const char *big = EDIT_HEAD "\"target_id\":\"5\",\"body\":\"abcde\"}";
  cr_assert_eq(chat_codec_decode(codec, TS, big, strlen(big), &f, &e),
               CHAT_ERR_TOO_LARGE);
  cr_assert_eq(e.wire, CHAT_WIRE_TOO_LARGE);
  cr_assert_str_eq(e.field, "body");
  cr_assert_str_eq(e.ref, "e1");

  const char *two = "{\"type\":\"conversation\",\"conversation\":{"
                    "\"conversation_id\":\"c\",\"type\":\"group\","
                    "\"members\":[\"a\",\"b\"],\"admins\":[\"a\",\"b\"]}}";
  cr_assert_eq(chat_codec_decode(codec, TC, two, strlen(two), &f, &e),
               CHAT_OK);
  cr_assert_eq(f->conversation->n_admins, 2);
  const char *three = "{\"type\":\"conversation\",\"conversation\":{"
                      "\"conversation_id\":\"c\",\"type\":\"group\","
                      "\"members\":[\"a\"],\"admins\":[\"a\",\"b\",\"c\"]}}";
  cr_assert_eq(chat_codec_decode(codec, TC, three, strlen(three), &f, &e),
               CHAT_ERR_TOO_MANY);
  cr_assert_eq(e.wire, CHAT_WIRE_TOO_LARGE);
  cr_assert_str_eq(e.field, "admins");
  chat_codec_free(codec);
}

Test(frame_errors, default_limits_match_the_contract) {
  chat_codec *codec;
  cr_assert_eq(chat_codec_new(&codec, NULL, NULL, NULL), CHAT_OK);
  const chat_frame *f;
  /* 100 presence ids are fine, 101 are too many (PROTOCOL.md section 2). */
  char buf[2048];
  for (int n = 100; n <= 101; n++) {
    int k = snprintf(buf, sizeof buf,
                     "{\"type\":\"presence_subscribe\",\"user_ids\":[");
    for (int i = 0; i < n; i++)
      k += snprintf(buf + k, sizeof buf - (size_t)k, "%s\"u%d\"",
                    i ? "," : "", i);
    k += snprintf(buf + k, sizeof buf - (size_t)k, "]}");
    cr_assert_eq(chat_codec_decode(codec, TS, buf, (size_t)k, &f, NULL),
                 n == 100 ? CHAT_OK : CHAT_ERR_TOO_MANY);
  }
  /* A 64 KiB body is fine, one byte more is too large. */
  size_t cap = 65536 + 200;
  char *big = malloc(cap);
  for (int extra = 0; extra <= 1; extra++) {
    int k = snprintf(big, cap, SEND_HEAD "\"conversation_id\":\"c\","
                               "\"body\":\"");
    memset(big + k, 'a', 65536 + (size_t)extra);
    k += 65536 + extra;
    k += snprintf(big + k, cap - (size_t)k, "\"}");
    cr_assert_eq(chat_codec_decode(codec, TS, big, (size_t)k, &f, NULL),
                 extra ? CHAT_ERR_TOO_LARGE : CHAT_OK);
  }
  free(big);
  chat_codec_free(codec);
}

Test(frame_errors, invalid_arguments) {
  chat_codec *codec;
  cr_assert_eq(chat_codec_new(&codec, NULL, NULL, NULL), CHAT_OK);
  const chat_frame *f;
  cr_assert_eq(chat_codec_decode(NULL, TS, "{}", 2, &f, NULL),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_codec_decode(codec, TS, NULL, 2, &f, NULL),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_codec_decode(codec, TS, "{}", 2, NULL, NULL),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_codec_decode(codec, (chat_direction)7, "{}", 2, &f, NULL),
               CHAT_ERR_INVAL);
  /* NULL with length 0 is simply empty input. */
  cr_assert_eq(chat_codec_decode(codec, TS, NULL, 0, &f, NULL),
               CHAT_ERR_JSON);
  chat_codec_free(codec);
}

Test(frame_errors, long_unknown_type_ref_is_cut_on_a_character) {
  chat_codec *codec;
  cr_assert_eq(chat_codec_new(&codec, NULL, NULL, NULL), CHAT_OK);
  char json[256];
  char type[128];
  /* 63 ASCII bytes then a 2-byte character straddling byte 64. */
  memset(type, 'x', 63);
  memcpy(type + 63, "\xc3\xa9" "tail", 6);
  type[69] = 0;
  int k = snprintf(json, sizeof json, "{\"type\":\"%s\"}", type);
  const chat_frame *f;
  chat_decode_error e;
  cr_assert_eq(chat_codec_decode(codec, TS, json, (size_t)k, &f, &e),
               CHAT_ERR_UNKNOWN_TYPE);
  cr_assert_eq(strlen(e.ref), 63);
  chat_codec_free(codec);
}

Test(frame_errors, wire_error_names) {
  cr_assert_str_eq(chat_wire_error_str(CHAT_WIRE_BAD_FRAME), "bad_frame");
  cr_assert_str_eq(chat_wire_error_str(CHAT_WIRE_NO_SUCH_CONVERSATION),
                   "no_such_conversation");
  cr_assert_str_eq(chat_wire_error_str(CHAT_WIRE_INTERNAL), "internal");
  cr_assert_str_eq(chat_wire_error_str(CHAT_WIRE_FORBIDDEN), "forbidden");
  cr_assert_str_eq(chat_wire_error_str(CHAT_WIRE_NOT_FOUND), "not_found");
  cr_assert_null(chat_wire_error_str((chat_wire_error)11));
  cr_assert_null(chat_wire_error_str(CHAT_WIRE_OTHER));
  cr_assert_null(chat_wire_error_str((chat_wire_error)42));
  cr_assert_eq(chat_wire_error_from_err(CHAT_ERR_NOMEM), CHAT_WIRE_INTERNAL);
  cr_assert_eq(chat_wire_error_from_err(CHAT_OK), CHAT_WIRE_INTERNAL);
}
