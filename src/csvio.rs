//! CSV input and output of the command-line tool.
//!
//! Input: comma-separated numbers, one record per line, blank lines
//! ignored, a leading UTF-8 byte-order mark skipped. The first line is a
//! header exactly when one of its cells is not empty and not a number: a
//! first line of numbers is always data (a header of numeric names cannot
//! be told from data). Header names must be distinct. An empty data cell
//! is read as NaN (a missing value: an untracked id; refused as a time or
//! coordinate by the readers). Output: numbers written with Rust's shortest round-trip
//! formatting, so an `f32` read back is bit-identical. Files are written
//! atomically (temporary file in the same directory, then rename), so a
//! failed run never leaves a half-written file.

use std::fmt::Display;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A numeric table read from CSV: `rows × cols`, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Column names, when the file had a header line.
    pub header: Option<Vec<String>>,
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Table {
    /// Index of a column given by name (header) or by 0-based number.
    pub fn column_index(&self, spec: &str) -> Result<usize, String> {
        if let Some(h) = &self.header
            && let Some(i) = h.iter().position(|c| c == spec)
        {
            return Ok(i);
        }
        match spec.parse::<usize>() {
            Ok(i) if i < self.cols => Ok(i),
            Ok(i) => Err(format!(
                "column {i} is out of range: the table has {} columns",
                self.cols
            )),
            Err(_) => Err(format!(
                "no column named '{spec}' (columns: {})",
                self.header
                    .as_ref()
                    .map(|h| h.join(", "))
                    .unwrap_or_else(|| "the file has no header".into())
            )),
        }
    }

    /// One column as a vector.
    pub fn column(&self, c: usize) -> Vec<f64> {
        (0..self.rows)
            .map(|r| self.data[r * self.cols + c])
            .collect()
    }

    /// The given columns, row-major.
    pub fn select(&self, cols: &[usize]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.rows * cols.len());
        for r in 0..self.rows {
            for &c in cols {
                out.push(self.data[r * self.cols + c]);
            }
        }
        out
    }

    /// The given columns, row-major, converted to `f32`.
    pub fn select_f32(&self, cols: &[usize]) -> Vec<f32> {
        self.select(cols).into_iter().map(|x| x as f32).collect()
    }

    /// All columns as `f32`, row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }
}

/// Reads a numeric CSV file. `what` names the argument in error messages
/// (e.g. `--source`).
pub fn read_table(path: &Path, what: &str) -> Result<Table, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("{what}: cannot read '{}': {e}", path.display()))?;
    parse_table(&text).map_err(|e| format!("{what} ('{}'): {e}", path.display()))
}

/// Parses CSV text (see the module docs).
pub fn parse_table(text: &str) -> Result<Table, String> {
    let mut header = None;
    let mut cols = 0;
    let mut data = Vec::new();
    let mut rows = 0;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if rows == 0
            && header.is_none()
            && cells
                .iter()
                .any(|c| !c.is_empty() && c.parse::<f64>().is_err())
        {
            for (k, name) in cells.iter().enumerate() {
                if cells[..k].contains(name) {
                    return Err(format!(
                        "line {}: the column name '{name}' appears twice",
                        lineno + 1
                    ));
                }
            }
            header = Some(cells.iter().map(|c| c.to_string()).collect::<Vec<_>>());
            cols = cells.len();
            continue;
        }
        if cols == 0 {
            cols = cells.len();
        }
        if cells.len() != cols {
            return Err(format!(
                "line {}: {} cells, expected {cols}",
                lineno + 1,
                cells.len()
            ));
        }
        for (c, cell) in cells.iter().enumerate() {
            if cell.is_empty() {
                data.push(f64::NAN);
                continue;
            }
            let v: f64 = cell.parse().map_err(|_| {
                format!(
                    "line {}, column {}: '{cell}' is not a number",
                    lineno + 1,
                    c + 1
                )
            })?;
            data.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err("no data rows".into());
    }
    Ok(Table {
        header,
        rows,
        cols,
        data,
    })
}

/// Writes `path` atomically: `fill` writes into a temporary file next to it,
/// which is renamed over `path` only if everything succeeded.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), String> {
    let tmp = temp_path(path);
    let result = (|| {
        let file = fs::File::create(&tmp)?;
        let mut w = BufWriter::new(file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("cannot write '{}': {e}", path.display())
    })
}

/// Checks, before any work, that `path` can be written: its directory
/// exists and takes a new file (probed with the temporary file
/// [`write_atomic`] would use, removed again) and `path` is not a
/// directory. `what` names the flag in the error.
pub fn check_output(path: &Path, what: &str) -> Result<(), String> {
    if path.is_dir() {
        return Err(format!("{what}: '{}' is a directory", path.display()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "{what}: the directory '{}' does not exist",
            dir.display()
        ));
    }
    let probe = temp_path(path);
    fs::File::create(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| format!("{what}: cannot write in '{}': {e}", dir.display()))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Writes a `rows × cols` row-major matrix as CSV (atomically), with an
/// optional header line.
pub fn write_matrix<T: Display>(
    path: &Path,
    header: Option<&[String]>,
    data: &[T],
    cols: usize,
) -> Result<(), String> {
    write_atomic(path, |w| {
        if let Some(h) = header {
            writeln!(w, "{}", h.join(","))?;
        }
        for row in data.chunks(cols.max(1)) {
            for (c, x) in row.iter().enumerate() {
                if c > 0 {
                    w.write_all(b",")?;
                }
                write!(w, "{x}")?;
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_numbers() {
        let t = parse_table("t,x,y\n0,1.5,2\n\n1,-3e-2,4\n").unwrap();
        assert_eq!(t.header.as_deref().unwrap(), ["t", "x", "y"]);
        assert_eq!((t.rows, t.cols), (2, 3));
        assert_eq!(t.data, [0.0, 1.5, 2.0, 1.0, -0.03, 4.0]);
        assert_eq!(t.column_index("y").unwrap(), 2);
        assert_eq!(t.column_index("1").unwrap(), 1);
        assert!(
            t.column_index("z")
                .unwrap_err()
                .contains("no column named 'z'")
        );
    }

    #[test]
    fn reports_bad_cells_and_ragged_rows() {
        assert!(
            parse_table("1,2\n3,x\n")
                .unwrap_err()
                .contains("line 2, column 2")
        );
        assert!(
            parse_table("1,2\n3\n")
                .unwrap_err()
                .contains("1 cells, expected 2")
        );
        assert!(parse_table("a,b\n").unwrap_err().contains("no data rows"));
    }

    #[test]
    fn a_header_needs_a_cell_that_is_not_a_number() {
        // A first row of numbers is data, also as the only row.
        let t = parse_table("0,1\n2,3\n").unwrap();
        assert_eq!((t.header, t.rows), (None, 2));
        // An empty cell is a missing value, not a header name.
        let t = parse_table("0.5,\n0.1,0.2\n").unwrap();
        assert_eq!(t.header, None);
        assert!(t.data[1].is_nan());
        assert_eq!(t.data[2..], [0.1, 0.2]);
        let t = parse_table("t,id,x\n0,,1\n").unwrap();
        assert!(t.data[1].is_nan());
        // A byte-order mark is not part of the first name.
        let t = parse_table("\u{feff}t,x\n0,1\n").unwrap();
        assert_eq!(t.column_index("t").unwrap(), 0);
        let e = parse_table("t,x,x\n0,1,2\n").unwrap_err();
        assert!(e.contains("'x' appears twice"), "{e}");
    }

    #[test]
    fn f32_round_trips_through_text() {
        let values = [0.1f32, 1.0 / 3.0, 1e-30, -7.25e8, f32::MIN_POSITIVE];
        let dir = std::env::temp_dir().join(format!("msde-csv-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.csv");
        write_matrix(&path, None, &values, 5).unwrap();
        let back = read_table(&path, "test").unwrap().to_f32();
        assert_eq!(back, values);
        fs::remove_dir_all(&dir).unwrap();
    }
}
