//! Streaming FASTA records (genome or transcripts) with noodles' FASTA reader, one record in memory
//! at a time, each with the line of its header.

use std::io;
use std::path::Path;

use noodles::fasta::record::Definition;

use super::input;
use crate::data::transcript::{NUCLEOTIDE_LETTERS, is_nucleotide_letter};
use crate::data::{DataError, Result};

/// Calls `f(name, header_line, letters)` for every record of a FASTA file (plain or gzipped), in
/// file order; `name` is the header's first word. Only the current record is held in memory: for a
/// genome that is one chromosome at a time. Whitespace inside sequence lines is removed; any other
/// non-letter is a [`DataError::Parse`] at the record's header line. Returns the number of records.
pub(super) fn for_each_record(path: &Path, mut f: impl FnMut(&str, usize, &[u8]) -> Result<()>) -> Result<usize> {
    let mut reader = noodles::fasta::io::Reader::new(input::open(path)?);
    let mut definition = Definition::default();
    let mut letters = Vec::new();
    let mut count = 0;
    loop {
        let line = reader.get_ref().line();
        let parse = |why: String| DataError::Parse {
            path: path.to_owned(),
            line,
            why,
        };
        match reader.read_definition(&mut definition) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(parse(format!("expected a FASTA header line \">name\": {e}")));
            }
            Err(e) => {
                return Err(DataError::Io {
                    path: path.to_owned(),
                    source: e,
                });
            }
        }
        letters.clear();
        reader.read_sequence(&mut letters).map_err(DataError::io(path))?;
        letters.retain(|b| !b.is_ascii_whitespace());
        let name =
            String::from_utf8(definition.name().to_vec()).map_err(|_| parse("record name is not UTF-8".into()))?;
        if let Some(pos) = letters.iter().position(|&b| !is_nucleotide_letter(b)) {
            let c = char::from(letters[pos]);
            return Err(parse(format!(
                "record {name}: illegal letter {c:?} at position {pos} ({NUCLEOTIDE_LETTERS})"
            )));
        }
        f(&name, line, &letters)?;
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_with_their_header_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.fa");
        std::fs::write(&path, ">a desc\nAC\nGT \n\n>b\r\nnn\r\n>c\n").unwrap();
        let mut got = Vec::new();
        let n = for_each_record(&path, |name, line, seq| {
            got.push((name.to_owned(), line, seq.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            got,
            vec![
                ("a".to_owned(), 1, b"ACGT".to_vec()),
                ("b".to_owned(), 5, b"nn".to_vec()),
                ("c".to_owned(), 7, b"".to_vec()),
            ]
        );
    }

    #[test]
    fn bad_header_and_bad_letters_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.fa");
        std::fs::write(&path, "ACGT\n").unwrap();
        let err = for_each_record(&path, |_, _, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains("x.fa:1:"), "{err}");
        std::fs::write(&path, ">a\nAC\n>b\nA-C\n").unwrap();
        let err = for_each_record(&path, |_, _, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains("x.fa:3:") && err.contains("'-'"), "{err}");
        // The alphabet of tables and labels: IUPAC codes pass, other letters do not.
        std::fs::write(&path, ">a\nACRYN\n>b\nACXG\n").unwrap();
        let err = for_each_record(&path, |_, _, _| Ok(())).unwrap_err().to_string();
        assert!(err.contains("x.fa:3:") && err.contains("'X' at position 2"), "{err}");
    }
}
