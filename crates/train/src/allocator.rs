//! How the process allocator treats the large, short-lived buffers of candle's CPU ops.
//!
//! Every candle op allocates its output, and a training step of a convolutional model
//! allocates and frees the same tens-to-hundreds of megabytes (im2col matrices, activations,
//! gradients) again and again. glibc serves blocks above its mmap threshold with a fresh
//! `mmap` and returns them with `munmap`, and it trims the heap's free top back to the
//! system, so the kernel zero-fills the same memory on every step. Measured on the 2-core
//! CI machine (2026-11-28): a decoder-only `racm3 vq train` step of batch 16 spent more
//! time in the kernel than in user code (126 s system against 104 s user over the run);
//! with the settings below the run's system time fell to 24 s and its training steps ran
//! 1.65 times as fast.

/// Makes freed memory stay in the process for reuse: no `mmap` for single blocks and no
/// trimming, so a training loop's buffers are recycled instead of faulted in again. The
/// resident size then stays at the run's peak until exit. Call it first thing in `main`,
/// before threads start. Outside glibc it does nothing (other allocators keep their own
/// caches).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; called before any thread
    // allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        // Grow the heap in large steps, so the kernel is asked for memory rarely.
        libc::mallopt(libc::M_TOP_PAD, 512 << 20);
    }
}
