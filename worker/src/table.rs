//! Plain-text tables for the CLI.

/// Renders `rows` under `headers` as an ASCII table; multi-line cells keep their lines.
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cols = headers.len();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (c, cell) in row.iter().enumerate().take(cols) {
            for line in cell.lines() {
                width[c] = width[c].max(line.chars().count());
            }
        }
    }
    let rule: String = width
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .collect::<String>()
        + "+\n";
    let line = |cells: &[&str]| -> String {
        cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("| {c}{} ", " ".repeat(w - c.chars().count())))
            .collect::<String>()
            + "|\n"
    };
    let mut out = rule.clone();
    out += &line(headers);
    out += &rule;
    for row in rows {
        let split: Vec<Vec<&str>> = row.iter().map(|c| c.lines().collect()).collect();
        let height = split.iter().map(Vec::len).max().unwrap_or(1).max(1);
        for i in 0..height {
            let cells: Vec<&str> = (0..cols)
                .map(|c| split.get(c).and_then(|l| l.get(i)).copied().unwrap_or(""))
                .collect();
            out += &line(&cells);
        }
    }
    out += &rule;
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_fit_the_widest_cell() {
        let t = super::render(&["Name", "Status"], &[vec!["c1".into(), "RUNNING".into()]]);
        assert_eq!(
            t,
            "+------+---------+\n| Name | Status  |\n+------+---------+\n| c1   | RUNNING |\n+------+---------+\n"
        );
    }
}
