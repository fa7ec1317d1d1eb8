//! Human tables or `--json`, chosen once per command.

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde::Serialize;

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a table with `header` and `rows`, or a hint when there are none.
pub fn table(header: &[&str], rows: Vec<Vec<String>>, empty_hint: &str) {
    if rows.is_empty() {
        println!("{empty_hint}");
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    println!("{t}");
}

/// A timestamp as users read it.
pub fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}
