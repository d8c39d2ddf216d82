//! Replays every fuzz corpus (`fuzz/corpus/<target>/`, crashes found and fixed included)
//! through its `postee::fuzzing` target on stable, in the normal test run.

use std::path::Path;

#[test]
fn every_fuzz_corpus_replays_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = postee::fuzzing::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.sort();
    assert_eq!(dirs, names, "one corpus per target and a target per corpus");
    for (name, target) in postee::fuzzing::TARGETS {
        let mut files: Vec<_> = std::fs::read_dir(root.join(name))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{name}: {} inputs", files.len());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            // A failing input names itself before the target's own panic message.
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{name}: {} fails", f.display());
        }
    }
}
