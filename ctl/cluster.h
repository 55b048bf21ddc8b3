/*
 * alarmctl partitions: the cluster's leases as the KV bucket holds them
 * (supervisor/lease.h says what its keys and values are): which instance
 * holds each partition and the router, since when, with which epoch, and
 * the live members.  Read only, through a watcher of its own.
 */
#ifndef CTL_CLUSTER_H
#define CTL_CLUSTER_H

#include "ctl.h"

extern const struct ctl_cmd cluster_partitions_cmd;

#endif
