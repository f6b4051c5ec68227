//! Just enough Markdown for the docs checks: pipe tables, inline code spans, fenced code
//! blocks and link targets, as this repository writes them.

/// A pipe table: its header cells and its rows' cells, trimmed, in order.
#[derive(Debug)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Index of the first header cell that `wanted` accepts (compared in lower case).
    pub fn column(&self, wanted: impl Fn(&str) -> bool) -> Option<usize> {
        self.header
            .iter()
            .position(|cell| wanted(&cell.to_lowercase()))
    }
}

/// Every pipe table of `text` outside fenced code blocks.
pub fn tables(text: &str) -> Vec<Table> {
    let mut tables = Vec::new();
    let mut current: Option<Table> = None;
    for line in prose_lines(text) {
        let line = line.trim();
        if !line.starts_with('|') {
            tables.extend(current.take());
            continue;
        }
        let cells = split_row(line);
        match current.as_mut() {
            None => {
                current = Some(Table {
                    header: cells,
                    rows: Vec::new(),
                })
            }
            Some(table) => {
                let delimiter = cells
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
                if !delimiter {
                    table.rows.push(cells);
                }
            }
        }
    }
    tables.extend(current);
    tables
}

/// The cells of one table row. A `|` inside a code span or escaped as `\|` belongs to its
/// cell, as GitHub renders it.
fn split_row(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    let mut chars = inner.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '`' => {
                in_code = !in_code;
                cell.push(ch);
            }
            '|' if !in_code => cells.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(ch),
        }
    }
    cells.push(cell.trim().to_owned());
    cells
}

/// The contents of the inline code spans of `text`, outside fenced code blocks.
pub fn code_spans(text: &str) -> Vec<String> {
    let prose = prose_lines(text).collect::<Vec<_>>().join("\n");
    spans_of(&prose)
}

/// The contents of the code spans in one piece of text (a line, a cell).
pub fn spans_of(text: &str) -> Vec<String> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The lines inside fenced code blocks (```), each block's lines in order.
pub fn fenced_lines(text: &str) -> Vec<String> {
    let mut inside = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            inside = !inside;
        } else if inside {
            lines.push(line.to_owned());
        }
    }
    lines
}

/// Targets of the inline links `[text](target)` of `text`, outside fenced code blocks.
pub fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            match after.find(')') {
                Some(end) => {
                    targets.push(after[..end].trim().to_owned());
                    rest = &after[end..];
                }
                None => break,
            }
        }
    }
    targets
}

/// The lines of `text` outside fenced code blocks.
fn prose_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut inside = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            inside = !inside;
            return false;
        }
        !inside
    })
}

#[test]
fn a_row_keeps_escaped_pipes_and_pipes_in_code() {
    assert_eq!(
        split_row("| `--endpoint json\\|text` | `a|b` | x |"),
        vec!["`--endpoint json|text`", "`a|b`", "x"]
    );
}

#[test]
fn tables_skip_the_delimiter_row_and_code_blocks() {
    let text = "| A | B |\n|---|:-:|\n| 1 | 2 |\n\n```\n| not | a table |\n```\n";
    let found = tables(text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].header, vec!["A", "B"]);
    assert_eq!(found[0].rows, vec![vec!["1", "2"]]);
}
