//! Output formats: `--format` of the listing commands (table, json, a Go template, `table` +
//! template) and `-f` of the inspect commands, over the Docker-shaped objects of `docker`.

use anyhow::{anyhow, Result};
use std::io::Write;

/// `inspect -f`: no format or `json` is the JSON array; anything else a Go template.
pub fn inspect_template(format: Option<&str>) -> Result<Option<cove_gotemplate::Template>> {
    match format {
        None | Some("") | Some("json") => Ok(None),
        Some(f) => Ok(Some(cove_gotemplate::Template::parse(f).map_err(|e| anyhow!("{e}"))?)),
    }
}

/// Prints inspected objects: the JSON array, or each object through the template, a line each.
pub fn print_inspected(objects: &[serde_json::Value], tmpl: Option<&cove_gotemplate::Template>) -> Result<()> {
    let Some(t) = tmpl else {
        println!("{}", serde_json::to_string_pretty(objects)?);
        return Ok(());
    };
    let mut out = std::io::stdout().lock();
    for o in objects {
        writeln!(out, "{}", t.render(o).map_err(|e| anyhow!("{e}"))?)?;
    }
    Ok(())
}

/// `--format` of the listing commands (ps, images, network ls).
pub enum ListFormat {
    Table,
    /// One JSON object a line (Docker's `--format json`).
    Json,
    /// A template per row; `table` prefix: a header line and aligned columns (cells split at tabs).
    Template {
        table: bool,
        tmpl: cove_gotemplate::Template,
    },
}

impl ListFormat {
    pub fn parse(format: Option<&str>) -> Result<ListFormat> {
        Ok(match format.map(str::trim) {
            None | Some("") | Some("table") => ListFormat::Table,
            Some("json") | Some("{{json .}}") => ListFormat::Json,
            Some(f) => {
                let (table, body) = match f.strip_prefix("table") {
                    Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim_start()),
                    _ => (false, f),
                };
                // Go's tabwriter sees "\t" typed on a command line as a tab, as Docker does.
                let body = body.replace("\\t", "\t");
                ListFormat::Template {
                    table,
                    tmpl: cove_gotemplate::Template::parse(&body).map_err(|e| anyhow!("{e}"))?,
                }
            }
        })
    }

    /// Prints `rows` (objects with the template's field names) with `headers` naming the
    /// fields for a `table` template; `fallback` prints the default table.
    pub fn print(
        &self,
        rows: &[serde_json::Value],
        headers: &[(&str, &str)],
        fallback: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match self {
            ListFormat::Table => fallback(),
            ListFormat::Json => {
                for r in rows {
                    writeln!(out, "{}", serde_json::to_string(r)?)?;
                }
                Ok(())
            }
            ListFormat::Template { table: false, tmpl } => {
                for r in rows {
                    writeln!(out, "{}", tmpl.render(r).map_err(|e| anyhow!("{e}"))?)?;
                }
                Ok(())
            }
            ListFormat::Template { table: true, tmpl } => {
                // The header: the template rendered over the field names' headers.
                let names: serde_json::Map<String, serde_json::Value> =
                    headers.iter().map(|(k, h)| (k.to_string(), serde_json::Value::from(*h))).collect();
                let header = tmpl.render(&serde_json::Value::Object(names)).unwrap_or_default();
                let mut t = crate::table::Table::new(&header.split('\t').collect::<Vec<_>>());
                for r in rows {
                    t.row(tmpl.render(r).map_err(|e| anyhow!("{e}"))?.split('\t').map(String::from).collect());
                }
                t.write(&mut out)?;
                Ok(())
            }
        }
    }
}
