//! A tiny screen emulator holding the last few rows of a vertex's output for the tty view
//! (`=> => # ...` lines).
//!
//! Build steps print progress bars with `\r` and colours; feeding the raw bytes through a grid
//! shows what a terminal would, instead of a smear of escape codes. It understands printable
//! text, `\n`, `\r`, `\b`, `\t` and erase-in-line; other escape sequences are dropped.

#[derive(Clone, Debug)]
pub(crate) struct VirtualTerm {
    rows: Vec<Vec<char>>,
    width: usize,
    x: usize,
    y: usize,
    /// Bytes of an escape sequence or UTF-8 character split across writes.
    pending: Vec<u8>,
}

enum Token<'a> {
    Text(char),
    Control(u8),
    EraseLine(u32),
    Ignored,
    /// The input ends inside a sequence; keep these bytes for the next write.
    Incomplete(&'a [u8]),
}

impl VirtualTerm {
    pub fn new(height: usize, width: usize) -> Self {
        let height = height.max(1);
        let width = width.max(1);
        VirtualTerm {
            rows: vec![vec![' '; width]; height],
            width,
            x: 0,
            y: 0,
            pending: Vec::new(),
        }
    }

    pub fn resize(&mut self, height: usize, width: usize) {
        let height = height.max(1);
        let width = width.max(6);
        if height > self.rows.len() {
            let w = self.width;
            self.rows.resize(height, vec![' '; w]);
        } else if height < self.rows.len() {
            self.rows.truncate(height);
        }
        self.resize_width(width);
        self.y = self.y.min(self.rows.len());
    }

    pub fn resize_width(&mut self, width: usize) {
        let width = width.max(1);
        if width == self.width {
            return;
        }
        for row in &mut self.rows {
            row.resize(width, ' ');
        }
        self.width = width;
        self.x = self.x.min(width);
    }

    /// Rows with any visible character.
    pub fn used_height(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.iter().any(|&c| c != ' '))
            .count()
    }

    /// The non-empty rows, each padded to the terminal width.
    pub fn visible_rows(&self) -> impl Iterator<Item = String> + '_ {
        self.rows
            .iter()
            .filter(|r| r.iter().any(|&c| c != ' '))
            .map(|r| r.iter().collect())
    }

    pub fn write(&mut self, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.pending);
        buf.extend_from_slice(data);
        let mut rest: &[u8] = &buf;
        while !rest.is_empty() {
            let (token, used) = next_token(rest);
            match token {
                Token::Text(c) => self.put(c),
                Token::Control(b'\n') => {
                    self.y += 1;
                    self.x = 0;
                }
                Token::Control(b'\r') => self.x = 0,
                Token::Control(8) => self.x = self.x.saturating_sub(1),
                Token::Control(b'\t') => {
                    let stop = (self.x / 8 + 1) * 8;
                    while self.x < stop.min(self.width) {
                        self.put(' ');
                    }
                }
                Token::Control(_) | Token::Ignored => {}
                Token::EraseLine(mode) => self.erase_line(mode),
                Token::Incomplete(bytes) => {
                    self.pending = bytes.to_vec();
                    return;
                }
            }
            rest = &rest[used..];
        }
    }

    fn scroll_if_needed(&mut self) {
        if self.x >= self.width {
            self.x = 0;
            self.y += 1;
        }
        if self.y >= self.rows.len() {
            self.rows.remove(0);
            self.rows.push(vec![' '; self.width]);
            self.y = self.rows.len() - 1;
        }
    }

    fn put(&mut self, c: char) {
        self.scroll_if_needed();
        self.rows[self.y][self.x] = c;
        self.x += 1;
    }

    fn erase_line(&mut self, mode: u32) {
        if self.y >= self.rows.len() {
            return;
        }
        let x = self.x.min(self.width);
        let row = &mut self.rows[self.y];
        let range = match mode {
            0 => x..row.len(),
            1 => 0..(x + 1).min(row.len()),
            _ => 0..row.len(),
        };
        for c in &mut row[range] {
            *c = ' ';
        }
    }
}

fn next_token(data: &[u8]) -> (Token<'_>, usize) {
    let b = data[0];
    if b == 0x1b {
        if data.len() < 2 {
            return (Token::Incomplete(data), data.len());
        }
        match data[1] {
            b'[' => {
                // CSI: parameters and intermediates, then one final byte in 0x40..=0x7e.
                for (i, &c) in data.iter().enumerate().skip(2) {
                    if (0x40..=0x7e).contains(&c) {
                        if c == b'K' {
                            let mode = std::str::from_utf8(&data[2..i])
                                .ok()
                                .and_then(|p| p.parse().ok())
                                .unwrap_or(0);
                            return (Token::EraseLine(mode), i + 1);
                        }
                        return (Token::Ignored, i + 1);
                    }
                }
                (Token::Incomplete(data), data.len())
            }
            b']' => {
                // OSC: runs to BEL or ST (ESC \).
                for i in 2..data.len() {
                    if data[i] == 7 {
                        return (Token::Ignored, i + 1);
                    }
                    if data[i] == 0x1b && data.get(i + 1) == Some(&b'\\') {
                        return (Token::Ignored, i + 2);
                    }
                }
                (Token::Incomplete(data), data.len())
            }
            _ => (Token::Ignored, 2),
        }
    } else if b < 0x20 || b == 0x7f {
        (Token::Control(b), 1)
    } else if b < 0x80 {
        (Token::Text(b as char), 1)
    } else {
        let len = match b {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return (Token::Text('\u{fffd}'), 1),
        };
        if data.len() < len {
            return (Token::Incomplete(data), data.len());
        }
        match std::str::from_utf8(&data[..len]) {
            Ok(s) => (Token::Text(s.chars().next().unwrap_or('\u{fffd}')), len),
            Err(_) => (Token::Text('\u{fffd}'), 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &VirtualTerm) -> Vec<String> {
        t.visible_rows().map(|r| r.trim_end().to_string()).collect()
    }

    #[test]
    fn carriage_return_overwrites_and_scrolls() {
        let mut t = VirtualTerm::new(2, 10);
        t.write(b"10%\r50%\r100%\nnext\nlast");
        assert_eq!(rows(&t), vec!["next", "last"]);
        assert_eq!(t.used_height(), 2);
    }

    #[test]
    fn escapes_are_dropped_and_split_utf8_kept() {
        let mut t = VirtualTerm::new(3, 20);
        t.write(b"\x1b[31mred\x1b[0m \xc3");
        t.write(b"\xa9 done\x1b[");
        t.write(b"2K");
        assert_eq!(rows(&t), Vec::<String>::new());
        t.write(b"\rok");
        assert_eq!(rows(&t), vec!["ok"]);
        let mut t = VirtualTerm::new(3, 20);
        t.write("caf\u{e9}".as_bytes());
        assert_eq!(rows(&t), vec!["caf\u{e9}"]);
    }

    #[test]
    fn long_lines_wrap() {
        let mut t = VirtualTerm::new(3, 4);
        t.write(b"abcdefg");
        assert_eq!(rows(&t), vec!["abcd", "efg"]);
    }
}
