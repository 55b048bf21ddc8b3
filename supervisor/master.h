/*
 * master: the supervisor's main loop.  Takes batches from intake, routes
 * them to the worker pool, acks what workers report durable, and acts on
 * signals: shutdown first, then reload, then child exits (SIGCHLD).
 */
#ifndef MASTER_H
#define MASTER_H

/* Run the service with the configuration file at path; returns the exit status. */
int master_main(const char *conf_path);

#endif
