//! A third-party author's path: the complete provider in docs/plugin-authoring.md, built
//! from the page's text in a directory outside Skyport's workspace, against
//! `skyport-plugin-api` alone, then checked by the conformance kit.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use skyport_e2e::{run_cli, target_dir, temp_state_dir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The body of the first fenced block opened by `fence` in `text`.
fn block<'a>(text: &'a str, fence: &str) -> &'a str {
    let start = text
        .find(fence)
        .unwrap_or_else(|| panic!("no {fence} block"))
        + fence.len();
    let end = text[start..].find("```").unwrap() + start;
    &text[start..end]
}

#[test]
fn the_documented_provider_builds_out_of_tree_and_conforms() {
    let doc = std::fs::read_to_string(repo().join("docs/plugin-authoring.md")).unwrap();
    let section = doc
        .split("## 10. A complete provider")
        .nth(1)
        .and_then(|s| s.split("\n## 11.").next())
        .expect("the page has its complete provider");
    let (manifest, source) = (block(section, "```toml\n"), block(section, "```rust\n"));
    // The page is the example's source, word for word.
    let example = repo().join("plugins/example-provider");
    assert_eq!(
        source,
        std::fs::read_to_string(example.join("src/lib.rs")).unwrap()
    );
    assert_eq!(
        manifest.replace("../skyport/plugin-api", "../../plugin-api"),
        std::fs::read_to_string(example.join("Cargo.toml")).unwrap()
    );

    // Built where an author would: a directory of its own, with the SDK by path.
    let dir = temp_state_dir("out-of-tree");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        manifest.replace(
            "../skyport/plugin-api",
            repo().join("plugin-api").to_str().unwrap(),
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/lib.rs"), source).unwrap();
    // The same dependency versions as Skyport's own build (this machine is offline).
    std::fs::copy(repo().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let target = target_dir().join("out-of-tree");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--offline", "--quiet"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "the page's provider does not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let library = target.join("debug/libskyport_example_provider.so");
    let (code, report) = run_cli(&["plugins", "test", library.to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report.ends_with(
            "example-provider: 14 of 14 checks passed; it conforms to the provider contract\n"
        ),
        "{report}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
