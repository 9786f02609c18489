//! C ABI of morphosde (`libmorphosde.a`, `libmorphosde.so`); conventions in
//! `include/morphosde.h` and the project's FFI notes.
#![cfg_attr(not(feature = "std"), no_std)]

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

/// Version of the loaded library, `major << 16 | minor << 8 | patch`.
#[unsafe(no_mangle)]
pub extern "C" fn msde_version() -> u32 {
    const fn parse(s: &str) -> u32 {
        let b = s.as_bytes();
        let mut i = 0;
        let mut v = 0u32;
        while i < b.len() {
            v = v * 10 + (b[i] - b'0') as u32;
            i += 1;
        }
        v
    }
    (parse(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
        | (parse(env!("CARGO_PKG_VERSION_MINOR")) << 8)
        | parse(env!("CARGO_PKG_VERSION_PATCH"))
}

// Link the core even where no call reaches it yet, so the no_std canary sees
// every dependency the core pulls in.
extern crate morphosde_core;
