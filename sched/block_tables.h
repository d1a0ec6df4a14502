/* Per-sequence block tables kept on both ends of a pipeline, so that a
 * FORWARD carries only the block ids a sequence gained since its previous
 * step (the wire records' "block-table delta"), not its whole table.
 *
 * The head keeps the tables as it last sent them (a mirror); every stage
 * keeps the tables as it received them. Both apply the same three
 * operations in the order of the FORWARD records, so they hold the same
 * tables:
 *
 *   reset   a sequence's table is replaced (its first step, or a table that
 *           is not an extension of what was sent: after a preemption, a
 *           failed step, an eviction);
 *   append  ids added to the end of a known sequence's table;
 *   drop    the sequence released its blocks (finished, aborted or
 *           preempted); it may come back later with a reset.
 *
 * The head decides reset or append by comparing its mirror with the table
 * the batcher chose (st_bt_delta_start), so an unexpected table is always
 * sent whole and never patched wrongly. A stage refuses an append to a
 * sequence it does not hold and a table over its limits; it never trusts a
 * count it has not checked.
 *
 * Keys are the 64-bit sequence ids of the wire records. An open-addressing
 * table with backward-shift deletion: no tombstones, O(1) expected per
 * operation at a load factor <= 1/2. */
#ifndef ST_SCHED_BLOCK_TABLES_H
#define ST_SCHED_BLOCK_TABLES_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_bt_entry {
    uint64_t key;
    int32_t *ids; /* (cap,) the table */
    int n, cap;
    int used;
} st_bt_entry;

typedef struct st_bt_map {
    st_bt_entry *e; /* (n_slots,), n_slots a power of two */
    size_t n_slots, n_used;
    int max_seqs;   /* sequences held at most (a reset beyond fails) */
    int max_blocks; /* ids per table at most */
} st_bt_map;

/* max_seqs, max_blocks >= 1. */
void st_bt_init(st_bt_map *m, int max_seqs, int max_blocks);
void st_bt_free(st_bt_map *m);
/* Forget every table (a new setup). */
void st_bt_clear(st_bt_map *m);

/* The table of key, or NULL. *n gets its length. Valid until the next
 * change of the map. */
const int32_t *st_bt_get(const st_bt_map *m, uint64_t key, int *n);

/* Replace key's table with ids[0..n) (n >= 0). ST_ERANGE when n exceeds
 * max_blocks or a new key would exceed max_seqs (the map is unchanged). */
int st_bt_reset(st_bt_map *m, uint64_t key, const int32_t *ids, int n);
/* Append ids[0..n) to key's table. ST_ENOENT when key is not held,
 * ST_ERANGE when the table would exceed max_blocks (unchanged then). */
int st_bt_append(st_bt_map *m, uint64_t key, const int32_t *ids, int n);
/* Forget key (no-op when not held). */
void st_bt_drop(st_bt_map *m, uint64_t key);

/* Head side: how many leading ids of table[0..n) the stages already hold
 * for key, i.e. the mirror's length when the mirror is a prefix of table,
 * else -1 (send the whole table as a reset). */
int st_bt_delta_start(const st_bt_map *m, uint64_t key, const int32_t *table, int n);

#endif
