/*
 * version: the release this tree builds, shown by --version, logged at
 * start, and told to NATS (connection name, service discovery).  Bumped
 * with each CHANGELOG.md entry.
 */
#ifndef VERSION_H
#define VERSION_H

#define ALARM_DIGEST_VERSION "1.0.0"

#endif
