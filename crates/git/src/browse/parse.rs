//! Parsers for the machine formats the browsing commands ask git for:
//! NUL-terminated fields, `ls-tree -z --long`, `diff-tree -z --raw --numstat`.

use super::{ChangedFile, EntryKind, TreeEntry};

/// Splits output made of records of `n` NUL-terminated fields, records
/// separated by a newline (git's `tformat` terminator). Fields cannot hold
/// NUL, so this is unambiguous whatever the subjects or names contain; an
/// incomplete last record (output cut short) is dropped.
pub(crate) fn records(out: &[u8], n: usize) -> Vec<Vec<String>> {
    let mut fields: Vec<&[u8]> = out.split(|b| *b == 0).collect();
    // The part after the last NUL is either empty, a newline, or a cut field.
    fields.pop();
    fields
        .chunks_exact(n)
        .map(|rec| {
            rec.iter()
                .enumerate()
                .map(|(i, f)| {
                    let f = if i == 0 {
                        f.strip_prefix(b"\n").unwrap_or(f)
                    } else {
                        f
                    };
                    String::from_utf8_lossy(f).into_owned()
                })
                .collect()
        })
        .collect()
}

/// One entry of `git ls-tree -z --long`: `<mode> <type> <oid> <size>\t<name>`.
pub(crate) fn tree_entry(raw: &[u8], dir: &super::TreePath) -> Option<TreeEntry> {
    let tab = raw.iter().position(|b| *b == b'\t')?;
    let meta = std::str::from_utf8(&raw[..tab]).ok()?;
    let name = String::from_utf8_lossy(&raw[tab + 1..]).into_owned();
    let mut parts = meta.split_whitespace();
    let (mode, kind, oid, size) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let kind = match (mode, kind) {
        ("120000", _) => EntryKind::Symlink,
        ("160000", _) | (_, "commit") => EntryKind::Submodule,
        (_, "tree") => EntryKind::Dir,
        _ => EntryKind::File,
    };
    Some(TreeEntry {
        path: dir.join(&name),
        name,
        kind,
        size: size.parse().ok(),
        mode: mode.to_owned(),
        sha: oid.to_owned(),
    })
}

/// The changed files of `git diff-tree -r -z --raw --numstat -M`: first one
/// raw record per file (`:modes oids status\0path\0[path\0]`), then one
/// numstat record per file in the same order (`add\tdel\tpath\0` or, for
/// renames and copies, `add\tdel\t\0old\0new\0`). Binary files count `-`.
pub(crate) fn changed_files(out: &[u8]) -> Vec<ChangedFile> {
    let mut tokens: Vec<String> = out
        .split(|b| *b == 0)
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    // Whatever follows the last NUL is empty or cut short.
    tokens.pop();
    let mut files = Vec::new();
    let mut counts = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if let Some(raw) = t.strip_prefix(':') {
            let letter = raw.rsplit(' ').next().unwrap_or("").chars().next();
            let paths = if matches!(letter, Some('R') | Some('C')) {
                2
            } else {
                1
            };
            if i + paths >= tokens.len() {
                break;
            }
            let (old, path) = if paths == 2 {
                (Some(tokens[i + 1].clone()), tokens[i + 2].clone())
            } else {
                (None, tokens[i + 1].clone())
            };
            i += 1 + paths;
            files.push(ChangedFile {
                path,
                old_path: old,
                status: status_word(letter).to_owned(),
                additions: None,
                deletions: None,
                binary: false,
            });
        } else if t.contains('\t') {
            let mut parts = t.splitn(3, '\t');
            let add = parts.next().unwrap_or("");
            let del = parts.next().unwrap_or("");
            let rest = parts.next().unwrap_or("");
            counts.push((add.parse::<u64>().ok(), del.parse::<u64>().ok()));
            i += if rest.is_empty() { 3 } else { 1 };
        } else {
            i += 1;
        }
    }
    for (file, (add, del)) in files.iter_mut().zip(counts) {
        file.binary = add.is_none() && del.is_none();
        file.additions = add;
        file.deletions = del;
    }
    files
}

fn status_word(letter: Option<char>) -> &'static str {
    match letter {
        Some('A') => "added",
        Some('D') => "deleted",
        Some('R') => "renamed",
        Some('C') => "copied",
        Some('T') => "type_changed",
        _ => "modified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browse::TreePath;

    #[test]
    fn splits_records_of_nul_terminated_fields() {
        let out = b"a\0b b\0c\0\nd\0\0f\nx\0\nh\0";
        let recs = records(out, 3);
        assert_eq!(recs, vec![vec!["a", "b b", "c"], vec!["d", "", "f\nx"]]);
        // A cut record is dropped.
        assert_eq!(records(b"a\0b\0c\0\nd\0e", 3).len(), 1);
        assert!(records(b"", 3).is_empty());
    }

    #[test]
    fn reads_ls_tree_entries() {
        let dir = TreePath::parse("src").unwrap();
        let e = tree_entry(
            b"100644 blob 8178c76d627cade75005b40711b92f4177bc6cfc       7\tREAD me.md",
            &dir,
        )
        .unwrap();
        assert_eq!(e.name, "READ me.md");
        assert_eq!(e.path, "src/READ me.md");
        assert_eq!(e.kind, EntryKind::File);
        assert_eq!(e.size, Some(7));
        let e = tree_entry(b"040000 tree 21e0c847d5b0       -\tdeep", &dir).unwrap();
        assert_eq!((e.kind, e.size), (EntryKind::Dir, None));
        let e = tree_entry(b"120000 blob 42061c01       9\tlink", &dir).unwrap();
        assert_eq!(e.kind, EntryKind::Symlink);
        let e = tree_entry(b"160000 commit 11111111       -\tsub", &dir).unwrap();
        assert_eq!(e.kind, EntryKind::Submodule);
        assert!(tree_entry(b"garbage", &dir).is_none());
    }

    #[test]
    fn reads_raw_and_numstat_output() {
        let out = b":100644 100644 8178 8178 R100\0README.md\0READ.md\0\
:100644 000000 20b5 0000 D\0bin.dat\0\
:000000 100644 0000 4598 A\0src/a.txt\0\
0\t0\t\0README.md\0READ.md\0-\t-\tbin.dat\x003\t0\tsrc/a.txt\0";
        let files = changed_files(out);
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].status, "renamed");
        assert_eq!(files[0].old_path.as_deref(), Some("README.md"));
        assert_eq!(files[0].path, "READ.md");
        assert_eq!((files[0].additions, files[0].deletions), (Some(0), Some(0)));
        assert_eq!(files[1].status, "deleted");
        assert!(files[1].binary);
        assert_eq!(files[2].status, "added");
        assert_eq!(files[2].additions, Some(3));
        // Output cut inside the raw part: files without counts, none binary.
        for cut in [40, 49, 60, 70] {
            let files = changed_files(&out[..cut]);
            assert_eq!(files.len(), usize::from(cut >= 49), "cut at {cut}");
        }
        let files = changed_files(&out[..70]);
        assert!(!files[0].binary && files[0].additions.is_none());
    }
}
