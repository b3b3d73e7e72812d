//! Parquet tables read as rows of text cells, so that one checked parser ([`super::table`]) reads TSV, CSV
//! and Parquet alike. Uses the `parquet` crate's row API, not Arrow. Knows no tensors.

use std::fs::File;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};

/// Why a row could not be read: the column whose value cannot be text (`None` when the row itself could
/// not be decoded), and the reason.
pub(crate) type RowError = (Option<String>, String);

/// The rows of a Parquet file, one text cell per top-level column.
pub(crate) struct ParquetRows {
    rows: RowIter<'static>,
    /// The top-level column names, in schema order.
    pub columns: Vec<String>,
}

impl ParquetRows {
    /// Reads the schema of an opened file; the error says why it is not a readable Parquet file.
    pub fn new(file: File) -> Result<Self, String> {
        let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
        let columns = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        Ok(Self {
            rows: RowIter::from_file_into(Box::new(reader)),
            columns,
        })
    }

    /// The next row as text cells in column order (trimmed), `None` at the end.
    pub fn next_row(&mut self) -> Option<Result<Vec<String>, RowError>> {
        let row: Row = match self.rows.next()? {
            Ok(row) => row,
            Err(e) => return Some(Err((None, e.to_string()))),
        };
        Some(
            row.get_column_iter()
                .map(|(name, field)| cell_text(field).map_err(|why| (Some(name.clone()), why)))
                .collect(),
        )
    }
}

/// A Parquet value as the text a TSV cell would hold: nulls are empty, booleans 1 or 0, numbers in Rust's
/// shortest round-trip form, lists comma-separated (so a `list<int>` column serves as `exon_ends`).
fn cell_text(field: &Field) -> Result<String, String> {
    Ok(match field {
        Field::Null => String::new(),
        Field::Bool(b) => u8::from(*b).to_string(),
        Field::Str(s) => s.trim().to_owned(),
        Field::Bytes(b) => std::str::from_utf8(b.data())
            .map_err(|_| "binary value that is not UTF-8 text".to_owned())?
            .trim()
            .to_owned(),
        Field::ListInternal(list) => list
            .elements()
            .iter()
            .map(cell_text)
            .collect::<Result<Vec<_>, _>>()?
            .join(","),
        Field::Group(_) | Field::MapInternal(_) => {
            return Err("a struct or map value; probe tables need flat columns".to_owned());
        }
        // Rust's shortest round-trip form (`1`, not the `1.0` of the crate's Display).
        Field::Float(v) => v.to_string(),
        Field::Double(v) => v.to_string(),
        Field::Float16(v) => f32::from(*v).to_string(),
        // Integers, decimals, dates and times print their values.
        other => other.to_string(),
    })
}
