//! Turning a container's byte chunks into log lines with secrets masked.
//!
//! Chunks from the engine split lines anywhere, so bytes are buffered until a
//! newline and each complete line is masked as a whole: a secret cut across
//! two chunks is still found. Over-long lines are split, but never inside a
//! secret occurrence.

/// What replaces each secret value in logs.
pub const MASK: &str = "********";
/// Longest line kept whole; longer output is split into several lines.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Line splitter and masker for one output stream of one step.
#[derive(Debug)]
pub struct LineMasker {
    secrets: Vec<Vec<u8>>,
    buf: Vec<u8>,
}

impl LineMasker {
    /// A masker for these secret values (empty values are ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().as_bytes().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self {
            secrets,
            buf: Vec::new(),
        }
    }

    /// Masks a complete piece of text (no buffering).
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if let Ok(s) = std::str::from_utf8(s) {
                if out.contains(s) {
                    out = out.replace(s, MASK);
                }
            }
        }
        out
    }

    /// Feeds bytes; returns the complete, masked lines they finish.
    pub fn push(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                let line = std::mem::take(&mut self.buf);
                lines.push(self.render(&line));
            } else {
                self.buf.push(b);
                if self.buf.len() >= MAX_LINE_BYTES {
                    let cut = self.safe_cut();
                    let rest = self.buf.split_off(cut);
                    let head = std::mem::replace(&mut self.buf, rest);
                    lines.push(self.render(&head));
                }
            }
        }
        lines
    }

    /// Returns what is left after the stream ended (a last line without newline).
    pub fn finish(&mut self) -> Option<String> {
        if self.buf.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.buf);
        Some(self.render(&line))
    }

    fn render(&self, bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.mask(text)
    }

    /// Where to split an over-long buffer: keep the last `longest - 1` bytes
    /// (a secret may still be arriving), and move the cut back before any
    /// secret occurrence it would cut through.
    fn safe_cut(&self) -> usize {
        let longest = self.secrets.first().map_or(1, Vec::len);
        let mut cut = self.buf.len().saturating_sub(longest.saturating_sub(1));
        loop {
            let mut moved = false;
            for s in &self.secrets {
                let lo = cut.saturating_sub(s.len() - 1);
                let hit = (lo..cut)
                    .find(|&start| self.buf[start..].starts_with(s) && start + s.len() > cut);
                if let Some(start) = hit {
                    cut = start;
                    moved = true;
                }
            }
            if !moved || cut == 0 {
                break;
            }
        }
        if cut == 0 {
            // The whole buffer is one secret occurrence chain: emit it masked whole.
            self.buf.len()
        } else {
            cut
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_across_chunk_boundaries() {
        let mut m = LineMasker::new(["hunter2-secret"]);
        let mut lines = m.push(b"token is hun");
        assert!(lines.is_empty());
        lines.extend(m.push(b"ter2-sec"));
        lines.extend(m.push(b"ret!\nnext line\npartial"));
        lines.extend(m.finish());
        assert_eq!(lines, vec!["token is ********!", "next line", "partial"]);
    }

    #[test]
    fn longest_secret_wins_and_empty_is_ignored() {
        let m = LineMasker::new(["abc", "abcdef", ""]);
        assert_eq!(m.mask("xabcdefx abc"), "x********x ********");
    }

    #[test]
    fn long_lines_are_split_outside_secrets() {
        let secret = "S".repeat(10) + "Z";
        let mut m = LineMasker::new([secret.as_str()]);
        let mut data = vec![b'a'; MAX_LINE_BYTES - 5];
        data.extend_from_slice(secret.as_bytes());
        data.extend_from_slice(b"tail\n");
        let lines = m.push(&data);
        assert!(lines.len() >= 2, "{}", lines.len());
        let all = lines.concat();
        assert!(!all.contains(&secret));
        assert!(all.contains(MASK));
        assert!(all.ends_with("tail"));
    }

    #[test]
    fn crlf_and_invalid_utf8() {
        let mut m = LineMasker::new(Vec::<String>::new());
        assert_eq!(m.push(b"a\r\n\xffb\n"), vec!["a", "\u{fffd}b"]);
    }
}
