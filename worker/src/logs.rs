//! `GetConnectorLogs`: 1-based line paging of a task's `app.log` (§1.11).

use std::io::{BufRead, BufReader};
use std::path::Path;

/// Lines `begin ..= begin + count - 1` (1-based) of the file, each ending in
/// `\n`; empty when `begin < 1`, `count < 1` or the file does not exist yet.
pub(crate) fn page(path: &Path, begin: i32, count: i32) -> std::io::Result<String> {
    if begin < 1 || count < 1 {
        return Ok(String::new());
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    let mut out = String::new();
    for line in BufReader::new(file)
        .split(b'\n')
        .skip(begin as usize - 1)
        .take(count as usize)
    {
        out.push_str(&String::from_utf8_lossy(&line?));
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_one_based_and_clipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("app.log");
        std::fs::write(&p, "l1\nl2\nl3\n").unwrap();
        assert_eq!(page(&p, 2, 5).unwrap(), "l2\nl3\n");
        assert_eq!(page(&p, 1, 1).unwrap(), "l1\n");
        assert_eq!(page(&p, 0, 3).unwrap(), "");
        assert_eq!(page(&p, 4, 3).unwrap(), "");
        assert_eq!(page(&dir.path().join("none"), 1, 3).unwrap(), "");
    }
}
