//! The browsing queries against a real repository made with the `git` program.

use super::*;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host with `ada/demo` (three commits on main, one on `topic`) and the
/// empty `ada/empty`.
async fn fixture() -> (tempfile::TempDir, GitHost, Username, RepoName) {
    let tmp = tempfile::tempdir().unwrap();
    let host = GitHost::new(&tmp.path().join("data"), "git").unwrap();
    let owner = Username::parse("ada").unwrap();
    let name = RepoName::parse("demo").unwrap();
    host.init(&owner, &name).await.unwrap();
    host.init(&owner, &RepoName::parse("empty").unwrap())
        .await
        .unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("src/deep")).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    std::fs::write(work.join("src/deep/a.txt"), "a\nb\n").unwrap();
    std::fs::write(work.join("data.bin"), b"\x00\x01\x02").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "second\n\nwith a body"]);
    git(&work, &["mv", "README.md", "READ.md"]);
    git(&work, &["commit", "-q", "-m", "third"]);
    git(&work, &["checkout", "-q", "-b", "topic"]);
    std::fs::write(work.join("topic.txt"), "t\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "topic work"]);
    let bare = host.repo_path(&owner, &name);
    git(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "main", "topic"],
    );
    (tmp, host, owner, name)
}

fn rev(s: &str) -> Rev {
    Rev::parse(s).unwrap()
}

fn path(s: &str) -> TreePath {
    TreePath::parse(s).unwrap()
}

#[tokio::test]
async fn lists_branches_history_and_commits() {
    let (_tmp, host, owner, name) = fixture().await;
    let b = host.branches(&owner, &name).await.unwrap();
    assert_eq!(b.default_branch.as_deref(), Some("main"));
    let names: Vec<_> = b.branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names[0], "main");
    assert!(names.contains(&"topic"), "{names:?}");
    assert!(b.branches[0].default && b.branches[0].summary == "third");

    let q = |rev: Option<Rev>, p: &str, limit, skip, after: Option<Rev>| CommitQuery {
        rev,
        path: path(p),
        limit,
        skip,
        after,
    };
    let page = host
        .commits(&owner, &name, &q(None, "", 2, 0, None))
        .await
        .unwrap();
    let subjects: Vec<_> = page.commits.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["third", "second"]);
    assert!(page.has_more);
    assert_eq!(page.rev.as_deref(), Some("main"));
    let last = rev(&page.commits[1].sha);
    let next = host
        .commits(&owner, &name, &q(None, "", 2, 0, Some(last)))
        .await
        .unwrap();
    assert_eq!(next.commits.len(), 1);
    assert_eq!(next.commits[0].subject, "first");
    assert!(!next.has_more);
    assert!(next.commits[0].parents.is_empty());
    let skipped = host
        .commits(&owner, &name, &q(None, "", 10, 2, None))
        .await
        .unwrap();
    assert_eq!(skipped.commits[0].subject, "first");
    let topic = host
        .commits(&owner, &name, &q(Some(rev("topic")), "src", 10, 0, None))
        .await
        .unwrap();
    assert_eq!(topic.commits.len(), 1, "only 'second' touched src");
    assert_eq!(topic.commits[0].email, "ada@example.com");

    let third = host.commit(&owner, &name, &rev("main")).await.unwrap();
    assert_eq!(third.commit.subject, "third");
    assert_eq!(third.files.len(), 1);
    assert_eq!(third.files[0].status, "renamed");
    let second = host
        .commit(&owner, &name, &rev(&third.commit.parents[0][..10]))
        .await
        .unwrap();
    assert_eq!(second.message, "second\n\nwith a body");
    assert_eq!(second.stats.files, 2);
    assert_eq!(second.stats.additions, 2);
    assert!(second
        .files
        .iter()
        .any(|f| f.binary && f.path == "data.bin"));

    let missing = host.commit(&owner, &name, &rev("nope")).await;
    assert!(
        matches!(missing, Err(BrowseError::NotFound(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn lists_trees_and_reads_files() {
    let (_tmp, host, owner, name) = fixture().await;
    let root = host.tree(&owner, &name, None, &path("")).await.unwrap();
    let names: Vec<_> = root.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["src", "READ.md", "data.bin"]);
    assert_eq!(root.entries[0].kind, EntryKind::Dir);
    let deep = host
        .tree(&owner, &name, Some(&rev("main")), &path("src/deep/"))
        .await
        .unwrap();
    assert_eq!(deep.entries[0].path, "src/deep/a.txt");
    assert_eq!(deep.entries[0].size, Some(4));
    let topic = host
        .tree(&owner, &name, Some(&rev("topic")), &path(""))
        .await
        .unwrap();
    assert!(topic.entries.iter().any(|e| e.name == "topic.txt"));

    let text = host
        .blob(&owner, &name, None, &path("src/deep/a.txt"))
        .await
        .unwrap();
    assert_eq!(text.content.as_deref(), Some("a\nb\n"));
    assert!(!text.binary && !text.truncated);
    let bin = host
        .blob(&owner, &name, None, &path("data.bin"))
        .await
        .unwrap();
    assert!(bin.binary && bin.content.is_none() && bin.size == 3);
    let raw = host
        .raw_blob(&owner, &name, None, &path("data.bin"))
        .await
        .unwrap();
    let bytes: Vec<u8> = futures::StreamExt::collect::<Vec<_>>(raw.body)
        .await
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect();
    assert_eq!(bytes, b"\x00\x01\x02");

    for (r, p) in [(None, "nope.txt"), (Some(rev("nope")), "READ.md")] {
        let e = host.blob(&owner, &name, r.as_ref(), &path(p)).await;
        assert!(matches!(e, Err(BrowseError::NotFound(_))), "{e:?}");
    }
    let dir = host.blob(&owner, &name, None, &path("src")).await;
    assert!(matches!(dir, Err(BrowseError::Invalid(_))), "{dir:?}");
    let file = host.tree(&owner, &name, None, &path("READ.md")).await;
    assert!(matches!(file, Err(BrowseError::Invalid(_))), "{file:?}");
}

#[tokio::test]
async fn an_empty_repository_lists_nothing() {
    let (_tmp, host, owner, _) = fixture().await;
    let empty = RepoName::parse("empty").unwrap();
    let b = host.branches(&owner, &empty).await.unwrap();
    assert!(b.branches.is_empty());
    assert_eq!(b.default_branch.as_deref(), Some("main"));
    let t = host.tree(&owner, &empty, None, &path("")).await.unwrap();
    assert!(t.entries.is_empty() && t.rev.is_none());
    let q = CommitQuery {
        rev: None,
        path: TreePath::default(),
        limit: 10,
        skip: 0,
        after: None,
    };
    let c = host.commits(&owner, &empty, &q).await.unwrap();
    assert!(c.commits.is_empty() && !c.has_more);
    let e = host.blob(&owner, &empty, None, &path("x")).await;
    assert!(matches!(e, Err(BrowseError::NotFound(_))), "{e:?}");
    let e = host
        .tree(&owner, &empty, Some(&rev("main")), &path(""))
        .await;
    assert!(matches!(e, Err(BrowseError::NotFound(_))), "{e:?}");
}
