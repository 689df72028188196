//! A global allocator that survives hostile length fields.
//!
//! A Kafka request carries array lengths that the decoder trusts for `Vec::with_capacity`. A
//! 20-byte frame can claim two billion elements; the system allocator refuses the resulting
//! terabyte request and Rust aborts the process: one bad frame would stop the broker. This
//! allocator serves every allocation of [`HUGE_ALLOCATION_BYTES_MIN`] or more with an anonymous
//! `mmap(MAP_NORESERVE)`, which only reserves address space: pages cost memory when touched,
//! and the decoder touches a few before the frame runs out and it returns an error. Smaller
//! allocations go to the system allocator unchanged.
//!
//! Only the production binary and the tests that prove the point install it; the simulator
//! never sees hostile frames.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are reserved lazily with `mmap`. Larger than any buffer the
/// broker legitimately needs at once (requests are capped at `socket.request.max.bytes`).
pub const HUGE_ALLOCATION_BYTES_MIN: usize = 1 << 30;
/// The most address space one allocation may reserve; beyond it the allocation fails (and the
/// process aborts, as for any allocation failure). 64 TiB fits the 47-bit user address space.
pub const HUGE_ALLOCATION_BYTES_MAX: usize = 1 << 46;
/// The page alignment `mmap` guarantees.
const PAGE_BYTES: usize = 4096;

/// The system allocator, with huge allocations reserved lazily.
pub struct LazyHugeAllocator;

// SAFETY: small allocations are forwarded to `System` unchanged. Huge ones are page-aligned
// private anonymous mappings, zero-filled by the kernel, released with `munmap` of the same
// length; a layout whose alignment exceeds a page is never huge-allocated.
unsafe impl GlobalAlloc for LazyHugeAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            return map(layout.size());
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            return map(layout.size());
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: the pointer came from `map` with this very length.
            unsafe { libc::munmap(pointer.cast(), layout.size()) };
            return;
        }
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = match Layout::from_size_align(new_size, layout.align()) {
            Ok(new_layout) => new_layout,
            Err(_) => return std::ptr::null_mut(),
        };
        if !is_huge(layout) && !is_huge(new_layout) {
            return unsafe { System.realloc(pointer, layout, new_size) };
        }
        // Crossing the threshold (or resizing a mapping): allocate, copy, free.
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            let kept = layout.size().min(new_size);
            unsafe {
                std::ptr::copy_nonoverlapping(pointer, moved, kept);
                self.dealloc(pointer, layout);
            }
        }
        moved
    }
}

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES_MIN && layout.align() <= PAGE_BYTES
}

fn map(size: usize) -> *mut u8 {
    if size > HUGE_ALLOCATION_BYTES_MAX {
        return std::ptr::null_mut();
    }
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        mapped.cast()
    }
}
