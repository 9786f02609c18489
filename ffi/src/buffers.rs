//! `(pointer, length)` pairs from C turned into checked slices: NULL only
//! with length 0, alignment for the element type, and a byte size that fits
//! `isize`. Errors name the argument.

use morphosde_core::size::fits_bytes;
use morphosde_core::{Error, ErrorKind, Result};

fn check<T>(ptr: *const T, len: usize, arg: &'static str) -> Result<()> {
    if len == 0 {
        // Never dereferenced: any pointer (NULL, or an empty array's) will do.
        return Ok(());
    }
    if ptr.is_null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            arg,
            "is NULL but its length is not 0",
        ));
    }
    if !(ptr as usize).is_multiple_of(core::mem::align_of::<T>()) {
        return Err(Error::new(
            ErrorKind::Misaligned,
            arg,
            "is not aligned for its element type",
        ));
    }
    fits_bytes(len, core::mem::size_of::<T>(), arg)?;
    Ok(())
}

/// The answer of a size query: `len` elements of `T`, refused with
/// [`ErrorKind::TooLarge`] unless their byte count fits `isize` (so the
/// caller's own `len * sizeof(T)` cannot wrap either). A core size that
/// saturated at `usize::MAX` ends here too.
pub(crate) fn size_answer<T>(len: usize, arg: &'static str) -> Result<usize> {
    fits_bytes(len, core::mem::size_of::<T>(), arg)?;
    Ok(len)
}

/// A read-only slice of `len` elements at `ptr`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` initialised elements that stay valid
/// and unmodified for `'a`.
pub(crate) unsafe fn input<'a, T>(ptr: *const T, len: usize, arg: &'static str) -> Result<&'a [T]> {
    check(ptr, len, arg)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: checked non-NULL and aligned; validity is the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// A writable slice of `len` elements at `ptr`.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` writable elements, valid for `'a`
/// and not aliased by any other slice in use.
pub(crate) unsafe fn output<'a, T>(
    ptr: *mut T,
    len: usize,
    arg: &'static str,
) -> Result<&'a mut [T]> {
    check(ptr, len, arg)?;
    if len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: checked non-NULL and aligned; validity is the caller's contract.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

/// A required pointer to one readable value (a config struct).
///
/// # Safety
/// A non-NULL `ptr` must point to an initialised `T`, valid for `'a`.
pub(crate) unsafe fn value_in<'a, T>(ptr: *const T, arg: &'static str) -> Result<&'a T> {
    check(ptr, 1, arg)?;
    // SAFETY: checked aligned above; NULL becomes None.
    unsafe { ptr.as_ref() }.ok_or(Error::new(ErrorKind::NullPointer, arg, "is NULL"))
}

/// A required pointer to one writable value (an output scalar).
///
/// # Safety
/// A non-NULL `ptr` must point to a writable `T`, valid for `'a`.
pub(crate) unsafe fn value_out<'a, T>(ptr: *mut T, arg: &'static str) -> Result<&'a mut T> {
    check(ptr, 1, arg)?;
    // SAFETY: checked aligned above; NULL becomes None.
    unsafe { ptr.as_mut() }.ok_or(Error::new(ErrorKind::NullPointer, arg, "is NULL"))
}

/// An optional pointer to one writable value (NULL: the caller does not
/// want it).
///
/// # Safety
/// A non-NULL `ptr` must point to a writable `T`, valid for `'a`.
pub(crate) unsafe fn optional_out<'a, T>(
    ptr: *mut T,
    arg: &'static str,
) -> Result<Option<&'a mut T>> {
    if ptr.is_null() {
        return Ok(None);
    }
    check(ptr, 1, arg)?;
    // SAFETY: non-NULL and aligned (checked above); validity is the caller's.
    Ok(unsafe { ptr.as_mut() })
}

/// A C boolean field (0 or 1; anything else is refused rather than
/// guessed).
pub(crate) fn flag(value: u32, arg: &'static str) -> Result<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::bad_config(arg, "must be 0 or 1")
            .with(morphosde_core::error::Detail::Index(value as usize))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_misaligned_and_huge_are_refused() {
        let data = [1.0f32, 2.0, 3.0];
        assert_eq!(unsafe { input(data.as_ptr(), 3, "x") }.unwrap(), &data);
        assert!(
            unsafe { input::<f32>(core::ptr::null(), 0, "x") }
                .unwrap()
                .is_empty()
        );
        let e = unsafe { input::<f32>(core::ptr::null(), 2, "x") }.unwrap_err();
        assert_eq!((e.kind, e.arg), (ErrorKind::NullPointer, "x"));
        let odd = (data.as_ptr() as *const u8).wrapping_add(1) as *const f32;
        assert_eq!(
            unsafe { input(odd, 1, "x") }.unwrap_err().kind,
            ErrorKind::Misaligned
        );
        let e = unsafe { input(data.as_ptr(), usize::MAX / 2, "x") }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        let e = unsafe { value_out::<f32>(core::ptr::null_mut(), "p") }.unwrap_err();
        assert_eq!(e.kind, ErrorKind::NullPointer);
    }
}
