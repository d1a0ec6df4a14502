/* Fiber stacks and context switches for the SIMT emulator (simt_fiber.h). */
#include "kernels/simt/simt_fiber.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#if SIMT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace simt {

bool stack_alloc(fiber_stack *s, size_t bytes)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    bytes = (bytes + page - 1) / page * page;
    void *m = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                   0);
    if (m == MAP_FAILED)
        return false;
    /* stacks grow down: the guard page sits below the lowest address */
    if (mprotect(m, page, PROT_NONE) != 0) {
        munmap(m, bytes + page);
        return false;
    }
    s->map = (char *)m;
    s->map_bytes = bytes + page;
    s->lo = s->map + page;
    s->bytes = bytes;
    return true;
}

void stack_free(fiber_stack *s)
{
    if (s->map)
        munmap(s->map, s->map_bytes);
    *s = fiber_stack();
}

#if defined(__x86_64__)
/* simt_ctx_swap(save, to): push the callee-saved registers (SysV ABI),
 * store rsp in *save, load `to` as rsp, pop the registers of the other
 * side and return into it. */
extern "C" void simt_ctx_swap(void **save, void *to);
asm(".text\n"
    ".globl simt_ctx_swap\n"
    ".hidden simt_ctx_swap\n"
    ".type simt_ctx_swap,@function\n"
    "simt_ctx_swap:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size simt_ctx_swap, .-simt_ctx_swap\n");

void context_init(context *c, fiber_stack *s, void (*entry)())
{
    /* Build the frame simt_ctx_swap expects to pop: six zeroed registers,
     * then entry as the return address. After the `ret`, rsp is 8 mod 16,
     * as at any function entry; the slot above is a null return address
     * (entry never returns). */
    uintptr_t top = ((uintptr_t)(s->lo + s->bytes)) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = nullptr;
    *--sp = (void *)entry;
    for (int i = 0; i < 6; i++)
        *--sp = nullptr;
    c->sp = sp;
    c->asan_fake = nullptr;
}
#else
void context_init(context *c, fiber_stack *s, void (*entry)())
{
    getcontext(&c->uc);
    c->uc.uc_stack.ss_sp = s->lo;
    c->uc.uc_stack.ss_size = s->bytes;
    c->uc.uc_link = nullptr;
    makecontext(&c->uc, entry, 0);
    c->asan_fake = nullptr;
}
#endif

void context_switch(context *from, context *to, const void *to_lo, size_t to_bytes, bool exiting)
{
#if SIMT_ASAN
    __sanitizer_start_switch_fiber(exiting ? nullptr : &from->asan_fake, to_lo, to_bytes);
#else
    (void)to_lo;
    (void)to_bytes;
    (void)exiting;
#endif
#if defined(__x86_64__)
    simt_ctx_swap(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
#if SIMT_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake, nullptr, nullptr);
#endif
}

void context_arrived(context *self, const void **from_lo, size_t *from_bytes)
{
#if SIMT_ASAN
    __sanitizer_finish_switch_fiber(self->asan_fake, from_lo, from_bytes);
#else
    (void)self;
    *from_lo = nullptr;
    *from_bytes = 0;
#endif
}

} // namespace simt
