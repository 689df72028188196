//! A tiny document model: the summary page is built once as a list of [`Block`]s and
//! written out twice, as Markdown (`summary.md`) and as HTML (`index.html`). Keeping the
//! structure here means neither writer has to parse the other's output, and every piece of
//! text is escaped exactly once, by the writer that knows the target syntax.

/// One block of the summary page. Text is plain: writers escape it for their syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Block {
    /// A heading; level 1 is the page title.
    Heading { level: u8, text: String },
    /// The page title stating the verdict: colored green or red in HTML.
    Verdict { valid: bool, text: String },
    /// A paragraph of plain text.
    Paragraph(String),
    /// A table with a header row; every row has as many cells as the header.
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// Preformatted text (a command, event lines, raw JSON).
    Code(String),
    /// The timeline picture: a link to `timeline.svg` in Markdown, the inline SVG in HTML.
    Timeline,
    /// A table whose first cell links to a page: the Markdown page in Markdown, the HTML
    /// page in HTML.
    LinkedTable {
        header: Vec<String>,
        rows: Vec<LinkedRow>,
    },
}

/// A row of a [`Block::LinkedTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkedRow {
    /// Where the first cell links to from Markdown.
    pub(crate) markdown_target: String,
    /// Where the first cell links to from HTML.
    pub(crate) html_target: String,
    /// The cells, the first one being the link text.
    pub(crate) cells: Vec<String>,
}

/// The title of the HTML page.
const HTML_TITLE: &str = "Skiff run summary";

/// The file name the Markdown page links the timeline picture to.
pub(crate) const TIMELINE_FILE_NAME: &str = "timeline.svg";

/// Writes the blocks as GitHub-flavoured Markdown.
pub(crate) fn to_markdown(blocks: &[Block]) -> String {
    let mut text = String::new();
    for block in blocks {
        if !text.is_empty() {
            text.push('\n');
        }
        match block {
            Block::Heading { level, text: title } => {
                assert!((1..=6).contains(level), "heading level {level}");
                let hashes = "#".repeat(usize::from(*level));
                text.push_str(&format!("{hashes} {}\n", single_line(title)));
            }
            Block::Verdict { text: title, .. } => {
                text.push_str(&format!("# {}\n", single_line(title)));
            }
            Block::Paragraph(paragraph) => {
                text.push_str(&escape_markdown_text(paragraph));
                text.push('\n');
            }
            Block::Table { header, rows } => markdown_table(&mut text, header, rows),
            Block::Code(code) => {
                let fence = code_fence(code);
                text.push_str(&format!("{fence}text\n{code}"));
                if !code.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(&format!("{fence}\n"));
            }
            Block::Timeline => {
                text.push_str(&format!("![timeline]({TIMELINE_FILE_NAME})\n"));
            }
            Block::LinkedTable { header, rows } => {
                let rows: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| {
                        let mut cells: Vec<String> = row
                            .cells
                            .iter()
                            .map(|cell| escape_table_cell(cell))
                            .collect();
                        cells[0] = format!("[{}]({})", cells[0], link_target(&row.markdown_target));
                        cells
                    })
                    .collect();
                markdown_table_escaped(&mut text, header, &rows);
            }
        }
    }
    text
}

fn markdown_table(text: &mut String, header: &[String], rows: &[Vec<String>]) {
    let escape_row = |row: &Vec<String>| row.iter().map(|cell| escape_table_cell(cell)).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(escape_row).collect();
    markdown_table_escaped(text, header, &rows);
}

/// Writes a table whose body cells are already escaped.
fn markdown_table_escaped(text: &mut String, header: &[String], rows: &[Vec<String>]) {
    assert!(!header.is_empty(), "a table needs a header");
    let header: Vec<String> = header.iter().map(|cell| escape_table_cell(cell)).collect();
    text.push_str(&format!("| {} |\n", header.join(" | ")));
    text.push_str(&format!("|{}\n", " --- |".repeat(header.len())));
    for row in rows {
        assert_eq!(
            row.len(),
            header.len(),
            "a table row has one cell per column"
        );
        text.push_str(&format!("| {} |\n", row.join(" | ")));
    }
}

/// A link target, in angle brackets when it holds characters that would end a bare one.
fn link_target(target: &str) -> String {
    if target.contains([' ', '(', ')', '<', '>']) {
        format!("<{}>", target.replace(['<', '>'], "_"))
    } else {
        target.to_string()
    }
}

/// A fence longer than any run of backticks inside the code, so the code cannot end it.
fn code_fence(code: &str) -> String {
    let mut longest = 0;
    let mut current = 0;
    for character in code.chars() {
        current = if character == '`' { current + 1 } else { 0 };
        longest = longest.max(current);
    }
    "`".repeat((longest + 1).max(3))
}

fn single_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Escapes the characters that would start Markdown markup inside running text.
fn escape_markdown_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in single_line(text).chars() {
        if matches!(
            character,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|'
        ) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

fn escape_table_cell(text: &str) -> String {
    escape_markdown_text(text)
}

/// Writes the blocks as one self-contained HTML page with the timeline SVG inline.
pub(crate) fn to_html(blocks: &[Block], timeline_svg: &str) -> String {
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str(&format!(
        "<title>{HTML_TITLE}</title>\n<style>\n{STYLE_SHEET}</style>\n"
    ));
    html.push_str("</head>\n<body>\n");
    for block in blocks {
        match block {
            Block::Heading { level, text } => {
                assert!((1..=6).contains(level), "heading level {level}");
                html.push_str(&format!("<h{level}>{}</h{level}>\n", escape_html(text)));
            }
            Block::Verdict { valid, text } => {
                let class = if *valid { "valid" } else { "invalid" };
                html.push_str(&format!(
                    "<h1 class=\"{class}\">{}</h1>\n",
                    escape_html(text)
                ));
            }
            Block::Paragraph(paragraph) => {
                html.push_str(&format!("<p>{}</p>\n", escape_html(paragraph)));
            }
            Block::Table { header, rows } => html_table(&mut html, header, rows),
            Block::Code(code) => {
                html.push_str(&format!("<pre>{}</pre>\n", escape_html(code)));
            }
            Block::LinkedTable { header, rows } => {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| {
                        let mut cells: Vec<String> =
                            row.cells.iter().map(|cell| escape_html(cell)).collect();
                        cells[0] = format!(
                            "<a href=\"{}\">{}</a>",
                            escape_html(&row.html_target),
                            cells[0]
                        );
                        cells
                    })
                    .collect();
                html_table_escaped(&mut html, header, &cells);
            }
            Block::Timeline => {
                html.push_str("<div class=\"timeline\">\n");
                html.push_str(strip_xml_declaration(timeline_svg));
                html.push_str("</div>\n");
            }
        }
    }
    html.push_str("</body>\n</html>\n");
    html
}

fn html_table(html: &mut String, header: &[String], rows: &[Vec<String>]) {
    let escape_row = |row: &Vec<String>| row.iter().map(|cell| escape_html(cell)).collect();
    let rows: Vec<Vec<String>> = rows.iter().map(escape_row).collect();
    html_table_escaped(html, header, &rows);
}

/// Writes a table whose body cells are already escaped HTML.
fn html_table_escaped(html: &mut String, header: &[String], rows: &[Vec<String>]) {
    html.push_str("<table>\n<thead><tr>");
    for cell in header {
        html.push_str(&format!("<th>{}</th>", escape_html(cell)));
    }
    html.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!("<td>{cell}</td>"));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody>\n</table>\n");
}

/// An inline `<svg>` inside HTML must not carry the XML declaration.
fn strip_xml_declaration(svg: &str) -> &str {
    match svg.strip_prefix("<?xml") {
        Some(rest) => rest
            .find("?>")
            .map_or(svg, |end| rest[end + 2..].trim_start()),
        None => svg,
    }
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

const STYLE_SHEET: &str = "\
body { font-family: sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1.valid { color: #1e7b1e; }
h1.invalid { color: #b71c1c; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em; }
th { background: #f0f0f0; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; }
.timeline { overflow-x: auto; }
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_table_pipes_and_fences_backticks() {
        let blocks = vec![
            Block::Table {
                header: vec!["key".into(), "value".into()],
                rows: vec![vec!["a|b".into(), "c".into()]],
            },
            Block::Code("x ``` y".into()),
        ];
        let markdown = to_markdown(&blocks);
        assert!(markdown.contains("| a\\|b | c |"), "{markdown}");
        assert!(markdown.contains("````text\nx ``` y\n````"), "{markdown}");
    }

    #[test]
    fn link_targets_with_spaces_are_bracketed() {
        assert_eq!(link_target("seed-1/summary.md"), "seed-1/summary.md");
        assert_eq!(link_target("run (2)/summary.md"), "<run (2)/summary.md>");
    }

    #[test]
    fn html_escapes_and_inlines_the_svg_without_declaration() {
        let blocks = vec![Block::Paragraph("<b>&".into()), Block::Timeline];
        let html = to_html(&blocks, "<?xml version=\"1.0\"?>\n<svg></svg>\n");
        assert!(html.contains("<p>&lt;b&gt;&amp;</p>"));
        assert!(html.contains("<div class=\"timeline\">\n<svg></svg>"));
        assert!(!html.contains("<?xml"));
    }
}
