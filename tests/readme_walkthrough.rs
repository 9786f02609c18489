//! The README's walk-through ("Your own data, step by step") runs as
//! written: the shell block after the `walkthrough` marker is executed by
//! bash in a folder holding a small demo's `demo-out/` (the set-up command's
//! output, trained for 5 epochs only), with the built `morphosde` on the PATH,
//! and every file the README says a step writes is there.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shell block that follows the walk-through marker in README.md.
fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = &readme[readme.find("<!-- walkthrough").expect("walkthrough marker")..];
    let start = after
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let end = start + after[start..].find("```").expect("the block's end");
    after[start..end].to_string()
}

#[test]
fn readme_walkthrough_runs_as_written() {
    let script = walkthrough();
    for step in [
        "morphosde train",
        "morphosde simulate",
        "morphosde evaluate",
        "morphosde field",
    ] {
        assert!(script.contains(step), "the walk-through lost `{step}`");
    }
    let dir = std::env::temp_dir().join(format!("msde-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_morphosde"));
    let demo = Command::new(&exe)
        .args(["demo", "--quiet", "--epochs", "5", "--out", "demo-out"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );

    let path = format!(
        "{}:{}",
        exe.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&dir)
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for file in [
        "my-model.msde",
        "my-run.json",
        "my-training.svg",
        "my-rollouts.csv",
        "my-field.csv",
    ] {
        assert!(dir.join(file).exists(), "{file}");
    }
    let header = |f: &str| {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        text.lines().next().unwrap().to_string()
    };
    assert_eq!(header("my-rollouts.csv"), "trajectory,t,z0,z1");
    let field = header("my-field.csv");
    for column in ["f0", "f1", "D00", "D01", "D10", "D11"] {
        assert!(field.split(',').any(|c| c == column), "{column} in {field}");
    }
    assert!(stdout.contains("energy"), "{stdout}");
    std::fs::remove_dir_all(dir).unwrap();
}
