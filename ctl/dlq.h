/*
 * dlq: the dead-letter stream, read and replayed.
 *
 * Each command opens its own connection (the service's servers, auth and
 * TLS: common/natsconn.h) and reads the stream through an ordered
 * consumer of its own: ephemeral, flow-controlled, gone when we go, so
 * the service's durable consumer never sees it.  `show` fetches one
 * message by sequence and creates no consumer at all.
 */
#ifndef CTL_DLQ_H
#define CTL_DLQ_H

#include "ctl.h"

extern const struct ctl_cmd dlq_list_cmd;
extern const struct ctl_cmd dlq_show_cmd;
extern const struct ctl_cmd dlq_replay_cmd;

#endif
