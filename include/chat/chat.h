/* libchat umbrella header. */
#ifndef CHAT_CHAT_H
#define CHAT_CHAT_H

#include "version.h"
#include "common.h"
#include "frame.h"
#include "snowflake.h"
#include "modules.h"
#include "memory.h"
#include "server.h"
#include "backoff.h"
#include "client.h"

#endif /* CHAT_CHAT_H */
