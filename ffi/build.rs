//! Gives the shared library a SONAME (a plain cargo cdylib has none), so
//! programs linked against it record `libmorphosde.so.<ABI>`; passes the
//! target triple to the C client tests.
fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        // Keep in step with MSDE_ABI_VERSION in src/lib.rs.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmorphosde.so.7");
    }
    println!(
        "cargo:rustc-env=MSDE_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
}
