//! Status codes, the optional per-call error record, and the guard every
//! exported body runs in.

use core::ffi::c_char;
use core::fmt::Write;
use morphosde_core::{Error, ErrorKind};

/// Result of every fallible call. Values are stable across versions of the
/// same MSDE_ABI_VERSION; new values may be appended.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum msde_status {
    /// Success; outputs were written.
    MSDE_OK = 0,
    /// A required pointer was NULL.
    MSDE_ERR_NULL_POINTER = 1,
    /// A dimension or length is zero or inconsistent with another.
    MSDE_ERR_BAD_DIMENSION = 2,
    /// An input contains NaN or infinity.
    MSDE_ERR_NON_FINITE = 3,
    /// A configuration value is out of its documented range.
    MSDE_ERR_BAD_CONFIG = 4,
    /// An output or workspace buffer is shorter than its size query says.
    MSDE_ERR_BUFFER_TOO_SMALL = 5,
    /// Model bytes are truncated, altered or not a model.
    MSDE_ERR_CORRUPT_MODEL = 6,
    /// Model bytes (or a struct) come from an unsupported version.
    MSDE_ERR_VERSION_MISMATCH = 7,
    /// An iterative method hit its iteration cap before its tolerance.
    MSDE_ERR_NOT_CONVERGED = 8,
    /// A computation produced a non-finite value or a singular system.
    MSDE_ERR_NUMERICAL = 9,
    /// A bug inside the library (including a caught panic): please report.
    MSDE_ERR_INTERNAL = 10,
    /// A caller buffer is not aligned for its element type.
    MSDE_ERR_MISALIGNED = 11,
    /// Training diverged: its loss kept exploding or turning non-finite
    /// after rolling back and lowering the learning rate, or the trained
    /// model's rollouts leave the data's range; nothing was kept.
    MSDE_ERR_DIVERGED = 12,
    /// A dimension or count so large that the sizes it implies overflow
    /// the address space (size_t, or bytes beyond PTRDIFF_MAX), or above a
    /// documented upper bound. Size queries answer this instead of a
    /// wrapped size.
    MSDE_ERR_TOO_LARGE = 13,
    /// An allocation of the library failed (std builds: msde_*_new and
    /// calls that allocate); nothing was changed.
    MSDE_ERR_OUT_OF_MEMORY = 14,
}

impl From<ErrorKind> for msde_status {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NullPointer => msde_status::MSDE_ERR_NULL_POINTER,
            ErrorKind::BadDimension => msde_status::MSDE_ERR_BAD_DIMENSION,
            ErrorKind::NonFinite => msde_status::MSDE_ERR_NON_FINITE,
            ErrorKind::BadConfig => msde_status::MSDE_ERR_BAD_CONFIG,
            ErrorKind::BufferTooSmall => msde_status::MSDE_ERR_BUFFER_TOO_SMALL,
            ErrorKind::CorruptModel => msde_status::MSDE_ERR_CORRUPT_MODEL,
            ErrorKind::VersionMismatch => msde_status::MSDE_ERR_VERSION_MISMATCH,
            ErrorKind::NotConverged => msde_status::MSDE_ERR_NOT_CONVERGED,
            ErrorKind::NumericalFailure => msde_status::MSDE_ERR_NUMERICAL,
            ErrorKind::Internal => msde_status::MSDE_ERR_INTERNAL,
            ErrorKind::Misaligned => msde_status::MSDE_ERR_MISALIGNED,
            ErrorKind::Diverged => msde_status::MSDE_ERR_DIVERGED,
            ErrorKind::TooLarge => msde_status::MSDE_ERR_TOO_LARGE,
            ErrorKind::OutOfMemory => msde_status::MSDE_ERR_OUT_OF_MEMORY,
        }
    }
}

/// Capacity of msde_error.message, including the terminating NUL.
pub const MSDE_ERROR_MESSAGE_LEN: usize = 256;

/// Optional per-call error record (pass NULL to ignore). Plain data: declare
/// one on the stack and pass its address as a call's last argument.
#[repr(C)]
pub struct msde_error {
    /// Status of the call that filled it (MSDE_OK after a success).
    pub status: i32,
    /// NUL-terminated UTF-8: the argument at fault and what was wrong
    /// (empty after a success). Long messages are truncated.
    pub message: [c_char; MSDE_ERROR_MESSAGE_LEN],
}

/// Static description of a status code (never NULL, never freed). Takes a
/// plain integer so any value from C is safe; unknown values give
/// "unknown status".
#[unsafe(no_mangle)]
pub extern "C" fn msde_status_str(status: i32) -> *const c_char {
    let s: &'static str = match status {
        0 => "ok\0",
        1 => "null pointer\0",
        2 => "bad dimension\0",
        3 => "non-finite input\0",
        4 => "bad configuration value\0",
        5 => "buffer too small\0",
        6 => "corrupt model bytes\0",
        7 => "version mismatch\0",
        8 => "did not converge\0",
        9 => "numerical failure\0",
        10 => "internal error (please report)\0",
        11 => "misaligned buffer\0",
        12 => "training diverged\0",
        13 => "too large\0",
        14 => "out of memory\0",
        _ => "unknown status\0",
    };
    s.as_ptr().cast()
}

/// Writes into a fixed C buffer, truncating (on a UTF-8 boundary) and
/// always leaving it NUL-terminated.
struct MessageWriter<'a> {
    buf: &'a mut [c_char; MSDE_ERROR_MESSAGE_LEN],
    len: usize,
}

impl Write for MessageWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for ch in s.chars() {
            let mut utf8 = [0u8; 4];
            let bytes = ch.encode_utf8(&mut utf8).as_bytes();
            if self.len + bytes.len() >= MSDE_ERROR_MESSAGE_LEN {
                break;
            }
            for &b in bytes {
                self.buf[self.len] = b as c_char;
                self.len += 1;
            }
        }
        self.buf[self.len] = 0;
        Ok(())
    }
}

fn record(err: *mut msde_error, status: msde_status, detail: Option<&Error>) {
    // SAFETY: the caller passes NULL or a valid, writable msde_error.
    let Some(err) = (unsafe { err.as_mut() }) else {
        return;
    };
    err.status = status as i32;
    err.message[0] = 0;
    if let Some(e) = detail {
        let mut w = MessageWriter {
            buf: &mut err.message,
            len: 0,
        };
        let _ = write!(w, "{e}");
    }
}

/// Runs an exported call's body: maps a core error to its status and
/// message, records success, and (std builds) turns a panic into
/// MSDE_ERR_INTERNAL instead of unwinding into C.
pub(crate) fn guard(
    err: *mut msde_error,
    body: impl FnOnce() -> morphosde_core::Result<()>,
) -> msde_status {
    #[cfg(feature = "std")]
    let outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(Err(Error::new(
            ErrorKind::Internal,
            "morphosde",
            "a panic was caught at the C boundary (a bug; please report it)",
        )));
    #[cfg(not(feature = "std"))]
    let outcome = body();
    match outcome {
        Ok(()) => {
            record(err, msde_status::MSDE_OK, None);
            msde_status::MSDE_OK
        }
        Err(e) => {
            let status = msde_status::from(e.kind);
            record(err, status, Some(&e));
            status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: &msde_error) -> String {
        let bytes: Vec<u8> = e
            .message
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn guard_records_errors_and_success() {
        let mut e = msde_error {
            status: -1,
            message: [1; MSDE_ERROR_MESSAGE_LEN],
        };
        let s = guard(&mut e, || {
            Err(Error::bad_config("epsilon", "must be positive"))
        });
        assert_eq!(s, msde_status::MSDE_ERR_BAD_CONFIG);
        assert_eq!(e.status, 4);
        assert_eq!(message(&e), "epsilon: must be positive");
        let s = guard(&mut e, || Ok(()));
        assert_eq!(
            (s, e.status, message(&e).as_str()),
            (msde_status::MSDE_OK, 0, "")
        );
        assert_eq!(
            guard(core::ptr::null_mut(), || Ok(())),
            msde_status::MSDE_OK
        );
    }

    #[test]
    fn guard_catches_panics() {
        let mut e = msde_error {
            status: 0,
            message: [0; MSDE_ERROR_MESSAGE_LEN],
        };
        let s = guard(&mut e, || panic!("boom"));
        assert_eq!(s, msde_status::MSDE_ERR_INTERNAL);
        assert!(message(&e).contains("panic"));
    }

    #[test]
    fn long_messages_are_truncated_and_terminated() {
        let mut buf = [1 as c_char; MSDE_ERROR_MESSAGE_LEN];
        let mut w = MessageWriter {
            buf: &mut buf,
            len: 0,
        };
        for _ in 0..100 {
            w.write_str("αβγ").unwrap();
        }
        let len = buf.iter().position(|&c| c == 0).unwrap();
        assert!(len < MSDE_ERROR_MESSAGE_LEN);
        let bytes: Vec<u8> = buf[..len].iter().map(|&c| c as u8).collect();
        assert!(String::from_utf8(bytes).is_ok());
    }

    #[test]
    fn every_status_has_a_description_and_matches_core() {
        let kinds = [
            ErrorKind::NullPointer,
            ErrorKind::BadDimension,
            ErrorKind::NonFinite,
            ErrorKind::BadConfig,
            ErrorKind::BufferTooSmall,
            ErrorKind::CorruptModel,
            ErrorKind::VersionMismatch,
            ErrorKind::NotConverged,
            ErrorKind::NumericalFailure,
            ErrorKind::Internal,
            ErrorKind::Misaligned,
            ErrorKind::Diverged,
            ErrorKind::TooLarge,
            ErrorKind::OutOfMemory,
        ];
        for kind in kinds {
            // Core's discriminants are the C status values.
            assert_eq!(msde_status::from(kind) as i32, kind as i32);
            let s = unsafe { core::ffi::CStr::from_ptr(msde_status_str(kind as i32)) };
            assert_ne!(s.to_str().unwrap(), "unknown status");
        }
        for bad in [-1, 15, i32::MAX, i32::MIN] {
            let s = unsafe { core::ffi::CStr::from_ptr(msde_status_str(bad)) };
            assert_eq!(s.to_str().unwrap(), "unknown status");
        }
    }
}
