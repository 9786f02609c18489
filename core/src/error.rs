//! Errors of the core: a failure class (mapped one-to-one onto the C ABI's
//! status codes), the argument at fault, a static message, and an optional
//! numeric detail. No allocation: everything is `'static` or `Copy`.
//!
//! The input checks every entry point uses live here too, so that the same
//! malformed input gives the same message everywhere.

use crate::float::Float;
use core::fmt;

/// Failure class. The discriminants are the C ABI's `msde_status` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorKind {
    /// A required pointer was NULL (C ABI only).
    NullPointer = 1,
    /// A dimension or length is zero or inconsistent with another.
    BadDimension = 2,
    /// An input contains NaN or ±Inf.
    NonFinite = 3,
    /// A configuration value is out of its documented range.
    BadConfig = 4,
    /// A caller-provided buffer (output or workspace) is too short.
    BufferTooSmall = 5,
    /// Model bytes are truncated, altered or not a model.
    CorruptModel = 6,
    /// Model bytes come from an unsupported format version.
    VersionMismatch = 7,
    /// An iterative method hit its iteration cap before its tolerance.
    NotConverged = 8,
    /// A computation produced a non-finite value or a singular system.
    NumericalFailure = 9,
    /// A bug: an invariant the library itself should maintain was broken
    /// (in the C ABI also: a panic caught at the boundary).
    Internal = 10,
    /// A caller buffer is not aligned for its element type (C ABI only).
    Misaligned = 11,
    /// Training diverged: its loss or gradient kept exploding or turning
    /// non-finite after rolling back and lowering the learning rate, or the
    /// trained model's rollouts leave the data's range (no model is kept).
    Diverged = 12,
    /// A dimension or count so large that the sizes it implies overflow
    /// the address space (or pass a documented upper bound).
    TooLarge = 13,
    /// An allocation failed (std builds: the library's own heap objects
    /// and buffers).
    OutOfMemory = 14,
}

impl ErrorKind {
    /// One-line description of the class.
    pub const fn describe(self) -> &'static str {
        match self {
            ErrorKind::NullPointer => "null pointer",
            ErrorKind::BadDimension => "bad dimension",
            ErrorKind::NonFinite => "non-finite input",
            ErrorKind::BadConfig => "bad configuration value",
            ErrorKind::BufferTooSmall => "buffer too small",
            ErrorKind::CorruptModel => "corrupt model bytes",
            ErrorKind::VersionMismatch => "unsupported model format version",
            ErrorKind::NotConverged => "did not converge",
            ErrorKind::NumericalFailure => "numerical failure",
            ErrorKind::Internal => "internal error (please report)",
            ErrorKind::Misaligned => "misaligned buffer",
            ErrorKind::Diverged => "training diverged",
            ErrorKind::TooLarge => "too large",
            ErrorKind::OutOfMemory => "out of memory",
        }
    }
}

/// Optional numeric context of an error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Detail {
    None,
    /// A length: what was needed and what was given (elements unless the
    /// argument name says bytes).
    Len {
        expected: usize,
        got: usize,
    },
    /// The offending element (row, entry, pair, trajectory…).
    Index(usize),
    /// The offending value.
    Value(f64),
}

/// An error of the core.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Name of the argument (or config field) at fault, as documented.
    pub arg: &'static str,
    /// What was wrong, in words.
    pub msg: &'static str,
    pub detail: Detail,
}

/// Result alias of the core.
pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    pub const fn new(kind: ErrorKind, arg: &'static str, msg: &'static str) -> Self {
        Error {
            kind,
            arg,
            msg,
            detail: Detail::None,
        }
    }
    pub const fn with(mut self, detail: Detail) -> Self {
        self.detail = detail;
        self
    }
    pub const fn bad_dim(arg: &'static str, msg: &'static str) -> Self {
        Self::new(ErrorKind::BadDimension, arg, msg)
    }
    pub const fn bad_config(arg: &'static str, msg: &'static str) -> Self {
        Self::new(ErrorKind::BadConfig, arg, msg)
    }
    pub const fn too_large(arg: &'static str, msg: &'static str) -> Self {
        Self::new(ErrorKind::TooLarge, arg, msg)
    }
    pub const fn too_small(arg: &'static str, expected: usize, got: usize) -> Self {
        Self::new(ErrorKind::BufferTooSmall, arg, "buffer too small")
            .with(Detail::Len { expected, got })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.arg, self.msg)?;
        match self.detail {
            Detail::None => Ok(()),
            Detail::Len { expected, got } => write!(f, " (need {expected}, got {got})"),
            Detail::Index(i) => write!(f, " (at index {i})"),
            Detail::Value(v) => write!(f, " (value {v})"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// `slice.len() == expected`, else a [`ErrorKind::BadDimension`] naming `arg`.
pub fn check_len<T>(slice: &[T], expected: usize, arg: &'static str) -> Result<()> {
    if slice.len() != expected {
        return Err(
            Error::bad_dim(arg, "length does not match the dimensions").with(Detail::Len {
                expected,
                got: slice.len(),
            }),
        );
    }
    Ok(())
}

/// `slice.len() >= needed`, else [`ErrorKind::BufferTooSmall`] naming `arg`.
pub fn check_room<T>(slice: &[T], needed: usize, arg: &'static str) -> Result<()> {
    if slice.len() < needed {
        return Err(Error::too_small(arg, needed, slice.len()));
    }
    Ok(())
}

/// Every entry finite, else [`ErrorKind::NonFinite`] with the first bad index.
pub fn check_finite<F: Float>(slice: &[F], arg: &'static str) -> Result<()> {
    match slice.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(
            Error::new(ErrorKind::NonFinite, arg, "contains NaN or infinity")
                .with(Detail::Index(i)),
        ),
    }
}

/// `n * m` without overflow, else [`ErrorKind::TooLarge`] naming `arg`.
pub fn checked_mul(n: usize, m: usize, arg: &'static str) -> Result<usize> {
    n.checked_mul(m).ok_or(Error::too_large(
        arg,
        "dimensions overflow the address space",
    ))
}

/// Splits caller workspace into named pieces, in order. The pieces are
/// disjoint, so routines can hold several at once; a short workspace is
/// reported as [`ErrorKind::BufferTooSmall`] for the argument `"workspace"`.
pub struct Arena<'a, T> {
    rest: &'a mut [T],
    total: usize,
    used: usize,
}

impl<'a, T> Arena<'a, T> {
    pub fn new(workspace: &'a mut [T]) -> Self {
        let total = workspace.len();
        Arena {
            rest: workspace,
            total,
            used: 0,
        }
    }

    /// The next `len` elements. On failure the error reports the running
    /// total needed so far (a lower bound of the full requirement).
    pub fn take(&mut self, len: usize) -> Result<&'a mut [T]> {
        if self.rest.len() < len {
            return Err(Error::too_small(
                "workspace",
                self.used.saturating_add(len),
                self.total,
            ));
        }
        let rest = core::mem::take(&mut self.rest);
        let (head, tail) = rest.split_at_mut(len);
        self.rest = tail;
        self.used += len;
        Ok(head)
    }

    /// Everything not handed out yet.
    pub fn rest(self) -> &'a mut [T] {
        self.rest
    }

    /// Elements handed out so far.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_hands_out_disjoint_pieces_and_reports_shortfall() {
        let mut ws = [0.0f32; 10];
        let mut arena = Arena::new(&mut ws);
        let a = arena.take(4).unwrap();
        let b = arena.take(6).unwrap();
        a[0] = 1.0;
        b[0] = 2.0;
        let e = arena.take(1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BufferTooSmall);
        assert_eq!(
            e.detail,
            Detail::Len {
                expected: 11,
                got: 10
            }
        );
    }

    #[test]
    fn checks_name_the_argument_and_index() {
        let e = check_finite(&[1.0f64, f64::NAN], "x").unwrap_err();
        assert_eq!(
            (e.kind, e.arg, e.detail),
            (ErrorKind::NonFinite, "x", Detail::Index(1))
        );
        assert!(check_len(&[1, 2, 3], 3, "y").is_ok());
        assert_eq!(
            check_len(&[1, 2], 3, "y").unwrap_err().kind,
            ErrorKind::BadDimension
        );
        assert!(checked_mul(usize::MAX, 2, "n").is_err());
    }
}
