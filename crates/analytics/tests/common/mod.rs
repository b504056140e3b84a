//! Locating the shared real-data folder (never copied into the project).

use std::path::PathBuf;

/// `$WARDLINE_SHARED_DATA`, else `<crate>/../../../shared/data`. Panics with a
/// message naming the path and the variable, so a missing folder fails the
/// test instead of silently skipping it.
pub(crate) fn data_dir() -> PathBuf {
    let dir = std::env::var_os("WARDLINE_SHARED_DATA").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
        PathBuf::from,
    );
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => dir,
        _ => panic!(
            "shared test data not found: looked for the folder {}. \
             Set WARDLINE_SHARED_DATA to the `shared/data` folder (the one holding cgm/ and news2/).",
            dir.display()
        ),
    }
}

/// Reads a file under the data folder, failing with its path.
pub(crate) fn read_data(relative: &str) -> String {
    let path = data_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
