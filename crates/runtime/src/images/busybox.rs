//! `slipway/busybox`: a tiny base image made from the host's static busybox.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use bytes::Bytes;

use super::{
    image_exists, import_rootfs, tar_dir, tar_file, tar_symlink, BUSYBOX_IMAGE, HOST_BUSYBOX,
    IMAGE_PATH,
};
use crate::error::{Result, RuntimeError};
use crate::Runtime;

/// Applets linked when `busybox --list-full` cannot be run.
const FALLBACK_APPLETS: &[&str] = &[
    "sh",
    "ash",
    "ls",
    "cat",
    "echo",
    "env",
    "sleep",
    "mkdir",
    "rm",
    "rmdir",
    "cp",
    "mv",
    "ln",
    "grep",
    "egrep",
    "sed",
    "awk",
    "wc",
    "head",
    "tail",
    "true",
    "false",
    "id",
    "test",
    "[",
    "[[",
    "printf",
    "seq",
    "yes",
    "dd",
    "touch",
    "chmod",
    "chown",
    "kill",
    "ps",
    "date",
    "wget",
    "nc",
    "sort",
    "uniq",
    "tr",
    "cut",
    "find",
    "xargs",
    "tee",
    "uname",
    "hostname",
    "whoami",
    "basename",
    "dirname",
    "pwd",
    "readlink",
    "realpath",
    "stat",
    "du",
    "df",
    "free",
    "tar",
    "gzip",
    "gunzip",
    "zcat",
    "md5sum",
    "sha256sum",
    "vi",
    "less",
    "more",
    "diff",
    "expr",
    "which",
    "httpd",
    "ip",
    "ping",
    "nslookup",
    "top",
    "uptime",
    "timeout",
    "nohup",
    "mktemp",
    "base64",
    "od",
    "hexdump",
    "strings",
    "install",
    "sync",
    "mount",
    "umount",
    "su",
];

/// Build `slipway/busybox` (or `tag`) from the host's static busybox and
/// import it; returns the image id. Takes a second or two.
pub async fn bootstrap_busybox(rt: &Runtime, tag: &str) -> Result<String> {
    let tar = tokio::task::spawn_blocking(|| busybox_rootfs_tar(Path::new(HOST_BUSYBOX)))
        .await
        .map_err(|e| RuntimeError::io("packing the busybox rootfs", std::io::Error::other(e)))??;
    let changes = [
        format!("ENV PATH={IMAGE_PATH}"),
        "CMD [\"sh\"]".to_string(),
        "LABEL io.slipway.image=busybox".to_string(),
    ];
    let id = import_rootfs(rt, Bytes::from(tar), tag, &changes).await?;
    tracing::info!(%tag, %id, "bootstrapped busybox image");
    Ok(id)
}

/// Bootstrap [`BUSYBOX_IMAGE`] only if it is missing (cheap check for every start).
pub async fn ensure_busybox(rt: &Runtime) -> Result<()> {
    if !image_exists(rt, BUSYBOX_IMAGE).await? {
        bootstrap_busybox(rt, BUSYBOX_IMAGE).await?;
    }
    Ok(())
}

/// Refuse a dynamically linked busybox: it would not run in an image with no libc.
fn check_static_elf(path: &Path, data: &[u8]) -> Result<()> {
    let bad = |reason: &str| RuntimeError::Busybox {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" {
        return Err(bad("it is not an ELF executable"));
    }
    let is64 = data[4] == 2;
    let le = data[5] == 1;
    let rd = |off: usize, len: usize| -> Option<u64> {
        let b = data.get(off..off + len)?;
        let mut v: u64 = 0;
        for i in 0..len {
            let byte = if le { b[len - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let (phoff, phentsize, phnum) = if is64 {
        (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
    } else {
        (rd(0x1c, 4), rd(0x2a, 2), rd(0x2c, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return Err(bad("its ELF header is truncated"));
    };
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let off = (phoff + i * phentsize) as usize;
        if rd(off, 4) == Some(PT_INTERP) {
            return Err(bad(
                "it is dynamically linked (the `busybox` package); a static one is needed",
            ));
        }
    }
    Ok(())
}

/// Applet paths (relative, e.g. `bin/sh`, `usr/bin/awk`) that busybox provides.
fn busybox_applets(busybox: &Path) -> Vec<String> {
    let listed = std::process::Command::new(busybox)
        .arg("--list-full")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(|l| l.trim().trim_start_matches('/').to_string())
                .filter(|l| !l.is_empty() && !l.contains(".."))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if listed.is_empty() {
        FALLBACK_APPLETS
            .iter()
            .map(|a| format!("bin/{a}"))
            .collect()
    } else {
        listed
    }
}

/// The busybox root filesystem as an in-memory tar: `/bin/busybox`, a
/// symlink per applet, `/tmp` (1777), `/etc/passwd` and `/etc/group` with
/// `root`, `slipway` (uid 1000) and `nobody`.
pub fn busybox_rootfs_tar(busybox: &Path) -> Result<Vec<u8>> {
    let binary = std::fs::read(busybox).map_err(|e| RuntimeError::Busybox {
        path: busybox.to_path_buf(),
        reason: e.to_string(),
    })?;
    check_static_elf(busybox, &binary)?;
    let applets = busybox_applets(busybox);

    let io = |e| RuntimeError::io("writing the busybox rootfs tar", e);
    let mut b = tar::Builder::new(Vec::with_capacity(binary.len() + 64 * 1024));

    let mut dirs: BTreeSet<String> = [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "etc",
        "var",
        "home",
        "proc",
        "sys",
        "dev",
        "run",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for a in &applets {
        let mut p = Path::new(a).parent();
        while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            p = dir.parent();
        }
    }
    // BTreeSet order puts parents before children.
    for d in &dirs {
        tar_dir(&mut b, d, 0o755, 0).map_err(io)?;
    }
    tar_dir(&mut b, "tmp", 0o1777, 0).map_err(io)?;
    tar_dir(&mut b, "var/tmp", 0o1777, 0).map_err(io)?;
    tar_dir(&mut b, "root", 0o700, 0).map_err(io)?;
    tar_dir(&mut b, "home/slipway", 0o755, 1000).map_err(io)?;

    tar_file(&mut b, "bin/busybox", 0o755, &binary).map_err(io)?;
    for a in &applets {
        if a != "bin/busybox" {
            tar_symlink(&mut b, a, "/bin/busybox").map_err(io)?;
        }
    }

    let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                  slipway:x:1000:1000:slipway:/home/slipway:/bin/sh\n\
                  nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    let group = "root:x:0:\nslipway:x:1000:\nnogroup:x:65534:\n";
    tar_file(&mut b, "etc/passwd", 0o644, passwd.as_bytes()).map_err(io)?;
    tar_file(&mut b, "etc/group", 0o644, group.as_bytes()).map_err(io)?;
    tar_file(
        &mut b,
        "etc/os-release",
        0o644,
        b"NAME=\"Slipway busybox\"\nID=slipway-busybox\n",
    )
    .map_err(io)?;
    b.into_inner().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn busybox_tar_has_binary_links_and_users() {
        let tar = busybox_rootfs_tar(Path::new(HOST_BUSYBOX)).expect("busybox-static is installed");
        let mut archive = tar::Archive::new(&tar[..]);
        let mut names = HashMap::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            names.insert(
                path.trim_end_matches('/').to_string(),
                e.header().mode().unwrap(),
            );
        }
        assert_eq!(names["tmp"], 0o1777);
        for p in [
            "bin/busybox",
            "bin/sh",
            "bin/ls",
            "etc/passwd",
            "etc/group",
            "home/slipway",
        ] {
            assert!(names.contains_key(p), "{p} missing from busybox rootfs");
        }
    }

    #[test]
    fn dynamic_binaries_are_refused() {
        let sh = std::fs::read("/bin/bash").unwrap();
        let err = check_static_elf(Path::new("/bin/bash"), &sh).unwrap_err();
        assert!(err.to_string().contains("busybox-static"));
        let bb = std::fs::read(HOST_BUSYBOX).unwrap();
        check_static_elf(Path::new(HOST_BUSYBOX), &bb).unwrap();
    }
}
