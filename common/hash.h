/* hash: 32-bit FNV-1a, the routing hash of the service. */
#ifndef HASH_H
#define HASH_H

#include <stddef.h>
#include <stdint.h>

uint32_t hash32(const void *data, size_t len);

#endif
