//! The C examples build with the system compiler under strict flags, as C99
//! and as C++11, against the static library, and run correctly.

mod common;
use common::*;
use std::process::Command;

/// Compiles `examples/c/<name>.c` (as C, or as C++ when `cpp`), links the
/// static library, runs it and returns its stdout.
fn build_and_run(name: &str, cpp: bool) -> String {
    let build = cc::Build::new()
        .cpp(cpp)
        .cargo_metadata(false)
        .opt_level(0)
        .target(env!("MSDE_TARGET"))
        .host(env!("MSDE_TARGET"))
        .try_get_compiler()
        .expect("no C/C++ compiler found");
    let out_dir = std::env::temp_dir().join(format!("msde-c-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(format!("{name}{}", if cpp { "_cpp" } else { "_c" }));
    let mut cmd = build.to_command();
    if cpp {
        // The C++ build also declares the std-only handle calls.
        cmd.args(["-x", "c++", "-std=c++11", "-DMSDE_STD"]);
    } else {
        cmd.arg("-std=c99");
    }
    cmd.args(["-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join("examples/c").join(format!("{name}.c")))
        .arg("-x")
        .arg("none")
        .arg(library_dir().join("libmorphosde.a"))
        .args(["-lpthread", "-ldl", "-lm"])
        .arg("-o")
        .arg(&exe);
    let status = cmd.status().expect("cannot run the compiler");
    assert!(status.success(), "compiling {name} failed: {cmd:?}");
    let out = Command::new(&exe).output().unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn eigen_demo_in_c_and_cpp() {
    for cpp in [false, true] {
        let out = build_and_run("eigen_demo", cpp);
        // trace(D) = 1 + 0.89 + 0.29 = 2.18 (sum of the eigenvalues).
        assert!(out.contains("trace 2.180000"), "{out}");
        assert!(
            out.contains("short workspace: buffer too small (5): workspace"),
            "{out}"
        );
    }
}

#[test]
fn cluster_demo_in_c_and_cpp() {
    for cpp in [false, true] {
        let out = build_and_run("cluster_demo", cpp);
        assert!(out.contains("clusters 2 sizes 18 18 misplaced 0"), "{out}");
        assert!(
            out.contains("k too large: bad configuration value (4): k"),
            "{out}"
        );
    }
}

#[test]
fn train_and_sample_in_c_and_cpp() {
    for cpp in [false, true] {
        let out = build_and_run("train_and_sample", cpp);
        assert!(out.contains("trained 150 steps"), "{out}");
        // The std-only calls are declared (and used) only with MSDE_STD.
        assert_eq!(out.contains("heap model (MSDE_STD)"), cpp, "{out}");
        assert!(out.contains("sampled 64 trajectories, 0 stopped"), "{out}");
        assert!(
            out.contains("short h: bad dimension (2): h: length does not match"),
            "{out}"
        );
    }
}

#[test]
fn fit_snapshots_in_c_and_cpp() {
    for cpp in [false, true] {
        let out = build_and_run("fit_snapshots", cpp);
        assert!(out.contains("one time bin: bad "), "{out}");
        assert!(out.contains("fit: "), "{out}");
        assert!(out.contains("(callback saw "), "{out}");
        assert!(out.contains("2 clusters"), "{out}");
        assert!(out.contains("sampled 64 trajectories, 0 stopped"), "{out}");
    }
}

/// ffi/install.sh lays out a prefix (static and shared library with its
/// SONAME link, header, morphosde.pc), and a C program builds from
/// `pkg-config --cflags --libs morphosde` alone, links the shared library
/// and runs with the std-only calls declared (the .pc defines MSDE_STD).
#[test]
fn installed_prefix_builds_through_pkg_config() {
    let prefix = std::env::temp_dir().join(format!("msde-prefix-{}", std::process::id()));
    let status = Command::new("sh")
        .arg(root().join("ffi/install.sh"))
        .arg(&prefix)
        .arg(library_dir())
        .status()
        .expect("cannot run sh");
    assert!(status.success(), "ffi/install.sh failed");
    let lib = prefix.join("lib");
    let soname = format!("libmorphosde.so.{}", morphosde::msde_abi_version());
    for f in ["libmorphosde.a", "libmorphosde.so", soname.as_str()] {
        assert!(lib.join(f).exists(), "{f} not installed");
    }
    assert!(prefix.join("include/morphosde.h").exists());
    let pc = std::fs::read_to_string(lib.join("pkgconfig/morphosde.pc")).unwrap();
    assert!(
        pc.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{pc}"
    );
    let pkg_config = |args: &[&str]| {
        Command::new("pkg-config")
            .args(args)
            .env("PKG_CONFIG_PATH", lib.join("pkgconfig"))
            .output()
    };
    let Ok(flags) = pkg_config(&["--cflags", "--libs", "morphosde"]) else {
        eprintln!(
            "pkg-config is not installed: the pkg-config build is skipped (.ci/run installs it)"
        );
        let _ = std::fs::remove_dir_all(&prefix);
        return;
    };
    assert!(flags.status.success(), "pkg-config failed: {flags:?}");
    let flags = String::from_utf8(flags.stdout).unwrap();
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .opt_level(0)
        .target(env!("MSDE_TARGET"))
        .host(env!("MSDE_TARGET"))
        .try_get_compiler()
        .expect("no C compiler found");
    let exe = prefix.join("train_and_sample");
    let mut cmd = compiler.to_command();
    cmd.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(root().join("examples/c/train_and_sample.c"))
        .args(flags.split_whitespace())
        .arg("-lm")
        .arg("-o")
        .arg(&exe);
    assert!(cmd.status().unwrap().success(), "build failed: {cmd:?}");
    let out = Command::new(&exe)
        .env("LD_LIBRARY_PATH", &lib)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("heap model (MSDE_STD)"), "{stdout}");
    assert!(stdout.contains("trained 150 steps"), "{stdout}");
    std::fs::remove_dir_all(&prefix).unwrap();
}

#[test]
fn uot_demo_in_c_and_cpp() {
    for cpp in [false, true] {
        // The program itself checks the velocities (truth (0.6, 0)) and the
        // self-edge bound on the tracked pairs.
        let out = build_and_run("uot_demo", cpp);
        assert!(out.contains("mean velocity 0.6"), "{out}");
        assert!(out.contains("NaN source: non-finite input (3): x"), "{out}");
    }
}
