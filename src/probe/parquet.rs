//! Parquet I/O for the probes: the rows of a Parquet table as text cells (so that one checked parser reads
//! TSV, CSV and Parquet alike) and embedding matrices written as Parquet. Uses the `parquet` crate's row and
//! column APIs, not Arrow. Knows no tensors.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::Type;

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

/// Writes an embedding matrix as Parquet: a string column `id`, then one float32 column per dimension
/// (`e0`, `e1`, …), one row per transcript, Snappy-compressed (what pandas and polars read by default).
///
/// `values` is `ids.len() × dim`, row-major.
pub fn write_embeddings(path: &Path, ids: &[&str], values: &[f32], dim: usize) -> parquet::errors::Result<()> {
    if values.len() != ids.len() * dim {
        return Err(parquet::errors::ParquetError::General(format!(
            "{} values for {} ids of width {dim}",
            values.len(),
            ids.len()
        )));
    }
    let schema = embedding_schema(dim)?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = SerializedFileWriter::new(File::create(path)?, Arc::new(schema), Arc::new(props))?;
    let mut group = writer.next_row_group()?;
    let mut column = 0;
    let mut buffer = Vec::with_capacity(ids.len());
    while let Some(mut out) = group.next_column()? {
        if column == 0 {
            let cells: Vec<ByteArray> = ids.iter().map(|id| ByteArray::from(*id)).collect();
            out.typed::<ByteArrayType>().write_batch(&cells, None, None)?;
        } else {
            buffer.clear();
            buffer.extend(values.iter().skip(column - 1).step_by(dim.max(1)));
            out.typed::<FloatType>().write_batch(&buffer, None, None)?;
        }
        out.close()?;
        column += 1;
    }
    group.close()?;
    writer.close()?;
    Ok(())
}

fn embedding_schema(dim: usize) -> parquet::errors::Result<Type> {
    use parquet::basic::{LogicalType, Repetition, Type as Physical};
    let mut fields = vec![Arc::new(
        Type::primitive_type_builder("id", Physical::BYTE_ARRAY)
            .with_repetition(Repetition::REQUIRED)
            .with_logical_type(Some(LogicalType::String))
            .build()?,
    )];
    for d in 0..dim {
        fields.push(Arc::new(
            Type::primitive_type_builder(&format!("e{d}"), Physical::FLOAT)
                .with_repetition(Repetition::REQUIRED)
                .build()?,
        ));
    }
    Type::group_type_builder("embeddings").with_fields(fields).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_by_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.parquet");
        write_embeddings(&path, &["t1", "t2"], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3).unwrap();
        let mut rows = ParquetRows::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(rows.columns, ["id", "e0", "e1", "e2"]);
        assert_eq!(rows.next_row().unwrap().unwrap(), ["t1", "1", "2", "3"]);
        assert_eq!(rows.next_row().unwrap().unwrap(), ["t2", "4", "5", "6"]);
        assert!(rows.next_row().is_none());
        assert!(write_embeddings(&path, &["t1"], &[1.0, 2.0], 3).is_err());
    }

    #[test]
    fn a_file_that_is_not_parquet_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        std::fs::write(&path, "id\tsequence\n").unwrap();
        let Err(why) = ParquetRows::new(File::open(&path).unwrap()) else {
            panic!("a text file opened as Parquet");
        };
        assert!(!why.is_empty());
    }
}
