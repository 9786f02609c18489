//! Snapshot tables: the input of `train` and the built-in dataset's output.
//!
//! Format: a CSV file with a header line. One row per observation (one
//! embryo at one time): a time column (any unit; the frame gaps `h` are in
//! it), an optional track-id column and the `d` morphology coordinates.
//! Track ids are non-negative integers shared by the rows of one tracked
//! embryo; a negative or `NaN` id marks an untracked observation.

use crate::csvio::{Table, read_table, write_atomic};
use crate::times::TimeGrid;
use morphosde_core::integrate::rollout::default_workers;
use morphosde_core::sampler::UNTRACKED;
use morphosde_core::synthetic::{GroundTruth, SnapshotDesign, snapshots_workspace_len};
use std::path::Path;

/// Observations `z` (`n × d`, row-major), their times `t` (length `n`) and
/// track ids (length `n`; `None` = untracked).
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshots {
    pub d: usize,
    pub z: Vec<f32>,
    pub t: Vec<f32>,
    pub track: Vec<Option<u32>>,
    /// Names of the `d` coordinates (for output headers).
    pub names: Vec<String>,
}

/// Which columns hold the coordinates.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum CoordinateColumns {
    /// Every column except the time and id columns.
    #[default]
    Rest,
    /// Columns whose name starts with the prefix, in file order.
    Prefix(String),
    /// The named (or 0-based numbered) columns, in this order.
    Named(Vec<String>),
}

impl CoordinateColumns {
    /// The choice the flags `--columns` (names or numbers) and `--prefix`
    /// make; neither: every other column.
    pub fn from_flags(columns: &Option<Vec<String>>, prefix: &Option<String>) -> Self {
        match (columns, prefix) {
            (Some(c), _) => CoordinateColumns::Named(c.clone()),
            (None, Some(p)) => CoordinateColumns::Prefix(p.clone()),
            (None, None) => CoordinateColumns::Rest,
        }
    }
}

impl Snapshots {
    /// Snapshots of a known process observed as `design` says
    /// (`GroundTruth::snapshots`), coordinates named `z0…`.
    pub fn sampled<P: GroundTruth + Sync>(
        process: &P,
        design: &SnapshotDesign<'_, f32>,
    ) -> Result<Self, String> {
        let d = process.d();
        let obs = design.observations();
        let (mut z, mut t, mut track) = (vec![0.0f32; obs * d], vec![0.0f32; obs], vec![0u32; obs]);
        let mut ws = vec![0.0f32; snapshots_workspace_len(process, design, default_workers())];
        process
            .snapshots(design, &mut z, &mut t, &mut track, &mut ws)
            .map_err(|e| e.to_string())?;
        Ok(Snapshots {
            d,
            z,
            t,
            track: track
                .iter()
                .map(|&i| (i != UNTRACKED).then_some(i))
                .collect(),
            names: (0..d).map(|k| format!("z{k}")).collect(),
        })
    }

    /// Number of observations.
    pub fn len(&self) -> usize {
        self.t.len()
    }

    /// Whether the table has no observations.
    pub fn is_empty(&self) -> bool {
        self.t.is_empty()
    }

    /// Reads a snapshot table (see the module docs). `time` and `id` name
    /// columns by header name or 0-based number.
    pub fn read(
        path: &Path,
        time: &str,
        id: Option<&str>,
        coords: &CoordinateColumns,
    ) -> Result<Self, String> {
        let table = read_table(path, "--data")?;
        Self::from_table(&table, time, id, coords)
            .map_err(|e| format!("--data ('{}'): {e}", path.display()))
    }

    /// Builds snapshots from a parsed table (see [`Snapshots::read`]).
    pub fn from_table(
        table: &Table,
        time: &str,
        id: Option<&str>,
        coords: &CoordinateColumns,
    ) -> Result<Self, String> {
        let time_col = table
            .column_index(time)
            .map_err(|e| format!("time column: {e}"))?;
        let id_col = id
            .map(|s| table.column_index(s).map_err(|e| format!("id column: {e}")))
            .transpose()?;
        let header = table.header.as_deref();
        let name_of = |c: usize| header.map_or_else(|| format!("z{c}"), |h| h[c].clone());
        let coord_cols: Vec<usize> = match coords {
            CoordinateColumns::Rest => (0..table.cols)
                .filter(|&c| c != time_col && Some(c) != id_col)
                .collect(),
            CoordinateColumns::Prefix(p) => {
                let h = header.ok_or("a coordinate prefix needs a header line")?;
                (0..table.cols)
                    .filter(|&c| h[c].starts_with(p.as_str()))
                    .collect()
            }
            CoordinateColumns::Named(names) => names
                .iter()
                .map(|s| table.column_index(s))
                .collect::<Result<_, _>>()?,
        };
        if coord_cols.is_empty() {
            return Err("no coordinate columns selected".into());
        }
        if let Some(c) = coord_cols
            .iter()
            .find(|&&c| c == time_col || Some(c) == id_col)
        {
            return Err(format!(
                "column '{}' is both a coordinate and the time/id column",
                name_of(*c)
            ));
        }
        let z = table.select_f32(&coord_cols);
        let t: Vec<f32> = table.column(time_col).iter().map(|&x| x as f32).collect();
        if let Some(i) = t.iter().position(|x| !x.is_finite()) {
            return Err(format!("row {}: the time is not finite", i + 1));
        }
        if let Some(i) = z.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "row {}, column '{}': the coordinate is not finite",
                i / coord_cols.len() + 1,
                name_of(coord_cols[i % coord_cols.len()])
            ));
        }
        let track = match id_col {
            None => vec![None; table.rows],
            Some(c) => table
                .column(c)
                .iter()
                .enumerate()
                .map(|(r, &v)| match v {
                    v if v.is_nan() || v < 0.0 => Ok(None),
                    v if v.fract() == 0.0 && v <= u32::MAX as f64 => Ok(Some(v as u32)),
                    v => Err(format!(
                        "row {}: track id {v} is not a non-negative integer",
                        r + 1
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Snapshots {
            d: coord_cols.len(),
            z,
            t,
            track,
            names: coord_cols.iter().map(|&c| name_of(c)).collect(),
        })
    }

    /// The distinct times of the observations.
    pub fn grid(&self) -> TimeGrid {
        TimeGrid::new(self.t.iter().map(|&t| t as f64))
    }

    /// The observations `keep` accepts (by row), in order.
    pub fn retain(&self, keep: impl Fn(usize) -> bool) -> Snapshots {
        let rows: Vec<usize> = (0..self.len()).filter(|&i| keep(i)).collect();
        Snapshots {
            d: self.d,
            z: rows
                .iter()
                .flat_map(|&i| self.z[i * self.d..(i + 1) * self.d].iter().copied())
                .collect(),
            t: rows.iter().map(|&i| self.t[i]).collect(),
            track: rows.iter().map(|&i| self.track[i]).collect(),
            names: self.names.clone(),
        }
    }

    /// The rows at the time of the data that `at` matches (an error naming
    /// `what` if none does).
    pub fn at_time(&self, at: f64, what: &str) -> Result<Snapshots, String> {
        let grid = self.grid();
        let bin = grid.times[grid.find(at, what)?];
        Ok(self.retain(|i| grid.matches(self.t[i] as f64, bin)))
    }

    /// Time selection: without the rows at the `exclude` times, or (when
    /// `keep` is not empty) only the rows at the `keep` times. Every given
    /// time must match a time of the data (the flags `--exclude-times` and
    /// `--times` are named in the errors). Returns the selection and the
    /// data's times it dropped.
    pub fn select_times(
        &self,
        exclude: &[f64],
        keep: &[f64],
    ) -> Result<(Snapshots, Vec<f64>), String> {
        let grid = self.grid();
        let find = |times: &[f64], what: &str| -> Result<Vec<f64>, String> {
            times
                .iter()
                .map(|&t| grid.find(t, what).map(|b| grid.times[b]))
                .collect()
        };
        let excluded = find(exclude, "--exclude-times")?;
        let kept = find(keep, "--times")?;
        let dropped: Vec<f64> = grid
            .times
            .iter()
            .copied()
            .filter(|t| excluded.contains(t) || (!kept.is_empty() && !kept.contains(t)))
            .collect();
        let selection = self.retain(|i| {
            let t = self.t[i] as f64;
            !dropped.iter().any(|&b| grid.matches(t, b))
        });
        Ok((selection, dropped))
    }

    /// Writes the table with columns `t, id, <names…>` (id −1 = untracked).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        write_atomic(path, |w| {
            writeln!(w, "t,id,{}", self.names.join(","))?;
            for i in 0..self.len() {
                let id = self.track[i].map_or(-1, i64::from);
                write!(w, "{},{id}", self.t[i])?;
                for x in &self.z[i * self.d..(i + 1) * self.d] {
                    write!(w, ",{x}")?;
                }
                writeln!(w)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csvio::parse_table;

    fn table(text: &str) -> Table {
        parse_table(text).unwrap()
    }

    #[test]
    fn reads_time_ids_and_coordinates_by_rest_prefix_and_name() {
        let t = table("time,id,pc1,pc2,other\n0,3,1,2,9\n0.5,-1,3,4,9\n1,nan,5,6,9\n");
        let s = Snapshots::from_table(&t, "time", Some("id"), &CoordinateColumns::Rest).unwrap();
        assert_eq!((s.d, s.len()), (3, 3));
        assert_eq!(s.z, [1., 2., 9., 3., 4., 9., 5., 6., 9.]);
        assert_eq!(s.t, [0., 0.5, 1.]);
        assert_eq!(s.track, [Some(3), None, None]);
        let p = CoordinateColumns::Prefix("pc".into());
        let s = Snapshots::from_table(&t, "time", None, &p).unwrap();
        assert_eq!(
            (s.d, s.names.clone()),
            (2, vec!["pc1".into(), "pc2".into()])
        );
        assert_eq!(s.track, [None, None, None]);
        let n = CoordinateColumns::Named(vec!["pc2".into(), "pc1".into()]);
        let s = Snapshots::from_table(&t, "0", Some("id"), &n).unwrap();
        assert_eq!(s.z, [2., 1., 4., 3., 6., 5.]);
    }

    #[test]
    fn bad_tables_give_messages_that_name_the_problem() {
        let t = table("time,id,pc1\n0,1.5,1\n");
        let e = Snapshots::from_table(&t, "time", Some("id"), &CoordinateColumns::Rest);
        assert!(e.unwrap_err().contains("track id 1.5"));
        let e = Snapshots::from_table(&t, "when", None, &CoordinateColumns::Rest);
        assert!(e.unwrap_err().contains("no column named 'when'"));
        let p = CoordinateColumns::Prefix("x".into());
        let e = Snapshots::from_table(&t, "time", Some("id"), &p);
        assert!(e.unwrap_err().contains("no coordinate columns"));
        let n = CoordinateColumns::Named(vec!["time".into()]);
        let e = Snapshots::from_table(&t, "time", None, &n);
        assert!(e.unwrap_err().contains("both a coordinate and the time"));
        let t = table("time,pc1\ninf,1\n");
        let e = Snapshots::from_table(&t, "time", None, &CoordinateColumns::Rest);
        assert!(e.unwrap_err().contains("row 1: the time is not finite"));
    }

    #[test]
    fn time_selection_drops_or_keeps_whole_bins() {
        let t = table("t,x\n0,1\n0.2,2\n0.2,3\n0.4,4\n0.6,5\n");
        let s = Snapshots::from_table(&t, "t", None, &CoordinateColumns::Rest).unwrap();
        let (sel, dropped) = s.select_times(&[0.2], &[]).unwrap();
        assert_eq!((sel.z.clone(), dropped.len()), (vec![1., 4., 5.], 1));
        assert!((dropped[0] - 0.2).abs() < 1e-7);
        let (sel, dropped) = s.select_times(&[], &[0.6, 0.0]).unwrap();
        assert_eq!((sel.z, dropped.len()), (vec![1., 5.], 2));
        let e = s.select_times(&[0.3], &[]).unwrap_err();
        assert!(
            e.starts_with("--exclude-times: no time of the data matches 0.3"),
            "{e}"
        );
        assert!(
            s.select_times(&[], &[1.0])
                .unwrap_err()
                .starts_with("--times")
        );
        assert_eq!(s.at_time(0.2, "--t0").unwrap().z, [2., 3.]);
    }

    #[test]
    fn write_then_read_round_trips_bit_for_bit() {
        let s = Snapshots {
            d: 2,
            z: vec![0.1, -2.5e-7, 3.0, 1.0 / 3.0],
            t: vec![0.2, 0.4],
            track: vec![Some(7), None],
            names: vec!["a".into(), "b".into()],
        };
        let dir = std::env::temp_dir().join(format!("msde-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("snap.csv");
        s.write(&path).unwrap();
        let back = Snapshots::read(&path, "t", Some("id"), &CoordinateColumns::Rest).unwrap();
        assert_eq!(back, s);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
