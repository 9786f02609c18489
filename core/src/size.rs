//! Element counts of workspaces and outputs, computed so they cannot wrap.
//!
//! Every `*_workspace_len` of the core computes with [`Size`]: its sums and
//! products saturate at `usize::MAX` instead of wrapping. A count that
//! would overflow therefore comes out as `usize::MAX`, a length no slice
//! can have, so every room check refuses it (no wrapped, too-small size is
//! ever handed out). Callers that turn a count into bytes (the C ABI) check
//! the product themselves; [`fits_bytes`] is that check.

use crate::error::{Error, Result};
use core::ops::{Add, Mul};

/// An element count whose arithmetic saturates at `usize::MAX` (see the
/// module documentation). Build one from the first unbounded count of an
/// expression (`Size(n) * d + m`) and read it back with [`Size::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub usize);

impl Size {
    /// The count; `usize::MAX` when the computation overflowed.
    pub const fn get(self) -> usize {
        self.0
    }

    /// The larger of two counts.
    pub fn max(self, other: impl Into<Size>) -> Size {
        Size(self.0.max(other.into().0))
    }
}

impl From<usize> for Size {
    fn from(n: usize) -> Self {
        Size(n)
    }
}

impl<T: Into<Size>> Add<T> for Size {
    type Output = Size;
    fn add(self, rhs: T) -> Size {
        Size(self.0.saturating_add(rhs.into().0))
    }
}

impl<T: Into<Size>> Mul<T> for Size {
    type Output = Size;
    fn mul(self, rhs: T) -> Size {
        Size(self.0.saturating_mul(rhs.into().0))
    }
}

impl Add<Size> for usize {
    type Output = Size;
    fn add(self, rhs: Size) -> Size {
        rhs + self
    }
}

impl Mul<Size> for usize {
    type Output = Size;
    fn mul(self, rhs: Size) -> Size {
        rhs * self
    }
}

/// `count` elements of `elem_bytes` bytes each as a byte count no larger
/// than `isize::MAX` (the most any allocation or slice can hold), else
/// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) naming `arg`.
pub fn fits_bytes(count: usize, elem_bytes: usize, arg: &'static str) -> Result<usize> {
    count
        .checked_mul(elem_bytes)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or(Error::too_large(
            arg,
            "the size needed overflows the address space",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn saturates_instead_of_wrapping() {
        assert_eq!((Size(3) * 4 + 5).get(), 17);
        assert_eq!((2 + Size(3) * 4usize).get(), 14);
        assert_eq!((Size(usize::MAX / 2) * 3).get(), usize::MAX);
        assert_eq!((Size(usize::MAX) + 1).get(), usize::MAX);
        assert_eq!(Size(4).max(9).get(), 9);
    }

    /// The core's size functions never wrap to a small count at
    /// address-space-scale dimensions: each answer is at least the
    /// dimension (`usize::MAX` when the true count overflows).
    #[test]
    fn workspace_lengths_do_not_wrap() {
        use crate::model::{Config, DiffusionHead, Layout};
        use crate::uot::{UotMode, uot_workspace_len};
        let config = Config {
            head: Some(DiffusionHead::Full),
            ..Config::default()
        };
        let layout = Layout::new(&config).unwrap();
        for big in [
            usize::MAX,
            usize::MAX / 2,
            usize::MAX / 3,
            1 << (usize::BITS - 3),
        ] {
            let lens = [
                layout.cache_len(big),
                layout.backward_workspace_len(big),
                layout.infer_workspace_len(big),
                layout.jacobian_workspace_len(big),
                crate::train::StepPlan::new(&config)
                    .unwrap()
                    .workspace_len(big),
                uot_workspace_len(big, 3, 2, UotMode::Online),
                uot_workspace_len(3, big, 2, UotMode::Dense),
                uot_workspace_len(3, 3, big, UotMode::Dense),
            ];
            for (k, len) in lens.into_iter().enumerate() {
                assert!(len >= big, "size {k} at {big} wrapped to {len}");
            }
            assert_eq!(layout.cache_len(big), usize::MAX);
        }
    }

    #[test]
    fn byte_counts_beyond_isize_are_too_large() {
        assert_eq!(fits_bytes(10, 4, "n").unwrap(), 40);
        assert_eq!(
            fits_bytes(isize::MAX as usize / 4 + 1, 4, "n")
                .unwrap_err()
                .kind,
            ErrorKind::TooLarge
        );
        assert_eq!(fits_bytes(usize::MAX, 1, "n").unwrap_err().arg, "n");
    }
}
