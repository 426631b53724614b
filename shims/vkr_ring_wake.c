/* vkr_ring_wake: a bounded idle wait for virglrenderer's Venus ring threads.
 *
 * Preloaded (LD_PRELOAD) into virgl_render_server when the guest runs under
 * TCG. Why: Venus wakes an idle ring with a Dekker-style handshake. The guest
 * stores the ring tail (STLR) and then loads the ring status (LDAR); the ring
 * thread sets IDLE (a locked RMW) and then loads the tail. Arm64 guarantees an
 * STLR followed by an LDAR is ordered (RCsc), so one side always sees the
 * other. QEMU's TCG translates STLR as "barrier; store" and LDAR as
 * "load; barrier", with nothing between the two, so on an x86 host the tail
 * store can still sit in the store buffer when the status load runs: the guest
 * sees "not idle" and sends no notification, the ring thread sees the old tail
 * and sleeps in cnd_wait -- forever. The guest then waits for a fence or a
 * ring seqno that never comes ("stuck in fence wait", "stuck in ring seqno
 * wait"). Seen here in 8 of 383 runs of a 200-frame demo (none in 400 with this shim).
 *
 * The fix belongs in QEMU (or a timed idle wait in virglrenderer). This shim
 * turns the ring thread's untimed condition waits into waits of at most
 * VKR_RING_WAKE_MS (default 20 ms) that report success on timeout: a
 * spurious wakeup, which POSIX allows and the ring thread's loop handles (it
 * re-reads the tail and goes idle again if there is nothing to do). A lost
 * notification then costs at most that long instead of hanging. Only threads
 * named "vkr-ring-<ctx>" are affected; every other wait passes through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*wait_fn)(pthread_cond_t *, pthread_mutex_t *);
typedef int (*timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);

static wait_fn real_wait;
static timedwait_fn real_timedwait;
static long wake_ns = 20L * 1000 * 1000;

__attribute__((constructor)) static void init(void) {
    /* dlsym gives the default symbol version, the one the render server binds to. */
    real_wait = (wait_fn)dlsym(RTLD_NEXT, "pthread_cond_wait");
    real_timedwait = (timedwait_fn)dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    const char *ms = getenv("VKR_RING_WAKE_MS");
    if (ms && atol(ms) > 0)
        wake_ns = atol(ms) * 1000L * 1000L;
    fprintf(stderr, "venus-repro: vkr_ring_wake active (ring idle waits bounded to %ld ms)\n",
            wake_ns / 1000000L);
}

static int is_ring_thread(void) {
    /* The ring thread names itself before its first wait ("vkr-ringmon-" is another thread). */
    static __thread int ring = -1;
    if (ring < 0) {
        char name[16] = "";
        pthread_getname_np(pthread_self(), name, sizeof(name));
        ring = strncmp(name, "vkr-ring-", 9) == 0;
    }
    return ring;
}

int pthread_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mutex) {
    if (!is_ring_thread())
        return real_wait(cond, mutex);
    /* virglrenderer's condition variables use the default clock, CLOCK_REALTIME. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += wake_ns;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    int ret = real_timedwait(cond, mutex, &deadline);
    return ret == ETIMEDOUT ? 0 : ret;
}
