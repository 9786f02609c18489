//! Buffers that end exactly at an unreadable page (Linux): a call that
//! reads or writes one element past the length it was given faults at once
//! instead of silently touching the neighbour's memory, so a test that
//! passes a length one too long proves the library never read it. On other
//! systems they are plain heap buffers (the statuses are still checked).
#![allow(
    unsafe_code,
    reason = "buffers between guard pages (mmap, mprotect) and views of them"
)]

use std::ffi::c_void;

/// `len` elements of `T` followed (on Linux) by an inaccessible page.
pub struct Guarded<T: Copy> {
    ptr: *mut T,
    len: usize,
    #[cfg(target_os = "linux")]
    map: (*mut c_void, usize),
    #[cfg(not(target_os = "linux"))]
    _vec: Vec<T>,
}

#[cfg(target_os = "linux")]
mod sys {
    use std::ffi::c_void;
    unsafe extern "C" {
        pub fn mmap(
            addr: *mut c_void,
            len: usize,
            prot: i32,
            flags: i32,
            fd: i32,
            off: i64,
        ) -> *mut c_void;
        pub fn mprotect(addr: *mut c_void, len: usize, prot: i32) -> i32;
        pub fn munmap(addr: *mut c_void, len: usize) -> i32;
        pub fn sysconf(name: i32) -> i64;
    }
    pub const PROT_NONE: i32 = 0;
    pub const PROT_READ_WRITE: i32 = 1 | 2;
    pub const MAP_PRIVATE_ANONYMOUS: i32 = 0x02 | 0x20;
    pub const SC_PAGESIZE: i32 = 30;
}

impl<T: Copy> Guarded<T> {
    /// A copy of `values` ending at the guard page.
    pub fn new(values: &[T]) -> Self {
        let len = values.len();
        #[cfg(target_os = "linux")]
        {
            let bytes = std::mem::size_of_val(values);
            assert!(bytes.is_multiple_of(std::mem::align_of::<T>()));
            let page = unsafe { sys::sysconf(sys::SC_PAGESIZE) } as usize;
            let readable = bytes.div_ceil(page).max(1) * page;
            let total = readable + page;
            let base = unsafe {
                sys::mmap(
                    std::ptr::null_mut(),
                    total,
                    sys::PROT_READ_WRITE,
                    sys::MAP_PRIVATE_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert!(base as isize != -1, "mmap failed");
            let guard = unsafe { (base as *mut u8).add(readable) };
            assert_eq!(
                unsafe { sys::mprotect(guard.cast(), page, sys::PROT_NONE) },
                0
            );
            let ptr = unsafe { guard.sub(bytes) } as *mut T;
            unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), ptr, len) };
            Guarded {
                ptr,
                len,
                map: (base, total),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let mut v = values.to_vec();
            Guarded {
                ptr: v.as_mut_ptr(),
                len,
                _vec: v,
            }
        }
    }

    /// `len` copies of `value`.
    pub fn filled(value: T, len: usize) -> Self {
        Self::new(&vec![value; len])
    }

    pub fn ptr(&self) -> *const T {
        self.ptr
    }

    pub fn mut_ptr(&mut self) -> *mut T {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_slice(&self) -> &[T] {
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Copy> Drop for Guarded<T> {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        unsafe {
            sys::munmap(self.map.0, self.map.1);
        }
    }
}
