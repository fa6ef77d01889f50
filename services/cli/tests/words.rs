//! Words a user reads must be true. A withheld figure may stand for a true
//! zero (zero is a small count and is withheld like one), so no report,
//! help text, README or doc may tell a reader that a withheld figure is not
//! zero. This scans every file a user reads or that renders user-facing text.

use std::path::{Path, PathBuf};

/// Phrases that claim a withheld figure is non-zero.
const FALSE_CLAIMS: &[&str] = &[
    "not zero",
    "isn't zero",
    "non-zero suppressed",
    "never zero",
];

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("rs" | "md" | "proto" | "html")
        ) {
            out.push(p);
        }
    }
}

#[test]
fn no_user_facing_text_says_a_withheld_figure_is_not_zero() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = vec![root.join("README.md")];
    for dir in [
        "docs",
        "proto",
        "services/cli/src",
        "services/hub/src",
        "shared/core/src",
    ] {
        files_under(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the scan found too few files: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f)
            .unwrap_or_default()
            .to_lowercase();
        for claim in FALSE_CLAIMS {
            if text.contains(claim) {
                found.push(format!("{}: {claim:?}", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "untrue words about withheld figures: {found:#?}"
    );
}
