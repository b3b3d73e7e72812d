//! Embedding matrices written as Parquet (the reading side is [`crate::data::parquet_rows`]). Uses the
//! `parquet` crate's column API, not Arrow. Knows no tensors.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

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
    use crate::data::parquet_rows::ParquetRows;

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
