// The CUDA runtime in miniature, for running minigrad's kernels on the CPU (tests/emulator.py).
//
// Force-included (g++ -include) before a kernel source, it makes CUDA C compile as C++:
// the execution-space keywords vanish, `__shared__` becomes `static` (blocks run one at a
// time, so a function-static array is the running block's shared memory), and
// threadIdx/blockIdx/blockDim/gridDim are globals set by the scheduler below.
//
// The threads of a block are cooperative fibers, each on its own stack. The scheduler
// resumes them one after another, in order of their linear index; a fiber runs until it
// reaches __syncthreads() or returns, and then hands control back. A round in which every
// live fiber stopped at __syncthreads() is a barrier passed; a round in which some stopped
// there and others returned is a barrier that not every thread reached, which CUDA leaves
// undefined and the emulator reports as an error. One schedule, so runs are deterministic.
//
// Shared memory is poisoned: before each block, every __shared__ array (the emulator finds
// them in the library's symbol table and registers them with emu_poison) is filled with ones,
// NaN as a float, so a kernel that reads shared memory it did not write reads NaN. So is the
// launch's dynamic shared memory (its `shared_mem` bytes, which kernels reach through
// common.cuh's dynamic_shared<T>(), defined here instead): a buffer that the Python side
// allocates between guard zones and registers with emu_set_dynamic_shared before the launch.
//
// Switching is _setjmp/_longjmp between stacks that ucontext made once: no system call per
// switch (swapcontext saves the signal mask with one), which keeps thousands of launches fast.
#pragma once
#undef _FORTIFY_SOURCE  // its checked longjmp refuses to jump between stacks

#include <math.h>  // C++'s math.h: expf, ... and the float overloads of exp, tanh, ... at global scope
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <setjmp.h>
#include <string>
#include <sys/mman.h>
#include <tuple>
#include <type_traits>
#include <ucontext.h>
#include <unistd.h>
#include <utility>

#ifdef EMU_PARSE
// The parsing pass (g++ -E) only needs to find the entry points: keep a marker for them.
#define __global__ __emu_global__
#else
#define __global__
#endif
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __launch_bounds__(...)

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static const int warpSize = 32;

// Device functions that C++'s <cmath> does not have.
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
#define __expf(x) expf(x)  // macros: glibc declares functions of these names
#define __logf(x) logf(x)
static inline float __fdividef(float x, float y) { return x / y; }
static inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
template <class T> static inline T __ldg(const T* p) { return *p; }
// CUDA's min and max at global scope: fmin/fmax for floating point (NaN-ignoring), the
// usual conversions for mixed types (int with unsigned -> unsigned, float with double -> double).
template <class A, class B> static inline std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmin(C(a), C(b));
    else return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B> static inline std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return std::fmax(C(a), C(b));
    else return C(a) < C(b) ? C(b) : C(a);
}

namespace emu {

constexpr std::size_t kStack = 64 * 1024;  // per thread; a guard page below it catches overflow
constexpr unsigned kMaxThreads = 1024;     // CUDA's limit per block
enum State { kRunning, kAtBarrier, kDone };

struct Fiber {
    jmp_buf jump;      // where to resume it
    char* stack = nullptr;
    bool ready = false;  // started on its stack and parked at the top of its loop
    State state = kDone;
};
static Fiber fibers[kMaxThreads];
static jmp_buf scheduler;
static ucontext_t starter;     // the scheduler's context while a fiber is being started
static unsigned current;       // the running fiber
static void (*body)(void*);    // what every thread of the launch runs, with its argument
static void* body_arg;
static bool reversed = false;  // resume the fibers last to first (shakes out missing barriers)
static char error[512];
struct Span { char* start; std::size_t size; };
static Span shared_arrays[256];  // the __shared__ arrays, poisoned before every block
static unsigned shared_count;
static Span dynamic_shared = {nullptr, 0};  // the launch's dynamic shared memory, poisoned too

__attribute__((noinline)) static void yield() {  // never inlined: _setjmp returns twice
    if (!_setjmp(fibers[current].jump)) _longjmp(scheduler, 1);
}

// A fiber's life: park, then run one thread of a block each time it is resumed, forever.
static void fiber_main() {
    Fiber& self = fibers[current];
    if (!_setjmp(self.jump)) setcontext(&starter);  // parked; the scheduler longjmps here later
    for (;;) {
        body(body_arg);
        fibers[current].state = kDone;
        yield();
    }
}

static bool start(unsigned k) {
    Fiber& f = fibers[k];
    if (!f.stack) {
        long page = sysconf(_SC_PAGESIZE);
        void* p = mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return false;
        mprotect(p, page, PROT_NONE);  // the stack grows down into this page and faults
        f.stack = static_cast<char*>(p) + page;
    }
    ucontext_t ctx;
    getcontext(&ctx);
    ctx.uc_stack.ss_sp = f.stack;
    ctx.uc_stack.ss_size = kStack - (k % 64) * 64 - (k / 64 % 4) * 4096;  // tops apart in the caches
    ctx.uc_link = nullptr;
    makecontext(&ctx, fiber_main, 0);
    current = k;
    swapcontext(&starter, &ctx);
    f.ready = true;
    return true;
}

__attribute__((noinline)) static void resume(unsigned k) {
    current = k;
    if (!_setjmp(scheduler)) _longjmp(fibers[k].jump, 1);
}

struct Dims { unsigned size[6]; };  // grid x, y, z, block x, y, z

// Run fn(arg) as every thread of every block of the grid. 0, or 1 with `error` set.
static int run_grid(const unsigned* dims, void (*fn)(void*), void* arg) {
    gridDim = {dims[0], dims[1], dims[2]};
    blockDim = {dims[3], dims[4], dims[5]};
    unsigned n = dims[3] * dims[4] * dims[5];
    if (n == 0 || n > kMaxThreads) {
        std::snprintf(error, sizeof error, "a block of %u threads; CUDA allows 1 to %u", n, kMaxThreads);
        return 1;
    }
    for (unsigned k = 0; k < n; ++k)
        if (!fibers[k].ready && !start(k)) {
            std::snprintf(error, sizeof error, "could not allocate the stack of thread %u", k);
            return 1;
        }
    body = fn;
    body_arg = arg;
    for (unsigned bz = 0; bz < gridDim.z; ++bz)
        for (unsigned by = 0; by < gridDim.y; ++by)
            for (unsigned bx = 0; bx < gridDim.x; ++bx) {
                blockIdx = {bx, by, bz};
                for (unsigned k = 0; k < shared_count; ++k)
                    std::memset(shared_arrays[k].start, 0xFF, shared_arrays[k].size);
                if (dynamic_shared.size) std::memset(dynamic_shared.start, 0xFF, dynamic_shared.size);
                for (unsigned k = 0; k < n; ++k) fibers[k].state = kRunning;
                for (unsigned live = n; live;) {  // one round: every live fiber to its next stop
                    unsigned waiting = 0, done = 0;
                    for (unsigned j = 0; j < n; ++j) {
                        unsigned k = reversed ? n - 1 - j : j;
                        if (fibers[k].state == kDone) continue;
                        fibers[k].state = kRunning;
                        threadIdx = {k % blockDim.x, (k / blockDim.x) % blockDim.y,
                                     k / (blockDim.x * blockDim.y)};
                        resume(k);
                        (fibers[k].state == kAtBarrier ? waiting : done) += 1;
                    }
                    if (waiting && done) {
                        // The waiting fibers are stuck inside a body: start them afresh next time.
                        for (unsigned k = 0; k < n; ++k) fibers[k].ready = false;
                        std::snprintf(error, sizeof error,
                                      "block (%u, %u, %u): %u threads reached __syncthreads() "
                                      "while %u returned without it; every thread of a block "
                                      "must reach the same barriers",
                                      bx, by, bz, waiting, done);
                        return 1;
                    }
                    live = waiting;
                }
            }
    return 0;
}

// A kernel's signature as text, one item per parameter: "f4" float, "i4" int, "u8" unsigned
// 64-bit, "b1" bool; pointers as "p" + (c if to const) + the item. "?" for anything else.
template <class T> std::string item() {
    if constexpr (std::is_same_v<T, bool>) return "b1";
    else if constexpr (std::is_floating_point_v<T>) return "f" + std::to_string(sizeof(T));
    else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) return "i" + std::to_string(sizeof(T));
    else if constexpr (std::is_integral_v<T>) return "u" + std::to_string(sizeof(T));
    else return "?";
}
template <class T> std::string describe() {
    if constexpr (std::is_pointer_v<T>) {
        using E = std::remove_pointer_t<T>;
        return std::string("p") + (std::is_const_v<E> ? "c" : "") + item<std::remove_cv_t<E>>();
    } else {
        return item<std::remove_cv_t<T>>();
    }
}
template <class... P> const char* signature(void (*)(P...)) {
    static const std::string text = [] {
        std::string s;
        ((s += describe<P>() + ","), ...);
        return s;
    }();
    return text.c_str();
}

// Launch f on the grid described by `packed`, as the Python side fills it: the grid's and the
// block's sizes (6 unsigned), then parameter k in the 8 bytes at 24 + 8 k. The parameters
// are read once, into a tuple; every thread then calls f with them.
template <class T> T load(const char* from) {
    T value;
    std::memcpy(&value, from, sizeof value);
    return value;
}
template <class... P, std::size_t... I>
int launch_with(const char* packed, void (*f)(P...), std::index_sequence<I...>) {
    static_assert(((sizeof(P) <= 8) && ...), "kernel parameters of at most 8 bytes");
    std::tuple<std::remove_cv_t<P>...> values{load<std::remove_cv_t<P>>(packed + 24 + 8 * I)...};
    auto call = [&] { f(std::get<I>(values)...); };
    Dims dims = load<Dims>(packed);
    return run_grid(dims.size, [](void* p) { (*static_cast<decltype(call)*>(p))(); }, &call);
}
template <class... P> int launch(const char* packed, void (*f)(P...)) {
    return launch_with(packed, f, std::index_sequence_for<P...>{});
}

}  // namespace emu

static inline void __syncthreads() {
    emu::fibers[emu::current].state = emu::kAtBarrier;
    emu::yield();
}
// common.cuh's dynamic_shared<T>(): the running block's dynamic shared memory.
#define EMU_DYNAMIC_SHARED
template <class T> static inline T* dynamic_shared() {
    return reinterpret_cast<T*>(emu::dynamic_shared.start);
}
static inline void __threadfence_block() {}
static inline void __threadfence() {}

#define EMU_EXPORT extern "C" __attribute__((visibility("default")))
EMU_EXPORT const char* emu_error() { return emu::error; }
EMU_EXPORT int emu_poison(void* start, std::size_t size) {
    if (emu::shared_count == sizeof emu::shared_arrays / sizeof emu::shared_arrays[0]) return 1;
    emu::shared_arrays[emu::shared_count++] = {static_cast<char*>(start), size};
    return 0;
}
EMU_EXPORT void emu_set_reversed(int on) { emu::reversed = on != 0; }
EMU_EXPORT void emu_set_dynamic_shared(void* start, std::size_t size) {
    emu::dynamic_shared = {static_cast<char*>(start), size};
}
