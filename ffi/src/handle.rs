//! Placement of the opaque objects (models, trainers) in caller memory
//! or, with std, on the heap: the alignment contract and the checked
//! memory block.

use core::ffi::c_void;
use morphosde_core::Result;
use morphosde_core::error::{Error, ErrorKind};

/// Alignment in bytes caller memory for msde_model_init / msde_trainer_init
/// must have (malloc'ed memory and uint64_t or double arrays have it).
pub const MSDE_STATE_ALIGN: usize = 8;

/// Checked caller memory of at least `need` bytes, aligned to
/// MSDE_STATE_ALIGN.
pub(crate) fn state_memory(mem: *mut c_void, mem_bytes: usize, need: usize) -> Result<*mut u8> {
    if mem.is_null() {
        return Err(Error::new(ErrorKind::NullPointer, "mem", "is NULL"));
    }
    if !(mem as usize).is_multiple_of(MSDE_STATE_ALIGN) {
        return Err(Error::new(
            ErrorKind::Misaligned,
            "mem",
            "is not aligned to MSDE_STATE_ALIGN bytes",
        ));
    }
    if mem_bytes < need {
        return Err(Error::too_small("mem_bytes", need, mem_bytes));
    }
    Ok(mem.cast())
}

#[cfg(feature = "std")]
mod heap {
    use super::*;
    use morphosde_core::error::Detail;

    /// Heap block of `bytes` bytes aligned to MSDE_STATE_ALIGN.
    pub(crate) fn allocate(bytes: usize) -> Result<*mut u8> {
        let layout = std::alloc::Layout::from_size_align(bytes, MSDE_STATE_ALIGN)
            .map_err(|_| Error::too_large("config", "object too large"))?;
        // SAFETY: the size is positive (every object has a header).
        let p = unsafe { std::alloc::alloc(layout) };
        if p.is_null() {
            return Err(
                Error::new(ErrorKind::OutOfMemory, "memory", "the allocation failed").with(
                    Detail::Len {
                        expected: bytes,
                        got: 0,
                    },
                ),
            );
        }
        Ok(p)
    }

    /// Frees a block from [`allocate`].
    ///
    /// # Safety
    /// `p` came from `allocate(bytes)` and is not used afterwards.
    pub(crate) unsafe fn release(p: *mut u8, bytes: usize) {
        // SAFETY: same size and alignment as the allocation.
        unsafe {
            std::alloc::dealloc(
                p,
                std::alloc::Layout::from_size_align_unchecked(bytes, MSDE_STATE_ALIGN),
            )
        }
    }

    /// Runs `place` on a fresh block, freeing it again when `place` fails.
    pub(crate) fn on_heap<T>(
        bytes: usize,
        place: impl FnOnce(*mut u8) -> Result<*mut T>,
    ) -> Result<*mut T> {
        let p = allocate(bytes)?;
        place(p).inspect_err(|_| unsafe { release(p, bytes) })
    }
}

#[cfg(feature = "std")]
pub(crate) use heap::{on_heap, release};
