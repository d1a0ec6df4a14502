/* Fibers for the SIMT emulator: a stack with a guard page below it and a
 * saved stack pointer, switched by a few instructions (x86-64) or
 * ucontext elsewhere. AddressSanitizer is told about every switch
 * (__sanitizer_start/finish_switch_fiber) so that it keeps tracking the
 * right stack. Internal to kernels/simt. */
#ifndef ST_SIMT_FIBER_H
#define ST_SIMT_FIBER_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif
#ifndef SIMT_ASAN
#define SIMT_ASAN 0
#endif

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace simt {

struct fiber_stack {
    char *map = nullptr;  /* mmap base (guard page first) */
    size_t map_bytes = 0;
    char *lo = nullptr;   /* usable stack [lo, lo + bytes) */
    size_t bytes = 0;
};

/* Allocate `bytes` of stack (rounded up to pages) plus a PROT_NONE guard
 * page below it, so an overflow faults instead of corrupting a neighbour.
 * Returns false when the mapping fails. */
bool stack_alloc(fiber_stack *s, size_t bytes);
void stack_free(fiber_stack *s);

/* A suspended execution context. */
struct context {
#if defined(__x86_64__)
    void *sp = nullptr;
#else
    ucontext_t uc;
#endif
    void *asan_fake = nullptr; /* ASan fake stack of the suspended side */
};

/* Prepare `c` to start running entry() on stack `s` when first switched
 * to. entry must never return; it ends by switching away for good. */
void context_init(context *c, fiber_stack *s, void (*entry)());

/* Save the current context in `from` and resume `to`, which runs on the
 * stack [to_lo, to_lo + to_bytes) (for ASan; NULL/0 for a thread's own
 * stack when the thread's stack bounds are unknown). When `exiting`, the
 * current context is never resumed (ASan drops its fake stack). */
void context_switch(context *from, context *to, const void *to_lo, size_t to_bytes, bool exiting);
/* First thing to do on the new side of a switch: completes the ASan
 * handshake; reports the stack we came from. */
void context_arrived(context *self, const void **from_lo, size_t *from_bytes);

} // namespace simt
#endif
