//! C ABI of morphosde (`libmorphosde.a`, `libmorphosde.so`, header
//! `include/morphosde.h`). The conventions every call follows are written
//! at the top of the header (see `cbindgen.toml`); this crate implements
//! them: `status` maps core errors to status codes and guards each body,
//! `buffers` turns `(pointer, length)` pairs into checked slices.
#![cfg_attr(not(feature = "std"), no_std)]
#![allow(non_camel_case_types)]
#![allow(
    unsafe_code,
    reason = "every module is the C boundary: raw pointers and lengths from C, exported symbols"
)]

#[cfg(all(not(feature = "std"), not(panic = "abort")))]
compile_error!(
    "the no_std build of morphosde-ffi must use panic = \"abort\" (an unwinding panic \
     cannot cross extern \"C\"); build with --profile canary or set panic = \"abort\""
);

/// Freestanding builds need a panic handler; firmware usually brings its
/// own, the host no_std canary uses this one.
#[cfg(all(not(feature = "std"), feature = "panic-handler"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

mod buffers;
mod cluster;
mod config;
mod fit;
mod handle;
mod inputs;
mod matching;
mod metrics;
mod model;
mod model_io;
mod propagated;
mod sample;
mod status;
mod train;
mod uot;

pub use cluster::{
    MSDE_CLUSTER_EIGENVALUES, MSDE_CLUSTER_MAX_K, MSDE_CLUSTER_MAX_NEIGHBOURS, MSDE_SIGMA_Z_GIVEN,
    MSDE_SIGMA_Z_MEDIAN, MSDE_SIGMA_Z_SELF_TUNING, msde_cluster, msde_cluster_config,
    msde_cluster_config_default, msde_cluster_summary, msde_cluster_workspace_len,
};
pub use config::*;
pub use fit::*;
pub use inputs::*;
pub use matching::*;
pub use metrics::{
    MSDE_EIGEN_MAX_DIM, msde_eigen_sym, msde_eigen_sym_workspace_len, msde_energy_distance,
    msde_model_diffusion_spectrum, msde_model_diffusion_spectrum_workspace_len,
    msde_sliced_wasserstein, msde_sliced_wasserstein_workspace_len,
};
pub use model::*;
pub use model_io::*;
pub use propagated::*;
pub use sample::*;
pub use status::{MSDE_ERROR_MESSAGE_LEN, msde_error, msde_status, msde_status_str};
pub use train::*;
pub use uot::*;

/// Major version of this header (semantic versioning).
pub const MSDE_VERSION_MAJOR: u32 = 0;
/// Minor version of this header.
pub const MSDE_VERSION_MINOR: u32 = 1;
/// Patch version of this header.
pub const MSDE_VERSION_PATCH: u32 = 0;
/// ABI version: bumped on any incompatible change of a signature, struct
/// layout or status value; the shared library's SONAME is
/// libmorphosde.so.MSDE_ABI_VERSION.
pub const MSDE_ABI_VERSION: u32 = 7;

/// Version of the loaded library, `major << 16 | minor << 8 | patch`.
/// Compare with the header's MSDE_VERSION_* macros to detect a header and
/// library mismatch.
#[unsafe(no_mangle)]
pub extern "C" fn msde_version() -> u32 {
    (MSDE_VERSION_MAJOR << 16) | (MSDE_VERSION_MINOR << 8) | MSDE_VERSION_PATCH
}

/// Version of the loaded library as a static NUL-terminated string
/// ("major.minor.patch"); never freed.
#[unsafe(no_mangle)]
pub extern "C" fn msde_version_string() -> *const core::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// ABI version of the loaded library (MSDE_ABI_VERSION it was built with).
#[unsafe(no_mangle)]
pub extern "C" fn msde_abi_version() -> u32 {
    MSDE_ABI_VERSION
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_constants_match_cargo() {
        assert_eq!(
            super::MSDE_VERSION_MAJOR.to_string(),
            env!("CARGO_PKG_VERSION_MAJOR")
        );
        assert_eq!(
            super::MSDE_VERSION_MINOR.to_string(),
            env!("CARGO_PKG_VERSION_MINOR")
        );
        assert_eq!(
            super::MSDE_VERSION_PATCH.to_string(),
            env!("CARGO_PKG_VERSION_PATCH")
        );
        let s = unsafe { core::ffi::CStr::from_ptr(super::msde_version_string()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        let v = super::msde_version();
        let want: Vec<u32> = env!("CARGO_PKG_VERSION")
            .split('.')
            .map(|p| p.parse().unwrap())
            .collect();
        assert_eq!([v >> 16, (v >> 8) & 0xff, v & 0xff], want[..]);
    }
}
