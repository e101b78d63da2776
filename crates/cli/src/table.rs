//! Column output as Docker prints it (Go's tabwriter with padding 3): each column as wide as
//! its widest cell, so long cells ("Less than a second ago") never push the next one out of line.

use std::io::Write;

/// Rows of cells under a header; written with [`Table::write`].
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { rows: vec![header.iter().map(|s| s.to_string()).collect()] }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|i| self.rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
            .collect();
        for r in &self.rows {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate() {
                line.push_str(c);
                if i + 1 < r.len() {
                    line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count() + 3));
                }
            }
            writeln!(out, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let mut t = Table::new(&["ID", "STATUS", "NAMES"]);
        t.row(vec!["abc".into(), "Less than a second ago".into(), "web".into()]);
        t.row(vec!["abcdef".into(), "Up".into(), "db".into()]);
        let mut out = vec![];
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID       STATUS                   NAMES\nabc      Less than a second ago   web\nabcdef   Up                       db\n"
        );
    }
}
