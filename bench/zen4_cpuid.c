// An AMD Zen 4 for PoCL 3.0 on an Intel machine: the portability matrix's pocl-3.0-zen4 row
// (bench/matrix.py builds this with gcc and LD_PRELOADs it).
//
// With CPUID faulting (arch_prctl ARCH_SET_CPUID, Intel CPUs that list cpuid_fault) every
// CPUID instruction of the process traps; the SIGSEGV handler below answers it from a table
// read at start-up, with the vendor "AuthenticAMD" and family 19h model 11h (EPYC Genoa) in
// place of the host's. The feature bits stay the host's: AVX-512 is advertised, as on Zen 4.
// LLVM 14's host-CPU detection (PoCL 3.0) then names "znver3", which has no AVX-512: the same
// target, warnings and crash as on a real Zen 4. The setting is inherited by threads and
// children and reset by exec, where the preload sets it again. The program's own SIGSEGV
// handlers (Python's faulthandler) are kept and called for every other fault.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <dlfcn.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <cpuid.h>

#define ARCH_SET_CPUID 0x1012
#define NMAX 1024
struct ent { uint32_t leaf, sub, r[4]; };
static struct ent tab[NMAX];
static int ntab;
static struct sigaction chained;  // what the program asked for SIGSEGV
static int active;

static void rec(uint32_t leaf, uint32_t sub) {
    if (ntab >= NMAX) return;
    struct ent *e = &tab[ntab++];
    e->leaf = leaf; e->sub = sub;
    __cpuid_count(leaf, sub, e->r[0], e->r[1], e->r[2], e->r[3]);
}

static void lookup(uint32_t leaf, uint32_t sub, uint32_t *r) {
    for (int i = 0; i < ntab; i++)
        if (tab[i].leaf == leaf && tab[i].sub == sub) { memcpy(r, tab[i].r, 16); return; }
    for (int i = 0; i < ntab; i++)
        if (tab[i].leaf == leaf) { memcpy(r, tab[i].r, 16); return; }
    memset(r, 0, 16);
}

static void handler(int sig, siginfo_t *si, void *uc_) {
    ucontext_t *uc = uc_;
    greg_t *g = uc->uc_mcontext.gregs;
    unsigned char *ip = (unsigned char *)g[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t r[4];
        lookup((uint32_t)g[REG_RAX], (uint32_t)g[REG_RCX], r);
        g[REG_RAX] = r[0]; g[REG_RBX] = r[1]; g[REG_RCX] = r[2]; g[REG_RDX] = r[3];
        g[REG_RIP] += 2;
        return;
    }
    if (chained.sa_flags & SA_SIGINFO) { chained.sa_sigaction(sig, si, uc_); return; }
    if (chained.sa_handler == SIG_DFL || chained.sa_handler == SIG_IGN) {
        struct sigaction d; memset(&d, 0, sizeof d); d.sa_handler = SIG_DFL;
        int (*real)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
        real(SIGSEGV, &d, NULL);
        return;  // re-faults and dies with SIGSEGV
    }
    chained.sa_handler(sig);
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    static int (*real)(int, const struct sigaction *, struct sigaction *);
    if (!real) real = dlsym(RTLD_NEXT, "sigaction");
    if (sig != SIGSEGV || !active) return real(sig, act, old);
    if (old) *old = chained;
    if (act) chained = *act;
    return 0;
}

sighandler_t signal(int sig, sighandler_t h) {
    struct sigaction a, o; memset(&a, 0, sizeof a); a.sa_handler = h;
    if (sigaction(sig, &a, &o) < 0) return SIG_ERR;
    return o.sa_handler;
}

__attribute__((constructor)) static void init(void) {
    uint32_t a, b, c, d;
    __cpuid(0, a, b, c, d);
    uint32_t maxl = a;
    for (uint32_t l = 0; l <= maxl && l < 0x20; l++)
        for (uint32_t s = 0; s < 8; s++) rec(l, s);
    __cpuid(0x80000000, a, b, c, d);
    for (uint32_t l = 0x80000000; l <= a && l < 0x80000020; l++) rec(l, 0);
    for (int i = 0; i < ntab; i++) {
        struct ent *e = &tab[i];
        if (e->leaf == 0) {  // "AuthenticAMD" in ebx, edx, ecx
            memcpy(&e->r[1], "Auth", 4); memcpy(&e->r[3], "enti", 4); memcpy(&e->r[2], "cAMD", 4);
        }
        if (e->leaf == 1) e->r[0] = 0x00A10F11;  // family 0xF+0xA = 0x19, model 0x11
        if (e->leaf == 0x80000001) e->r[0] = 0x00A10F11;
    }
    struct sigaction sa; memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    int (*real)(int, const struct sigaction *, struct sigaction *) = dlsym(RTLD_NEXT, "sigaction");
    real(SIGSEGV, &sa, &chained);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0) active = 1;
}
