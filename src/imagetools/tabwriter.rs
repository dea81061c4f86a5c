//! Go's `text/tabwriter` as buildx configures it (`NewWriter(out, 0, 0, 1, ' ', 0)`): cells end
//! at tabs, a column is as wide as its widest cell in a run of consecutive lines plus one space.
//! Ported (not just approximated) so `imagetools inspect` lines up exactly as buildx's does,
//! trailing spaces included.

/// Aligns `text` (one flush of a tabwriter).
pub fn align(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format(&lines, &mut widths, 0, lines.len(), &mut out);
    out
}

fn cell_width(s: &str) -> usize {
    s.chars().count()
}

/// A line's tab-terminated cells are all but its last.
fn terminated(line: &[&str]) -> usize {
    line.len() - 1
}

fn format(
    lines: &[Vec<&str>],
    widths: &mut Vec<usize>,
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut start = line0;
    let mut this = line0;
    while this < line1 {
        if column >= terminated(&lines[this]) {
            this += 1;
            continue;
        }
        write_lines(lines, widths, start, this, out);
        start = this;
        let mut width = 0;
        while this < line1 && column < terminated(&lines[this]) {
            width = width.max(cell_width(lines[this][column]) + 1);
            this += 1;
        }
        widths.push(width);
        format(lines, widths, start, this, out);
        widths.pop();
        start = this;
    }
    write_lines(lines, widths, start, line1, out);
}

fn write_lines(
    lines: &[Vec<&str>],
    widths: &[usize],
    line0: usize,
    line1: usize,
    out: &mut String,
) {
    for (i, line) in lines.iter().enumerate().take(line1).skip(line0) {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() && j < terminated(line) {
                for _ in cell_width(cell)..widths[j] {
                    out.push(' ');
                }
            }
        }
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_buildx_inspect() {
        assert_eq!(
            align("Name:\tx\nMediaType:\ty\nDigest:\tz\n"),
            "Name:      x\nMediaType: y\nDigest:    z\n"
        );
        assert_eq!(align("\t\nManifests:\t\n"), "           \nManifests: \n");
    }

    #[test]
    fn a_line_without_tabs_ends_a_column_block() {
        assert_eq!(
            align("a:\t1\nplain\nlonger:\t2\n"),
            "a: 1\nplain\nlonger: 2\n"
        );
    }
}
